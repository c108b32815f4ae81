"""The commands added for cross-call checks: rescore, cohort build, watchlist, agents, check --plot,
the batch report and its option checks. Fake model, energy VAD, generated tone "voices"."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import PNG, chord, silence, stereo, write
from tests.fakes import assert_error as _error
from voicecheck.report import RESULTS, read_jsonl

VOICES = {
    "A": (220.0, 660.0, 1500.0),
    "B": (350.0, 1100.0, 2700.0),
    "C": (470.0, 900.0, 2000.0),
    "X": (300.0, 800.0, 3100.0),
}


def voice_file(path: Path, voice: str, seconds: float = 6.0, stereo_call: bool = True) -> Path:
    """A call (customer on channel 1 of a stereo file) or a mono recording of one tone voice."""
    x = np.concatenate([silence(0.5), chord(VOICES[voice], seconds), silence(0.5)])
    return write(path, stereo(silence(len(x) / 16000), x) if stereo_call else x, 16000)


def _manifest(tmp_path: Path, rows: list[tuple[str, str, str]], name: str = "calls.csv") -> Path:
    """rows: (call_id, borrower_id, voice); writes one call file per row."""
    lines = ["call_id,borrower_id,audio"]
    for n, (call_id, borrower, voice) in enumerate(rows):
        f = voice_file(tmp_path / "calls" / f"c{n}.wav", voice, 5.0 + 0.25 * n)
        lines.append(f"{call_id},{borrower},calls/{f.name}")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def enrolled(vc, tmp_path: Path):
    for who, voice in (("B1", "A"), ("B2", "B")):
        res = vc(
            "enroll",
            who,
            voice_file(tmp_path / "enroll" / f"{who}.wav", voice, 8.0, stereo_call=False),
            "--channel",
            "0",
        )
        assert res.exit_code == 0, res.output
    return vc


# -- rescore ---------------------------------------------------------------------------------------------


def test_rescore_needs_no_audio_and_applies_a_new_threshold(enrolled, tmp_path: Path) -> None:
    vc = enrolled
    manifest = _manifest(tmp_path, [("K1", "B1", "A"), ("K2", "B2", "B"), ("K3", "B1", "B")])
    res = vc("batch", manifest, "--out", tmp_path / "night", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    first = {r["call_id"]: r for r in read_jsonl(tmp_path / "night" / RESULTS)}
    assert {k: r["verdict"] for k, r in first.items()} == {"K1": "match", "K2": "match", "K3": "mismatch"}
    (tmp_path / "calls").rename(tmp_path / "gone")  # no audio left to decode
    res = vc("rescore", "--out", tmp_path / "strict", "--threshold", "cosine=1")
    assert res.exit_code == 0, res.output
    again = {r["call_id"]: r for r in read_jsonl(tmp_path / "strict" / RESULTS)}
    assert set(again) == {"K1", "K2", "K3"}
    assert again["K3"]["verdict"] == "mismatch"
    for k in again:
        assert again[k]["score"] == pytest.approx(first[k]["score"], abs=1e-4)
        assert again[k]["threshold"] == 1.0
        assert again[k]["verdict"] == ("match" if again[k]["score"] >= 1.0 else "mismatch")
    res = vc("rescore", "--out", tmp_path / "loose", "--threshold", "cosine=0.5", "--manifest", manifest)
    assert res.exit_code == 0, res.output
    assert {r["call_id"]: r["verdict"] for r in read_jsonl(tmp_path / "loose" / RESULTS)} == {
        "K1": "match",
        "K2": "match",
        "K3": "mismatch",
    }


# -- cohort build ----------------------------------------------------------------------------------------


def test_cohort_build_counts_and_skips_unreadable_rows(vc, tmp_path: Path) -> None:
    files = [voice_file(tmp_path / "cohort" / f"u{i}.wav", v, 4.0 + i * 0.5) for i, v in enumerate("ABCX")]
    (tmp_path / "cohort" / "bad.wav").write_text("not audio\n" * 20)
    lines = ["audio", *[f"cohort/{f.name}" for f in files], "cohort/bad.wav", "cohort/missing.wav"]
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n")
    res = vc("cohort", "build", tmp_path / "cohort.csv")
    assert res.exit_code == 0, res.output
    assert "cohort: 4 call(s) embedded, 2 skipped; 4 fake call embeddings" in res.output
    assert "row 5: skipped" in res.output and "row 6: skipped" in res.output
    res = vc("cohort", "build", tmp_path / "cohort.csv")  # already stored: nothing new
    assert "cohort: 0 call(s) embedded, 2 skipped; 4 fake call embeddings" in res.output
    _error(vc("cohort", "build", tmp_path / "nope.csv"), 2, "nope.csv")


# -- watchlist -----------------------------------------------------------------------------------------


def test_watchlist_add_list_export_import_remove(enrolled, tmp_path: Path) -> None:
    vc = enrolled
    proxy = voice_file(tmp_path / "proxy.wav", "X", 6.0, stereo_call=False)
    res = vc("watchlist", "add", "AGENT-7", proxy, "--source", "case 12", "--channel", "0")
    assert res.exit_code == 0 and "AGENT-7 added from 1" in res.output, res.output
    rows = json.loads(vc("watchlist", "list", "--json").output)
    assert [(r["label"], r["source"], r["model"]) for r in rows] == [("AGENT-7", "case 12", "fake-bands")]
    assert "empty" in vc("watchlist", "list", "--model", "fake2").output

    shared = tmp_path / "shared.json"
    res = vc("watchlist", "export", shared)
    assert res.exit_code == 0 and "exported 1" in res.output, res.output
    data = json.loads(shared.read_text())
    assert data["model"] == "fake-bands" and len(data["entries"]) == 1
    entry = data["entries"][0]
    assert len(entry["vector"]) == 32 and entry["label"] == "AGENT-7"
    assert "audio" not in json.dumps(data) and "proxy.wav" not in shared.read_text()

    fresh = tmp_path / "fresh-store"
    res = vc("watchlist", "import", shared, "--store", fresh)
    assert res.exit_code == 0 and "imported 1 voice(s), 0 skipped" in res.output, res.output
    assert [r["label"] for r in json.loads(vc("watchlist", "list", "--store", fresh, "--json").output)] == ["AGENT-7"]
    assert "imported 0 voice(s), 1 skipped" in vc("watchlist", "import", shared, "--store", fresh).output
    _error(vc("watchlist", "import", shared, "--store", tmp_path / "other", "--model", "fake2"), 2, "model")
    not_json = tmp_path / "x.json"
    not_json.write_text("[1, 2]")
    _error(vc("watchlist", "import", not_json), 2, "x.json")

    _error(vc("watchlist", "remove", "NOBODY"), 3, "NOBODY")
    assert vc("watchlist", "remove", "AGENT-7").exit_code == 0
    assert json.loads(vc("watchlist", "list", "--json").output) == []
    _error(vc("watchlist", "add", "AGENT-8"), 2, "--call")
    _error(vc("watchlist", "add", "AGENT-8", "--call", "NO-SUCH-CALL"), 2, "NO-SUCH-CALL")


def test_watchlist_hits_in_check_and_batch(enrolled, tmp_path: Path) -> None:
    vc = enrolled
    manifest = _manifest(tmp_path, [("H1", "B1", "X"), ("H2", "B2", "B")])
    assert vc("batch", manifest, "--out", tmp_path / "n1", "--threshold", "cosine=0.5", "--quiet").exit_code == 0
    # a voice from a stored call goes on the watchlist
    res = vc("watchlist", "add", "RING-X", "--call", "H1")
    assert res.exit_code == 0 and "from 1" in res.output, res.output
    # the same voice on another call and another borrower is a hit
    call = voice_file(tmp_path / "later.wav", "X", 7.0)
    res = vc("check", call, "--borrower", "B2", "--threshold", "cosine=0.5", "--json")
    assert res.exit_code == 1, res.output
    record = json.loads(res.output.splitlines()[0])
    assert [h["label"] for h in record["watchlist_hits"]] == ["RING-X"]
    own = voice_file(tmp_path / "own.wav", "B", 7.0)
    record = json.loads(vc("check", own, "--borrower", "B2", "--threshold", "cosine=0.5", "--json").output)
    assert record["verdict"] == "match" and record["watchlist_hits"] == []
    manifest2 = _manifest(tmp_path / "n2", [("H3", "B2", "X"), ("H4", "B2", "B")])
    res = vc("batch", manifest2, "--out", tmp_path / "n2" / "out", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    got = {r["call_id"]: r for r in read_jsonl(tmp_path / "n2" / "out" / RESULTS)}
    assert [h["label"] for h in got["H3"]["watchlist_hits"]] == ["RING-X"] and got["H3"]["verdict"] == "mismatch"
    assert got["H4"]["watchlist_hits"] == [] and got["H4"]["verdict"] == "match"
    assert "RING-X" in (tmp_path / "n2" / "out" / "report.html").read_text()


# -- agents ----------------------------------------------------------------------------------------------


def test_agents_enroll_list_remove(vc, tmp_path: Path) -> None:
    assert "no collectors" in vc("agents", "list").output
    rec = voice_file(tmp_path / "ag.wav", "C", 6.0, stereo_call=False)
    res = vc("agents", "enroll", "AG1", rec, "--channel", "0")
    assert res.exit_code == 0 and "AG1" in res.output and "added" in res.output, res.output
    rows = json.loads(vc("agents", "list", "--json").output)
    assert [(r["id"], r["model"], r["recordings"]) for r in rows] == [("AG1", "fake-bands", 1)]
    assert "AG1" in vc("agents", "list").output
    assert json.loads(vc("store", "list", "--json").output) == []  # collectors are not borrowers
    quiet = write(tmp_path / "quiet.wav", silence(3.0), 16000)
    assert vc("agents", "enroll", "AG2", quiet, "--channel", "0").exit_code == 2
    res = vc("agents", "remove", "AG1")
    assert res.exit_code == 0 and "removed collector AG1" in res.output
    _error(vc("agents", "remove", "AG1"), 3, "AG1")


# -- check --plot, batch report and option checks --------------------------------------------------------


def test_check_plot_writes_a_png(enrolled, tmp_path: Path) -> None:
    call = voice_file(tmp_path / "call.wav", "A", 10.0)
    res = enrolled("check", call, "--borrower", "B1", "--threshold", "cosine=0.5", "--plot", tmp_path / "t.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG


def test_batch_report_lists_flagged_calls_escaped(enrolled, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [("OK1", "B1", "A"), ("<b>x</b>", "B1", "B"), ("BAD2", "B2", "A")])
    res = enrolled("batch", manifest, "--out", tmp_path / "out", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<b>x</b>" not in html  # the review queue holds ids as inert JSON (the page renders them as text)
    assert '"BAD2"' in html and '"\\u003cb\\u003ex\\u003c/b\\u003e"' in html
    with (tmp_path / "out" / "flagged.csv").open(newline="") as f:
        flagged = list(csv.DictReader(f))
    records = list(read_jsonl(tmp_path / "out" / RESULTS))
    assert sorted(r["call_id"] for r in flagged) == sorted(r["call_id"] for r in records if r["verdict"] != "match")
    assert {"OK1"} == {r["call_id"] for r in records if r["verdict"] == "match"}
    assert all(r["verdict"] in ("mismatch", "inconclusive", "error") and r["reason"] for r in flagged)


def test_batch_engine_options_are_checked(vc, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [("E1", "B1", "A")])
    _error(vc("batch", manifest, "--out", tmp_path / "o", "--engine", "bogus"), 2, "--engine", "bogus")
    _error(vc("batch", manifest, "--out", tmp_path / "o", "--address", "127.0.0.1:6379"), 2, "--engine ray")
    assert not (tmp_path / "o").exists()


def test_cohort_build_reports_a_bad_channel_and_an_empty_audio_like_the_batch(vc, tmp_path: Path) -> None:
    good = voice_file(tmp_path / "cohort" / "u0.wav", "A", 4.0)
    lines = ["audio,customer_channel", f"cohort/{good.name},", f"cohort/{good.name},left", ",1"]
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n")
    res = vc("cohort", "build", tmp_path / "cohort.csv")
    assert res.exit_code == 0, res.output
    assert "cohort: 1 call(s) embedded, 2 skipped" in res.output
    assert "row 2: skipped" in res.output and "customer_channel" in res.output
    assert "row 3: skipped" in res.output and "empty audio" in res.output
