"""voicecheck.evaluate through ``voicecheck eval`` and ``voicecheck calibrate``: trials CSVs of both
forms, metrics.json / scores.csv / det.png, label errors, and a calibration that ``check`` then uses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import PNG, chord, silence, stereo, write
from tests.fakes import assert_error as _error

VOICES = [(220.0, 660.0, 1500.0), (350.0, 1100.0, 2700.0), (470.0, 900.0, 2000.0), (300.0, 800.0, 3100.0)]


def _rec(path: Path, voice: int, take: int, call: bool) -> Path:
    """Take ``take`` of voice ``voice``: slightly detuned and of another length than the other takes."""
    freqs = tuple(f * (1.0 + 0.004 * take) for f in VOICES[voice])
    x = np.concatenate([silence(0.3), chord(freqs, 5.0 + 0.5 * take), silence(0.3)])
    return write(path, stereo(silence(len(x) / 16000), x) if call else x, 16000)


@pytest.fixture()
def trials(tmp_path: Path) -> Path:
    """enroll_audio,test_audio,label with paths relative to the CSV: 4 target and 12 non-target trials."""
    d = tmp_path / "trials"
    for v in range(len(VOICES)):
        _rec(d / "enroll" / f"v{v}.wav", v, 0, call=False)
        _rec(d / "test" / f"v{v}.wav", v, 1, call=True)
    lines = ["enroll_audio,test_audio,label"]
    lines += [f"enroll/v{e}.wav,test/v{t}.wav,{'target' if e == t else 0}" for e in range(4) for t in range(4)]
    path = d / "trials.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_writes_metrics_scores_and_det(vc, trials: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "eval"
    res = vc("eval", trials, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m == json.loads(res.output)
    assert {
        "eer",
        "min_dcf_0.01",
        "min_dcf_0.05",
        "detect_at_1pct_ff",
        "detect_at_5pct_ff",
        "n_target",
        "n_nontarget",
        "model",
        "mode",
        "errors",
    } <= set(m)
    assert (m["n_target"], m["n_nontarget"], m["errors"]) == (4, 12, 0)
    assert m["model"] == "fake-bands" and m["mode"] == "cosine"
    assert 0 <= m["eer"] < 0.05 and m["detect_at_1pct_ff"] > 0.9  # clearly separated voices
    assert 0 <= m["min_dcf_0.01"] <= 1 and 0 <= m["min_dcf_0.05"] <= 1
    with (out / "scores.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    tar = [float(r["score"]) for r in rows if r["label"] == "1"]
    non = [float(r["score"]) for r in rows if r["label"] == "0"]
    assert len(tar) == 4 and min(tar) > max(non)
    assert all(Path(r["enroll"]).is_file() and Path(r["test"]).is_file() for r in rows)  # resolved beside the CSV
    assert (out / "det.png").read_bytes()[:8] == PNG
    text = vc("eval", trials, "--out", tmp_path / "eval2")
    assert text.exit_code == 0 and "EER" in text.output and "4 target, 12 non-target" in text.output


def test_eval_against_the_store(vc, trials: Path, tmp_path: Path) -> None:  # noqa: F811
    d = trials.parent
    for v in range(2):
        assert vc("enroll", f"B{v}", d / "enroll" / f"v{v}.wav").exit_code == 0
    (d / "by_borrower.csv").write_text(
        "borrower_id,audio,label\n"
        + "".join(f"B{b},test/v{t}.wav,{'genuine' if b == t else 'impostor'}\n" for b in range(2) for t in range(4))
        + "B404,test/v0.wav,1\n"
    )
    res = vc("eval", d / "by_borrower.csv", "--out", tmp_path / "e", "--json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.output[res.output.index("{\n") :])  # after the skipped-row lines
    assert (m["n_target"], m["n_nontarget"], m["errors"]) == (2, 6, 1)
    assert m["eer"] < 0.05
    assert "row 9: skipped" in res.output and "B404" in res.output


@pytest.mark.parametrize("label", ["maybe", ""])
def test_bad_label_names_the_row(vc, trials: Path, label: str) -> None:  # noqa: F811
    lines = trials.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + f",{label}"
    trials.write_text("\n".join(lines) + "\n")
    _error(vc("eval", trials, "--out", trials.parent / "o"), 2, "row 3", "label")
    _error(vc("calibrate", trials), 2, "row 3")


def test_trials_file_errors(vc, tmp_path: Path) -> None:  # noqa: F811
    _error(vc("eval", tmp_path / "none.csv", "--out", tmp_path / "o"), 2, "none.csv")
    (tmp_path / "cols.csv").write_text("a,b,label\nx,y,1\n")
    _error(vc("eval", tmp_path / "cols.csv", "--out", tmp_path / "o"), 2, "enroll_audio")
    (tmp_path / "one.csv").write_text("enroll_audio,test_audio,label\n")
    _error(vc("eval", tmp_path / "one.csv", "--out", tmp_path / "o"), 2, "no rows")
    _error(vc("calibrate", tmp_path / "one.csv", "--max-false-flag", "1.5"), 2, "--max-false-flag")


def test_calibrate_then_check_uses_the_threshold_and_reports_llr(vc, trials: Path, tmp_path: Path) -> None:  # noqa: F811
    d = trials.parent
    call = d / "test" / "v0.wav"
    assert vc("enroll", "B0", d / "enroll" / "v0.wav").exit_code == 0
    _error(vc("check", call, "--borrower", "B0"), 2, "voicecheck calibrate")  # no threshold for the fake model yet
    res = vc("calibrate", trials, "--max-false-flag", "0.05")
    assert res.exit_code == 0, res.output
    saved = tmp_path / "embeddings" / "calibration" / "fake.json"
    assert saved.is_file() and str(saved) in res.output and "scoring mode cosine" in res.output
    values = json.loads(saved.read_text())["modes"]["cosine"]
    assert values["false_flag_target"] == 0.05 and (values["n_target"], values["n_nontarget"]) == (4, 12)
    assert values["calibration"]["a"] > 0  # higher score = more likely the same voice
    res = vc("check", call, "--borrower", "B0", "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["threshold"] == pytest.approx(values["threshold"], abs=1e-4) and r["llr"] is not None
    assert r["llr"] > 0 and r["scoring"] == "cosine"
    other = json.loads(vc("check", d / "test" / "v2.wav", "--borrower", "B0", "--json").output)
    assert other["verdict"] == "mismatch" and other["llr"] < 0
    assert "llr" in vc("check", call, "--borrower", "B0").output
    # eval now also reports calibration quality
    m = json.loads(vc("eval", trials, "--out", tmp_path / "e", "--json").output)
    assert m["cllr"] is not None and m["cllr"] >= 0


def test_calibrate_at_an_llr_puts_the_threshold_where_the_fitted_llr_equals_it(
    vc, trials: Path, tmp_path: Path
) -> None:  # noqa: F811,E501
    res = vc("calibrate", trials, "--at-llr", "2.0")
    assert res.exit_code == 0, res.output
    assert "llr +2.00" in res.output
    values = json.loads((tmp_path / "embeddings" / "calibration" / "fake.json").read_text())["modes"]["cosine"]
    a, b = values["calibration"]["a"], values["calibration"]["b"]
    assert a * values["threshold"] + b == pytest.approx(2.0, abs=1e-6)
    assert values["llr_target"] == 2.0 and values["false_flag_target"] is None
    assert 0.0 <= values["genuine_flagged"] <= 1.0 and 0.0 <= values["impostors_flagged"] <= 1.0
