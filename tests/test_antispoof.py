"""The liveness slot (voicecheck.antispoof): the [liveness] table of models.toml, an ONNX detector
(tests/tiny_onnx.py's "high-frequency energy" network stands in for a real one), the spoof score in
every record, the synthetic_voice reason, and fail-closed behaviour in check, batch and rescore."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnx", reason="the tiny test models are built with onnx: pip install 'voicecheck[dev]'")
pytest.importorskip("onnxruntime", reason="the liveness detector needs onnxruntime: pip install 'voicecheck[onnx]'")

from tests.fakes import NO_REPLAY, EnergyVad, chord, noise, stereo, tone, workspace, write  # noqa: E402
from tests.tiny_onnx import build_liveness, liveness_entry  # noqa: E402
from voicecheck.antispoof import (  # noqa: E402
    SYNTHETIC_VOICE,
    LivenessSpec,
    OnnxSpoofDetector,
    SpoofScore,
    judge_liveness,
    read_liveness,
)
from voicecheck.callstore import CallStore  # noqa: E402
from voicecheck.cli import app  # noqa: E402
from voicecheck.embedders import read_manifest  # noqa: E402
from voicecheck.errors import BackendUnavailableError, UsageError  # noqa: E402
from voicecheck.types import CallResult  # noqa: E402

LIVE = (300.0, 700.0, 1900.0)  # a "voice": low harmonics, spoof score about -0.6
SYNTHETIC = (300.0, 700.0, 1900.0, 3500.0)  # the same with a strong high partial: about +0.4


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("liveness") / "hf.onnx"
    return path, build_liveness(path)


def spec_of(path: Path, sha256: str, **values: object) -> LivenessSpec:
    fields = {"features": "waveform", "window_s": 1.0, "hop_s": 0.5, "threshold": 0.0, "llr_offset": 1.0, **values}
    return LivenessSpec(name="hf", weights=str(path), sha256=sha256, sample_rate=16000, **fields)  # type: ignore[arg-type]


# -- the manifest --------------------------------------------------------------------------------------


def test_no_table_no_detector(tmp_path: Path) -> None:
    assert read_liveness(tmp_path) is None
    assert read_liveness(workspace(tmp_path)) is None


def test_the_table_is_read_and_is_not_a_speaker_model(detector_file: tuple[Path, str], tmp_path: Path) -> None:
    ws = workspace(tmp_path, extra=liveness_entry(Path("weights/liveness/hf.onnx"), detector_file[1]))
    spec = read_liveness(ws)
    assert spec is not None and spec.name == "hf-energy-tiny" and spec.threshold == 0.0 and spec.llr_offset == 1.0
    assert spec.weights == str(ws / "weights" / "liveness" / "hf.onnx")  # relative to the manifest
    assert "liveness" not in read_manifest(ws) and "fake" in read_manifest(ws)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"threshold": None}, "missing threshold"),
        ({"sha256": None}, "missing sha256"),
        ({"backend": "aasist"}, "backend must be 'onnx'"),
        ({"sample_rate": 22050}, "sample_rate must be a int in"),
        ({"features": "mfcc"}, "features must be one of waveform, fbank"),
        ({"sha256": "ABC"}, "64 lowercase hex"),
        ({"llr_scale": 0.0}, "llr_scale must not be 0"),
        ({"threshold": float("nan")}, "threshold must be a float"),
        ({"window_s": 1.0, "hop_s": 2.0}, "hop_s must not exceed window_s"),
        ({"num_mel_bins": 40}, "fbank settings given but features = 'waveform'"),
        ({"pooling": "max"}, "unknown key\\(s\\) pooling"),
        ({"name": "a b"}, "name must be an id"),
        ({"weights": " "}, "weights is empty"),
    ],
)
def test_a_declared_detector_that_cannot_be_validated_is_an_error(tmp_path: Path, values: dict, message: str) -> None:
    given = {k: v for k, v in values.items() if v is not None}
    entry = liveness_entry(tmp_path / "x.onnx", str(given.pop("sha256", "a" * 64)), **given)
    for key in [k for k, v in values.items() if v is None]:
        entry = "\n".join(line for line in entry.splitlines() if not line.startswith(f"{key} ="))
    with pytest.raises(UsageError, match=message):
        read_liveness(workspace(tmp_path, extra=entry))


# -- the detector --------------------------------------------------------------------------------------


def test_scores_rise_with_high_frequency_energy(detector_file: tuple[Path, str]) -> None:
    d = OnnxSpoofDetector(spec_of(*detector_file))
    scores = [d.score(x, 16000) for x in (tone(200, 3.0), chord(LIVE, 3.0), chord(SYNTHETIC, 3.0), noise(3.0))]
    assert scores == sorted(scores)
    assert scores[1] < d.threshold <= scores[2]
    assert scores[3] == pytest.approx(np.log(2.0) + 1.0, abs=0.05)  # white noise: ln 2, plus the offset


def test_other_rates_are_resampled_to_the_detectors(detector_file: tuple[Path, str]) -> None:
    d = OnnxSpoofDetector(spec_of(*detector_file))
    assert d.score(chord(SYNTHETIC, 3.0, 8000), 8000) == pytest.approx(d.score(chord(SYNTHETIC, 3.0), 16000), abs=0.05)


def test_calibration_maps_the_raw_output(detector_file: tuple[Path, str]) -> None:
    plain = OnnxSpoofDetector(spec_of(*detector_file, llr_offset=0.0))
    flipped = OnnxSpoofDetector(spec_of(*detector_file, llr_scale=-2.0, llr_offset=0.5))
    x = chord(LIVE, 2.0)
    assert flipped.score(x, 16000) == pytest.approx(-2.0 * plain.score(x, 16000) + 0.5, abs=1e-4)


def test_an_fbank_detector(tmp_path: Path) -> None:
    path = tmp_path / "fbank.onnx"
    sha = build_liveness(path, features="fbank")
    from voicecheck.fbank import FbankOptions

    d = OnnxSpoofDetector(spec_of(path, sha, features="fbank", fbank=FbankOptions(cmn=False), llr_offset=0.0))
    assert d.score(noise(2.0), 16000) > d.score(chord(LIVE, 2.0), 16000)
    with pytest.raises(UsageError, match=r"feeds \[batch, samples\]"):
        OnnxSpoofDetector(spec_of(path, sha))  # an fbank network declared as a waveform one


def test_detector_failures_are_errors(detector_file: tuple[Path, str], tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="output_index 3"):
        OnnxSpoofDetector(spec_of(*detector_file, output_index=3)).score(chord(LIVE, 2.0), 16000)
    fixed = tmp_path / "fixed.onnx"
    sha = build_liveness(fixed, samples=64000)  # takes exactly 4 s windows
    with pytest.raises(BackendUnavailableError, match="the model failed"):
        OnnxSpoofDetector(spec_of(fixed, sha)).score(chord(LIVE, 2.0), 16000)
    with pytest.raises(BackendUnavailableError, match="sha256"):
        OnnxSpoofDetector(spec_of(detector_file[0], "0" * 64))


# -- the Judge's rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "reason", "score", "want"),
    [
        ("match", None, 0.4, ("mismatch", SYNTHETIC_VOICE)),
        ("match", None, -0.6, ("match", None)),
        ("match", None, 0.0, ("mismatch", SYNTHETIC_VOICE)),  # at the threshold
        ("mismatch", "voice_mismatch", 2.0, ("mismatch", "voice_mismatch")),  # keeps its first reason
        ("inconclusive", "not_enrolled", 2.0, ("mismatch", SYNTHETIC_VOICE)),
        ("inconclusive", "not_enrolled", -2.0, ("inconclusive", "not_enrolled")),
    ],
)
def test_the_rule(detector_file: tuple[Path, str], verdict: str, reason: str | None, score: float, want: tuple) -> None:
    r = CallResult("C1", "B1", verdict, reason=reason)  # type: ignore[arg-type]
    judge_liveness(r, SpoofScore("hf", score), spec_of(*detector_file))
    assert (r.verdict, r.reason) == want and r.spoof_score == pytest.approx(score)


def test_the_rule_fails_closed(detector_file: tuple[Path, str]) -> None:
    spec = spec_of(*detector_file)
    short = CallResult("C1", "B1", "inconclusive", reason="insufficient_speech")
    judge_liveness(short, None, spec)  # too little speech: nothing to score
    assert short.spoof_score is None
    for missing in (None, SpoofScore("another-detector", -3.0), SpoofScore("hf", float("nan"))):
        with pytest.raises(BackendUnavailableError, match="no spoof score from it"):
            judge_liveness(CallResult("C1", "B1", "match"), missing, spec)


# -- end to end: check, batch, rescore -----------------------------------------------------------------


@pytest.fixture()
def vcl(detector_file: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The CLI in-process: fake speaker model, energy VAD, the tiny detector in [liveness]; B1 enrolled
    on the "live" voice, B2 on the "synthetic" one (so its calls match by voice)."""
    emb = workspace(tmp_path, extra=liveness_entry(*detector_file))
    (tmp_path / "voicecheck.toml").write_text(  # one worker: a batch runs in-process, where the VAD is patched
        f'model = "fake"\nstore = "{tmp_path / "store"}"\nembeddings = "{emb}"\ncohort = false\n'
        f"workers = 1\n{NO_REPLAY}[thresholds]\ncosine = 0.95\n",
        encoding="utf-8",
    )
    monkeypatch.setattr("voicecheck.pipeline.SileroVad", lambda **kw: EnergyVad())
    runner = CliRunner()

    def invoke(*args: object):
        return runner.invoke(app, [str(a) for a in args])

    calls = {}
    for name, voice in (("live", LIVE), ("synthetic", SYNTHETIC)):
        write(tmp_path / f"enroll_{name}.wav", chord(voice, 6.0, 8000), 8000)  # telephone-band enrollment
        calls[name] = write(tmp_path / f"{name}.wav", stereo(tone(500, 6.0, 8000), chord(voice, 6.0, 8000)), 8000)
    for borrower, name in (("B1", "live"), ("B2", "synthetic")):
        res = invoke("enroll", borrower, tmp_path / f"enroll_{name}.wav", "--consent", "test")
        assert res.exit_code == 0, res.output
    return invoke, calls, emb


def test_check_flags_a_synthetic_voice_and_reports_every_score(vcl) -> None:
    invoke, calls, _ = vcl
    res = invoke("check", calls["live"], "--borrower", "B1", "--json")
    live = json.loads(res.output.splitlines()[0])
    assert res.exit_code == 0 and live["verdict"] == "match" and live["spoof_score"] < 0
    res = invoke("check", calls["synthetic"], "--borrower", "B2", "--json")
    fake = json.loads(res.output.splitlines()[0])
    assert res.exit_code == 1 and (fake["verdict"], fake["reason"]) == ("mismatch", "synthetic_voice")
    assert fake["spoof_score"] >= 0 and fake["score"] >= fake["threshold"]  # the voice itself matches
    res = invoke("check", calls["synthetic"], "--borrower", "B2")
    assert "liveness   spoof score" in res.output


def records(out: Path) -> dict[str, dict]:
    return {r["call_id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}


def test_batch_and_rescore_carry_the_stored_score(vcl, tmp_path: Path) -> None:
    invoke, calls, emb = vcl
    manifest = tmp_path / "calls.csv"
    manifest.write_text(f"call_id,borrower_id,audio\nL1,B1,{calls['live']}\nS1,B2,{calls['synthetic']}\n")
    res = invoke("batch", manifest, "--out", tmp_path / "run1", "--quiet")
    assert res.exit_code == 0, res.output
    got = records(tmp_path / "run1")
    assert got["L1"]["verdict"] == "match" and got["L1"]["spoof_score"] < 0
    assert got["S1"]["reason"] == "synthetic_voice" and "synthetic_voice (spoof score +" in res.output
    summary = json.loads((tmp_path / "run1" / "summary.json").read_text())
    assert summary["liveness"]["name"] == "hf-energy-tiny" and summary["liveness"]["threshold"] == 0.0
    res = invoke("rescore", "--out", tmp_path / "rescored")
    again = records(tmp_path / "rescored")
    assert {c: (r["verdict"], r["spoof_score"]) for c, r in again.items()} == {
        c: (r["verdict"], r["spoof_score"]) for c, r in got.items()
    }
    # another detector: rescore has no audio to score, so every judged call is an error until the batch runs
    text = (emb / "models.toml").read_text()
    (emb / "models.toml").write_text(text.replace('name = "hf-energy-tiny"', 'name = "hf-energy-tiny-v2"'))
    invoke("rescore", "--out", tmp_path / "rescored2")
    errors = [json.loads(line) for line in (tmp_path / "rescored2" / "results.jsonl").read_text().splitlines()]
    assert {r["verdict"] for r in errors} == {"error"} and all("no spoof score" in r["reason"] for r in errors)
    res = invoke("batch", manifest, "--out", tmp_path / "run2", "--quiet")  # scored again with the new detector
    rerun = [json.loads(line) for line in (tmp_path / "run2" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["verdict"] for r in rerun) == ["match", "mismatch"]


def test_a_detector_that_cannot_run_makes_the_call_an_error(
    vcl, detector_file: tuple[Path, str], tmp_path: Path
) -> None:
    invoke, calls, emb = vcl
    text = (emb / "models.toml").read_text()
    fixed = tmp_path / "fixed.onnx"
    sha = build_liveness(fixed, samples=64000)  # fails on the 1 s windows
    lines = [ln for ln in text.splitlines() if not ln.startswith(("weights =", "sha256 ="))]
    (emb / "models.toml").write_text("\n".join(lines) + f'\nweights = "{fixed}"\nsha256 = "{sha}"\n')
    res = invoke("check", calls["live"], "--borrower", "B1", "--json")
    r = json.loads(res.output.splitlines()[0])
    assert res.exit_code == 2 and r["verdict"] == "error" and "liveness detector hf-energy-tiny" in r["reason"]
    manifest = tmp_path / "calls.csv"
    manifest.write_text(f"call_id,borrower_id,audio\nL1,B1,{calls['live']}\n")
    invoke("batch", manifest, "--out", tmp_path / "run", "--quiet")
    (rec,) = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert rec["verdict"] == "error" and "the model failed" in rec["reason"]
    # a detector file that is gone: nothing is checked without it, and the rest of the batch goes on
    (emb / "models.toml").write_text(text.replace(str(detector_file[0]), str(tmp_path / "gone.onnx")))
    res = invoke("check", calls["live"], "--borrower", "B1")
    assert res.exit_code == 2 and "gone.onnx does not exist" in res.output
    manifest.write_text(f"call_id,borrower_id,audio\nL1,B1,{calls['live']}\nS1,B2,{calls['synthetic']}\n")
    assert invoke("batch", manifest, "--out", tmp_path / "run2", "--quiet").exit_code == 0
    recs = [json.loads(line) for line in (tmp_path / "run2" / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(r["verdict"] == "error" and "gone.onnx does not exist" in r["reason"] for r in recs)
    # ... while enrollment, which needs no detector, works
    assert invoke("enroll", "B3", tmp_path / "enroll_live.wav", "--consent", "test", "--force").exit_code == 0


def test_spoof_scores_are_erased_and_purged_with_the_calls(vcl, tmp_path: Path) -> None:
    invoke, calls, emb = vcl
    manifest = tmp_path / "calls.csv"
    manifest.write_text(f"call_id,borrower_id,audio\nL1,B1,{calls['live']}\nS1,B2,{calls['synthetic']}\n")
    assert invoke("batch", manifest, "--out", tmp_path / "run", "--quiet").exit_code == 0
    store = CallStore(emb)
    try:
        count = store._db.execute("SELECT COUNT(*) FROM spoof_scores").fetchone()[0]
    finally:
        store.close()
    assert count == 2
    assert invoke("erase", "B1").exit_code == 0
    store = CallStore(emb)
    try:
        assert store._db.execute("SELECT COUNT(*) FROM spoof_scores").fetchone()[0] == 1
        store.purge("9999-12-31T00:00:00Z")
        assert store._db.execute("SELECT COUNT(*) FROM spoof_scores").fetchone()[0] == 0
    finally:
        store.close()
