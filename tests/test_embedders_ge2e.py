"""GE2E specifics: its mel front end is Resemblyzer's, float32 is Resemblyzer's network, bfloat16 stays
close to it, and the precision setting is checked. (The shared contract is in test_embedders_contract.)"""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import SPEECH, workspace
from voicecheck.audio import load
from voicecheck.embedders import frame, load_embedder
from voicecheck.errors import UsageError

CLIP = SPEECH / "vctk_autovc" / "p225" / "p225_003.flac"


def _speech_windows(e) -> np.ndarray:
    return frame(load(CLIP).samples, e.sample_rate, e.window_s, e.hop_s)


def test_mel_front_end_is_resemblyzers() -> None:
    import librosa

    from voicecheck.embedders.ge2e import _mel_batch

    w = load(CLIP).samples[: 3 * 25600].reshape(3, 25600)
    want = np.transpose(librosa.feature.melspectrogram(y=w, sr=16000, n_fft=400, hop_length=160, n_mels=40), (0, 2, 1))
    got = _mel_batch(w)
    assert got.shape == want.shape == (3, 161, 40) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(want.max()))


@pytest.mark.slow
def test_fp32_is_resemblyzers_network_and_bf16_stays_close(tmp_path) -> None:
    import torch
    from resemblyzer import VoiceEncoder

    from voicecheck.embedders.ge2e import _mel_batch, _normalise_volume

    fp32 = load_embedder("ge2e", tmp_path, precision="fp32")
    assert fp32.precision == "fp32"
    w = _speech_windows(fp32)
    with torch.no_grad():
        mels = torch.from_numpy(_mel_batch(_normalise_volume(w))[:, :160].copy())
        want = VoiceEncoder("cpu", verbose=False)(mels).numpy()
    got = fp32.embed_batch(w)
    assert np.min(np.sum(got * want, axis=1)) > 0.99999
    bf16 = load_embedder("ge2e", tmp_path, precision="bf16")
    low = bf16.embed_batch(w)
    assert bf16.precision == "bf16" and low.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-4)
    assert np.min(np.sum(low * got, axis=1)) > 0.99  # windows; a call's mean is closer still
    mean_low, mean_32 = low.mean(axis=0), got.mean(axis=0)
    assert mean_low @ mean_32 / np.linalg.norm(mean_low) / np.linalg.norm(mean_32) > 0.999


def test_auto_precision_follows_the_hardware(monkeypatch) -> None:
    import torch

    from voicecheck.embedders.ge2e import resolve_precision

    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cuda") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"


def test_precision_is_checked(tmp_path) -> None:
    with pytest.raises(UsageError, match="precision 'fp16' is not one of auto, fp32, bf16"):
        load_embedder("ge2e", tmp_path, precision="fp16")
    with pytest.raises(UsageError, match="ge2e backend only"):
        load_embedder("fake", workspace(tmp_path), precision="bf16")
    assert load_embedder("fake", workspace(tmp_path), precision="fp32").name == "fake-bands"


@pytest.mark.parametrize("seconds", [0.9, 1.6, 1.7, 2.41, 9.95])
def test_shared_frames_give_the_windows_own_embeddings(seconds: float, tmp_path) -> None:
    """embed_speech_windows (spectrogram frames shared by overlapping windows) is embed_batch over
    the windows frame() cuts: short speech, one window exactly, the last window off the 10 ms grid,
    and quiet speech whose windows get different volume gains."""
    from voicecheck.embedders import embed_windows

    e = load_embedder("ge2e", tmp_path, precision="fp32")
    x = load(CLIP).samples
    speech = np.concatenate([x, x])[: int(seconds * 16000)].copy()
    speech[: len(speech) // 3] *= 0.01  # a quiet first third: windows differ in gain
    want = e.embed_batch(frame(speech, e.sample_rate, e.window_s, e.hop_s))
    got = embed_windows(e, speech)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.min(np.sum(got * want, axis=1)) > 0.99999


def test_windows_of_several_calls_together_are_each_calls_own(tmp_path) -> None:
    """embed_windows_many batches several calls' windows through the network (crossing batch edges);
    each call gets the windows it gets alone, and the in-between windows at given starts are those of
    the timeline at half the hop."""
    from voicecheck.embedders import embed_windows
    from voicecheck.embedders.base import between_starts, embed_windows_many, window_starts

    e = load_embedder("ge2e", tmp_path, precision="fp32")
    e.batch_size = 4
    x = load(CLIP).samples
    speeches = [x[: int(s * 16000)] for s in (1.2, 3.5, 9.0, 5.1)] + [np.concatenate([x, x])]
    together = embed_windows_many(e, speeches)
    for speech, got in zip(speeches, together, strict=True):
        alone = embed_windows(e, speech)
        assert got.shape == alone.shape
        assert np.min(np.sum(got * alone, axis=1)) > 0.99999
    speech = speeches[-1]
    fine = embed_windows(e, speech, window_starts(len(speech), 16000, e.window_s, e.hop_s / 2))
    extra = embed_windows(e, speech, between_starts(len(speech), 16000, e.window_s, e.hop_s))
    assert len(extra) and min(np.max(fine @ row) for row in extra) > 0.99999
