"""The ONNX speaker-embedding backend on tiny networks built by tests/tiny_onnx.py (no weights
download): loading through models.toml with a pinned sha256, refusals, the input rate, and the CLI's
enroll / check / calibrate end to end. The Embedder contract itself runs in test_embedders_contract."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnx", reason="the tiny test models are built with onnx: pip install 'voicecheck[dev]'")
pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime: pip install 'voicecheck[onnx]'")

from tests.fakes import SAMPLES, SPEECH, EnergyVad, chord, noise, tone, write  # noqa: E402
from tests.tiny_onnx import build_speaker, speaker_entry  # noqa: E402
from voicecheck.audio import load  # noqa: E402
from voicecheck.cli import app  # noqa: E402
from voicecheck.config import Settings  # noqa: E402
from voicecheck.embedders import embed_speech, load_embedder  # noqa: E402
from voicecheck.embedders.onnx import OnnxEmbedder  # noqa: E402
from voicecheck.errors import BackendUnavailableError, UsageError  # noqa: E402
from voicecheck.pipeline import Engine  # noqa: E402

CALLS = SAMPLES / "calls"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a tiny WeSpeaker-style network (input feats, output embs, 80 bins, dim 16)."""
    path = tmp_path_factory.mktemp("tiny-onnx") / "tiny.onnx"
    return path, build_speaker(path)


def manifest(tmp_path: Path, *entries: str) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "models.toml").write_text("".join(entries), encoding="utf-8")
    return ws


def test_loads_through_the_manifest(tiny: tuple[Path, str], tmp_path: Path) -> None:
    ws = manifest(tmp_path, speaker_entry("tiny", *tiny))
    e = load_embedder("tiny", ws)
    assert isinstance(e, OnnxEmbedder)
    assert (e.name, e.sample_rate, e.dimension, e.window_s, e.hop_s) == ("tiny-tiny-random", 16000, 16, 1.0, 0.5)
    assert e.fbank.options.window_type == "hamming" and e.fbank.options.sample_scale == 32768.0


def test_relative_weights_are_taken_from_the_manifests_folder(tiny: tuple[Path, str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "weights" / "tiny").mkdir(parents=True)
    (ws / "weights" / "tiny" / "model.onnx").write_bytes(tiny[0].read_bytes())
    manifest(tmp_path, speaker_entry("tiny", Path("weights/tiny/model.onnx"), tiny[1]))
    assert load_embedder("tiny", ws).weights == str(ws / "weights" / "tiny" / "model.onnx")


def test_a_file_with_another_sha256_is_refused(tiny: tuple[Path, str], tmp_path: Path) -> None:
    ws = manifest(tmp_path, speaker_entry("tiny", tiny[0], "0" * 64))
    with pytest.raises(BackendUnavailableError, match=f"has sha256 {tiny[1]}, the manifest pins 0000"):
        load_embedder("tiny", ws)


def test_an_unpinned_file_is_refused_with_its_digest(tiny: tuple[Path, str], tmp_path: Path) -> None:
    ws = manifest(tmp_path, speaker_entry("tiny", tiny[0], ""))
    with pytest.raises(UsageError, match=f'sha256 = "{tiny[1]}"'):
        load_embedder("tiny", ws)


def test_missing_file_and_empty_weights(tmp_path: Path) -> None:
    ws = manifest(tmp_path, speaker_entry("tiny", tmp_path / "nowhere.onnx", "a" * 64))
    with pytest.raises(BackendUnavailableError, match="nowhere.onnx does not exist"):
        load_embedder("tiny", ws)
    ws = manifest(tmp_path, speaker_entry("tiny", "", "a" * 64))
    with pytest.raises(UsageError, match="weights is empty"):
        load_embedder("tiny", ws)


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    ws = manifest(tmp_path, speaker_entry("tiny", bad, hashlib.sha256(bad.read_bytes()).hexdigest()))
    with pytest.raises(BackendUnavailableError, match="onnxruntime cannot load the model"):
        load_embedder("tiny", ws)


def test_onnxruntime_missing_says_what_to_install(
    tiny: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    ws = manifest(tmp_path, speaker_entry("tiny", *tiny))
    with pytest.raises(BackendUnavailableError, match=r"pip install 'voicecheck\[onnx\]'"):
        load_embedder("tiny", ws)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sample_rate": 22050}, "sample_rate must be 8000 or 16000"),
        ({"dimension": 192}, "dimension 192 in the manifest, but"),
        ({"num_mel_bins": 40}, r"feeds \[batch, frames, 40\]"),
        ({"input_name": "feature"}, "has no input 'feature' \\(its inputs: feats\\)"),
        ({"output_name": "embedding"}, "has no output 'embedding'"),
        ({"window_type": "blackman"}, "window_type"),
        ({"dither": 1.0}, "unknown key\\(s\\) dither"),
        ({"batch_size": 0}, "batch_size"),
        ({"threads": 0}, "threads"),
    ],
)
def test_settings_that_do_not_fit_the_model_are_refused(
    tiny: tuple[Path, str], tmp_path: Path, values: dict, message: str
) -> None:
    ws = manifest(tmp_path, speaker_entry("tiny", *tiny, **values))
    with pytest.raises(UsageError, match=message):
        load_embedder("tiny", ws)


def test_cuda_without_a_cuda_onnxruntime_is_refused(tiny: tuple[Path, str], tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendUnavailableError, match="no CUDA provider"):
        load_embedder("tiny", manifest(tmp_path, speaker_entry("tiny", *tiny)), device="cuda:0")


def test_bf16_is_refused(tiny: tuple[Path, str], tmp_path: Path) -> None:
    ws = manifest(tmp_path, speaker_entry("tiny", *tiny))
    with pytest.raises(UsageError, match="bf16"):
        load_embedder("tiny", ws, precision="bf16")


def test_the_files_own_metadata_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "meta.onnx"
    sha = build_speaker(path, metadata={"sample_rate": "8000", "output_dim": "16", "framework": "wespeaker"})
    with pytest.raises(UsageError, match="the model file says sample_rate = 8000, the manifest 16000"):
        load_embedder("m", manifest(tmp_path, speaker_entry("m", path, sha)))
    assert load_embedder("m", manifest(tmp_path, speaker_entry("m", path, sha, sample_rate=8000))).sample_rate == 8000


def test_input_names_can_be_left_out_when_there_is_one(tmp_path: Path) -> None:
    """3D-Speaker's export names them feature / embedding; "" takes the only one."""
    path = tmp_path / "campp-like.onnx"
    sha = build_speaker(path, input_name="feature", output_name="embedding")
    e = load_embedder("c", manifest(tmp_path, speaker_entry("c", path, sha, input_name="", output_name="")))
    assert e.embed_batch(np.stack([tone(300, 1.0)])).shape == (1, 16)


def test_fixed_batch_and_frames(tmp_path: Path) -> None:
    """A model exported with batch 1 is run one window at a time (same rows as the dynamic one); one
    exported for a fixed number of frames must match the window length."""
    dynamic, fixed = tmp_path / "dynamic.onnx", tmp_path / "fixed.onnx"
    sha_d, sha_f = build_speaker(dynamic), build_speaker(fixed, batch=1, frames=98)
    ws = manifest(tmp_path, speaker_entry("d", dynamic, sha_d), speaker_entry("f", fixed, sha_f))
    d, f = load_embedder("d", ws), load_embedder("f", ws)
    assert f.batch_size == 1
    windows = np.stack([tone(220, 1.0), chord((300, 700, 1900), 1.0), noise(1.0)])
    np.testing.assert_allclose(f.embed_batch(windows), d.embed_batch(windows), atol=1e-5)
    bad = manifest(tmp_path, speaker_entry("f", fixed, sha_f, window_s=2.0, hop_s=1.0))
    with pytest.raises(UsageError, match="takes exactly 98 frames, a 2 s window makes 198"):
        load_embedder("f", bad)


def test_bad_windows(tiny: tuple[Path, str], tmp_path: Path) -> None:
    from voicecheck.errors import AudioError

    e = load_embedder("tiny", manifest(tmp_path, speaker_entry("tiny", *tiny)))
    assert e.embed_batch(np.zeros((0, 16000), np.float32)).shape == (0, 16)
    with pytest.raises(UsageError, match="shape"):
        e.embed_batch(np.zeros(16000, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        e.embed_batch(np.full((1, 16000), np.nan, np.float32))


def test_the_pipeline_resamples_to_the_models_rate(tmp_path: Path) -> None:
    """An 8 kHz model given a 16 kHz recording embeds it as it embeds the same sound recorded at 8 kHz;
    the same samples fed at the wrong rate (no resampling) give another vector."""
    path = tmp_path / "tiny8k.onnx"
    sha = build_speaker(path)
    ws = manifest(tmp_path, speaker_entry("t8", path, sha, sample_rate=8000, window_type="povey", sample_scale=1.0))
    e = load_embedder("t8", ws)
    engine = Engine(Settings(embeddings=str(ws)), embedder=e, vad=EnergyVad())
    wide = engine.embed_call(write(tmp_path / "wide.wav", syllables(16000), 16000), None)
    narrow = engine.embed_call(write(tmp_path / "narrow.wav", syllables(8000), 8000), None)
    speech, _, seconds = engine.speech(load(tmp_path / "wide.wav"))
    assert len(speech) == pytest.approx(seconds * 8000, abs=8000 * 0.05)
    assert float(wide.vector @ narrow.vector) > 0.99
    unresampled = embed_speech(e, syllables(16000))  # 16 kHz samples read as 8 kHz: every pitch halved
    assert float(unresampled @ narrow.vector) < 0.95


def syllables(sample_rate: int, seconds: float = 4.0) -> np.ndarray:
    """Chords that change every 0.25 s, like syllables (a steady sound is all zeros after the
    per-utterance mean normalisation of the features)."""
    voices = [(300, 700, 1900), (450, 1200, 2600), (250, 2000, 3100), (600, 900, 1500)]
    part = [chord(v, 0.25, sample_rate) for v in voices]
    return np.concatenate([part[i % len(part)] for i in range(int(seconds / 0.25))])


# -- the CLI end to end with the real VAD on the repository's sample calls -----------------------------


@pytest.fixture()
def onnx_cli(tiny: tuple[Path, str], tmp_path: Path):
    ws = manifest(tmp_path, speaker_entry("tiny", *tiny, window_s=2.0, hop_s=1.0, min_speech_s=2.0))
    args = ["--store", str(tmp_path / "store"), "--embeddings", str(ws), "--model", "tiny"]
    runner = CliRunner()

    def invoke(*argv: object):
        return runner.invoke(app, [str(a) for a in argv] + args)

    return invoke, ws


def test_enroll_and_check_a_sample_call(onnx_cli) -> None:
    invoke, _ = onnx_cli
    res = invoke("enroll", "--manifest", SAMPLES / "enroll.csv", "--threshold", "cosine=-1")  # random model: no gate
    assert res.exit_code == 0, res.output
    assert res.output.count(": added (") == 6
    res = invoke("check", CALLS / "C001.wav", "--borrower", "B1001", "--json", "--threshold", "cosine=0.5")
    assert res.exit_code in (0, 1), res.output
    r = json.loads(res.output.splitlines()[0])
    assert r["model"] == "tiny-tiny-random" and r["scoring"] == "cosine" and r["verdict"] in ("match", "mismatch")
    assert -1.0 <= r["score"] <= 1.0 and r["threshold"] == 0.5 and r["speech_seconds"] > 2.0
    assert r["spoof_score"] is None  # no liveness detector configured
    res = invoke("check", CALLS / "C007.wav", "--borrower", "B1004", "--json", "--threshold", "cosine=0.5")
    assert res.exit_code == 3 and json.loads(res.output.splitlines()[0])["reason"] == "insufficient_speech"


def test_without_a_calibration_the_check_says_how_to_get_one(onnx_cli) -> None:
    invoke, _ = onnx_cli
    assert invoke("enroll", "B1001", SPEECH / "vctk_autovc" / "p225" / "p225_003.flac", "--consent", "c").exit_code == 0
    res = invoke("check", CALLS / "C001.wav", "--borrower", "B1001", "--json")
    assert res.exit_code == 2
    assert "no calibrated threshold for model 'tiny'" in res.output and "voicecheck calibrate" in res.output


def _trials(tmp_path: Path) -> Path:
    """Labelled trials over real clips of four speakers (every pair of clips, own speaker = target)."""
    clips = {
        "p225": [SPEECH / "vctk_autovc" / "p225" / f"p225_{n}.flac" for n in ("003", "011", "021")],
        "p226": [SPEECH / "vctk_autovc" / "p226" / f"p226_{n}.flac" for n in ("005", "011")],
        "fangjun": sorted((SPEECH / "sherpa_sr-data" / "fangjun").glob("*.flac"))[:3],
        "spk1": sorted((SPEECH / "picovoice_eagle_samples" / "speaker_1").glob("*.flac"))[:3],
    }
    rows = []
    flat = [(who, p) for who, paths in clips.items() for p in paths]
    for i, (a, pa) in enumerate(flat):
        for b, pb in flat[i + 1 :]:
            rows.append({"enroll_audio": pa, "test_audio": pb, "label": int(a == b)})
    path = tmp_path / "trials.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["enroll_audio", "test_audio", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_calibrate_fits_a_threshold_for_an_onnx_model(onnx_cli, tmp_path: Path) -> None:
    invoke, ws = onnx_cli
    res = invoke("calibrate", _trials(tmp_path), "--max-false-flag", "0.1")
    assert res.exit_code == 0, res.output
    assert "scoring mode cosine: threshold" in res.output and "takeover limit: not fitted" in res.output
    saved = json.loads((ws / "calibration" / "tiny.json").read_text())
    mode = saved["modes"]["cosine"]
    assert -1.0 <= mode["threshold"] <= 1.0 and mode["n_target"] > 0 and mode["n_nontarget"] > 0
    assert mode["genuine_flagged"] <= 0.1 + 1e-9
    assert invoke("enroll", "B1001", SPEECH / "vctk_autovc" / "p225" / "p225_003.flac", "--consent", "c").exit_code == 0
    res = invoke("check", CALLS / "C001.wav", "--borrower", "B1001", "--json")
    r = json.loads(res.output.splitlines()[0])
    assert res.exit_code in (0, 1) and r["threshold"] == pytest.approx(mode["threshold"], abs=1e-4)
    assert r["threshold_source"].startswith("voicecheck calibrate") and r["llr"] is not None
