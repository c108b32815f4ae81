"""The Embedder contract, run over every backend that can load here: ge2e (real weights from the
resemblyzer wheel), ecapa (a tiny random model built offline by tests/tiny_ecapa.py), onnx (a tiny
random network in the WeSpeaker export format built by tests/tiny_onnx.py) and the fake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import voicecheck.embedders as embedders
from tests.fakes import SPEECH, FakeEmbedder, chord, noise, silence, tone, workspace, write
from voicecheck.audio import load
from voicecheck.config import Settings
from voicecheck.embedders import BACKENDS, Embedder, embed_speech, load_embedder, model_spec
from voicecheck.errors import BackendUnavailableError, InsufficientSpeechError, UsageError
from voicecheck.pipeline import Engine

KEYS = ["ge2e", "ecapa", "onnx", "fake"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose models.toml has the fake and, if speechbrain imports, a tiny local ECAPA."""
    root = tmp_path_factory.mktemp("contract")
    extra = ""
    try:
        import speechbrain  # noqa: F401

        from tests.tiny_ecapa import build_tiny_ecapa

        tiny = build_tiny_ecapa(root / "tiny-ecapa")
        extra = f'\n[ecapa]\nsource = "{tiny}"\nname = "ecapa-tiny-random"\ndimension = 16\n'
    except ImportError:
        pass
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        from tests.tiny_onnx import build_speaker, speaker_entry

        path = root / "tiny-onnx" / "tiny.onnx"
        extra += speaker_entry("onnx", path, build_speaker(path), window_s=2.0, hop_s=1.0, min_speech_s=2.0)
    except ImportError:
        pass
    return workspace(root, extra=extra)


@pytest.fixture(scope="module", params=KEYS)
def embedder(request: pytest.FixtureRequest, models_dir: Path) -> Embedder:
    key = request.param
    if key == "ecapa" and "[ecapa]" not in (models_dir / "models.toml").read_text():
        pytest.skip("speechbrain is not installed: pip install 'voicecheck[ecapa]'")
    if key == "onnx" and "[onnx]" not in (models_dir / "models.toml").read_text():
        pytest.skip("onnx/onnxruntime are not installed: pip install 'voicecheck[onnx,dev]'")
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        return load_embedder(key, models_dir)
    finally:
        mp.undo()


def _windows(e: Embedder) -> np.ndarray:
    n = int(round(e.window_s * e.sample_rate))
    rate = e.sample_rate
    sig = [tone(220, e.window_s, rate), chord((300, 700, 1900), e.window_s, rate), noise(e.window_s, rate, 0.2)]
    return np.stack([s[:n] for s in sig])


def test_every_registered_backend_is_covered() -> None:
    assert set(BACKENDS) <= set(KEYS)


def test_protocol_attributes(embedder: Embedder) -> None:
    assert isinstance(embedder, Embedder)
    assert isinstance(embedder.name, str) and embedder.name
    assert embedder.sample_rate > 0 and embedder.dimension > 0
    assert embedder.min_speech_s > 0 and embedder.window_s > 0 and embedder.hop_s > 0


def test_shape_dtype_unit_norm(embedder: Embedder) -> None:
    out = embedder.embed_batch(_windows(embedder))
    assert out.shape == (3, embedder.dimension)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)


def test_deterministic(embedder: Embedder) -> None:
    w = _windows(embedder)
    np.testing.assert_allclose(embedder.embed_batch(w), embedder.embed_batch(w), atol=1e-5)


def test_batching_does_not_change_rows(embedder: Embedder) -> None:
    """A window's embedding does not depend on the others in its batch: to float32 rounding, or in
    bfloat16 (GE2E's "auto" on CPUs that have it) to its rounding, ~1e-3, which depends on the
    batch's shape."""
    w = _windows(embedder)
    together = embedder.embed_batch(w)
    alone = np.concatenate([embedder.embed_batch(w[i : i + 1]) for i in range(len(w))])
    low = getattr(embedder, "precision", "fp32") == "bf16"
    np.testing.assert_allclose(together, alone, atol=1e-2 if low else 1e-4)
    assert np.min(np.sum(together * alone, axis=1)) > (0.999 if low else 0.99999)


def test_different_signals_differ(embedder: Embedder) -> None:
    out = embedder.embed_batch(_windows(embedder))
    assert float(out[0] @ out[2]) < 0.999


def test_embed_speech_on_too_little_speech(embedder: Embedder) -> None:
    with pytest.raises(InsufficientSpeechError) as info:
        embed_speech(embedder, silence(embedder.min_speech_s / 2, embedder.sample_rate))
    assert info.value.speech_seconds == pytest.approx(embedder.min_speech_s / 2, abs=0.01)


def test_engine_refuses_silence_and_records_the_model(embedder: Embedder, silero, tmp_path: Path) -> None:
    engine = Engine(Settings(), embedder=embedder, vad=silero)
    with pytest.raises(InsufficientSpeechError):
        engine.embed_call(write(tmp_path / "silence.wav", silence(6.0, 8000), 8000), None)
    clip = SPEECH / "vctk_autovc" / "p225" / "p225_003.flac"
    emb = engine.embed_audio(load(clip))
    assert emb.model == embedder.name
    assert emb.vector.shape == (embedder.dimension,) and emb.windows.shape[1] == embedder.dimension
    assert np.linalg.norm(emb.vector) == pytest.approx(1.0, abs=1e-4)
    assert emb.narrow_vector is not None  # wideband clip: channel-matched vector too


def test_manifest_entry_for_the_fake(models_dir: Path) -> None:
    spec = model_spec("fake", models_dir)
    assert spec.backend == "fake" and spec.name == "fake-bands"
    e = load_embedder("fake2", models_dir)
    assert isinstance(e, FakeEmbedder) and e.name == "fake-bands-b"


def test_unknown_model_and_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        load_embedder("nope", tmp_path)
    (tmp_path / "models.toml").write_text('[x]\nbackend = "no.such.module:Thing"\nname = "x"\n')
    with pytest.raises(UsageError, match="not a registered backend"):  # a manifest names no code
        load_embedder("x", tmp_path)
    monkeypatch.setitem(embedders._REGISTERED, "gone", "no.such.module:Thing")
    (tmp_path / "models.toml").write_text('[x]\nbackend = "gone"\nname = "x"\n')
    with pytest.raises(BackendUnavailableError, match="no.such.module"):
        load_embedder("x", tmp_path)
    (tmp_path / "models.toml").write_text('[y]\nbackend = "y"\n')
    with pytest.raises(UsageError, match="backend and name"):
        load_embedder("y", tmp_path)


def test_fake_tones(fake: FakeEmbedder) -> None:
    """The fake is signal-dependent: same tone same vector, different tones near-orthogonal."""
    a, b, c = fake.embed_batch(np.stack([tone(300, 1.0), tone(300, 1.0, amplitude=0.1), tone(2000, 1.0)]))
    assert float(a @ b) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ c) < 0.2


def test_manifest_dimension_is_checked_for_ecapa(models_dir: Path, tmp_path: Path) -> None:
    text = (models_dir / "models.toml").read_text()
    if "[ecapa]" not in text:
        pytest.skip("speechbrain is not installed")
    (tmp_path / "models.toml").write_text(text.replace("dimension = 16", "dimension = 192"))
    with pytest.raises(UsageError, match="192"):
        load_embedder("ecapa", tmp_path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('backend = "this:s"\nname = "x"', "not a registered backend"),
        ('backend = "os:system"\nname = "x"', "not a registered backend"),
        ('backend = "ge2e"\nname = "x"\nsample_rate = 0', "sample_rate must be a int"),
        ('backend = "ge2e"\nname = "x"\nhop_s = nan', "hop_s must be a float"),
        ('backend = "ge2e"\nname = "x"\nwindow_s = 1.0\nhop_s = 2.0', "must not exceed window_s"),
        ('backend = "ge2e"\nname = "x"\nsha256 = "abc"', "64 lowercase hex"),
        ('backend = "ge2e"\nname = "x y"', "name must be a model id"),
        ('backend = true\nname = "x"', "backend must be text"),
        ('backend = "ge2e"\nname = "x"\nbatch_size = [1, 2]', "plain finite value"),
    ],
)
def test_a_manifest_names_no_code_and_is_validated(tmp_path: Path, entry: str, message: str) -> None:
    (tmp_path / "models.toml").write_text(f"[x]\n{entry}\n")
    with pytest.raises(UsageError, match=message):
        model_spec("x", tmp_path)
