"""voicecheck.crosscall through ``voicecheck consistency`` and ``voicecheck rings`` after a batch of
tone "voices" (fake model): one voice answering as three borrowers, one borrower with two voices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import assert_error as _error
from tests.fakes import chord, silence, stereo, write
from voicecheck.analysis import RING_LINK_THRESHOLD
from voicecheck.config import load_settings
from voicecheck.crosscall import inconsistent_borrowers, rings, scoring_space, stored_calls

VOICES = {
    "A": (220.0, 660.0, 1500.0),
    "B": (350.0, 1100.0, 2700.0),
    "C": (470.0, 900.0, 2000.0),
    "D": (260.0, 1300.0, 2300.0),
    "X": (300.0, 800.0, 3100.0),  # the proxy agent
}
CALLS = [  # call_id, borrower_id, voice
    ("R1", "B1", "X"),
    ("R2", "B2", "X"),
    ("R3", "B3", "X"),
    ("S1", "B4", "A"),
    ("S2", "B4", "A"),
    ("S3", "B4", "C"),
    ("S4", "B4", "C"),
    ("T1", "B5", "D"),
    ("T2", "B5", "D"),
    ("U1", "B6", "B"),
]


@pytest.fixture()
def batch_done(vc, tmp_path: Path):  # noqa: F811
    lines = ["call_id,borrower_id,audio"]
    for n, (call_id, borrower, voice) in enumerate(CALLS):
        freqs = tuple(f * (1.0 + 0.003 * (n % 3)) for f in VOICES[voice])  # takes differ a little
        x = np.concatenate([silence(0.4), chord(freqs, 5.0 + 0.3 * n), silence(0.4)])
        write(tmp_path / "calls" / f"{call_id}.wav", stereo(silence(len(x) / 16000), x), 16000)
        lines.append(f"{call_id},{borrower},calls/{call_id}.wav")
    (tmp_path / "calls.csv").write_text("\n".join(lines) + "\n")
    res = vc("batch", tmp_path / "calls.csv", "--out", tmp_path / "out", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    return vc


def test_rings_finds_the_voice_behind_three_borrowers(batch_done) -> None:
    res = batch_done("rings", "--min-borrowers", "3", "--json")
    assert res.exit_code == 0, res.output
    found = json.loads(res.output)
    assert len(found) == 1, found
    ring = found[0]
    assert sorted(ring["calls"]) == ["R1", "R2", "R3"]
    assert ring["borrowers"] == ["B1", "B2", "B3"] and len(ring["borrowers"]) >= 2
    assert 0.725 <= ring["cohesion"] <= 1.0
    assert json.loads(batch_done("rings", "--min-borrowers", "4", "--json").output) == []
    text = batch_done("rings", "--min-borrowers", "3").output
    assert "3 borrowers" in text and "R1" in text
    _error(batch_done("rings", "--min-borrowers", "1"), 2, "--min-borrowers")


def test_consistency_finds_the_borrower_with_two_voices(batch_done) -> None:
    res = batch_done("consistency", "--json")
    assert res.exit_code == 0, res.output
    found = json.loads(res.output)
    assert [b["borrower_id"] for b in found] == ["B4"], found
    b4 = found[0]
    assert b4["calls"] == 4 and len(b4["voices"]) == 2
    assert sorted(sorted(v["calls"]) for v in b4["voices"]) == [["S1", "S2"], ["S3", "S4"]]
    assert "B4: 2 voices in 4 calls" in batch_done("consistency").output


def test_batch_report_shows_the_ring(batch_done, tmp_path: Path) -> None:
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Voice rings (1)" in html  # ring_min_borrowers defaults to 3
    rings_part = html.split("Voice rings (1)", 1)[1]
    assert all(c in rings_part for c in ("R1", "R2", "R3", "B1", "B3"))


def test_library_functions_agree_with_the_cli(batch_done, tmp_path: Path) -> None:
    settings = load_settings(None)  # voicecheck.toml in the working directory
    calls = stored_calls(settings)
    assert sorted(calls.call_ids) == sorted(c for c, _, _ in CALLS)
    x = scoring_space(settings, calls.vectors)
    assert x.shape == calls.vectors.shape and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    same_link = rings(settings, 2, link_threshold=RING_LINK_THRESHOLD)  # the pair default is stricter
    assert [r["calls"] for r in rings(settings, 3)] == [r["calls"] for r in same_link]
    assert [b["borrower_id"] for b in inconsistent_borrowers(settings)] == ["B4"]


def test_empty_store(vc) -> None:  # noqa: F811
    assert json.loads(vc("rings", "--min-borrowers", "2", "--json").output) == []
    assert json.loads(vc("consistency", "--json").output) == []
    assert "no voice speaks for" in vc("rings").output
    assert "no borrower" in vc("consistency").output


def test_calls_verified_as_their_borrower_join_no_ring(batch_done, tmp_path: Path) -> None:
    """B1 enrolls with the ring's voice (a sound-alike borrower, or the agent enrolled as B1): R1
    passes the 1:1 check, so by default it leaves the ring, which drops below three borrowers;
    --include-verified brings it back."""
    with (tmp_path / "voicecheck.toml").open("a", encoding="utf-8") as f:
        f.write("[thresholds]\ncosine = 0.5\n")
    x = chord(tuple(f * 1.002 for f in VOICES["X"]), 6.0)
    assert batch_done("enroll", "B1", write(tmp_path / "b1.wav", x, 16000)).exit_code == 0
    assert json.loads(batch_done("rings", "--min-borrowers", "3", "--json").output) == []
    res = batch_done("rings", "--min-borrowers", "3", "--json", "--include-verified")
    assert res.exit_code == 0, res.output
    assert [sorted(r["calls"]) for r in json.loads(res.output)] == [["R1", "R2", "R3"]]


def test_rings_without_a_threshold_verify_nothing(batch_done, tmp_path: Path, caplog) -> None:
    """An enrolled borrower but no calibrated threshold (the fake model has none): a warning, and
    every call stays eligible."""
    x = chord(tuple(f * 1.002 for f in VOICES["X"]), 6.0)
    assert batch_done("enroll", "B1", write(tmp_path / "b1.wav", x, 16000)).exit_code == 0
    settings = load_settings(None)
    with caplog.at_level("WARNING", logger="voicecheck.crosscall"):
        found = rings(settings, 3)
    assert [sorted(r["calls"]) for r in found] == [["R1", "R2", "R3"]]
    assert "not checked against their borrowers' voiceprints" in caplog.text
