"""The telephone channel: band and G.711 codec.

Used to *match* channels: a wideband enrollment is passed through the call's band
(:func:`telephone_band`, then :func:`mu_law`) before it is embedded, so enrollment and call are
compared in the same band (:func:`voicecheck.pipeline.to_narrow`). Simulated calls for samples and
benchmarks (noise, turns, stereo files) are experiment code: ``recipes/simulate.py``.

Samples are mono float32 in [-1, 1], shape (n,). Only numpy, scipy.signal and librosa are used.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

CALL_SAMPLE_RATE = 8000
"""Rate of telephone calls (G.711 narrowband), samples per second."""

TELEPHONE_LOW_HZ = 300.0
TELEPHONE_HIGH_HZ = 3400.0

_BAND_ORDER = 6  # Butterworth prototype order; the band-pass has twice this, filtfilt doubles it.


def as_mono(samples: np.ndarray, what: str = "samples") -> np.ndarray:
    """A mono signal checked and copied for arithmetic.

    Args:
        samples: audio, shape (n,) with n >= 1, any numeric dtype, finite.
        what: the argument's name, for the error message.

    Returns:
        float64 copy, shape (n,).

    Raises:
        UsageError: not one-dimensional, empty, not numeric, or NaN / infinite values.
    """
    x = np.asarray(samples)
    if x.ndim != 1:
        raise UsageError(f"{what} must be mono with shape (n,), got shape {x.shape}; pick one channel first.")
    if x.size == 0:
        raise UsageError(f"{what} is empty (0 samples); pass at least one sample of audio.")
    if not np.issubdtype(x.dtype, np.number):
        raise UsageError(f"{what} must be numeric, got dtype {x.dtype}.")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{what} contains NaN or infinite values; clean the audio first.")
    return x


def check_rate(rate: int, what: str = "sample_rate") -> int:
    """``rate`` as a positive int (Hz), or UsageError naming ``what`` (bool and float refused)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise UsageError(f"{what} must be a positive integer (Hz), got {rate!r}.")
    return int(rate)


def telephone_band(
    samples: np.ndarray,
    sample_rate: int,
    out_rate: int = CALL_SAMPLE_RATE,
    low_hz: float = TELEPHONE_LOW_HZ,
    high_hz: float = TELEPHONE_HIGH_HZ,
) -> np.ndarray:
    """Band-limit to the telephone band and resample.

    A zero-phase Butterworth band-pass (scipy ``sosfiltfilt``) at ``sample_rate``, then librosa's
    soxr resampler to ``out_rate``. Zero-phase keeps speech onsets where they were, so times
    measured on the output match the input.

    Args:
        samples: mono audio, shape (n,), float in [-1, 1].
        sample_rate: rate of ``samples`` in Hz, > 0.
        out_rate: rate of the result in Hz, > 0 (default 8000).
        low_hz: lower band edge in Hz, 0 < low_hz < high_hz.
        high_hz: upper band edge in Hz, below half of both ``sample_rate`` and ``out_rate``.

    Returns:
        float32, shape (round(n * out_rate / sample_rate),), at ``out_rate``.

    Raises:
        UsageError: empty or non-mono input, non-positive rates, or band edges that do not fit.
    """
    import librosa
    from scipy import signal

    x = as_mono(samples)
    sample_rate = check_rate(sample_rate)
    out_rate = check_rate(out_rate, "out_rate")
    nyquist = min(sample_rate, out_rate) / 2.0
    if not (0.0 < low_hz < high_hz < nyquist):
        raise UsageError(
            f"telephone band {low_hz}-{high_hz} Hz must satisfy 0 < low_hz < high_hz < {nyquist} Hz "
            f"(half of the lower of sample_rate={sample_rate} and out_rate={out_rate})."
        )
    sos = signal.butter(_BAND_ORDER, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    # sosfiltfilt pads by a few filter lengths; short inputs need a shorter pad.
    padlen = min(3 * (2 * len(sos) + 1), x.size - 1)
    filtered = signal.sosfiltfilt(sos, x, padlen=padlen)
    if out_rate != sample_rate:
        filtered = librosa.resample(filtered, orig_sr=sample_rate, target_sr=out_rate, res_type="soxr_hq")
    return np.asarray(np.clip(filtered, -1.0, 1.0), dtype=np.float32)


# --- G.711 -----------------------------------------------------------------------------------
# The segmented (piecewise-linear) G.711 companding laws as in ITU-T G.711 and the classic Sun
# g711.c, applied to samples scaled to 16-bit. Encode and decode are done in one step: the 8-bit
# code words themselves are never needed, only the distortion they cause.

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int64)


def mu_law(samples: np.ndarray) -> np.ndarray:
    """G.711 mu-law encode then decode (8 bits per sample), to simulate the codec's distortion.

    Args:
        samples: mono audio, shape (n,), float in [-1, 1] (values outside are clipped).

    Returns:
        float32, shape (n,), in [-1, 1]: the signal as a G.711 mu-law decoder would give it back.
        The error is about 1/32768 near silence and grows to ~3 % of the amplitude at full scale.

    Raises:
        UsageError: empty or non-mono input.
    """
    pcm = _to_int16(as_mono(samples))
    negative = pcm < 0
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP) + _ULAW_BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int64) - 7  # segment 0..7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    decoded = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    decoded = np.where(negative, -decoded, decoded)
    return np.asarray(decoded / 32768.0, dtype=np.float32)


def a_law(samples: np.ndarray) -> np.ndarray:
    """G.711 A-law encode then decode (8 bits per sample), to simulate the codec's distortion.

    Args:
        samples: mono audio, shape (n,), float in [-1, 1] (values outside are clipped).

    Returns:
        float32, shape (n,), in [-1, 1]: the signal as a G.711 A-law decoder would give it back.

    Raises:
        UsageError: empty or non-mono input.
    """
    pcm = _to_int16(as_mono(samples)) >> 3  # 13-bit
    negative = pcm < 0
    magnitude = np.where(negative, -pcm - 1, pcm)  # 0..4095
    segment = np.zeros_like(magnitude)
    big = magnitude >= 32
    segment[big] = np.floor(np.log2(magnitude[big])).astype(np.int64) - 4  # 1..7
    step = np.maximum(segment, 1)
    mantissa = (magnitude >> step) & 0x0F
    # Decode to the middle of the quantisation interval.
    level = (mantissa << 4) + 8
    level = np.where(segment >= 1, level + 0x100, level)
    level = np.where(segment >= 2, level << (segment - 1), level)
    decoded = np.where(negative, -level, level)
    return np.asarray(decoded / 32768.0, dtype=np.float32)
