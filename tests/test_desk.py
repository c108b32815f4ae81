"""The review desk behind the report's queue: the low stretch of a timeline, evidence ordering by reason,
the customer-channel excerpts (8 kHz, private, of the judged audio only), the borrower's other calls, the
review command, and page data that cannot break out of its script block."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fakes import chord, silence, stereo, write
from voicecheck.config import Settings
from voicecheck.desk import EXCERPT_RATE, EXCERPT_S, Queue, excerpt_span, low_stretch, review_command, write_excerpt
from voicecheck.report import REPORT_HTML, write_html


def _tl(scores: list[float], hop_s: float = 2.0) -> list[dict[str, float]]:
    return [{"start_s": i * hop_s, "end_s": i * hop_s + 4.0, "score": s} for i, s in enumerate(scores)]


def test_low_stretch_is_the_longest_run_below_the_threshold() -> None:
    low = low_stretch(_tl([0.9, 0.4, 0.8, 0.5, 0.45, 0.6, 0.9]), 0.7)
    assert low is not None and low["below"] == 1.0
    assert (low["start_s"], low["end_s"], low["min_score"]) == (6.0, 14.0, 0.45)  # spans 3..5, not the lone 0.4
    assert low["min_at_s"] == pytest.approx(10.0)
    never = low_stretch(_tl([0.9, 0.85, 0.95]), 0.7)
    assert never is not None and never["below"] == 0.0 and never["min_score"] == 0.85
    assert low_stretch([], 0.7) is None and low_stretch(None, 0.7) is None


def _mismatch(call_id: str, reason: str, score: float, **extra: object) -> dict:
    return {
        "call_id": call_id,
        "borrower_id": extra.pop("borrower_id", f"B-{call_id}"),
        "verdict": "mismatch",
        "reason": reason,
        "score": score,
        "threshold": 0.7,
        "audio": f"/calls/{call_id}.wav",
        **extra,
    }


def test_queue_groups_by_reason_and_orders_by_evidence() -> None:
    q = Queue(limit=10, rings={"R1": {"id": 4, "borrowers": 5, "calls": 9, "cohesion": 0.8}})
    records = [
        _mismatch("V1", "voice_mismatch", 0.6),
        _mismatch("V2", "voice_mismatch", 0.2),
        _mismatch("V3", "voice_mismatch", 0.5, llr=-4.0),  # calibrated: llr decides
        _mismatch("S1", "speaker_change", 0.75, speaker_change_s=20.0, timeline=_tl([0.9, 0.6, 0.5])),
        _mismatch("S2", "speaker_change", 0.72, speaker_change_s=10.0, timeline=_tl([0.9, 0.2, 0.3])),
        _mismatch("W1", "watchlist_hit", 0.9, watchlist_hits=[{"label": "AG-1", "score": 0.75, "threshold": 0.7}]),
        _mismatch("W2", "watchlist_hit", 0.9, watchlist_hits=[{"label": "AG-2", "score": 0.95, "threshold": 0.7}]),
        _mismatch("P1", "replay", 0.9, replay_of=[{"matched_s": 4.0, "item": "C-OLD", "call_start_s": 3.0}]),
        _mismatch("P2", "replay", 0.9, replay_of=[{"matched_s": 9.0, "item": "C-OLDER", "call_start_s": 1.0}]),
        _mismatch("O1", "something_new: detail", 0.9),
        _mismatch("L1", "synthetic_voice", 0.9, spoof_score=1.5),
        _mismatch("L2", "synthetic_voice", 0.9, spoof_score=4.0),
        {"call_id": "R1", "borrower_id": "B9", "verdict": "match", "score": 0.9, "threshold": 0.7},
        {"call_id": "M1", "borrower_id": "B9", "verdict": "match", "score": 0.9, "threshold": 0.7},
    ]
    for r in records:
        q.add(r)
    order = q.order()
    assert list(order) == [
        "voice_mismatch",
        "speaker_change",
        "watchlist_hit",
        "synthetic_voice",
        "ring",
        "replay",
        "other",
    ]
    assert order["synthetic_voice"] == ["L2", "L1"] and "+4.00" in q.items["L2"]["evidence"]["synthetic_voice"][1]
    assert order["voice_mismatch"] == ["V3", "V2", "V1"]  # llr -4 beats a margin of 0.5 (first, by its scale)
    assert order["speaker_change"] == ["S2", "S1"] and order["watchlist_hit"] == ["W2", "W1"]
    assert order["replay"] == ["P2", "P1"] and order["ring"] == ["R1"] and order["other"] == ["O1"]
    assert "C-OLDER" in q.items["P2"]["evidence"]["replay"][1]
    assert "lowest 0.200 around" in q.items["S2"]["evidence"]["speaker_change"][1]
    assert "AG-2" in q.items["W2"]["evidence"]["watchlist_hit"][1]
    assert q.borrowers() >= {"B-V1", "B9"} and "M1" not in q.items


def test_queue_keeps_the_strongest_under_its_limit() -> None:
    q = Queue(limit=3)
    for i, score in enumerate([0.6, 0.1, 0.5, 0.3, 0.65, 0.2]):
        q.add(_mismatch(f"V{i}", "voice_mismatch", score))
    assert q.order()["voice_mismatch"] == ["V1", "V5", "V3"] and q.totals["voice_mismatch"] == 6
    assert set(q.items) == {"V1", "V5", "V3"}  # the records of calls pushed out are not kept (memory stays bounded)


def _call_file(path: Path, seconds: float = 30.0) -> tuple[Path, str]:
    x = np.concatenate([silence(1.0), chord((220.0, 660.0, 1500.0), seconds - 2.0), silence(1.0)])
    write(path, stereo(0.1 * chord((300.0, 900.0), len(x) / 16000), x), 16000)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_excerpt_is_8khz_mono_private_and_of_the_judged_audio(tmp_path: Path) -> None:
    audio, digest = _call_file(tmp_path / "C1.wav")
    r = _mismatch("C1", "speaker_change", 0.6, audio=str(audio), channel=1, content_hash=digest, duration_s=30.0)
    r["speaker_change_s"] = 20.0
    folder = tmp_path / "out" / "excerpts"
    got = write_excerpt(r, folder)
    assert got["src"].startswith("excerpts/") and got["src"].endswith(".wav") and "C1" not in got["src"]
    assert (got["start_s"], got["end_s"]) == (16.0, 16.0 + EXCERPT_S)  # starts 4 s before the change
    path = tmp_path / "out" / got["src"]
    assert path.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (EXCERPT_RATE, 1, "PCM_16")
    assert info.duration == pytest.approx(EXCERPT_S, abs=0.01)
    samples, _ = sf.read(str(path))
    assert np.abs(samples).max() > 0.2  # the customer's (loud) channel, not the collector's
    assert write_excerpt(r, folder) == got  # the same audio and span: reused
    _call_file(audio, 31.0)  # the file was replaced since it was judged
    r2 = {**r, "speaker_change_s": 5.0}
    assert "changed since it was checked" in write_excerpt(r2, folder)["error"]
    assert "unreadable_audio" in write_excerpt({**r2, "audio": str(tmp_path / "gone.wav")}, folder)["error"]


def test_excerpt_span_follows_the_evidence() -> None:
    r = {"duration_s": 60.0, "threshold": 0.7}
    assert excerpt_span({**r, "speaker_change_s": 2.0}) == (0.0, EXCERPT_S)  # clipped at the start
    assert excerpt_span({**r, "speaker_change_s": 58.0}) == (60.0 - EXCERPT_S, 60.0)  # and at the end
    low = excerpt_span({**r, "timeline": _tl([0.9] * 10 + [0.2, 0.3] + [0.9] * 5)})
    assert low[0] < 22.0 < low[1]  # around the lowest span (20-24 s)
    assert excerpt_span({**r, "speech_regions": [[7.5, 20.0]]}) == (7.0, 7.0 + EXCERPT_S)
    assert excerpt_span({"duration_s": 5.0}) == (0.0, 5.0)


def test_review_command_names_the_runs_folders(tmp_path: Path) -> None:
    settings = Settings(store=str(tmp_path / "my store"), embeddings="emb")
    head, tail = review_command("C 1'x", settings)
    argv = shlex.split(head + " --label impostor" + tail)
    assert argv[:5] == ["voicecheck", "review", "C 1'x", "--label", "impostor"]
    assert argv[5:] == ["--store", str((tmp_path / "my store").resolve()), "--embeddings", str(Path("emb").resolve())]
    assert review_command("C1", None) == ("voicecheck review C1", "")


def test_page_lists_other_calls_writes_excerpts_and_keeps_data_inert(tmp_path: Path) -> None:
    audio, digest = _call_file(tmp_path / "calls" / "x.wav")
    evil = "</script><script>alert(1)</script>\u2028<!--"
    records = [
        _mismatch(evil, "voice_mismatch", 0.3, borrower_id="B1", audio=str(audio), channel=1, content_hash=digest),
        {"call_id": "OK1", "borrower_id": "B1", "verdict": "match", "score": 0.9, "threshold": 0.7},
        {"call_id": "IN1", "borrower_id": "B1", "verdict": "inconclusive", "reason": "insufficient_speech"},
        {"call_id": "OTHER", "borrower_id": "B2", "verdict": "match", "score": 0.9, "threshold": 0.7},
    ]
    results = tmp_path / "out" / "results.jsonl"
    results.parent.mkdir()
    results.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    settings = Settings(store=str(tmp_path / "store"), embeddings=str(tmp_path / "emb"))
    page = write_html(tmp_path / "out", {"calls": 4}, results, settings=settings).read_text(encoding="utf-8")
    assert "</script><script>alert" not in page and "\u2028" not in page and "<!--\u2028" not in page
    block = re.search(r'<script type="application/json" id="queue-data">(.*?)</script>', page, flags=re.S)
    assert block
    (item,) = json.loads(block.group(1))["items"]
    assert item["id"] == evil  # the data reaches the script intact
    assert item["o"] == [
        [evil, "mismatch", "voice_mismatch"],
        ["OK1", "match", None],
        ["IN1", "inconclusive", "insufficient_speech"],
    ]
    assert (tmp_path / "out" / item["ex"]["src"]).is_file() and item["ex"]["start_s"] >= 0
    assert item["cmd"][1] == f" --store {tmp_path / 'store'} --embeddings {tmp_path / 'emb'}"
    assert (tmp_path / "out" / REPORT_HTML).stat().st_mode & 0o777 == 0o600
    assert write_html(tmp_path / "none", {"calls": 4}, results, excerpts=0).exists()
    assert not (tmp_path / "none" / "excerpts").exists()
