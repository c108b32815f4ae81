"""Enrollment provenance and sanity: a consent reference is required, the source is recorded, and a
recording whose voice is not the borrower's, or already enrolled for someone else, is refused unless
forced (and a forced one is recorded and audited); with no threshold to decide, it is refused."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes import SPEECH, assert_error
from tests.test_cli_more import voice_file
from voicecheck.pipeline import enroll_recordings


def _rec(tmp_path: Path, name: str, voice: str, seconds: float = 8.0) -> Path:
    return voice_file(tmp_path / "enroll" / f"{name}.wav", voice, seconds, stereo_call=False)


def _enroll(vc, *args: object):
    return vc("enroll", *args, "--channel", "0", "--threshold", "cosine=0.9")


def _audit(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "store" / "audit.log").read_text().splitlines()]


def test_consent_is_required_and_recorded(tmp_path: Path, settings) -> None:
    rec = SPEECH / "vctk_autovc" / "p225" / "p225_003.flac"  # real speech: this path runs silero
    lines: list[str] = []
    assert enroll_recordings([("B1", str(rec))], settings, report=lines.append) == 1
    assert "no consent reference" in lines[0] and "--consent" in lines[0]
    assert enroll_recordings([("B1", str(rec), "form 2024-117")], settings, report=lines.append) == 0
    res = _audit(Path(settings.store).parent)
    assert [e["outcome"] for e in res] == ["refused", "added"] and res[1]["consent"] == "form 2024-117"
    assert res[1]["source"] == str(rec)


def test_cli_consent_option_and_manifest_column(vc, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from voicecheck.cli import app

    rec = _rec(tmp_path, "a", "A")
    res = CliRunner().invoke(app, ["enroll", "B1", str(rec), "--channel", "0"])  # no --consent
    assert res.exit_code == 2 and "no consent reference" in res.output and "1 recording(s) not enrolled" in res.output
    (tmp_path / "enroll.csv").write_text(
        f"borrower_id,audio,consent\nB1,{rec},signed form F-1\nB2,{_rec(tmp_path, 'b', 'B')},\n", encoding="utf-8"
    )
    res = CliRunner().invoke(app, ["enroll", "--manifest", str(tmp_path / "enroll.csv"), "--channel", "0"])
    assert res.exit_code == 2 and "B2" in res.output and "no consent reference" in res.output
    shown = json.loads(vc("store", "show", "B1", "--json").output)["recordings"][0]
    assert shown["consent"] == "signed form F-1" and shown["audio"] == str(rec) and shown["forced"] == ""
    assert "consent signed form F-1" in vc("store", "show", "B1").output


def test_a_different_voice_is_refused_unless_forced(vc, tmp_path: Path) -> None:
    assert _enroll(vc, "B1", _rec(tmp_path, "a1", "A")).exit_code == 0
    assert _enroll(vc, "B1", _rec(tmp_path, "a2", "A", 9.0)).exit_code == 0  # the same voice is accepted
    other = _rec(tmp_path, "x", "X")
    res = _enroll(vc, "B1", other)
    assert res.exit_code == 2 and "does not match B1's voiceprint" in res.output and "--force" in res.output
    assert json.loads(vc("store", "list", "--json").output)[0]["recordings"] == 2
    res = _enroll(vc, "B1", other, "--force")
    assert res.exit_code == 0 and "forced past" in res.output, res.output
    recs = json.loads(vc("store", "show", "B1", "--json").output)["recordings"]
    assert len(recs) == 3 and "does not match" in recs[2]["forced"]
    forced = [e for e in _audit(tmp_path) if e.get("forced")]
    assert len(forced) == 1 and forced[0]["borrower_id"] == "B1" and forced[0]["outcome"] == "added"


def test_a_recording_of_another_borrower_is_refused_unless_forced(vc, tmp_path: Path) -> None:
    rec = _rec(tmp_path, "a", "A")
    assert _enroll(vc, "B1", rec).exit_code == 0
    res = _enroll(vc, "B2", rec)
    assert res.exit_code == 2 and "already enrolled for borrower B1" in res.output
    assert vc("store", "show", "B2").exit_code == 3
    res = _enroll(vc, "B2", rec, "--force")
    assert res.exit_code == 0, res.output
    assert (
        "already enrolled for borrower B1"
        in json.loads(vc("store", "show", "B2", "--json").output)["recordings"][0]["forced"]
    )


def test_no_threshold_to_decide_refuses_and_says_how_to_fix(vc, tmp_path: Path) -> None:
    assert vc("enroll", "B1", _rec(tmp_path, "a1", "A"), "--channel", "0").exit_code == 0  # first: nothing to compare
    res = vc("enroll", "B1", _rec(tmp_path, "a2", "A", 9.0), "--channel", "0")
    assert res.exit_code == 2, res.output
    assert "cannot check that this is B1's voice" in res.output and "voicecheck calibrate" in res.output
    assert "--threshold" in res.output and "--force" in res.output
    assert vc("enroll", "B1", _rec(tmp_path, "a2", "A", 9.0), "--channel", "0", "--force").exit_code == 0


def test_replace_starts_over_without_the_voice_check(vc, tmp_path: Path) -> None:
    assert _enroll(vc, "B1", _rec(tmp_path, "a", "A")).exit_code == 0
    res = _enroll(vc, "B1", _rec(tmp_path, "x", "X"), "--replace")
    assert res.exit_code == 0, res.output
    assert json.loads(vc("store", "list", "--json").output)[0]["recordings"] == 1


def test_enroll_cli_errors_are_one_line(vc, monkeypatch) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    assert_error(vc("enroll", "B1", "a.wav", "--channel", "0"), 2, "voicecheck key init")
