"""Simulated telephone calls: line noise, one call side, two-party stereo calls, WAV files.

Experiment code for the benchmarks and ``scripts/make_samples.py`` (a deployment only matches
channels, with :mod:`voicecheck.channel`). A call side is the product's telephone band
(:func:`voicecheck.channel.telephone_band`: 300-3400 Hz at 8 kHz), pink-ish noise at an SNR drawn
from 10-30 dB, then a G.711 codec (:func:`voicecheck.channel.mu_law` by default).

Samples are mono float32 in [-1, 1], shape (n,), unless said otherwise; stereo calls are
shape (n, 2). Only numpy, scipy.signal, librosa and soundfile are used.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from voicecheck.channel import CALL_SAMPLE_RATE, a_law, as_mono, check_rate, mu_law, telephone_band
from voicecheck.errors import UsageError

Codec = Literal["ulaw", "alaw", "none"]
"""G.711 mu-law, G.711 A-law, or no codec (linear PCM)."""

CODECS = {"ulaw": mu_law, "alaw": a_law}
"""The G.711 codecs by :data:`Codec` name (encode then decode)."""

NOMINAL_SPEECH_POWER = 10.0 ** (-26.0 / 10.0)
"""Mean-square level of active speech at the nominal -26 dBov (full scale = 1.0), used as the
reference for line noise on a channel that carries no speech at all."""

_ACTIVE_FRAME = 256  # samples per frame when measuring active power
_ACTIVE_RANGE_DB = 30.0  # frames within this many dB of the loudest count as active
_SNR_RANGE_DB = (10.0, 30.0)
_GAP_RANGE_S = (0.3, 1.0)


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
    x = as_mono(samples)
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
    x = as_mono(samples)
    if not np.isfinite(snr_db):
        raise UsageError(f"snr_db must be a finite number of dB, got {snr_db!r}.")
    if reference_power is None:
        reference = active_power(x)
        if reference <= 0.0:
            raise UsageError(
                "cannot set an SNR relative to a silent signal (active power 0); "
                "pass reference_power, e.g. recipes.simulate.NOMINAL_SPEECH_POWER."
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
    return CODECS[codec](noisy)


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
    cust = as_mono(customer, "customer")
    coll = as_mono(collector, "collector")
    sample_rate = check_rate(sample_rate)
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

    sample_rate = check_rate(sample_rate)
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


# --- a deployment's own channel: real codecs through libsndfile ---------------------------------

SOUNDFILE_CODECS: dict[str, tuple[str, str]] = {
    "ulaw": ("WAV", "ULAW"),
    "alaw": ("WAV", "ALAW"),
    "gsm": ("WAV", "GSM610"),
    "opus": ("OGG", "OPUS"),
}
"""Codecs libsndfile encodes and decodes (format, subtype): G.711 mu-law and A-law, GSM 6.10 full rate
(13 kbit/s, the 2G mobile codec) and Opus (in Ogg; the bit rate follows ``compression_level``)."""


def codec_round_trip(samples: np.ndarray, codec: str, compression: float = 0.5) -> np.ndarray:
    """Encode 8 kHz mono audio with a real codec (libsndfile) and decode it again.

    Args:
        samples: mono float audio at 8000 Hz, shape (n,), in [-1, 1].
        codec: a key of :data:`SOUNDFILE_CODECS`.
        compression: libsndfile's ``compression_level`` in [0, 1] for Opus (higher = fewer bits).

    Returns:
        float32, shape (n,) (the decoder's output trimmed or zero-padded to the input length).

    Raises:
        UsageError: an unknown codec.
    """
    import io

    import soundfile as sf

    if codec not in SOUNDFILE_CODECS:
        raise UsageError(f"codec must be one of {', '.join(SOUNDFILE_CODECS)}, got {codec!r}.")
    fmt, subtype = SOUNDFILE_CODECS[codec]
    x = np.clip(as_mono(samples), -1.0, 1.0).astype(np.float32)
    buf = io.BytesIO()
    extra = {"compression_level": float(compression)} if codec == "opus" else {}
    sf.write(buf, x, CALL_SAMPLE_RATE, format=fmt, subtype=subtype, **extra)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    out = np.zeros(x.size, np.float32)
    out[: min(x.size, y.size)] = y[: x.size]
    return out


@dataclass(frozen=True)
class LenderChannel:
    """One draw of a deployment's call channel (another channel than :func:`simulate_call_side`'s).

    Attributes:
        codec: a key of :data:`SOUNDFILE_CODECS`.
        compression: Opus compression level (ignored by the other codecs).
        level_db: active speech level after the handset, dB re full scale (-35..-12).
        snr_db: speech to line noise, dB.
        tilt: first-order handset tilt coefficient (y[n] = x[n] - tilt * x[n-1]; > 0 thins the bass).
    """

    codec: str
    compression: float
    level_db: float
    snr_db: float
    tilt: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> LenderChannel:
        """Codec: GSM 40%, Opus 30%, A-law 15%, mu-law 15%; level -35..-12 dBFS; SNR 5..25 dB; tilt -0.4..0.9."""
        codec = str(rng.choice(["gsm", "opus", "alaw", "ulaw"], p=[0.4, 0.3, 0.15, 0.15]))
        return cls(
            codec=codec,
            compression=float(rng.uniform(0.6, 1.0)),
            level_db=float(rng.uniform(-35.0, -12.0)),
            snr_db=float(rng.uniform(5.0, 25.0)),
            tilt=float(rng.uniform(-0.4, 0.9)),
        )

    def apply(self, samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """The call side as this channel delivers it: telephone band at 8 kHz, handset tilt, level,
        pink-ish line noise, codec. Returns float32 at 8000 Hz."""
        from scipy.signal import lfilter

        band = telephone_band(samples, sample_rate, out_rate=CALL_SAMPLE_RATE)
        shaped = lfilter([1.0, -self.tilt], [1.0], band).astype(np.float32)
        power = active_power(shaped)
        if power > 0:
            shaped = shaped * np.float32(np.sqrt(10.0 ** (self.level_db / 10.0) / power))
        reference = 10.0 ** (self.level_db / 10.0)
        noisy = add_noise(shaped, self.snr_db, rng, reference_power=reference)
        return codec_round_trip(noisy, self.codec, self.compression)
