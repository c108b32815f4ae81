"""Resemblyzer's GE2E speaker encoder (weights ship in its PyPI wheel): the offline default."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, UsageError
from .base import PRECISIONS, unit

_PARTIAL_FRAMES = 160  # GE2E was trained on 1.6 s partials of 10 ms mel frames


class GE2EEmbedder:
    """GE2E (Wan et al. 2018) LSTM encoder as packaged by Resemblyzer 0.1.4.

    Embeddings are 256-d, unit-norm and non-negative (final ReLU), so cosines lie in [0, 1].
    Each window is volume-normalised to -30 dBFS (gain raised only, as Resemblyzer does) before
    its 40-band mel spectrogram goes through the network; windows are batched in one pass.

    ``precision`` "bf16" runs the LSTM (nearly all of the work) in bfloat16 and the rest in
    float32: about twice as fast on a CPU with AMX (measured on an earlier machine), window
    embeddings within cosine 0.996 of float32 (mean 0.9996) and call embeddings within 0.9998
    (``benchmarks/accuracy.py`` compares the two). "auto" picks bf16 only on a CPU with AMX: with
    AVX512-BF16 alone (no AMX) the LSTM ran ~1.6x slower in bf16 than in fp32 (5.5 vs 3.4 ms per
    window, 1 thread); fp32 elsewhere and on CUDA. Both give the same model id: the vectors are
    interchangeable to well below the variation between two calls of one speaker.
    """

    sample_rate = 16000
    dimension = 256

    @classmethod
    def from_spec(cls, spec: Any, root: Path, device: str, precision: str) -> GE2EEmbedder:
        """Build from a manifest entry (:class:`voicecheck.embedders.ModelSpec`); ``root`` is the manifest's folder."""
        from . import resolve, spec_kwargs

        weights = resolve(root, spec.weights) or None
        return cls(**spec_kwargs(spec, device), weights=weights, sha256=spec.sha256 or None, precision=precision)

    def __init__(
        self,
        name: str = "ge2e-resemblyzer-0.1.4",
        device: str = "cpu",
        weights: str | None = None,
        sha256: str | None = None,
        min_speech_s: float = 3.0,
        window_s: float = 1.6,
        hop_s: float = 1.6,
        batch_size: int = 32,
        precision: str = "auto",
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
        if precision not in PRECISIONS:
            raise UsageError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
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
        self.precision = resolve_precision(precision, device)
        self._torch = torch
        self._encoder = VoiceEncoder(device=device, verbose=False, weights_fpath=path)
        self._lstm: Any = self._encoder.lstm
        if self.precision == "bf16":
            import copy

            self._lstm = copy.deepcopy(self._encoder.lstm).to(torch.bfloat16)

    def embed_batch(self, windows: np.ndarray) -> np.ndarray:
        """(n, window_samples) float32 at 16 kHz -> (n, 256) unit-norm float32."""
        mels = _mel_batch(_normalise_volume(np.asarray(windows, dtype=np.float32)))
        return self._network(mels[:, : self._frames_kept(windows.shape[1])])

    def embed_speech_windows(self, speech: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """The windows :func:`voicecheck.embedders.frame` cuts from ``speech`` (or those at ``starts``),
        embedded: as :meth:`embed_batch` on them, but overlapping windows share their spectrogram frames.

        A window's mel frames are those of the whole stretch of speech at the same instants, scaled
        by the window's volume gain squared (the mel spectrogram is linear in power), except the
        frames at its two ends, which see the window's zero padding and are computed apart, as is
        a window that does not start on the 10 ms frame grid (the last one, aligned to the end).

        Args:
            speech: mono float32 at 16 kHz, shape (n,).
            starts: window start offsets in samples, each window whole inside ``speech``; None:
                :func:`voicecheck.embedders.base.window_starts` at this model's hop.

        Returns:
            float32, shape (n_windows, 256), unit rows.
        """
        return self._network(self._speech_mels(speech, starts))

    def embed_speech_windows_many(self, speeches: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`embed_speech_windows` of several stretches of speech, their windows through the network
        together in batches of ``batch_size`` (a call at hop 1.6 s has a dozen windows; the LSTM runs
        ~5% faster per window on 32 than on 12). Memory: one stretch's spectrograms plus one batch.

        Returns:
            One float32 array (n_windows_i, 256) of unit rows per stretch, in order.
        """
        out: list[list[np.ndarray]] = [[] for _ in speeches]
        owner: list[np.ndarray] = []  # the stretch each pending window belongs to
        pending: list[np.ndarray] = []
        n_pending = 0

        def run(rows: int) -> None:
            nonlocal pending, owner, n_pending
            mels, who = np.concatenate(pending), np.concatenate(owner)
            done = self._network(mels[:rows])
            for i in np.unique(who[:rows]):
                out[int(i)].append(done[who[:rows] == i])
            pending, owner, n_pending = [mels[rows:]], [who[rows:]], n_pending - rows

        for i, speech in enumerate(speeches):
            mels = self._speech_mels(speech)
            pending.append(mels)
            owner.append(np.full(len(mels), i))
            n_pending += len(mels)
            if n_pending >= self.batch_size:
                run(n_pending - n_pending % self.batch_size)
        if n_pending:
            run(n_pending)
        return [np.concatenate(parts) if parts else np.zeros((0, self.dimension), np.float32) for parts in out]

    def _speech_mels(self, speech: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """The network's input for :meth:`embed_speech_windows`: (n_windows, frames, 40) mel power."""
        from .base import frame, window_starts

        x = np.asarray(speech, dtype=np.float32)
        win = int(round(self.window_s * self.sample_rate))
        if len(x) <= win:
            windows = frame(x, self.sample_rate, self.window_s, self.hop_s)
            return _mel_batch(_normalise_volume(windows))[:, : self._frames_kept(windows.shape[1])]
        if starts is None:
            starts = window_starts(len(x), self.sample_rate, self.window_s, self.hop_s)
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) == 0:
            return np.zeros((0, self._frames_kept(win), _N_MELS), dtype=np.float32)
        kept = self._frames_kept(win)
        gains = _volume_gain(np.sqrt(_window_energy(x, starts, win) / win)) ** 2
        mels = np.empty((len(starts), kept, _N_MELS), dtype=np.float32)
        aligned = starts % _HOP == 0
        first, last = -(-(_N_FFT // 2) // _HOP), (win - _N_FFT // 2) // _HOP  # frames clear of the padding
        # frames of the whole stretch, centred every 10 ms from frame ``first`` on (no padding needed)
        shared = _mel_frames(np.lib.stride_tricks.sliding_window_view(x, _N_FFT)[first * _HOP - _N_FFT // 2 :: _HOP])
        a_starts = starts[aligned]
        inner = a_starts[:, None] // _HOP + np.arange(first, last + 1)[None, :] - first
        mels[aligned, first : last + 1] = shared[inner]
        edges = [j for j in range(kept) if j < first or j > last]
        if len(a_starts) and edges:
            pieces = np.zeros((len(a_starts), len(edges), _N_FFT), dtype=np.float32)
            for e, j in enumerate(edges):
                lo, hi = max(0, j * _HOP - _N_FFT // 2), min(win, j * _HOP + _N_FFT // 2)
                at = lo - (j * _HOP - _N_FFT // 2)
                pieces[:, e, at : at + hi - lo] = x[a_starts[:, None] + np.arange(lo, hi)[None, :]]
            mels[np.ix_(aligned, edges)] = _mel_frames(pieces)
        if not aligned.all():
            rest = np.stack([x[s : s + win] for s in starts[~aligned]])
            mels[~aligned] = _mel_batch(rest)[:, :kept]
        return mels * gains[:, None, None].astype(np.float32)

    def _frames_kept(self, window_samples: int) -> int:
        """Mel frames per window given to the network (160 for GE2E's 1.6 s partials)."""
        return min(1 + window_samples // _HOP, max(_PARTIAL_FRAMES, int(round(self.window_s * 100))))

    def _network(self, mels: np.ndarray) -> np.ndarray:
        """(n, frames, 40) mel power -> (n, 256) unit rows: the LSTM (at ``precision``) and the head."""
        torch = self._torch
        low = torch.bfloat16 if self.precision == "bf16" else torch.float32
        if len(mels) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = []
        with torch.no_grad():
            for i in range(0, len(mels), self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(mels[i : i + self.batch_size])).to(self.device)
                _, (hidden, _) = self._lstm(chunk.to(low))
                raw = self._encoder.relu(self._encoder.linear(hidden[-1].float()))  # Resemblyzer's head
                out.append(raw.cpu().numpy())
        return unit(np.concatenate(out))


def resolve_precision(precision: str, device: str) -> str:
    """ "fp32" or "bf16" for a ``precision`` setting ("auto" decides by the hardware, see the class)."""
    if precision != "auto":
        return precision
    if not device.startswith("cpu"):
        return "fp32"
    import torch

    try:  # AMX's tile unit: with AVX512-BF16 alone the LSTM in bf16 measured ~1.6x slower than fp32
        amx = bool(torch.backends.mkldnn.is_available() and torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe
        amx = False
    return "bf16" if amx else "fp32"


def _window_energy(x: np.ndarray, starts: np.ndarray, win: int) -> np.ndarray:
    """Sum of squares of ``x[s : s + win]`` for every start (float64): from sums over 10 ms blocks for
    windows on the block grid, directly for the others."""
    blocks = len(x) // _HOP
    b = x[: blocks * _HOP].reshape(blocks, _HOP)
    cum = np.concatenate([[0.0], np.cumsum(np.einsum("ij,ij->i", b, b, dtype=np.float64))])
    out = np.empty(len(starts), dtype=np.float64)
    grid = (starts % _HOP == 0) & (win % _HOP == 0)
    out[grid] = cum[starts[grid] // _HOP + win // _HOP] - cum[starts[grid] // _HOP]
    for i in np.flatnonzero(~grid):
        w = x[starts[i] : starts[i] + win].astype(np.float64)
        out[i] = float(w @ w)
    return out


def _volume_gain(rms: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """Resemblyzer's normalize_volume gain for signals of level ``rms``: up to ``target_dbfs``, never down."""
    change_db = target_dbfs - 20 * np.log10(np.maximum(rms, 1e-10))
    return np.where(change_db > 0, 10 ** (change_db / 20), 1.0)


def _normalise_volume(windows: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """Raise each window's level to ``target_dbfs`` (never lower it), as Resemblyzer's normalize_volume."""
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    return (windows * _volume_gain(rms, target_dbfs)[:, None]).astype(np.float32)


_N_FFT, _HOP, _N_MELS = 400, 160, 40
_MEL_BASIS: dict[str, np.ndarray] = {}


def _mel_batch(windows: np.ndarray) -> np.ndarray:
    """Resemblyzer's 40-band mel power spectrogram (25 ms Hann frames, 10 ms hop, centred, zero
    padding: ``librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)``)
    of every window in one call, in float32 (same values as librosa to ~1e-6 relative, half the time).

    Returns:
        float32, shape (n, 1 + window_samples // 160, 40).
    """
    x = np.asarray(windows, dtype=np.float32)
    padded = np.pad(x, ((0, 0), (_N_FFT // 2, _N_FFT // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT, axis=1)[:, ::_HOP][:, : 1 + x.shape[1] // _HOP]
    return _mel_frames(frames)


def _mel_frames(frames: np.ndarray) -> np.ndarray:
    """Mel power of 400-sample frames (any leading shape): Hann window, |FFT|^2, 40 mel bands; float32."""
    import scipy.fft

    if not _MEL_BASIS:
        import librosa

        _MEL_BASIS["mel"] = librosa.filters.mel(sr=16000, n_fft=_N_FFT, n_mels=_N_MELS).T.astype(np.float32)
        _MEL_BASIS["window"] = librosa.filters.get_window("hann", _N_FFT, fftbins=True).astype(np.float32)
    spectrum = scipy.fft.rfft(frames * _MEL_BASIS["window"], axis=-1, workers=1)
    power = spectrum.real**2 + spectrum.imag**2
    return np.ascontiguousarray(power @ _MEL_BASIS["mel"], dtype=np.float32)
