"""Offline tests of the SpeechBrain ECAPA-TDNN backend on a tiny random model built in tmp.

The tiny model has the published spkrec-ecapa-voxceleb layout, so these tests run the real
loading and inference code; its embeddings carry no speaker meaning, so nothing here checks
speaker discrimination. Every load runs with sockets blocked and HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicecheck.embedders.base import Embedder, embed_speech
from voicecheck.embedders.ecapa import EcapaEmbedder
from voicecheck.errors import (
    AudioError,
    BackendUnavailableError,
    InsufficientSpeechError,
    UsageError,
)

try:  # tests/ on sys.path (rootdir-relative imports) or tests as a package
    from tiny_ecapa import CHECKPOINT_FILES, HUB_ID, build_tiny_ecapa
except ImportError:  # pragma: no cover
    from tests.tiny_ecapa import CHECKPOINT_FILES, HUB_ID, build_tiny_ecapa

# Neither import above loads torch or speechbrain; skip the module when the extra is missing.
pytest.importorskip("speechbrain")
torch = pytest.importorskip("torch")

SAMPLE_RATE = 16000
DIMENSION = 16  # lin_neurons of the tiny model


class NetworkUsed(AssertionError):
    """Raised by the blocked socket functions."""


def _no_network(*args: object, **kwargs: object) -> None:
    raise NetworkUsed(f"network access attempted: {args!r}")


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose hyperparams.yaml points ``pretrained_path`` at the hub, as published."""
    return build_tiny_ecapa(tmp_path_factory.mktemp("ecapa") / "model", pretrained_path=HUB_ID)


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 and every socket connection or name lookup raises NetworkUsed."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)


@pytest.fixture()
def embedder(tiny_dir: Path, offline: None) -> EcapaEmbedder:
    return EcapaEmbedder(source=str(tiny_dir), batch_size=2)


def _tone(freq_hz: float, seconds: float = 3.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _noise(seed: int, seconds: float = 3.0, amplitude: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def _windows() -> np.ndarray:
    """Five 3 s windows: two tones, two noises, one chirp-like mix. float32 (5, 48000)."""
    return np.stack([_tone(200), _tone(1000), _noise(1), _noise(2), _tone(300) + _noise(3)])


def _listing(directory: Path) -> dict[str, tuple[bool, int]]:
    return {p.name: (p.is_symlink(), p.stat().st_size) for p in sorted(directory.iterdir())}


# --- loading ----------------------------------------------------------------------------------


def test_module_import_is_light() -> None:
    code = (
        "import sys, voicecheck.embedders.ecapa; "
        "heavy = [m for m in ('torch', 'speechbrain') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr


def test_loads_local_dir_offline_with_protocol_attributes(embedder: EcapaEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.name == "ecapa-spkrec-voxceleb"
    assert embedder.sample_rate == SAMPLE_RATE
    assert embedder.dimension == DIMENSION
    assert embedder.min_speech_s == 3.0
    assert (embedder.window_s, embedder.hop_s) == (3.0, 1.5)


def test_local_dir_is_read_in_place(tiny_dir: Path, offline: None) -> None:
    before = _listing(tiny_dir)
    EcapaEmbedder(source=str(tiny_dir), savedir=str(tiny_dir / "ignored"))
    assert _listing(tiny_dir) == before  # nothing linked, copied or created


def test_published_yaml_alone_would_ask_the_hub(tiny_dir: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: speechbrain without the pretrained_path override goes to the hub id."""
    import huggingface_hub
    from speechbrain.inference.classifiers import EncoderClassifier

    asked: list[str] = []

    def fake_download(**kwargs: object) -> str:
        asked.append(str(kwargs.get("repo_id")))
        raise NetworkUsed("hf_hub_download called")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(NetworkUsed):
        EncoderClassifier.from_hparams(source=str(tiny_dir), savedir=None)
    assert asked == [HUB_ID]
    # ... while the embedder, with the same hub download blocked, loads fine.
    EcapaEmbedder(source=str(tiny_dir))
    assert asked == [HUB_ID]


def test_dimension_from_manifest_is_checked(tiny_dir: Path, offline: None) -> None:
    assert EcapaEmbedder(source=str(tiny_dir), dimension=DIMENSION).dimension == DIMENSION
    with pytest.raises(UsageError, match="192"):
        EcapaEmbedder(source=str(tiny_dir), dimension=192)


def test_missing_directory(tmp_path: Path, offline: None) -> None:
    absent = tmp_path / "no-such-model"
    with pytest.raises(BackendUnavailableError, match="does not exist") as info:
        EcapaEmbedder(source=str(absent))
    assert str(absent) in str(info.value)


def test_source_that_is_a_file(tmp_path: Path, offline: None) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"x")
    with pytest.raises(BackendUnavailableError, match="not a directory") as info:
        EcapaEmbedder(source=str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("removed", ["hyperparams.yaml", *CHECKPOINT_FILES])
def test_missing_file_is_named(tiny_dir: Path, tmp_path: Path, offline: None, removed: str) -> None:
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "partial"))
    (copy / removed).unlink()
    with pytest.raises(BackendUnavailableError) as info:
        EcapaEmbedder(source=str(copy))
    message = str(info.value)
    assert str(copy) in message
    assert removed in message


def test_corrupt_checkpoint_is_backend_unavailable(tiny_dir: Path, tmp_path: Path, offline: None) -> None:
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "corrupt"))
    (copy / "embedding_model.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackendUnavailableError, match="could not load") as info:
        EcapaEmbedder(source=str(copy))
    assert str(copy) in str(info.value)


def test_hub_id_offline_suggests_local_directory(
    tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # An empty hub cache, so a model someone cached on this machine cannot make the load succeed.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(BackendUnavailableError, match="local directory") as info:
        EcapaEmbedder(source=HUB_ID, savedir=str(tmp_path / "embeddings"))
    assert HUB_ID in str(info.value)
    assert "HF_HUB_OFFLINE" in str(info.value)


def test_hub_id_copies_files_into_savedir(
    tiny_dir: Path, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for the hub serves the tiny model; savedir must end up self-contained."""
    import huggingface_hub

    cache = tmp_path / "hf-cache"

    def fake_download(*, repo_id: str, filename: str, **kwargs: object) -> str:
        assert repo_id == HUB_ID
        cache.mkdir(exist_ok=True)
        return shutil.copy(tiny_dir / filename, cache / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    savedir = tmp_path / "embeddings" / "ecapa"
    from_hub = EcapaEmbedder(source=HUB_ID, savedir=str(savedir))
    listing = _listing(savedir)
    assert set(listing) >= {"hyperparams.yaml", *CHECKPOINT_FILES}
    assert not any(is_link for is_link, _ in listing.values())

    # The copies in savedir are all a later offline load needs, by hub id or as a directory.
    shutil.rmtree(cache)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_network)
    again = EcapaEmbedder(source=HUB_ID, savedir=str(savedir))
    from_savedir = EcapaEmbedder(source=str(savedir))
    windows = _windows()[:2]
    expected = from_hub.embed_batch(windows)
    np.testing.assert_allclose(again.embed_batch(windows), expected, atol=1e-6)
    np.testing.assert_allclose(from_savedir.embed_batch(windows), expected, atol=1e-6)


def test_cuda_without_cuda(tiny_dir: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        EcapaEmbedder(source=str(tiny_dir), device="cuda")


def test_missing_speechbrain_says_what_to_install(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "speechbrain.inference.classifiers", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'voicecheck\[ecapa\]'"):
        EcapaEmbedder(source=str(tiny_dir))


@pytest.mark.parametrize("settings", [{"batch_size": 0}, {"window_s": 0.0}, {"hop_s": -1.0}, {"sample_rate": 0}])
def test_invalid_settings(tiny_dir: Path, settings: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        EcapaEmbedder(source=str(tiny_dir), **settings)  # type: ignore[arg-type]


# --- embedding --------------------------------------------------------------------------------


def test_embed_batch_shape_dtype_unit_norm(embedder: EcapaEmbedder) -> None:
    vectors = embedder.embed_batch(_windows())  # 5 windows in chunks of 2
    assert vectors.shape == (5, DIMENSION)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_chunking_does_not_change_results(tiny_dir: Path, offline: None) -> None:
    windows = _windows()
    one_chunk = EcapaEmbedder(source=str(tiny_dir), batch_size=16).embed_batch(windows)
    one_each = EcapaEmbedder(source=str(tiny_dir), batch_size=1).embed_batch(windows)
    np.testing.assert_allclose(one_each, one_chunk, atol=1e-5)


def test_deterministic(embedder: EcapaEmbedder) -> None:
    windows = _windows()
    np.testing.assert_allclose(embedder.embed_batch(windows), embedder.embed_batch(windows), atol=1e-6)


def test_same_seed_same_model(tmp_path: Path, offline: None) -> None:
    a = EcapaEmbedder(source=str(build_tiny_ecapa(tmp_path / "a", seed=7)))
    b = EcapaEmbedder(source=str(build_tiny_ecapa(tmp_path / "b", seed=7)))
    c = EcapaEmbedder(source=str(build_tiny_ecapa(tmp_path / "c", seed=8)))
    windows = _windows()[:2]
    np.testing.assert_allclose(a.embed_batch(windows), b.embed_batch(windows), atol=1e-6)
    assert not np.allclose(a.embed_batch(windows), c.embed_batch(windows), atol=1e-3)


def test_different_inputs_give_different_embeddings(embedder: EcapaEmbedder) -> None:
    vectors = embedder.embed_batch(_windows())
    cosines = vectors @ vectors.T
    off_diagonal = cosines[~np.eye(len(vectors), dtype=bool)]
    assert off_diagonal.max() < 0.9999
    # The two tones are far apart in frequency; their embeddings are clearly not the same.
    assert np.linalg.norm(vectors[0] - vectors[1]) > 0.05


def test_empty_batch(embedder: EcapaEmbedder) -> None:
    vectors = embedder.embed_batch(np.zeros((0, 48000), dtype=np.float32))
    assert vectors.shape == (0, DIMENSION)
    assert vectors.dtype == np.float32


def test_bad_windows(embedder: EcapaEmbedder) -> None:
    with pytest.raises(UsageError, match="shape"):
        embedder.embed_batch(_tone(200))
    bad = _windows()[:2].copy()
    bad[1, 100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        embedder.embed_batch(bad)


def test_embed_speech(embedder: EcapaEmbedder) -> None:
    speech = np.concatenate([_tone(220, 2.5), _noise(4, 2.5)])  # 5 s -> windows at 0, 1.5, 2 s
    vector = embed_speech(embedder, speech)
    assert vector.shape == (DIMENSION,)
    assert vector.dtype == np.float32
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_embed_speech_too_short(embedder: EcapaEmbedder) -> None:
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)  # 1 s < min_speech_s = 3 s
    with pytest.raises(InsufficientSpeechError) as info:
        embed_speech(embedder, silence)
    assert info.value.speech_seconds == pytest.approx(1.0)
