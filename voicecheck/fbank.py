"""Kaldi-compatible log mel filterbank features, in numpy, for ONNX speaker and liveness models.

WeSpeaker and 3D-Speaker train their models on ``torchaudio.compliance.kaldi.fbank`` (a port of
Kaldi's ``compute-fbank-feats``) followed by per-utterance cepstral mean normalisation (CMN); a
model only works on the features it was trained on, so this module computes the same thing:

- frames of ``frame_length_ms`` every ``frame_shift_ms`` (25 / 10 ms), "snip edges" (only whole
  frames; ``1 + (n - frame) // shift`` of them);
- dither 0 (deterministic; both recipes extract embeddings without dither);
- each frame: DC offset removed, pre-emphasis 0.97 (the first sample against itself), the window
  (``povey`` = Hann ** 0.85, Kaldi's default and 3D-Speaker's; ``hamming`` for WeSpeaker), zero
  padded to the next power of two (512 samples at 16 kHz, 256 at 8 kHz);
- power spectrum through ``num_mel_bins`` triangular filters equally spaced on Kaldi's mel scale
  (1127 ln(1 + f / 700)) from ``low_freq_hz`` (20 Hz) to Nyquist (``high_freq_hz`` <= 0 counts back
  from Nyquist), natural log floored at float32's epsilon;
- no energy coefficient (``use_energy`` false in both recipes; Kaldi's ``energy_floor`` applies only
  to that coefficient, so it has no effect here);
- CMN: the mean of each bin over the utterance's frames subtracted (no variance normalisation).

Samples are taken as given times ``sample_scale``: WeSpeaker scales [-1, 1] audio to the int16 range
(32768), 3D-Speaker does not (1.0). After CMN the scale only matters where a bin reaches the log
floor (silence), but a model trained at one scale should be fed at that scale.

The numbers match ``torchaudio.compliance.kaldi.fbank`` and ``kaldi-native-fbank`` to float32
rounding (``tests/test_fbank.py`` compares them; the README section "ONNX speaker models" gives the
measured differences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular")
"""Kaldi's window functions this module computes (``blackman`` is not used by either recipe)."""

LOG_FLOOR = float(np.finfo(np.float32).eps)
"""Mel energies below this are raised to it before the log (Kaldi: numeric_limits<float>::epsilon())."""

PREEMPHASIS = 0.97
"""Kaldi's default pre-emphasis coefficient (both recipes keep it)."""


@dataclass(frozen=True)
class FbankOptions:
    """How features are computed; the defaults are Kaldi's (and 3D-Speaker's).

    Attributes:
        num_mel_bins: mel filters (feature dimension), 80 for WeSpeaker and 3D-Speaker models.
        frame_length_ms: frame length (ms).
        frame_shift_ms: step between frames (ms).
        window_type: one of :data:`WINDOW_TYPES`: "povey" (3D-Speaker, Kaldi's default), "hamming" (WeSpeaker).
        sample_scale: factor applied to the [-1, 1] samples first: 1.0 (3D-Speaker) or 32768.0 (WeSpeaker).
        low_freq_hz: lowest filter edge (Hz).
        high_freq_hz: highest filter edge (Hz); <= 0 means Nyquist plus this value.
        cmn: subtract each bin's mean over the utterance's frames.
    """

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "povey"
    sample_scale: float = 1.0
    low_freq_hz: float = 20.0
    high_freq_hz: float = 0.0
    cmn: bool = True

    def __post_init__(self) -> None:
        numbers = {
            "num_mel_bins": (self.num_mel_bins, 4, 512),
            "frame_length_ms": (self.frame_length_ms, 1.0, 200.0),
            "frame_shift_ms": (self.frame_shift_ms, 1.0, 200.0),
            "sample_scale": (self.sample_scale, 1e-6, 1e9),
            "low_freq_hz": (self.low_freq_hz, 0.0, 96000.0),
            "high_freq_hz": (self.high_freq_hz, -96000.0, 96000.0),
        }
        for name, (value, lo, hi) in numbers.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not lo <= value <= hi:
                raise UsageError(f"fbank setting {name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
        if int(self.num_mel_bins) != self.num_mel_bins:
            raise UsageError(f"fbank setting num_mel_bins must be a whole number, got {self.num_mel_bins!r}")
        if self.window_type not in WINDOW_TYPES:
            raise UsageError(
                f"fbank setting window_type must be one of {', '.join(WINDOW_TYPES)}, got {self.window_type!r}"
            )
        if not isinstance(self.cmn, bool):
            raise UsageError(f"fbank setting cmn must be true or false, got {self.cmn!r}")


class Fbank:
    """Log mel filterbank features of equal-length utterances at one sample rate.

    Args:
        sample_rate: samples per second of the audio it is given (the model's rate).
        options: how to compute them.

    Raises:
        UsageError: a frame shorter than 2 samples, or filter edges outside (0, Nyquist].
    """

    def __init__(self, sample_rate: int, options: FbankOptions | None = None) -> None:
        self.sample_rate = int(sample_rate)
        self.options = options or FbankOptions()
        o = self.options
        self.frame_samples = int(self.sample_rate * o.frame_length_ms * 0.001)
        self.shift_samples = int(self.sample_rate * o.frame_shift_ms * 0.001)
        if self.frame_samples < 2 or self.shift_samples < 1:
            raise UsageError(
                f"fbank frames of {o.frame_length_ms:g} ms every {o.frame_shift_ms:g} ms at {self.sample_rate} Hz "
                "are too short; use Kaldi's 25 ms / 10 ms"
            )
        self.fft_size = 1 << (self.frame_samples - 1).bit_length()
        self.window = window_function(o.window_type, self.frame_samples).astype(np.float32)
        self.mel = mel_banks(o.num_mel_bins, self.fft_size, self.sample_rate, o.low_freq_hz, o.high_freq_hz)
        # each filter weight twice, for the real and imaginary parts of a complex64 spectrum viewed as float32
        # pairs: the squared view times this is the power spectrum through the filters in one matrix product
        self._mel_pairs = np.ascontiguousarray(np.repeat(self.mel.T, 2, axis=0))

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi makes of ``num_samples`` samples (snip edges): 0 when shorter than one frame."""
        if num_samples < self.frame_samples:
            return 0
        return 1 + (num_samples - self.frame_samples) // self.shift_samples

    def __call__(self, utterances: np.ndarray) -> np.ndarray:
        """Features of a batch of equal-length utterances.

        Args:
            utterances: float, shape (n, samples) or (samples,), at ``sample_rate``, amplitude in [-1, 1].

        Returns:
            float32, shape (n, frames, num_mel_bins) (or (frames, num_mel_bins) for one utterance):
            natural-log mel energies, mean-normalised over each utterance's frames when ``cmn``.

        Raises:
            UsageError: an utterance shorter than one frame.
        """
        x = np.asarray(utterances, dtype=np.float32)
        one = x.ndim == 1
        x = np.atleast_2d(x)
        frames = self.num_frames(x.shape[1])
        if frames == 0:
            raise UsageError(
                f"{x.shape[1]} samples at {self.sample_rate} Hz are shorter than one fbank frame "
                f"({self.frame_samples} samples)"
            )
        x = x * np.float32(self.options.sample_scale)
        view = np.lib.stride_tricks.sliding_window_view(x, self.frame_samples, axis=1)
        framed = view[:, : (frames - 1) * self.shift_samples + 1 : self.shift_samples]  # (n, frames, frame)
        framed = framed - framed.mean(axis=2, keepdims=True)
        emphasised = framed.copy()
        emphasised[..., 1:] -= np.float32(PREEMPHASIS) * framed[..., :-1]
        emphasised[..., 0] *= np.float32(1.0 - PREEMPHASIS)  # the first sample against itself
        emphasised *= self.window
        out = log_mel(emphasised, self.fft_size, self._mel_pairs)
        if self.options.cmn:
            out -= out.mean(axis=1, keepdims=True)
        return out[0] if one else out


def log_mel(framed: np.ndarray, fft_size: int, mel_pairs: np.ndarray) -> np.ndarray:
    """Log mel energies of windowed frames (..., frame) zero-padded to ``fft_size``; float32 (..., bins).

    ``mel_pairs`` is :func:`mel_banks` transposed with every row repeated, shape (fft_size + 2, bins):
    it weights the real and imaginary part of each FFT bin alike.
    """
    import scipy.fft

    spectrum = scipy.fft.rfft(np.asarray(framed, np.float32), n=fft_size, axis=-1)
    pairs = spectrum.view(np.float32)  # (..., 2 * (fft_size // 2 + 1)): re, im, re, im, ...
    pairs = pairs * pairs
    energies = (pairs.reshape(-1, pairs.shape[-1]) @ mel_pairs).reshape(*pairs.shape[:-1], mel_pairs.shape[1])
    return np.log(np.maximum(energies, np.float32(LOG_FLOOR)), dtype=np.float32)


def window_function(window_type: str, size: int) -> np.ndarray:
    """Kaldi's frame window of ``size`` samples (symmetric), float64.

    Raises:
        UsageError: a window type not in :data:`WINDOW_TYPES`.
    """
    n = np.arange(size, dtype=np.float64)
    cosine = np.cos(2.0 * np.pi * n / (size - 1))
    if window_type == "hanning":
        return 0.5 - 0.5 * cosine
    if window_type == "povey":
        return (0.5 - 0.5 * cosine) ** 0.85
    if window_type == "hamming":
        return 0.54 - 0.46 * cosine
    if window_type == "rectangular":
        return np.ones(size)
    raise UsageError(f"window_type must be one of {', '.join(WINDOW_TYPES)}, got {window_type!r}")


def mel_scale(freq_hz: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(freq_hz, dtype=np.float64) / 700.0)


def mel_banks(num_bins: int, fft_size: int, sample_rate: int, low_freq_hz: float, high_freq_hz: float) -> np.ndarray:
    """Kaldi's triangular mel filters over the power spectrum's ``fft_size // 2 + 1`` bins.

    The filters are equally spaced on the mel scale between ``low_freq_hz`` and ``high_freq_hz``
    (<= 0: Nyquist plus it); each rises from its left edge to its centre and falls to its right edge
    in mel; the Nyquist bin is given weight 0, as in Kaldi.

    Returns:
        float32, shape (num_bins, fft_size // 2 + 1).

    Raises:
        UsageError: edges not within (0, Nyquist] with low < high.
    """
    nyquist = 0.5 * sample_rate
    high = high_freq_hz + nyquist if high_freq_hz <= 0.0 else high_freq_hz
    if not (0.0 <= low_freq_hz < nyquist and 0.0 < high <= nyquist and low_freq_hz < high):
        raise UsageError(
            f"fbank filters from {low_freq_hz:g} Hz to {high:g} Hz do not fit in 0..{nyquist:g} Hz (Nyquist at "
            f"{sample_rate} Hz); fix low_freq_hz / high_freq_hz"
        )
    mel_low, mel_high = float(mel_scale(low_freq_hz)), float(mel_scale(high))
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + delta * np.arange(num_bins + 2, dtype=np.float64)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    mel = mel_scale(sample_rate / fft_size * np.arange(fft_size // 2, dtype=np.float64))[None, :]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.concatenate([banks, np.zeros((num_bins, 1))], axis=1).astype(np.float32)
