"""The QA review desk on the command line: review CALL_ID / list / export / import, check --review and the
evidence check prints, reviews carried by later results, erasure. Fake model, energy VAD, tone voices."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import assert_error, chord, silence, stereo, write
from tests.test_cli_more import VOICES, _manifest, voice_file
from voicecheck.report import RESULTS, read_jsonl

NOTE = "=cmd|' /C calc'!A0 -- second voice, agent-like"


@pytest.fixture()
def enrolled(vc, tmp_path: Path):
    for who, voice in (("B1", "A"), ("B2", "B")):
        rec = voice_file(tmp_path / "enroll" / f"{who}.wav", voice, 8.0, stereo_call=False)
        res = vc("enroll", who, rec, "--channel", "0")
        assert res.exit_code == 0, res.output
    return vc


@pytest.fixture()
def night(enrolled, tmp_path: Path) -> Path:
    """A batch: K1 B1's own voice (match), K2 and K3 another voice (mismatches)."""
    manifest = _manifest(tmp_path, [("K1", "B1", "A"), ("K2", "B2", "A"), ("K3", "B1", "B")])
    res = enrolled("batch", manifest, "--out", tmp_path / "night", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    return tmp_path / "night"


def _audit(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "store" / "audit.log").read_text().splitlines()]


def test_from_flagged_call_to_recorded_decision(enrolled, night: Path, tmp_path: Path) -> None:
    vc = enrolled
    verdicts = {r["call_id"]: r["verdict"] for r in read_jsonl(night / RESULTS)}
    assert verdicts == {"K1": "match", "K2": "mismatch", "K3": "mismatch"}
    queue = json.loads(vc("review", "list", "--results", night, "--unreviewed", "--json").output)
    assert [r["call_id"] for r in queue] == ["K2", "K3"] and {r["reason"] for r in queue} == {"voice_mismatch"}

    res = vc("review", "K3", "--label", "impostor", "--note", NOTE)
    assert res.exit_code == 0, res.output
    assert "review recorded: K3 (borrower B1) impostor by" in res.output
    queue = json.loads(vc("review", "list", "--results", night, "--unreviewed", "--json").output)
    assert [r["call_id"] for r in queue] == ["K2"]
    listed = vc("review", "list")
    assert listed.exit_code == 0 and "K3" in listed.output and "impostor" in listed.output
    assert vc("review", "list", "--reason", "speaker_change").output.strip() == "no review recorded"
    entry = [e for e in _audit(tmp_path) if e["event"] == "review"][-1]
    assert (entry["call_id"], entry["borrower_id"], entry["label"], entry["note"]) == ("K3", "B1", "impostor", True)
    assert entry["user"] and "calc" not in (tmp_path / "store" / "audit.log").read_text()

    exported = tmp_path / "reviews.csv"
    res = vc("review", "export", exported)
    assert res.exit_code == 0 and "exported 1 decision(s)" in res.output, res.output
    with exported.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["note"].startswith("'=cmd") and rows[0]["label"] == "impostor"  # inert in a spreadsheet
    rows[0]["label"] = "genuine"
    with exported.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = vc("review", "import", exported)
    assert res.exit_code == 0 and "recorded 1 decision(s)" in res.output, res.output
    (only,) = json.loads(vc("review", "list", "--json").output)
    assert (only["label"], only["note"]) == ("genuine", NOTE)  # the escape undone on import

    res = vc("rescore", "--out", tmp_path / "again", "--threshold", "cosine=0.5")
    assert res.exit_code == 0, res.output
    later = {r["call_id"]: r for r in read_jsonl(tmp_path / "again" / RESULTS)}
    assert later["K3"]["review"]["label"] == "genuine" and later["K3"]["review"]["note"] is True
    assert later["K2"]["review"] is None and NOTE not in (tmp_path / "again" / RESULTS).read_text()


def test_review_errors_are_one_line(enrolled, night: Path, tmp_path: Path) -> None:
    vc = enrolled
    assert_error(vc("review", "NOPE", "--label", "impostor"), 2, "NOPE", "not in the call store")
    assert_error(vc("review", "K3", "--label", "maybe"), 2, "maybe", "genuine, impostor, unsure")
    assert_error(vc("review", "list", "--unreviewed"), 2, "--results")
    bad = tmp_path / "bad.csv"
    bad.write_text("call_id,label\nK2,impostor\nK3,sure\n", encoding="utf-8")
    assert_error(vc("review", "import", bad), 2, "line 3", "nothing was recorded")
    assert json.loads(vc("review", "list", "--json").output) == []
    assert_error(vc("review", "import", tmp_path / "missing.csv"), 2, "missing.csv")


def test_erase_removes_reviews(enrolled, night: Path) -> None:
    vc = enrolled
    assert vc("review", "K3", "--label", "impostor").exit_code == 0
    assert vc("review", "K2", "--label", "genuine").exit_code == 0
    res = vc("erase", "B1", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["reviews"] == 1
    assert [r["call_id"] for r in json.loads(vc("review", "list", "--json").output)] == ["K2"]
    assert "1 review(s)" in vc("erase", "B2").output


def _takeover(path: Path) -> Path:
    """B1's voice for 8 s, then another voice for 8 s, on the customer channel."""
    x = np.concatenate([silence(0.5), chord(VOICES["A"], 8.0), chord(VOICES["X"], 8.0), silence(0.5)])
    return write(path, stereo(silence(len(x) / 16000), x), 16000)


def test_check_shows_the_evidence_and_records_the_decision(enrolled, tmp_path: Path) -> None:
    vc = enrolled
    call = _takeover(tmp_path / "TK9.wav")
    plot = tmp_path / "tk9.png"
    res = vc("check", call, "--borrower", "B1", "--threshold", "cosine=0.5", "--plot", plot, "--review", "impostor")
    assert res.exit_code == 1, res.output  # the verdict's exit code, decision or not
    assert "MISMATCH (speaker_change)" in res.output
    evidence = [line for line in res.output.splitlines() if line.startswith("evidence")]
    assert any("below the threshold from" in line and "listen there" in line for line in evidence), res.output
    assert any("voice changes at" in line for line in evidence) and any(str(plot) in line for line in evidence)
    assert "review recorded: TK9 impostor by" in res.output and plot.exists()
    (row,) = json.loads(vc("review", "list", "--json").output)
    assert (row["call_id"], row["borrower_id"], row["label"], row["reason"]) == (
        "TK9",
        "B1",
        "impostor",
        "speaker_change",
    )
    again = json.loads(vc("check", call, "--borrower", "B1", "--threshold", "cosine=0.5", "--json").output)
    assert again["review"]["label"] == "impostor" and again["timeline"]
    # the file's name is its call id: a batch call of that id is another borrower's, so the decision is
    # refused (after the verdict is printed), never filed under the wrong person
    other = _takeover(tmp_path / "K2.wav")
    manifest = _manifest(tmp_path, [("K2", "B2", "A")], name="one.csv")
    assert vc("batch", manifest, "--out", tmp_path / "one", "--quiet").exit_code == 0
    res = vc("check", other, "--borrower", "B1", "--threshold", "cosine=0.5", "--review", "genuine")
    assert "verdict" in res.output and "belongs to borrower 'B2'" in res.output
    assert_error(res, 2, "the review was not recorded")
    before = (tmp_path / "store" / "audit.log").read_text()
    assert_error(vc("check", call, "--borrower", "B1", "--review", "perhaps"), 2, "perhaps")
    assert (tmp_path / "store" / "audit.log").read_text() == before  # refused before any work


def test_review_help_names_the_short_form(enrolled) -> None:
    res = enrolled("review", "--help")
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "voicecheck review CALL_ID --label genuine|impostor|unsure" in text
    for command in ("call", "list", "export", "import"):
        assert command in res.output


def test_eval_and_calibrate_on_reviewed_calls(enrolled, tmp_path: Path) -> None:
    """Issue 11.5: once QA has reviewed enough calls, eval and calibrate run on them, and the threshold
    calibrated on the lender's own labels takes precedence over the operating point and the profile."""
    vc = enrolled
    rows = [(f"G{i}", "B1" if i % 2 else "B2", "A" if i % 2 else "B") for i in range(22)]  # genuine
    rows += [(f"I{i}", "B1" if i % 2 else "B2", "B" if i % 2 else "A") for i in range(22)]  # impostors
    manifest = _manifest(tmp_path, rows)
    assert vc("batch", manifest, "--out", tmp_path / "n", "--threshold", "cosine=0.5", "--quiet").exit_code == 0
    assert_error(vc("eval", "--reviewed", "--out", tmp_path / "ev"), 2, "0 calls reviewed genuine", "at least 20")
    assert_error(vc("eval", "--out", tmp_path / "ev"), 2, "TRIALS file or --reviewed")
    for call_id, _, _ in rows:
        label = "genuine" if call_id.startswith("G") else "impostor"
        assert vc("review", call_id, "--label", label).exit_code == 0
    res = vc("eval", "--reviewed", "--out", tmp_path / "ev", "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)
    assert (metrics["n_target"], metrics["n_nontarget"]) == (22, 22) and metrics["trials"] == "QA-reviewed calls"
    assert metrics["eer"] < 0.1  # tone voices: the reviewed labels separate
    res = vc("calibrate", "--reviewed", "--max-false-flag", "0.05")
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "embeddings" / "calibration" / "fake.json").read_text())
    threshold = saved["modes"]["cosine"]["threshold"]
    check = json.loads(vc("check", voice_file(tmp_path / "x.wav", "A", 6.5), "--borrower", "B1", "--json").output)
    assert check["threshold"] == pytest.approx(threshold, abs=1e-4)
    assert "--reviewed" in check["threshold_source"]
