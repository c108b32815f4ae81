"""Resemblyzer's GE2E speaker encoder (weights ship in its PyPI wheel): the offline default."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError
from .base import unit

_PARTIAL_FRAMES = 160  # GE2E was trained on 1.6 s partials of 10 ms mel frames


class GE2EEmbedder:
    """GE2E (Wan et al. 2018) LSTM encoder as packaged by Resemblyzer 0.1.4.

    Embeddings are 256-d, unit-norm and non-negative (final ReLU), so cosines lie in [0, 1].
    Each window is volume-normalised to -30 dBFS (gain raised only, as Resemblyzer does) before
    its 40-band log-mel spectrogram goes through the network; windows are batched in one pass.
    """

    sample_rate = 16000
    dimension = 256

    def __init__(
        self,
        name: str = "ge2e-resemblyzer-0.1.4",
        device: str = "cpu",
        weights: str | None = None,
        sha256: str | None = None,
        min_speech_s: float = 3.0,
        window_s: float = 1.6,
        hop_s: float = 0.8,
        batch_size: int = 64,
    ) -> None:
        try:
            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
                import resemblyzer
                from resemblyzer import VoiceEncoder
        except ImportError as e:
            raise BackendUnavailableError(
                f"the ge2e backend needs resemblyzer and torch ({e}); install with: pip install resemblyzer"
            ) from None
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu"
            )
        path = Path(weights) if weights else Path(resemblyzer.__file__).parent / "pretrained.pt"
        if not path.is_file():
            raise BackendUnavailableError(f"GE2E weights not found at {path}; reinstall resemblyzer or fix models.toml")
        if sha256:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != sha256:
                raise BackendUnavailableError(
                    f"GE2E weights at {path} have sha256 {digest}, models.toml pins {sha256}: "
                    "a different file; restore the pinned weights or update the manifest"
                )
        self.name = name
        self.device = device
        self.min_speech_s = min_speech_s
        self.window_s = window_s
        self.hop_s = hop_s
        self.batch_size = batch_size
        self._torch = torch
        self._encoder = VoiceEncoder(device=device, verbose=False, weights_fpath=path)

    def embed_batch(self, windows: np.ndarray) -> np.ndarray:
        """(n, window_samples) float32 at 16 kHz -> (n, 256) unit-norm float32."""
        mels = _mel_batch(_normalise_volume(np.asarray(windows, dtype=np.float32)))
        mels = mels[:, : max(_PARTIAL_FRAMES, int(round(self.window_s * 100)))]
        out = []
        with self._torch.no_grad():
            for i in range(0, len(mels), self.batch_size):
                chunk = self._torch.from_numpy(np.ascontiguousarray(mels[i : i + self.batch_size])).to(self.device)
                out.append(self._encoder(chunk).cpu().numpy())
        return unit(np.concatenate(out))


def _normalise_volume(windows: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """Raise each window's level to ``target_dbfs`` (never lower it), as Resemblyzer's normalize_volume."""
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    change_db = target_dbfs - 20 * np.log10(np.maximum(rms, 1e-10))
    gain = np.where(change_db > 0, 10 ** (change_db / 20), 1.0)
    return (windows * gain[:, None]).astype(np.float32)


def _mel_batch(windows: np.ndarray) -> np.ndarray:
    """Resemblyzer's 40-band mel spectrogram (25 ms windows, 10 ms hop) of every window in one call.

    Returns:
        float32, shape (n, frames, 40).
    """
    import librosa

    mel = librosa.feature.melspectrogram(y=windows, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    return np.transpose(mel, (0, 2, 1)).astype(np.float32)
