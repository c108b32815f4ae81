"""The static HTML report: counts, escaping, flagged tables, histogram, extra sections, streaming."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from voicecheck.analysis import Ring
from voicecheck.report import REPORT_HTML, Scan, histogram_counts, html_table, read_jsonl, write_html

EVIL = '<script>alert("x")</script>'


def _record(call_id: str, verdict: str, score: float | None = None, **extra: object) -> dict:
    base = {
        "call_id": call_id,
        "borrower_id": f"B-{call_id}",
        "verdict": verdict,
        "score": score,
        "threshold": 0.7 if score is not None else None,
        "reason": None,
        "audio": f"/calls/{call_id}.wav",
        "speaker_change_s": None,
        "watchlist_hits": [],
        "timeline": [{"start_s": 0.0, "end_s": 4.0, "score": 0.9}],
    }
    return {**base, **extra}


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    records = [_record(f"M{i}", "match", 0.8 + i / 100) for i in range(5)]
    records += [
        _record("X1", "mismatch", 0.41, reason="voice_mismatch", speaker_change_s=12.5),
        _record(
            EVIL,
            "mismatch",
            0.22,
            reason="voice_mismatch",
            borrower_id="Smith & <Sons>",
            audio="/calls/a b&c.wav",
            watchlist_hits=[{"label": "fraud <ring> 7", "score": 0.812, "source": "case 1"}],
        ),
        _record("X3", "mismatch", 0.65, reason="voice_mismatch"),
        _record("I1", "inconclusive", reason="insufficient_speech", speech_seconds=1.2),
        _record("I2", "inconclusive", reason="not_enrolled"),
        _record("E1", "error", reason="unreadable_audio: /calls/E1.wav: <b>empty</b> file (0 bytes)"),
    ]
    return _write(tmp_path / "results.jsonl", records)


SUMMARY = {
    "calls": 11,
    "audio_seconds": 7200.0,
    "model": "ge2e-resemblyzer-0.1.4",
    "engine": "local",
    "workers": 2,
    "wall_seconds": 61.5,
    "timings_s": {"embed_seconds": 55.1, "score_seconds": 4.2},
}


def _tables(page: str) -> list[str]:
    return re.findall(r"<table>.*?</table>", page, flags=re.S)


def _queue(page: str) -> dict:
    """The review queue's data as the page's script reads it."""
    found = re.search(r'<script type="application/json" id="queue-data">(.*?)</script>', page, flags=re.S)
    assert found
    return json.loads(found.group(1))


def _ids(data: dict, group: str) -> list[str]:
    return [data["items"][i]["id"] for i in data["groups"].get(group, [])]


def test_report_counts_flags_and_escapes(tmp_path: Path, results: Path) -> None:
    path = write_html(tmp_path, SUMMARY, results)
    assert path == tmp_path / REPORT_HTML
    page = path.read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;b&gt;empty&lt;/b&gt;" in page and "<b>" not in page
    # every script is the page's own (nonce of the policy); the data block is inert JSON
    nonce = re.search(r"script-src 'nonce-([^']+)'", page)
    assert nonce and re.findall(r"<script(?: [^>]*)?>", page) == [
        '<script type="application/json" id="queue-data">',
        f'<script nonce="{nonce.group(1)}">',
    ]
    # no external assets: nothing fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page and "@import" not in page

    verdicts, stages, others = _tables(page)[:3]
    for verdict, n in (("match", 5), ("mismatch", 3), ("inconclusive", 2), ("error", 1)):
        assert re.search(rf"<td>{verdict}</td><td class=num>{n}</td>", verdicts)
    assert "embed_seconds" in stages and "55.1" in stages and "61.5" in stages
    assert all(c in others for c in ("I1", "I2", "E1")) and "X1" not in others
    # the mismatches in the queue, lowest score first; no match is queued
    data = _queue(page)
    assert _ids(data, "voice_mismatch") == [EVIL, "X1", "X3"] and list(data["groups"]) == ["voice_mismatch"]
    evil = data["items"][data["groups"]["voice_mismatch"][0]]
    assert evil["b"] == "Smith & <Sons>" and evil["w"] == [["fraud <ring> 7", 0.812, "case 1"]]
    assert evil["a"] == "file:///calls/a%20b%26c.wav"  # the whole recording, percent-encoded
    assert "score 0.220 < threshold 0.700" in evil["ev"]["voice_mismatch"][1]
    assert not any(f'"M{i}"' in page for i in range(5))
    assert evil["ex"]["error"].startswith("unreadable_audio")  # no such file here: no excerpt, and why


def test_histogram_counts_scores_by_verdict_and_marks_the_threshold(tmp_path: Path, results: Path) -> None:
    scan = Scan(10)
    for r in read_jsonl(results):
        scan.add(r)
    edges, counts = histogram_counts(scan.buckets, scan.thresholds, 40)
    assert {v: int(c.sum()) for v, c in counts.items()} == {"match": 5, "mismatch": 3}  # scored calls, once each
    assert len(edges) == 41 and edges[0] <= 0.22 and edges[-1] >= 0.84 and edges[0] <= 0.7 <= edges[-1]
    low = int((0.22 - edges[0]) / (edges[1] - edges[0]))
    assert counts["mismatch"][low] == 1  # the lowest mismatch lands in its own score's bar
    page = write_html(tmp_path, SUMMARY, results).read_text(encoding="utf-8")
    svg = re.search(r"<svg.*?</svg>", page, flags=re.S)
    assert svg  # drawn by matplotlib, inline, text kept as text
    assert "match (5)" in svg.group(0) and "mismatch (3)" in svg.group(0)
    assert "threshold 0.7" in svg.group(0) and "stroke-dasharray" in svg.group(0)
    assert 'xlink:href="http' not in svg.group(0) and "<image" not in svg.group(0)


def test_caps_flagged_rows_and_adds_extra_sections(tmp_path: Path, results: Path) -> None:
    rings = [Ring(calls=["M1", "C2", "C3"], borrowers=["B1", "B2", "<B3>"], cohesion=0.83)]
    takeovers = html_table([{"call_id": "X1", "change_s": 12.5}], ["call_id", "change_s"])
    page = write_html(
        tmp_path, SUMMARY, results, rings=rings, sections=[("Takeovers <new>", takeovers)], max_rows=2
    ).read_text(encoding="utf-8")
    data = _queue(page)
    assert _ids(data, "voice_mismatch") == [EVIL, "X1"] and data["totals"]["voice_mismatch"] == 3  # the 2 strongest
    assert "strongest evidence per reason" in page
    assert _ids(data, "ring") == ["M1"]  # a match of this run that speaks in a ring is queued too
    ring = data["items"][data["groups"]["ring"][0]]
    assert ring["v"] == "match" and "3 borrowers" in ring["ev"]["ring"][1] and "0.830" in ring["ev"]["ring"][1]
    extra = page[page.index("<!-- extra sections") : page.index("<!-- end of extra sections")]
    assert "Voice rings (1)" in extra and "&lt;B3&gt;" in extra and "0.83" in extra
    assert "Takeovers &lt;new&gt;" in extra and "<td>X1</td>" in extra


def test_large_results_file_is_streamed_into_a_small_page(tmp_path: Path) -> None:
    records = [_record(f"C{i}", "match", 0.75 + (i % 200) / 1000) for i in range(20000)]
    records.append(_record("BAD", "mismatch", 0.3, reason="voice_mismatch"))
    results = _write(tmp_path / "results.jsonl", records)
    page = write_html(tmp_path, {**SUMMARY, "calls": 20001}, results).read_text(encoding="utf-8")
    assert len(page) < 150_000  # matches are counted, never listed
    assert re.search(r"<td>match</td><td class=num>20000</td>", page)
    assert [item["id"] for item in _queue(page)["items"]] == ["BAD"] and '"C1999"' not in page


def test_empty_results(tmp_path: Path) -> None:
    page = write_html(tmp_path, {"calls": 0}, _write(tmp_path / "results.jsonl", [])).read_text(encoding="utf-8")
    assert "no scores" in page and page.count("<p class=none>none</p>") == 1
    assert _queue(page)["items"] == [] and not (tmp_path / "excerpts").exists()
