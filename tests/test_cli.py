"""The voicecheck command: exit codes, messages, enroll/store/check/batch; real GE2E on the samples."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fakes import SAMPLES, SPEECH, env_without_workspace, silence, workspace, write
from voicecheck.cli import app

P225 = [SPEECH / "vctk_autovc" / "p225" / f"p225_{n}.flac" for n in ("003", "011", "021")]
CALLS = SAMPLES / "calls"
FIELDS = {"call_id", "borrower_id", "verdict", "score", "threshold", "speech_seconds", "reason", "model"}


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke the CLI in-process with the fake model's workspace and a store under tmp_path."""
    monkeypatch.setenv("VOICECHECK_EMBEDDINGS", str(workspace(tmp_path)))
    monkeypatch.setenv("VOICECHECK_STORE", str(tmp_path / "store"))
    runner = CliRunner()

    def invoke(*args: object, model: str | None = "fake"):
        argv = [str(a) for a in args]
        if model and argv[0] in ("enroll", "check", "batch"):
            argv += ["--model", model]
        if argv[0] == "enroll" and "--consent" not in argv:
            argv += ["--consent", "test consent"]
        if argv[0] == "enroll" and "--threshold" not in argv:
            argv += ["--threshold", "cosine=0.95"]  # the fake model: same speaker >= 0.96, others <= 0.94 here
        return runner.invoke(app, argv)

    return invoke


def _one_error_line(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    errors = [line for line in res.output.splitlines() if line.startswith("voicecheck: error:")]
    assert len(errors) == 1, res.output
    for n in needles:
        assert n in errors[0]


def test_enroll_again_skip_and_replace(cli) -> None:
    res = cli("enroll", "B1", P225[0], P225[1])
    assert res.exit_code == 0, res.output
    assert res.output.count("added") == 2
    res = cli("enroll", "B1", P225[0])
    assert res.exit_code == 0 and "already enrolled, skipped" in res.output
    res = cli("store", "show", "B1")
    assert res.exit_code == 0 and "2 recording(s)" in res.output and "fake-bands" in res.output
    assert "created" in res.output and "updated" in res.output
    assert cli("enroll", "B1", P225[2], "--replace").exit_code == 0
    res = cli("store", "show", "B1", "--json")
    data = json.loads(res.output)
    assert json.dumps(data).count("p225_") == 1 and "p225_021" in json.dumps(data)


def test_too_little_speech_is_refused_but_the_rest_enrolled(cli, tmp_path: Path) -> None:
    quiet = write(tmp_path / "quiet.wav", silence(4.0), 16000)
    res = cli("enroll", "B1", quiet, P225[0])
    assert res.exit_code == 2
    assert "quiet.wav" in res.output and "speech" in res.output and "1 recording(s) not enrolled" in res.output
    assert "Traceback" not in res.output
    assert "1 recording(s)" in cli("store", "show", "B1").output


def test_enroll_manifest_paths_are_relative_to_the_csv(cli) -> None:
    res = cli("enroll", "--manifest", SAMPLES / "enroll.csv")
    assert res.exit_code == 0, res.output
    listing = json.loads(cli("store", "list", "--json").output)
    assert [r["id"] for r in listing] == ["B1001", "B1002", "B1003", "B1004"]
    assert [r["recordings"] for r in listing] == [2, 2, 1, 1]
    assert all(r["model"] == "fake-bands" and r["speech_seconds"] > 3 for r in listing)


def test_enroll_usage_errors(cli) -> None:
    _one_error_line(cli("enroll"), "BORROWER_ID")
    _one_error_line(cli("enroll", "B1", P225[0], "--manifest", SAMPLES / "enroll.csv"), "not both")
    _one_error_line(cli("enroll", "--manifest", "nope.csv"), "nope.csv")


def test_store_list_remove_and_env(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "no voiceprints" in cli("store", "list").output
    cli("enroll", "B1", P225[0])
    res = cli("store", "list")
    assert res.exit_code == 0 and "B1" in res.output and "fake-bands" in res.output
    other = tmp_path / "other-store"
    assert "no voiceprints" in cli("store", "list", "--store", other).output  # --store beats the env
    monkeypatch.setenv("VOICECHECK_STORE", str(other))
    assert "no voiceprints" in cli("store", "list").output
    monkeypatch.setenv("VOICECHECK_STORE", str(tmp_path / "store"))
    res = cli("store", "remove", "B1")
    assert res.exit_code == 0 and "removed B1" in res.output
    res = cli("store", "remove", "B1")
    assert res.exit_code == 3 and "no voiceprint" in res.output


def test_check_exit_codes_and_json(cli, tmp_path: Path) -> None:
    cli("enroll", "B1001", P225[0], P225[1])
    call = CALLS / "C001.wav"
    res = cli("check", call, "--borrower", "B1001", "--threshold", "cosine=0", "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.output)
    assert set(record) >= FIELDS
    assert (record["call_id"], record["borrower_id"], record["verdict"], record["model"]) == (
        "C001",
        "B1001",
        "match",
        "fake-bands",
    )
    assert record["threshold"] == 0 and 0 < record["score"] <= 1 and record["speech_seconds"] > 3
    res = cli("check", call, "--borrower", "B1001", "--threshold", "cosine=1", "--json")
    assert res.exit_code == 1 and json.loads(res.output)["reason"] == "voice_mismatch"
    res = cli("check", call, "--borrower", "B404", "--threshold", "cosine=0.5", "--json")
    assert res.exit_code == 3 and json.loads(res.output)["reason"] == "not_enrolled"
    res = cli("check", CALLS / "C007.wav", "--borrower", "B1001", "--threshold", "cosine=0.5")
    assert res.exit_code == 3 and "INCONCLUSIVE (insufficient_speech)" in res.output
    res = cli("check", call, "--borrower", "B1001", "--threshold", "cosine=0")
    assert res.exit_code == 0 and "MATCH" in res.output and "fake-bands" in res.output


@pytest.mark.parametrize("make", ["empty", "text", "header", "missing"])
def test_check_unreadable_audio_exit_2_one_line(cli, tmp_path: Path, make: str) -> None:
    path = tmp_path / f"{make}.wav"
    if make == "empty":
        path.write_bytes(b"")
    elif make == "text":
        path.write_text("not audio at all\n" * 10)
    elif make == "header":
        path.write_bytes(write(tmp_path / "full.wav", silence(1.0), 16000).read_bytes()[:44])
    res = cli("check", path, "--borrower", "B1", "--threshold", "cosine=0.5")
    _one_error_line(res, f"{make}.wav", "unreadable_audio")


def test_check_channel_override(cli) -> None:
    cli("enroll", "B1001", P225[0])
    res = cli("check", CALLS / "C001.wav", "--borrower", "B1001", "--threshold", "cosine=0", "--channel", "0", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["channel"] == 0
    _one_error_line(
        cli("check", CALLS / "C001.wav", "--borrower", "B1001", "--threshold", "cosine=0", "--channel", "4"),
        "channel 4",
    )


def test_check_with_another_model_is_model_mismatch(cli) -> None:
    """Enrolled with model A (fake2), checked with model B (fake): an error, never a score."""
    assert cli("enroll", "B1001", P225[0], model="fake2").exit_code == 0
    res = cli("check", CALLS / "C001.wav", "--borrower", "B1001", "--threshold", "cosine=0", "--json")
    assert res.exit_code == 2
    record = json.loads(res.output.splitlines()[0])
    assert record["verdict"] == "error" and record["reason"].startswith("model_mismatch") and record["score"] is None


def test_fake_model_without_threshold_says_how_to_fix(cli) -> None:
    cli("enroll", "B1001", P225[0])
    res = cli("check", CALLS / "C001.wav", "--borrower", "B1001")
    _one_error_line(res, "--threshold")


def test_batch_command(cli, tmp_path: Path) -> None:
    cli("enroll", "--manifest", SAMPLES / "enroll.csv")
    out = tmp_path / "out"
    res = cli("batch", SAMPLES / "calls.csv", "--out", out, "--threshold", "cosine=0.8", "--quiet")
    assert res.exit_code == 0, res.output
    assert "8 calls:" in res.output and "1 inconclusive" in res.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 8
    _one_error_line(cli("batch", SAMPLES / "calls.csv", "--out", out, "--workers", "0"), "--workers")
    _one_error_line(cli("batch", tmp_path / "none.csv", "--out", out, "--threshold", "cosine=0.8"), "none.csv")


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "voicecheck.cli", "check", str(empty), "--borrower", "B1"],
        cwd=tmp_path,
        env=env_without_workspace(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("voicecheck: error:")]
    assert len(errors) == 1 and "empty.wav" in errors[0]


# -- the real GE2E model on the repo's samples ---------------------------------------------------------


@pytest.fixture(scope="module")
def ge2e_cli(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ge2e-cli")
    args = ["--store", str(root / "store"), "--embeddings", str(root / "embeddings")]
    runner = CliRunner()
    res = runner.invoke(app, ["enroll", "--manifest", str(SAMPLES / "enroll.csv"), *args])
    assert res.exit_code == 0, res.output
    assert res.output.count(": added (") == 6

    def check(call: str, borrower: str) -> tuple[int, dict]:
        r = runner.invoke(app, ["check", str(CALLS / f"{call}.wav"), "--borrower", borrower, "--json", *args])
        return r.exit_code, json.loads(r.output.splitlines()[0])

    return check


@pytest.mark.parametrize(("borrower", "own", "impostor"), [("B1002", "C002", "C005"), ("B1003", "C003", "C006")])
def test_ge2e_own_voice_scores_higher_than_another_speaker(ge2e_cli, borrower: str, own: str, impostor: str) -> None:
    with (SAMPLES / "calls_truth.csv").open(newline="") as f:
        truth = {r["call_id"]: r for r in csv.DictReader(f)}
    assert truth[own]["truth"] == "genuine" and truth[impostor]["truth"] == "impostor"
    _, genuine = ge2e_cli(own, borrower)
    _, other = ge2e_cli(impostor, borrower)
    assert genuine["model"] == other["model"] == "ge2e-resemblyzer-0.1.4"
    assert genuine["score"] > other["score"]
    assert genuine["verdict"] in ("match", "mismatch") and other["verdict"] in ("match", "mismatch")


def test_ge2e_silent_customer_is_inconclusive(ge2e_cli) -> None:
    code, r = ge2e_cli("C007", "B1004")
    assert code == 3 and r["verdict"] == "inconclusive" and r["reason"] == "insufficient_speech"


def test_ge2e_exit_code_follows_verdict(ge2e_cli) -> None:
    code, r = ge2e_cli("C001", "B1001")
    assert code == {"match": 0, "mismatch": 1}[r["verdict"]]
