"""The telephone channel: band, G.711 codec, noise, and two-party stereo calls.

Used two ways:

* to *match* channels: a wideband enrollment is passed through the call's band
  (:func:`telephone_band`, optionally :func:`mu_law`) before it is embedded, so enrollment and
  call are compared in the same band;
* to *simulate* calls for samples and benchmarks (:func:`simulate_call_side`, :func:`make_call`,
  :func:`write_call`).

Samples are mono float32 in [-1, 1], shape (n,), unless said otherwise; stereo calls are
shape (n, 2). Only numpy, scipy.signal, librosa and soundfile are used.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import UsageError

Codec = Literal["ulaw", "alaw", "none"]

CALL_SAMPLE_RATE = 8000
"""Rate of simulated calls (G.711 narrowband), samples per second."""

TELEPHONE_LOW_HZ = 300.0
TELEPHONE_HIGH_HZ = 3400.0

NOMINAL_SPEECH_POWER = 10.0 ** (-26.0 / 10.0)
"""Mean-square level of active speech at the nominal -26 dBov (full scale = 1.0), used as the
reference for line noise on a channel that carries no speech at all."""

_BAND_ORDER = 6  # Butterworth prototype order; the band-pass has twice this, filtfilt doubles it.
_ACTIVE_FRAME = 256  # samples per frame when measuring active power
_ACTIVE_RANGE_DB = 30.0  # frames within this many dB of the loudest count as active
_SNR_RANGE_DB = (10.0, 30.0)
_GAP_RANGE_S = (0.3, 1.0)


def _as_mono(samples: np.ndarray, what: str = "samples") -> np.ndarray:
    """Validate a mono signal and return it as a float64 working copy."""
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


def _check_rate(rate: int, what: str = "sample_rate") -> int:
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

    x = _as_mono(samples)
    sample_rate = _check_rate(sample_rate)
    out_rate = _check_rate(out_rate, "out_rate")
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
    pcm = _to_int16(_as_mono(samples))
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
    pcm = _to_int16(_as_mono(samples)) >> 3  # 13-bit
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


_CODECS = {"ulaw": mu_law, "alaw": a_law}


# --- noise -----------------------------------------------------------------------------------


def active_power(samples: np.ndarray) -> float:
    """Mean-square level of the active (non-silent) part of a signal.

    The signal is cut into 256-sample frames; frames within 30 dB of the loudest frame count as
    active. A stationary signal's active power is its mean square; speech with pauses is not
    diluted by the pauses.

    Args:
        samples: mono audio, shape (n,).

    Returns:
        Mean square of the active frames (full scale = 1.0), >= 0; 0.0 for an all-zero signal.

    Raises:
        UsageError: empty or non-mono input.
    """
    x = _as_mono(samples)
    n_frames = max(1, x.size // _ACTIVE_FRAME)
    frames = x[: n_frames * _ACTIVE_FRAME] if x.size >= _ACTIVE_FRAME else x
    power = np.mean(frames.reshape(n_frames, -1) ** 2, axis=1)
    loudest = float(power.max())
    if loudest <= 0.0:
        return 0.0
    active = power >= loudest * 10.0 ** (-_ACTIVE_RANGE_DB / 10.0)
    return float(power[active].mean())


def _pinkish_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise with a 1/f power spectrum (-3 dB/octave), unit mean square."""
    white = rng.standard_normal(n)
    if n < 4:
        return white / max(float(np.sqrt(np.mean(white**2))), 1e-12)
    spectrum = np.fft.rfft(white)
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    spectrum /= np.sqrt(freqs)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def add_noise(
    samples: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    *,
    reference_power: float | None = None,
) -> np.ndarray:
    """Add pink-ish (1/f) noise at a given signal-to-noise ratio.

    The noise's mean square is set exactly to ``reference / 10**(snr_db / 10)`` where the
    reference is the signal's active power (see :func:`active_power`), so pauses in speech do not
    lower the noise level.

    Args:
        samples: mono audio, shape (n,), float in [-1, 1].
        snr_db: signal-to-noise ratio in dB (any finite value).
        rng: source of randomness; the same seed gives the same noise.
        reference_power: mean-square level to measure the SNR against instead of the signal's
            active power, e.g. :data:`NOMINAL_SPEECH_POWER` for a channel with no speech.

    Returns:
        float32, shape (n,), clipped to [-1, 1].

    Raises:
        UsageError: empty input, non-finite ``snr_db``, or a silent signal without
            ``reference_power``.
    """
    x = _as_mono(samples)
    if not np.isfinite(snr_db):
        raise UsageError(f"snr_db must be a finite number of dB, got {snr_db!r}.")
    if reference_power is None:
        reference = active_power(x)
        if reference <= 0.0:
            raise UsageError(
                "cannot set an SNR relative to a silent signal (active power 0); "
                "pass reference_power, e.g. channel.NOMINAL_SPEECH_POWER."
            )
    else:
        if not (np.isfinite(reference_power) and reference_power > 0.0):
            raise UsageError(f"reference_power must be > 0, got {reference_power!r}.")
        reference = float(reference_power)
    noise_power = reference / 10.0 ** (float(snr_db) / 10.0)
    noisy = x + _pinkish_noise(x.size, rng) * np.sqrt(noise_power)
    return np.asarray(np.clip(noisy, -1.0, 1.0), dtype=np.float32)


# --- calls -----------------------------------------------------------------------------------


def simulate_call_side(
    samples: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    snr_db: float | None = None,
    codec: Codec = "ulaw",
) -> np.ndarray:
    """One side of a phone call: telephone band at 8 kHz, background noise, G.711 codec.

    Args:
        samples: mono audio, shape (n,), float in [-1, 1], at ``sample_rate``. May be all zeros
            (a silent line): the noise is then set against the nominal -26 dBov speech level.
        sample_rate: rate of ``samples`` in Hz, > 0 (at least 8000 for the 300-3400 Hz band).
        rng: source of randomness for the noise (and the SNR when ``snr_db`` is None).
        snr_db: SNR in dB; None draws it uniformly from [10, 30).
        codec: "ulaw" (G.711 mu-law), "alaw" (G.711 A-law) or "none".

    Returns:
        float32, shape (round(n * 8000 / sample_rate),), at 8000 Hz, in [-1, 1].

    Raises:
        UsageError: bad arguments (empty input, non-positive rate, unknown codec).
    """
    if codec not in ("ulaw", "alaw", "none"):
        raise UsageError(f"codec must be 'ulaw', 'alaw' or 'none', got {codec!r}.")
    band = telephone_band(samples, sample_rate, out_rate=CALL_SAMPLE_RATE)
    if snr_db is None:
        snr_db = float(rng.uniform(*_SNR_RANGE_DB))
    reference = NOMINAL_SPEECH_POWER if active_power(band) <= 0.0 else None
    noisy = add_noise(band, snr_db, rng, reference_power=reference)
    if codec == "none":
        return noisy
    return _CODECS[codec](noisy)


@dataclass(frozen=True)
class CallTurn:
    """One stretch of one side's audio placed in a simulated call.

    Attributes:
        channel: channel index in the stereo call (0 or 1).
        role: "customer" or "collector".
        start_s: where the turn starts in the call, seconds.
        end_s: where it ends in the call, seconds.
        source_start_s: where the turn's audio starts in that side's input signal, seconds.
    """

    channel: int
    role: str
    start_s: float
    end_s: float
    source_start_s: float


def _split_points(x: np.ndarray, sample_rate: int, n_chunks: int) -> list[int]:
    """Cut points (sample indices, with 0 and len) that split ``x`` into ``n_chunks`` turns.

    Each inner cut is moved to the quietest 20 ms frame within 1 s of its even split position, so
    turns tend to end in pauses rather than mid-word.
    """
    n = x.size
    cuts = [0]
    frame = max(1, int(0.02 * sample_rate))
    reach = int(1.0 * sample_rate)
    for k in range(1, n_chunks):
        target = k * n // n_chunks
        lo = max(cuts[-1] + frame, target - reach)
        hi = min(n - frame, target + reach)
        if hi - lo < frame:
            cuts.append(target)
            continue
        starts = np.arange(lo, hi - frame + 1, frame)
        energy = np.array([np.mean(x[s : s + frame] ** 2) for s in starts])
        best = int(starts[int(np.argmin(energy))])
        cuts.append(best + frame // 2)
    cuts.append(n)
    return cuts


def _n_turns(duration_s: float, turn_s: float, most: int) -> int:
    return int(np.clip(round(duration_s / turn_s), 1, most))


def make_call_with_turns(
    customer: np.ndarray,
    collector: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    snr_db: float | None = None,
    customer_channel: int = 1,
    codec: Codec = "ulaw",
) -> tuple[np.ndarray, list[CallTurn]]:
    """Like :func:`make_call`, and also says where each turn was placed.

    Returns:
        (stereo, turns): the call as in :func:`make_call`, and the turns in call order.
    """
    cust = _as_mono(customer, "customer")
    coll = _as_mono(collector, "collector")
    sample_rate = _check_rate(sample_rate)
    if sample_rate < CALL_SAMPLE_RATE:
        raise UsageError(f"sample_rate must be at least {CALL_SAMPLE_RATE} Hz to simulate a call, got {sample_rate}.")
    if customer_channel not in (0, 1):
        raise UsageError(f"customer_channel must be 0 or 1, got {customer_channel!r}.")
    collector_channel = 1 - customer_channel

    coll_cuts = _split_points(coll, sample_rate, _n_turns(coll.size / sample_rate, 1.5, 4))
    cust_cuts = _split_points(cust, sample_rate, _n_turns(cust.size / sample_rate, 4.0, 5))
    queues = {
        "collector": list(itertools.pairwise(coll_cuts)),
        "customer": list(itertools.pairwise(cust_cuts)),
    }
    signals = {"collector": coll, "customer": cust}
    channels = {"collector": collector_channel, "customer": customer_channel}

    # Lay the turns out at the input rate: collector first, then alternate; a side that has run
    # out of turns lets the other carry on.
    placed: list[tuple[str, int, int, int]] = []  # role, call start, source start, source end
    position = int(rng.uniform(0.3, 0.8) * sample_rate)
    role = "collector"
    while queues["collector"] or queues["customer"]:
        if not queues[role]:
            role = "customer" if role == "collector" else "collector"
        start, end = queues[role].pop(0)
        placed.append((role, position, start, end))
        position += end - start + int(rng.uniform(*_GAP_RANGE_S) * sample_rate)
        role = "customer" if role == "collector" else "collector"
    total = position

    tracks = {name: np.zeros(total, dtype=np.float64) for name in signals}
    for name, at, start, end in placed:
        tracks[name][at : at + end - start] = signals[name][start:end]

    sides = {
        name: simulate_call_side(tracks[name], sample_rate, rng, snr_db=snr_db, codec=codec)
        for name in ("collector", "customer")
    }
    length = min(side.size for side in sides.values())
    stereo = np.zeros((length, 2), dtype=np.float32)
    for name, side in sides.items():
        stereo[:, channels[name]] = side[:length]

    turns = [
        CallTurn(
            channel=channels[name],
            role=name,
            start_s=at / sample_rate,
            end_s=(at + end - start) / sample_rate,
            source_start_s=start / sample_rate,
        )
        for name, at, start, end in placed
    ]
    return stereo, turns


def make_call(
    customer: np.ndarray,
    collector: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    snr_db: float | None = None,
    customer_channel: int = 1,
) -> np.ndarray:
    """Simulate a two-party stereo phone call, one speaker per channel.

    Each side is split into a few turns at quiet points (collector turns of ~1.5 s, at most 4;
    customer turns of ~4 s, at most 5). The collector speaks first, then the sides alternate with
    0.3-1.0 s gaps, so while one side talks the other carries only line noise. Each channel then
    goes through :func:`simulate_call_side` (telephone band, noise, mu-law).

    Args:
        customer: customer speech, mono, shape (n,), at ``sample_rate``. All zeros gives a
            silent customer line (noise only).
        collector: collector (agent) speech, mono, shape (m,), at ``sample_rate``.
        sample_rate: rate of both inputs in Hz, >= 8000.
        rng: source of randomness (turn gaps, SNR, noise); fix its seed for a repeatable call.
        snr_db: SNR of both sides in dB; None draws one per side from [10, 30).
        customer_channel: channel index (0 or 1) of the customer; the collector gets the other.

    Returns:
        float32, shape (k, 2), at 8000 Hz, in [-1, 1]; k is about
        (n + m) * 8000 / sample_rate plus the gaps.

    Raises:
        UsageError: empty or non-mono input, a rate below 8000 Hz, a channel other than 0 or 1.
    """
    stereo, _ = make_call_with_turns(
        customer,
        collector,
        sample_rate,
        rng,
        snr_db=snr_db,
        customer_channel=customer_channel,
    )
    return stereo


def write_call(
    path: str | Path,
    stereo: np.ndarray,
    sample_rate: int = CALL_SAMPLE_RATE,
    subtype: str = "ULAW",
) -> Path:
    """Write a call as a WAV file (G.711 mu-law by default).

    Args:
        path: output file; parent folders are created.
        stereo: float audio in [-1, 1], shape (n, channels) or (n,) for mono.
        sample_rate: rate of ``stereo`` in Hz, > 0.
        subtype: soundfile subtype, e.g. "ULAW", "ALAW", "PCM_16".

    Returns:
        The path written.

    Raises:
        UsageError: empty audio, bad shape, non-positive rate, or a subtype WAV cannot hold.
    """
    import soundfile as sf

    sample_rate = _check_rate(sample_rate)
    data = np.asarray(stereo)
    if data.ndim not in (1, 2) or data.size == 0:
        raise UsageError(f"stereo must be non-empty with shape (n,) or (n, channels), got shape {data.shape}.")
    if not sf.check_format("WAV", subtype):
        raise UsageError(f"subtype {subtype!r} cannot be written to WAV; try 'ULAW' or 'PCM_16'.")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(
        str(out),
        np.clip(data, -1.0, 1.0).astype(np.float32),
        sample_rate,
        subtype=subtype,
    )
    return out
