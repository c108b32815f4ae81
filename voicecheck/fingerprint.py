"""Acoustic fingerprints of customer speech, to catch a replayed recording (issue 15, item 1).

A proxy agent who cannot make the borrower speak can *play* the borrower's voice: an earlier call
or the borrower's enrollment. The voices then match perfectly, but the audio recurs: speech that was
recorded once does not come back spectrogram-for-spectrogram in another call. This module makes a
compact fingerprint of a recording's speech that survives a loudspeaker and a room, a telephone
channel (300-3400 Hz, 8 kHz, G.711, GSM 6.10, Opus), level changes, noise and re-encoding:

* the audio is resampled to 8 kHz, so a wideband enrollment and a narrowband call meet in one band;
* a log-power spectrogram (32 ms Hann windows every 10 ms) is searched for *landmarks*: local
  maxima in time and frequency inside the telephone band that stand out from their surroundings
  and from the recording's noise floor (all relative measures, so the level does not matter);
* landmarks are hashed in pairs (anchor frequency, target frequency, time between them), as
  audio-identification systems do (Wang 2003, "An industrial-strength audio search algorithm";
  Ellis' audfprint). Each hash keeps the time of its anchor in the recording's own time axis.

Matching and the index live in :mod:`voicecheck.replay`. Only numpy and scipy are used; nothing
runs at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from .errors import VoicecheckError
from .jit import compiled
from .types import SpeechRegion

log = logging.getLogger(__name__)

FINGERPRINT_SAMPLE_RATE = 8000
"""Rate (Hz) every recording is brought to before it is fingerprinted."""

FINGERPRINT_VERSION = "landmarks-v1"
"""Stored with every index: fingerprints of different versions never meet."""

N_FFT = 256
"""Samples per analysis window at 8 kHz (32 ms); bins are 31.25 Hz apart."""

HOP = 80
"""Samples between windows at 8 kHz (10 ms): the time resolution of every offset."""

HOP_S = HOP / FINGERPRINT_SAMPLE_RATE

LOW_HZ, HIGH_HZ = 300.0, 3400.0
"""Landmarks are looked for in the telephone band only."""

_FREQ_BITS, _DT_BITS, _TRIPLET_DT_BITS = 7, 6, 5
PAIR_HASH_BITS = 2 * _FREQ_BITS + _DT_BITS
"""Bits of one pair hash: anchor bin (7), target bin (7), time between them (6)."""
TRIPLET_HASH_BITS = 3 * _FREQ_BITS + 2 * _TRIPLET_DT_BITS
"""Bits of one triplet hash: anchor bin, two target bins (7 each), two times (5 each)."""


REGION_PAD_S = 1.0
"""Seconds each speech region is widened by, either side, for the *query* fingerprint of a call or
recording (:func:`padded_regions`; :func:`voicecheck.replaycheck.fingerprint_call`, which every product
path goes through). The stored fingerprint keeps the VAD's regions as they are."""

REGION_BRIDGE_S = 0.0
"""... and gaps of at most this many seconds left between the query's widened regions are closed (0: none).

Silero keeps little of a replay played through a loudspeaker and a room as speech, so widening the query
catches more replays (non-EVAL product path: 87.3% -> 91.7% of those >= 5 s; EVAL 61/65 -> 62/65).
Widening *both* sides also fingerprinted non-speech that recurs from call to call -- a jingle, a tone, a
phone's sound effect -- and marked up to 133 of 170 pairs of one borrower's honest calls sharing a sound
``replay``; widening the query only stores no such sound to be found again (0 of 170, at most 9 hits at
a rule of 15). Chosen by the rules written before each run in benchmarks/results/replay_recurring.md."""

_MARGIN_S = 0.2
"""Context kept around speech (s): at least the peak and prominence half-widths (``_margin_frames``),
so a landmark sees the same surroundings as in a spectrogram of the whole recording."""


def _margin_frames(hop: int) -> int:
    """:data:`_MARGIN_S` in frames of ``hop`` samples (20 at 10 ms)."""
    return int(round(_MARGIN_S * FINGERPRINT_SAMPLE_RATE / hop))


class FingerprintError(VoicecheckError):
    """Audio that cannot be fingerprinted: empty, non-finite, too short or without landmarks.

    A call that raises this was NOT checked for replay; it must never be reported as "no replay".
    """

    code = "replay_not_checked"


@dataclass(frozen=True)
class FingerprintParams:
    """How landmarks are picked, paired and hashed.

    Picking and pairing (the first group) may differ between the fingerprint a call is *looked up*
    with and the one it is *stored* with: a denser query finds more of a sparser stored set (as
    audfprint does). Hashing (the second group) must be the same on both sides: :meth:`hash_key`
    names it and an index refuses a fingerprint with another.

    Attributes:
        peak_time_frames: a landmark is the largest value within +- this many frames (``hop`` each).
        peak_freq_bins: ... and within +- this many bins (31.25 Hz each).
        min_prominence_db: a landmark stands at least this far above the mean of its
            surroundings (+- ``context_frames`` x +- ``context_bins``).
        min_above_floor_db: ... and this far above the recording's noise floor in its bin (the
            20th percentile over time).
        context_frames: half-width in frames of the surroundings used for prominence.
        context_bins: half-width in bins of the surroundings used for prominence.
        fan_out: each landmark is paired with at most this many later landmarks.
        min_speech_s: less analysed audio than this (s) cannot be fingerprinted.
        max_dt_frames: (hashing) the later landmark is at most this many frames after the anchor.
        max_df_bins: (hashing) ... and at most this many bins above or below it,
        min_df_bins: (hashing) ... and at least this many: a steady tone (ringback, a beep, a hum)
            gives landmarks along one bin only, so it yields no hash and cannot match across calls.
        dt_step_frames: (hashing) the time between the two is hashed in steps of this many frames,
            so a reverberant room that moves a peak by a frame still gives the same hash.
        targets_per_hash: (hashing) 1: a hash per (anchor, target) pair; 2: a hash per anchor and
            two of its targets (see :func:`landmark_hashes`).
        hop: (hashing) samples at 8 kHz between analysis windows (:data:`HOP`: 80 = 10 ms): the grid
            of ``peak_time_frames`` and ``context_frames``. Coarser grids (16, 20, 30 ms, with and
            without refined times) cost 0.7-0.8x but lost replays: benchmarks/results/replay_params.md.
        time_step: (hashing) samples at 8 kHz per unit of a fingerprint's ``frames`` (0: ``hop``): the grid
            of ``max_dt_frames``, ``dt_step_frames``, the match tolerance and every offset a match reports.
            Finer than ``hop`` (a divisor of it), each landmark's time is refined between frames by the
            parabola through its value and its two neighbours along time.
    """

    peak_time_frames: int = 8
    peak_freq_bins: int = 3
    min_prominence_db: float = 9.0
    min_above_floor_db: float = 10.0
    context_frames: int = 15
    context_bins: int = 6
    fan_out: int = 2
    min_speech_s: float = 1.0
    max_dt_frames: int = 50
    max_df_bins: int = 30
    min_df_bins: int = 2
    dt_step_frames: int = 2
    targets_per_hash: int = 1
    hop: int = HOP
    time_step: int = 0

    def __post_init__(self) -> None:
        if self.targets_per_hash not in (1, 2):
            raise FingerprintError(f"targets_per_hash must be 1 (pairs) or 2 (triplets), got {self.targets_per_hash}.")
        bits = _DT_BITS if self.targets_per_hash == 1 else _TRIPLET_DT_BITS
        if not 1 <= self.max_dt_frames // self.dt_step_frames < 2**bits:
            raise FingerprintError(
                f"max_dt_frames // dt_step_frames must be in 1..{2**bits - 1}, got "
                f"{self.max_dt_frames} // {self.dt_step_frames}."
            )
        if isinstance(self.hop, bool) or not isinstance(self.hop, int) or not 1 <= self.hop <= N_FFT:
            raise FingerprintError(f"hop must be an integer number of samples in 1..{N_FFT}, got {self.hop!r}.")
        step = self.time_step
        if isinstance(step, bool) or not isinstance(step, int) or step < 0 or (step and self.hop % step):
            raise FingerprintError(f"time_step must be 0 (the hop) or a divisor of hop {self.hop}, got {step!r}.")
        if max(self.context_frames, self.peak_time_frames) > _margin_frames(self.hop):
            raise FingerprintError(
                f"context_frames and peak_time_frames must be <= {_margin_frames(self.hop)} frames "
                f"({_MARGIN_S} s, the context kept around speech)."
            )
        if self.fan_out < self.targets_per_hash:
            raise FingerprintError(f"fan_out {self.fan_out} must be >= targets_per_hash {self.targets_per_hash}.")
        if self.fan_out < 1 or self.peak_time_frames < 1 or self.peak_freq_bins < 1:
            raise FingerprintError(f"fan_out, peak_time_frames and peak_freq_bins must be >= 1: {self}")

    @property
    def frame_s(self) -> float:
        """Seconds per unit of a fingerprint's ``frames`` (``time_step``, or ``hop`` when 0)."""
        return (self.time_step or self.hop) / FINGERPRINT_SAMPLE_RATE

    @property
    def hash_bits(self) -> int:
        """Bits of one hash value: :data:`PAIR_HASH_BITS` or :data:`TRIPLET_HASH_BITS`."""
        return PAIR_HASH_BITS if self.targets_per_hash == 1 else TRIPLET_HASH_BITS

    def hash_key(self) -> str:
        """Text naming the version and the hashing parameters (stored in an index)."""
        step = self.time_step or self.hop  # landmarks-v1 keys without a hop are on the 10 ms grid
        hop = "" if self.hop == step == 80 else f",hop={self.hop},time_step={step}"
        return (
            f"{FINGERPRINT_VERSION}(targets={self.targets_per_hash},dt<={self.max_dt_frames},"
            f"{self.min_df_bins}<=df<={self.max_df_bins},dt_step={self.dt_step_frames}{hop})"
        )


INDEX_PARAMS = FingerprintParams(fan_out=3)
"""Stored fingerprints (enrollments, calls): ~140 hashes per second of speech. Each anchor is paired
with its 3 nearest targets: chosen among fingerprint variants on the non-EVAL speakers by a rule
written before the run (benchmarks/results/replay_params.md: +1.2 points of replays >= 5 s caught,
1.5x the stored hashes of fan-out 2). The fan-out is not part of the hash, so items stored with
fan-out 2 stay valid (with fewer hashes to match)."""

QUERY_PARAMS = FingerprintParams(min_prominence_db=6.0, fan_out=8)
"""Looked-up fingerprints: ~4x denser than the stored ones, so more of a stored set is found."""


@dataclass(frozen=True)
class Fingerprint:
    """Pair hashes of one recording's speech.

    Attributes:
        hashes: uint32, shape (n,), each < 2**PAIR_HASH_BITS (pairs) or 2**TRIPLET_HASH_BITS
            (triplets); sorted by ``frames``.
        frames: int32, shape (n,), anchor time of each hash in units of ``frame_s`` seconds,
            in the recording's own time axis (frame k starts at k * frame_s).
        duration_s: length of the recording (s).
        analysed_s: seconds of audio the landmarks were looked for in (the speech regions).
        n_landmarks: landmarks found before pairing.
        hash_key: :meth:`FingerprintParams.hash_key` of the parameters used.
        frame_s: seconds per unit of ``frames`` (:attr:`FingerprintParams.frame_s`).
    """

    hashes: np.ndarray
    frames: np.ndarray
    duration_s: float
    analysed_s: float
    n_landmarks: int
    hash_key: str
    frame_s: float = HOP_S

    def __len__(self) -> int:
        return int(self.hashes.size)

    @property
    def times_s(self) -> np.ndarray:
        """Anchor times in seconds, float64, shape (n,)."""
        return self.frames.astype(np.float64) * self.frame_s


def _check_input(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(samples)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 8000:
        raise FingerprintError(
            f"sample_rate must be an integer of at least 8000 Hz, got {sample_rate!r}; "
            "the fingerprint needs the 300-3400 Hz telephone band."
        )
    if x.ndim != 1:
        raise FingerprintError(f"samples must be mono with shape (n,), got shape {x.shape}; pick one channel first.")
    if x.size == 0:
        raise FingerprintError("samples are empty (0 samples): nothing to fingerprint, so replay was not checked.")
    if not np.issubdtype(x.dtype, np.floating):
        raise FingerprintError(f"samples must be float (in [-1, 1]), got dtype {x.dtype}.")
    if not np.isfinite(x.sum()) and not np.all(np.isfinite(x)):  # the sum is finite if all are (unless it overflows)
        raise FingerprintError("samples contain NaN or infinite values; the audio was decoded wrongly, fix it first.")
    return x.astype(np.float32, copy=False)


def _region_mask(regions: list[SpeechRegion] | None, n_frames: int, hop: int = HOP) -> np.ndarray:
    """True for the frames (of ``hop`` samples) whose centre lies in a speech region (all frames without regions)."""
    if regions is None:
        return np.ones(n_frames, dtype=bool)
    centres = (np.arange(n_frames) * hop + N_FFT // 2) / FINGERPRINT_SAMPLE_RATE
    for r in regions:
        if not (np.isfinite(r.start_s) and np.isfinite(r.end_s)) or r.end_s < r.start_s:
            raise FingerprintError(f"speech region {r.start_s}-{r.end_s} s is not a finite, ordered span.")
    if not regions:
        return np.zeros(n_frames, dtype=bool)
    # frames [first, last) of each region (centres increase), counted in and out with one cumulative sum
    first = np.searchsorted(centres, [r.start_s for r in regions], side="left")
    last = np.searchsorted(centres, [r.end_s for r in regions], side="left")
    edges = np.zeros(n_frames + 1, dtype=np.int64)
    np.add.at(edges, first, 1)
    np.add.at(edges, last, -1)
    return np.cumsum(edges[:-1]) > 0


def padded_regions(
    regions: Iterable[SpeechRegion], pad_s: float, duration_s: float, bridge_s: float = 0.0
) -> list[SpeechRegion]:
    """Speech regions widened by ``pad_s`` either side, gaps of at most ``bridge_s`` left between them
    closed, clipped to [0, ``duration_s``], overlaps merged.

    A replay played through a room and a phone line loses its quiet edges to the VAD; a modest pad
    gives the fingerprint the landmarks there back. Kept modest because real calls hold audio that
    does recur across calls (hold music, ringback, tones), which is why only speech is fingerprinted.

    Args:
        regions: speech regions (s) in the recording's time axis, in any order.
        pad_s: seconds added before and after each region (>= 0, finite).
        duration_s: length of the recording (s).
        bridge_s: widened regions less than this far apart (s) are joined (>= 0, finite).

    Returns:
        Sorted, non-overlapping regions (touching ones merged); empty ones dropped.

    Raises:
        FingerprintError: a negative or non-finite pad or bridge, or a region that is not a finite,
            ordered span.
    """
    for what, value in (("pad", pad_s), ("bridge", bridge_s)):
        if not (np.isfinite(value) and value >= 0):
            raise FingerprintError(f"the region {what} must be a finite number of seconds >= 0, got {value!r}.")
    spans = []
    for r in regions:
        if not (np.isfinite(r.start_s) and np.isfinite(r.end_s)) or r.end_s < r.start_s:
            raise FingerprintError(f"speech region {r.start_s}-{r.end_s} s is not a finite, ordered span.")
        start, end = max(0.0, r.start_s - pad_s), min(duration_s, r.end_s + pad_s)
        if end > start:
            spans.append((start, end))
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + bridge_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [SpeechRegion(start, end) for start, end in merged]


_RADIX_BITS = 11
"""Bits of a digit of :func:`_radix_sort_loop` (2,048 counters: they stay in the CPU's first-level cache)."""


def stable_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` of int64 ``values``, faster:

    * values spanning less than 2**48: a compiled radix sort by 11-bit digits, lowest first
      (:func:`stable_sort`; for a call's ~12,600 keyed values, 3 digits);
    * else, when each value and its position fit in 63 bits together, one plain sort of (value,
      position) keys -- the same permutation (equal values keep their order);
    * else numpy's stable argsort itself.
    """
    n = values.size
    if n == 0:
        return np.argsort(values, kind="stable")
    low, high = int(values.min()), int(values.max())
    if high - low < 1 << 48:
        return stable_sort(values - low, np.arange(n, dtype=np.int64))[1]
    shift = max(1, int(n - 1).bit_length())
    if low < 0 or high.bit_length() + shift > 63:
        return np.argsort(values, kind="stable")
    keys = (values << shift) | np.arange(n, dtype=np.int64)
    keys.sort()
    return keys & ((1 << shift) - 1)


def stable_sort(keys: np.ndarray, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative int64 ``keys`` sorted and int64 ``payload`` (same shape) in their order, equal keys
    keeping theirs (``keys[o], payload[o]`` for ``o = np.argsort(keys, kind="stable")``): a compiled
    radix sort, :data:`_RADIX_BITS` bits of the keys at a time, lowest first (:func:`_radix_sort_loop`)."""
    keys, payload = np.ascontiguousarray(keys, dtype=np.int64), np.ascontiguousarray(payload, dtype=np.int64)
    if keys.shape != payload.shape or keys.ndim != 1:
        raise ValueError(f"keys {keys.shape} and payload {payload.shape} must be one row each, alike")
    if keys.size and int(keys.min()) < 0:
        raise ValueError("stable_sort sorts non-negative keys; subtract their least value first")
    width = int(keys.max()).bit_length() if keys.size else 0
    out_keys, out_payload = compiled(_radix_sort_loop)(keys, payload, width)
    return np.asarray(out_keys), np.asarray(out_payload)


def _radix_sort_loop(keys: np.ndarray, payload: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stable_sort` of keys < 2**``width``: a counting sort per digit, each keeping the order of
    equal digits (run compiled: :func:`voicecheck.jit.compiled`)."""
    n = keys.size
    if width <= 0:
        return keys.copy(), payload.copy()
    next_keys, next_payload = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    spare_keys, spare_payload = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    mask = (1 << _RADIX_BITS) - 1
    starts = np.empty(mask + 2, dtype=np.int64)
    for shift in range(0, width, _RADIX_BITS):  # the first digit reads the input, the others the spares
        starts[:] = 0
        for k in range(n):
            starts[((keys[k] >> shift) & mask) + 1] += 1
        for d in range(mask + 1):
            starts[d + 1] += starts[d]
        for k in range(n):
            d = (keys[k] >> shift) & mask
            next_keys[starts[d]], next_payload[starts[d]] = keys[k], payload[k]
            starts[d] += 1
        keys, next_keys = next_keys, (spare_keys if shift == 0 else keys)
        payload, next_payload = next_payload, (spare_payload if shift == 0 else payload)
    return keys, payload


_LO_BIN = int(np.ceil(LOW_HZ * N_FFT / FINGERPRINT_SAMPLE_RATE))
_HI_BIN = int(np.floor(HIGH_HZ * N_FFT / FINGERPRINT_SAMPLE_RATE))


def spectrogram_db(x8k: np.ndarray, n_frames: int | None = None, hop: int = HOP) -> np.ndarray:
    """Log power of 8 kHz audio in the telephone band, float32, shape (n_frames, n_bins), dB re full scale.

    Frame k covers samples [k * hop, k * hop + N_FFT); column j is FFT bin ``_LO_BIN + j``
    (300-3400 Hz). The signal is zero-padded at the end so the last samples get a frame (or to
    ``n_frames`` frames when given).
    """
    from scipy import fft

    if n_frames is None:
        n_frames = max(1, 1 + int(np.ceil((x8k.size - N_FFT) / hop)))
    padded = np.zeros((n_frames - 1) * hop + N_FFT, dtype=np.float32)
    padded[: x8k.size] = x8k[: padded.size]
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::hop]
    window = np.hanning(N_FFT + 2)[1:-1].astype(np.float32)
    spectrum = fft.rfft(frames * window, axis=1, workers=1)[:, _LO_BIN : _HI_BIN + 1]
    power = spectrum.real**2 + spectrum.imag**2
    return np.asarray(10.0 * np.log10(power + np.float32(1e-12)), dtype=np.float32)


@dataclass(frozen=True)
class _Peaks:
    """Candidate landmarks with the measures the thresholds apply to (arrays of shape (m,))."""

    frames: np.ndarray
    bins: np.ndarray
    prominence_db: np.ndarray
    above_floor_db: np.ndarray


def _neighbourhood(params: FingerprintParams) -> tuple[int, int, int, int]:
    return (params.peak_time_frames, params.peak_freq_bins, params.context_frames, params.context_bins)


def _time_max_loop(a: np.ndarray, half: int) -> np.ndarray:
    """Maximum over 2 half + 1 rows of the float32 array ``a`` (rows past an edge repeat it): scipy's
    ``maximum_filter1d(a, axis=0, mode="nearest")``, value for value, since a maximum does no
    arithmetic (run compiled: :func:`voicecheck.jit.compiled`).

    van Herk / Gil-Werman: over the edge-extended rows cut into blocks of the window's width, the
    maxima from each block's start (``ahead``) and to its end (``behind``, one row kept); a window
    is one ``behind`` and one ``ahead`` value, so three comparisons per value, whatever the width."""
    n_rows, n_bins = a.shape
    if n_rows == 0:
        return np.empty((0, n_bins), dtype=np.float32)
    width, extended = 2 * half + 1, n_rows + 2 * half
    ahead = np.empty((extended, n_bins), dtype=np.float32)
    for e in range(extended):
        source = a[min(max(e - half, 0), n_rows - 1)]
        if e % width == 0:
            ahead[e] = source
        else:
            for j in range(n_bins):
                value, top = source[j], ahead[e - 1, j]
                ahead[e, j] = value if value > top else top
    out = np.empty((n_rows, n_bins), dtype=np.float32)
    behind = np.empty(n_bins, dtype=np.float32)
    for e in range(extended - 1, -1, -1):
        source = a[min(max(e - half, 0), n_rows - 1)]
        if e % width == width - 1 or e == extended - 1:
            behind[:] = source
        else:
            for j in range(n_bins):
                value = source[j]
                behind[j] = value if value > behind[j] else behind[j]
        if e < n_rows:  # the window of output row e: extended rows e .. e + width - 1
            for j in range(n_bins):
                x, y = behind[j], ahead[e + width - 1, j]
                out[e, j] = x if x > y else y
    return out


def _box_mean(a: np.ndarray, half_t: int, half_f: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Mean over a (2 half_t + 1) x (2 half_f + 1) box, edges repeated, float32, of the rows ``rows``
    only (all when None): scipy's ``uniform_filter(a, mode="nearest")`` value for value (its running
    sums along time over the whole array, then across bins; :func:`_box_mean_loop`), about 4x faster."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    rows = np.arange(a.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size == 0 or a.shape[1] == 0:
        return np.zeros((rows.size, a.shape[1]), dtype=np.float32)
    if rows[0] < 0 or rows[-1] >= a.shape[0] or np.any(rows[1:] <= rows[:-1]):
        raise ValueError(f"rows must increase within 0..{a.shape[0] - 1}")  # a caller's bug, never the audio's
    return np.asarray(compiled(_box_mean_loop)(a, half_t, half_f, rows))


def _box_mean_loop(a: np.ndarray, half_t: int, half_f: int, rows: np.ndarray) -> np.ndarray:
    """:func:`_box_mean` of the increasing ``rows`` as scipy's ``uniform_filter1d`` computes it (since
    scipy 1.0): along each line a running sum in float64 (the first window's values added in order,
    then the value entering minus the one leaving), each output that sum / size cast to float32; the
    time pass's float32 output is the bin pass's input (run compiled: :func:`voicecheck.jit.compiled`)."""
    n_rows, n_bins = a.shape
    size_t, size_f = 2 * half_t + 1, 2 * half_f + 1
    total = np.zeros(n_bins, dtype=np.float64)
    along_time = np.empty((rows.size, n_bins), dtype=np.float32)
    for i in range(size_t):
        source = min(max(i - half_t, 0), n_rows - 1)
        for j in range(n_bins):
            total[j] += np.float64(a[source, j])
    k = 0
    for r in range(rows[-1] + 1):
        if r > 0:
            enter, leave = min(r + half_t, n_rows - 1), max(r - 1 - half_t, 0)
            for j in range(n_bins):
                total[j] += np.float64(a[enter, j]) - np.float64(a[leave, j])
        if rows[k] == r:
            for j in range(n_bins):
                along_time[k, j] = np.float32(total[j] / size_t)
            k += 1
    out = np.empty((rows.size, n_bins), dtype=np.float32)
    for k in range(rows.size):
        line = 0.0
        for i in range(size_f):
            line += np.float64(along_time[k, min(max(i - half_f, 0), n_bins - 1)])
        out[k, 0] = np.float32(line / size_f)
        for j in range(1, n_bins):
            line += np.float64(along_time[k, min(j + half_f, n_bins - 1)]) - np.float64(
                along_time[k, max(j - 1 - half_f, 0)]
            )
            out[k, j] = np.float32(line / size_f)
    return out


@dataclass(frozen=True)
class _Spectrogram:
    """The parts of a recording's log spectrogram that landmarks are looked for in.

    Attributes:
        band: log power (dB) of the speech frames with :data:`_MARGIN_S` of context either
            side, one row per frame, the runs of frames side by side (silence between speech
            regions is never transformed); shape (rows, bins).
        frames: the frame index of each row (int64, shape (rows,), increasing).
        usable: whether each row lies in speech (bool, shape (rows,)).
        floor: noise floor per bin (dB): the 20th percentile over the usable frames every 40 ms.
        ceiling: the loudest usable value (dB).

    Rows of different runs meet side by side, but a usable frame's neighbourhoods (peak and
    context half-widths <= the margin) never reach past its own run's margin, so every
    landmark is the one a spectrogram of the whole recording gives.
    """

    band: np.ndarray
    frames: np.ndarray
    usable: np.ndarray
    floor: np.ndarray
    ceiling: float


def _near_speech(usable: np.ndarray, hop: int) -> np.ndarray:
    """The usable frames dilated by the margin: True within :func:`_margin_frames` of a usable frame."""
    margin = _margin_frames(hop)
    count = np.concatenate([[0], np.cumsum(usable, dtype=np.int64)])
    n = usable.size
    at = np.arange(n)
    return (count[np.minimum(at + margin + 1, n)] - count[np.maximum(at - margin, 0)]) > 0


_ROW_BLOCK = 256
"""Frames transformed at a time by :func:`_chunks`: the frames and their spectra stay small and are
reused (whole-recording temporaries of several MB cost a page fault per 4 kB: ~3 ms of system time
per 45 s call); each row is transformed alone, so the result is the same bit for bit."""


def _chunks(x8k: np.ndarray, usable: np.ndarray, hop: int = HOP) -> _Spectrogram:
    from scipy import fft

    rows = np.flatnonzero(_near_speech(usable, hop))
    padded = np.zeros((usable.size - 1) * hop + N_FFT, dtype=np.float32)
    padded[: x8k.size] = x8k[: padded.size]
    window = np.hanning(N_FFT + 2)[1:-1].astype(np.float32)
    band = np.empty((rows.size, _HI_BIN + 1 - _LO_BIN), dtype=np.float32)
    frames = np.empty((min(_ROW_BLOCK, rows.size), N_FFT), dtype=np.float32)
    windowed, power_of = compiled(_windowed_loop), compiled(_power_loop)
    for first in range(0, rows.size, _ROW_BLOCK):
        count = min(_ROW_BLOCK, rows.size - first)
        windowed(padded, rows[first : first + count] * hop, window, frames)
        spectrum = fft.rfft(frames[:count], axis=1, workers=1)
        power = band[first : first + count]  # 10 log10(re^2 + im^2 + 1e-12), in place
        power_of(spectrum, _LO_BIN, power)
        np.log10(power, out=power)  # numpy's own log10 (the compiled one may round differently)
        power *= np.float32(10.0)
    return _speech_view(band, rows, usable, hop)


def _windowed_loop(padded: np.ndarray, starts: np.ndarray, window: np.ndarray, out: np.ndarray) -> None:
    """``out[k] = padded[starts[k] : starts[k] + N_FFT] * window`` for each start, float32 (run compiled:
    :func:`voicecheck.jit.compiled`)."""
    n = window.size
    for k in range(starts.size):
        row, frame = out[k], padded[starts[k] : starts[k] + n]  # 1-D views: the product vectorises
        for i in range(n):
            row[i] = frame[i] * window[i]


def _power_loop(spectrum: np.ndarray, first_bin: int, out: np.ndarray) -> None:
    """``out = re^2 + im^2 + 1e-12`` of ``spectrum``'s bins from ``first_bin`` on, float32, in numpy's
    order (run compiled: :func:`voicecheck.jit.compiled`)."""
    n_bins = out.shape[1]
    for k in range(out.shape[0]):
        row, line = out[k], spectrum[k, first_bin : first_bin + n_bins]  # 1-D views: vectorised
        for j in range(n_bins):
            value = line[j]
            row[j] = value.real * value.real + value.imag * value.imag + np.float32(1e-12)


def _speech_view(band: np.ndarray, rows: np.ndarray, usable: np.ndarray, hop: int) -> _Spectrogram:
    """The spectrogram of rows ``rows`` (frame indices; ``band`` one row each) with ``usable``'s speech."""
    speech = np.flatnonzero(usable[rows])
    # per bin over time, every 4th speech frame at 10 ms, read along each bin's own row
    every = max(1, int(round(0.04 * FINGERPRINT_SAMPLE_RATE / hop)))
    floor = _percentile_20(np.ascontiguousarray(band[speech[::every]].T))
    ceiling = float(compiled(_rows_max_loop)(band, speech))
    return _Spectrogram(band=band, frames=rows, usable=usable[rows], floor=floor, ceiling=ceiling)


def _percentile_20(values: np.ndarray) -> np.ndarray:
    """``np.percentile(values, 20, axis=1)`` of float32 ``values`` of shape (rows, n), value for value
    (its linear interpolation between the two order statistics around the 20th percentile), from one
    selection per row: several times faster than numpy's, which selects four along the other axis."""
    n = values.shape[1]
    virtual = (n - 1) * 0.2
    below = int(np.floor(virtual))
    t = virtual - below
    part = np.partition(values, below, axis=1)
    low = part[:, below]
    high = part[:, below + 1 :].min(axis=1) if below + 1 < n else low
    step = high - low
    return np.asarray(high - step * (1 - t) if t >= 0.5 else low + step * t, dtype=np.float32)


def _narrowed(spec: _Spectrogram, usable: np.ndarray, hop: int) -> _Spectrogram:
    """``spec`` cut to the rows around ``usable`` (speech that ``spec``'s own speech contains): the
    spectrogram :func:`_chunks` would give for ``usable``, row for row, without a second transform."""
    keep = _near_speech(usable, hop)[spec.frames]
    return _speech_view(spec.band[keep], spec.frames[keep], usable, hop)


def peaks(spec: _Spectrogram, params: FingerprintParams, loosest: FingerprintParams) -> _Peaks:
    """Local maxima of the spectrogram that pass ``loosest``'s thresholds.

    Args:
        spec: the recording's speech spectrogram (:func:`_chunks`).
        params: the neighbourhoods (peak and context sizes).
        loosest: the lowest thresholds any caller will apply (see :func:`landmarks`).
    """
    rows, bins, prominence, values = _local_peaks(spec.band, _candidates(spec.band, spec, loosest), params)
    ok = prominence >= loosest.min_prominence_db
    return _as_peaks(spec, rows[ok], bins[ok], prominence[ok], values[ok] - spec.floor[bins[ok]], params)


def _candidates(band_db: np.ndarray, speech: _Spectrogram, loosest: FingerprintParams) -> np.ndarray:
    """Where a landmark may be (bool, ``band_db``'s shape): values of rows in ``speech``'s speech, at most
    70 dB under its loudest (nothing from digital silence or dither) and ``loosest.min_above_floor_db``
    above its noise floor. ``band_db``: ``speech.band`` or the same rows of a wider spectrogram."""
    # numpy compares float32 values with a Python float in float32 (NEP 50): so does the loop
    low, above = np.float32(speech.ceiling - 70.0), np.float32(loosest.min_above_floor_db)
    band_db = np.ascontiguousarray(band_db, dtype=np.float32)
    return np.asarray(compiled(_candidates_loop)(band_db, speech.usable, speech.floor, low, above))


def _candidates_loop(
    band_db: np.ndarray, usable: np.ndarray, floor: np.ndarray, low: np.float32, above: np.float32
) -> np.ndarray:
    """:func:`_candidates`: ``(band_db >= low) & usable[:, None] & (band_db - floor >= above)``, float32
    throughout, in one pass (run compiled: :func:`voicecheck.jit.compiled`)."""
    n_rows, n_bins = band_db.shape
    out = np.zeros((n_rows, n_bins), dtype=np.bool_)
    for r in range(n_rows):
        if usable[r]:
            for j in range(n_bins):
                value = band_db[r, j]
                out[r, j] = value >= low and value - floor[j] >= above
    return out


def _rows_max_loop(band_db: np.ndarray, rows: np.ndarray) -> np.float32:
    """The largest value of ``band_db``'s rows ``rows`` (at least one; run compiled:
    :func:`voicecheck.jit.compiled`)."""
    tops = band_db[rows[0]].copy()  # per bin, then over bins: a select per value, vectorised
    for r in rows:
        for j in range(tops.size):
            value = band_db[r, j]
            tops[j] = value if value > tops[j] else tops[j]
    top = tops[0]
    for value in tops:
        top = value if value > top else top
    return top


def _local_peaks(
    band_db: np.ndarray, is_peak: np.ndarray, params: FingerprintParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The candidates (``is_peak``) that are the largest value of their (time x bin) neighbourhood:
    (rows, bins, prominence over the mean of their surroundings (dB), value (dB)), row by row."""
    band_db = np.ascontiguousarray(band_db, dtype=np.float32)
    along_time = compiled(_time_max_loop)(band_db, params.peak_time_frames)
    tops = compiled(_tops_loop)(band_db, along_time, np.ascontiguousarray(is_peak), params.peak_freq_bins)
    rows, bins = np.divmod(np.flatnonzero(tops), band_db.shape[1])  # row by row, as np.nonzero
    new_row = np.ones(rows.size, dtype=bool)
    new_row[1:] = rows[1:] != rows[:-1]
    context = _box_mean(band_db, params.context_frames, params.context_bins, rows[new_row])
    values = band_db[rows, bins]
    prominence = values - context[np.cumsum(new_row) - 1, bins]  # each peak's row among the peaks' rows
    return rows, bins, prominence, values


def _tops_loop(band_db: np.ndarray, along_time: np.ndarray, is_peak: np.ndarray, half_f: int) -> np.ndarray:
    """The candidates (``is_peak``) at least as large as every value of their box: ``is_peak & (band_db >=
    the maximum of along_time over 2 half_f + 1 bins, edges repeated)``, with ``along_time`` the maximum
    along time (:func:`_time_max_loop`), for the rows with a candidate only (run compiled:
    :func:`voicecheck.jit.compiled`). Comparisons only: exactly that."""
    n_rows, n_bins = band_db.shape
    out = np.zeros((n_rows, n_bins), dtype=np.bool_)
    wide = np.empty(n_bins + 2 * half_f, dtype=np.float32)  # a row with its edges repeated
    top = np.empty(n_bins, dtype=np.float32)
    for r in range(n_rows):
        if not is_peak[r].any():
            continue
        for j in range(n_bins):
            wide[half_f + j] = along_time[r, j]
        for j in range(half_f):
            wide[j], wide[half_f + n_bins + j] = along_time[r, 0], along_time[r, n_bins - 1]
        top[:] = wide[:n_bins]
        for shift in range(1, 2 * half_f + 1):  # shifted rows, a select per value: vectorised
            for j in range(n_bins):
                value = wide[j + shift]
                top[j] = value if value > top[j] else top[j]
        for j in range(n_bins):
            out[r, j] = is_peak[r, j] and band_db[r, j] >= top[j]
    return out


def _as_peaks(
    spec: _Spectrogram,
    rows: np.ndarray,
    bins: np.ndarray,
    prominence: np.ndarray,
    above_floor: np.ndarray,
    params: FingerprintParams,
) -> _Peaks:
    """Peaks at ``spec``'s ``rows`` and band columns ``bins``, in time order (then bin)."""
    times = _peak_times(spec, rows, bins, params)
    order = np.lexsort((bins, times)) if params.time_step else slice(None)  # refined: by time, then bin again
    return _Peaks(
        frames=times[order],
        bins=(bins[order] + _LO_BIN).astype(np.int32),
        prominence_db=prominence[order].astype(np.float32),
        above_floor_db=above_floor[order].astype(np.float32),
    )


def _peaks_of_both(
    wide: _Spectrogram, narrow: _Spectrogram, query_params: FingerprintParams, index_params: FingerprintParams
) -> tuple[_Peaks, _Peaks]:
    """``peaks(wide, query_params, query_params)`` and ``peaks(narrow, index_params, index_params)`` from
    one search over ``wide`` (their neighbourhoods must be the same).

    ``narrow`` is ``wide`` cut to less speech (:func:`_narrowed`): a frame of its speech has the same
    neighbours in both (never farther than the margin kept around speech), so its local maxima and
    their surroundings are the same; only the candidates differ (each with its own speech, noise floor
    and loudest value). The wide search looks at both sets of candidates at once."""
    query_ok = _candidates(wide.band, wide, query_params)
    index_ok = np.zeros_like(query_ok)
    index_ok[np.searchsorted(wide.frames, narrow.frames)] = _candidates(narrow.band, narrow, index_params)
    rows, bins, prominence, values = _local_peaks(wide.band, query_ok | index_ok, query_params)
    found = []
    for ok, params, floor in ((query_ok, query_params, wide.floor), (index_ok, index_params, narrow.floor)):
        keep = ok[rows, bins] & (prominence >= params.min_prominence_db)
        r, b = rows[keep], bins[keep]
        found.append(_as_peaks(wide, r, b, prominence[keep], values[keep] - floor[b], params))
    return found[0], found[1]


def _peak_times(spec: _Spectrogram, rows: np.ndarray, bins: np.ndarray, params: FingerprintParams) -> np.ndarray:
    """Each peak's time (int32) in units of ``params.time_step`` samples: its frame, refined between
    frames (when ``time_step`` is finer than ``hop``) by the vertex of the parabola through the peak's
    value and its neighbours one frame either side (within +-half a frame; none at a run's edge)."""
    frames = spec.frames[rows]
    if not params.time_step or params.time_step == params.hop:
        return frames.astype(np.int32)
    band, last = spec.band, spec.frames.size - 1
    before, after = np.maximum(rows - 1, 0), np.minimum(rows + 1, last)
    inside = (spec.frames[before] == frames - 1) & (spec.frames[after] == frames + 1)  # neighbours on the grid
    a, b, c = band[before, bins], band[rows, bins], band[after, bins]
    curve = a - 2.0 * b + c  # <= 0 at a maximum
    shift = np.where(inside & (curve < 0), 0.5 * (a - c) / np.where(curve < 0, curve, -1.0), 0.0)
    units = params.hop // params.time_step
    return np.rint((frames + np.clip(shift, -0.5, 0.5)) * units).astype(np.int32)


def landmarks(found: _Peaks, params: FingerprintParams) -> tuple[np.ndarray, np.ndarray]:
    """The peaks that pass ``params``' thresholds: (frames, absolute FFT bins), int32, sorted by frame then bin."""
    keep = (found.prominence_db >= params.min_prominence_db) & (found.above_floor_db >= params.min_above_floor_db)
    return found.frames[keep], found.bins[keep]


def compile_loops() -> None:
    """Compile (or load from numba's cache) every loop of the fingerprint now, once per process, by
    fingerprinting 3 s of generated noise bursts: a batch worker does it at start-up with its models,
    so no call pays it (~0.8 s of CPU from numba's cache; the first run on a machine compiles them, ~5 s)."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * FINGERPRINT_SAMPLE_RATE)
    bursts = (np.sin(2 * np.pi * 3.0 * t / FINGERPRINT_SAMPLE_RATE) > 0).astype(np.float32)
    x = (0.1 * rng.standard_normal(t.size) * bursts).astype(np.float32)
    regions = [SpeechRegion(0.2, 1.4), SpeechRegion(1.8, 2.8)]
    fingerprints(x, FINGERPRINT_SAMPLE_RATE, regions, query_regions=padded_regions(regions, 0.2, 3.0))


def _targets_loop(
    frames: np.ndarray, bins: np.ndarray, fan_out: int, max_dt: int, min_df: int, max_df: int
) -> np.ndarray:
    """:func:`_targets`' loop over anchors and their later landmarks (run compiled: :func:`voicecheck.jit.compiled`)."""
    out = np.full((frames.size, fan_out), -1, dtype=np.int64)
    for a in range(frames.size):
        found = 0
        for t in range(a + 1, frames.size):
            dt = frames[t] - frames[a]
            if dt > max_dt:
                break
            df = abs(bins[t] - bins[a])
            if dt >= 1 and min_df <= df <= max_df:
                out[a, found] = t
                found += 1
                if found == fan_out:
                    break
    return out


def _targets(frames: np.ndarray, bins: np.ndarray, params: FingerprintParams) -> np.ndarray:
    """For each landmark, its first ``fan_out`` later landmarks in the target zone (at most
    ``max_dt_frames`` later, ``min_df_bins``..``max_df_bins`` above or below), nearest first.

    Args:
        frames, bins: landmarks sorted by frame (int32, shape (m,)).
        params: target zone (max_dt_frames, min/max_df_bins) and fan_out.

    Returns:
        int64, shape (m, fan_out): indices of the targets in time order, -1 where there are fewer.
    """
    loop = compiled(_targets_loop)
    f, b = np.ascontiguousarray(frames, dtype=np.int64), np.ascontiguousarray(bins, dtype=np.int64)
    return np.asarray(loop(f, b, params.fan_out, params.max_dt_frames, params.min_df_bins, params.max_df_bins))


def _pair_hashes_loop(
    frames: np.ndarray, bins: np.ndarray, targets: np.ndarray, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`landmark_hashes`' pairs: (hashes uint32, anchor frames int32) in anchor time order (run
    compiled: :func:`voicecheck.jit.compiled`)."""
    m, fan_out = targets.shape
    n = 0
    for a in range(m):
        for r in range(fan_out):
            n += targets[a, r] >= 0
    hashes = np.empty(n, dtype=np.uint32)
    times = np.empty(n, dtype=np.int32)
    k = 0
    first = 0
    while first < m:  # anchors of one frame: by target rank, then anchor (a stable sort by frame would give it)
        last = first + 1
        while last < m and frames[last] == frames[first]:
            last += 1
        for r in range(fan_out):
            for a in range(first, last):
                t = targets[a, r]
                if t >= 0:
                    dt = (frames[t] - frames[a]) // step
                    hashes[k] = (bins[a] << (_FREQ_BITS + _DT_BITS)) | (bins[t] << _DT_BITS) | dt
                    times[k] = frames[a]
                    k += 1
        first = last
    return hashes, times


def landmark_hashes(frames: np.ndarray, bins: np.ndarray, params: FingerprintParams) -> tuple[np.ndarray, np.ndarray]:
    """Hash each landmark with later landmarks of its target zone.

    With ``params.targets_per_hash`` 1, one hash per (anchor, target) pair: anchor bin, target bin,
    frames between them (20 bits). With 2, one hash per anchor and two of its targets: three bins
    and two time differences (31 bits): far fewer chance collisions in a large index, so a lookup
    touches far fewer rows.

    Args:
        frames, bins: landmarks sorted by frame (int32, shape (m,)).
        params: pairing parameters.

    Returns:
        (hashes uint32, anchor frames int32), shape (k,), sorted by anchor frame.
    """
    targets = _targets(frames, bins, params)
    f = bins.astype(np.uint32)
    step = params.dt_step_frames
    out_h: list[np.ndarray] = []
    out_t: list[np.ndarray] = []
    if params.targets_per_hash == 1:
        f64, b64 = np.ascontiguousarray(frames, dtype=np.int64), np.ascontiguousarray(bins, dtype=np.int64)
        hashes, times = compiled(_pair_hashes_loop)(f64, b64, targets, step)
        return np.asarray(hashes), np.asarray(times)
    for r1 in range(params.fan_out):
        for r2 in range(r1 + 1, params.fan_out):
            a = np.flatnonzero(targets[:, r2] >= 0)
            t1, t2 = targets[a, r1], targets[a, r2]
            dt1 = ((frames[t1] - frames[a]) // step).astype(np.uint32)
            dt2 = ((frames[t2] - frames[a]) // step).astype(np.uint32)
            h = (f[a] << (2 * _FREQ_BITS + 2 * _TRIPLET_DT_BITS)) | (f[t1] << (_FREQ_BITS + 2 * _TRIPLET_DT_BITS))
            out_h.append(h | (f[t2] << (2 * _TRIPLET_DT_BITS)) | (dt1 << _TRIPLET_DT_BITS) | dt2)
            out_t.append(frames[a])
    if not out_h:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    hashes, times = np.concatenate(out_h), np.concatenate(out_t)
    order = stable_order(times.astype(np.int64))
    return hashes[order].astype(np.uint32), times[order].astype(np.int32)


def _prepare(
    samples: np.ndarray,
    sample_rate: int,
    regions: list[SpeechRegion] | None,
    min_speech_s: float,
    hop: int = HOP,
    wider: list[SpeechRegion] | None = None,
) -> tuple[_Spectrogram, float, float, _Spectrogram, float]:
    """Validated 8 kHz speech spectrogram (frames every ``hop`` samples) of ``regions``, duration_s and
    analysed_s; then the same for ``regions`` joined with ``wider`` (``regions``' own when None)."""
    from .audio import resample

    x = _check_input(samples, sample_rate)
    x8k = resample(x, int(sample_rate), FINGERPRINT_SAMPLE_RATE)
    duration_s = x.size / float(sample_rate)
    n_frames = max(1, 1 + int(np.ceil((x8k.size - N_FFT) / hop)))
    inside = np.arange(n_frames) * hop + N_FFT <= max(x8k.size, N_FFT)  # no frame past the end
    usable = _region_mask(regions, n_frames, hop) & inside
    analysed_s = float(usable.sum()) * (hop / FINGERPRINT_SAMPLE_RATE)  # HOP_S at 10 ms, bit for bit
    if analysed_s < min_speech_s:
        raise FingerprintError(
            f"only {analysed_s:.2f} s of audio to fingerprint (recording {duration_s:.2f} s), need at least "
            f"{min_speech_s} s: replay was not checked. Pass the whole recording or more speech regions."
        )
    if wider is None:
        spec = _chunks(x8k, usable, hop)
        return spec, duration_s, analysed_s, spec, analysed_s
    usable_wide = usable | (_region_mask(wider, n_frames, hop) & inside)
    wide = _chunks(x8k, usable_wide, hop)
    wide_s = float(usable_wide.sum()) * (hop / FINGERPRINT_SAMPLE_RATE)
    return _narrowed(wide, usable, hop), duration_s, analysed_s, wide, wide_s


def _from_peaks(found: _Peaks, duration_s: float, analysed_s: float, params: FingerprintParams) -> Fingerprint:
    frames, bins = landmarks(found, params)
    hashes, times = landmark_hashes(frames, bins, params)
    if hashes.size == 0:
        raise FingerprintError(
            f"no spectral landmarks in {analysed_s:.2f} s of audio (silence, a steady tone or only noise?): "
            "replay was not checked."
        )
    log.debug("fingerprint: %.1f s analysed, %d landmarks, %d hashes", analysed_s, frames.size, hashes.size)
    return Fingerprint(
        hashes=hashes,
        frames=times,
        duration_s=duration_s,
        analysed_s=analysed_s,
        n_landmarks=int(frames.size),
        hash_key=params.hash_key(),
        frame_s=params.frame_s,
    )


def fingerprint(
    samples: np.ndarray,
    sample_rate: int,
    regions: list[SpeechRegion] | None = None,
    params: FingerprintParams = INDEX_PARAMS,
) -> Fingerprint:
    """Fingerprint one recording's speech.

    Args:
        samples: mono float audio, shape (n,), in [-1, 1] (any level), at ``sample_rate``.
        sample_rate: Hz, an integer >= 8000 (wideband audio is resampled to 8 kHz).
        regions: speech regions (the VAD's, in this recording's time axis); None analyses all of
            it. Landmarks are taken only inside the regions; times stay in the recording's axis.
        params: :data:`INDEX_PARAMS` for a fingerprint to store, :data:`QUERY_PARAMS` for one to
            look up (see :func:`fingerprints` for both at once).

    Returns:
        The recording's :class:`Fingerprint`.

    Raises:
        FingerprintError: empty, non-mono, non-float or non-finite samples, a rate below 8 kHz,
            less than ``params.min_speech_s`` of analysed audio, or no landmark at all (silence,
            a pure tone): the recording was not checked for replay.
    """
    spec, duration_s, analysed_s, _, _ = _prepare(samples, sample_rate, regions, params.min_speech_s, params.hop)
    return _from_peaks(peaks(spec, params, params), duration_s, analysed_s, params)


def fingerprints(
    samples: np.ndarray,
    sample_rate: int,
    regions: list[SpeechRegion] | None = None,
    query_params: FingerprintParams = QUERY_PARAMS,
    index_params: FingerprintParams = INDEX_PARAMS,
    query_regions: list[SpeechRegion] | None = None,
) -> tuple[Fingerprint, Fingerprint]:
    """The fingerprint to look a call up with and the one to store it with, from one spectrogram.

    Args and Raises: as :func:`fingerprint`; the two parameter sets must hash alike.
        query_regions: more of the recording for the query fingerprint only (joined with
            ``regions``; None: ``regions`` alone). The stored fingerprint keeps ``regions``, so audio
            outside them (a sound that recurs from call to call) is never stored to be found again,
            while a replayed passage the regions half-missed is still looked up whole.

    Returns:
        (query fingerprint, index fingerprint).
    """
    if query_params.hash_key() != index_params.hash_key():
        raise FingerprintError(
            f"query and index parameters hash differently ({query_params.hash_key()} vs "
            f"{index_params.hash_key()}); their hashes would never meet."
        )
    min_s = max(query_params.min_speech_s, index_params.min_speech_s)
    spec, duration_s, analysed_s, spec_q, analysed_q = _prepare(
        samples, sample_rate, regions, min_s, index_params.hop, None if regions is None else query_regions
    )
    if spec_q is spec and _neighbourhood(query_params) == _neighbourhood(index_params):  # one search serves both
        loosest = replace(
            query_params,
            min_prominence_db=min(query_params.min_prominence_db, index_params.min_prominence_db),
            min_above_floor_db=min(query_params.min_above_floor_db, index_params.min_above_floor_db),
        )
        found_q = found_i = peaks(spec, query_params, loosest)
    elif _neighbourhood(query_params) == _neighbourhood(index_params):  # the query's search serves both
        found_q, found_i = _peaks_of_both(spec_q, spec, query_params, index_params)
    else:
        found_q = peaks(spec_q, query_params, query_params)
        found_i = peaks(spec, index_params, index_params)
    return (
        _from_peaks(found_q, duration_s, analysed_q, query_params),
        _from_peaks(found_i, duration_s, analysed_s, index_params),
    )
