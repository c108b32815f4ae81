"""A speaker's audio cut into enrollment, calls and LDA segments; the simulated call channel.

Material per speaker (deterministic, independent of the split)
    * enrollment: the first part of the speech (wideband 16 kHz, as recorded);
    * calls: the rest, cut into calls of 6-30 s, each through :func:`telephone`
      (:func:`recipes.simulate.simulate_call_side`: 300-3400 Hz, 8 kHz, G.711 mu-law, pink noise
      at an SNR drawn from 10-30 dB);
    * LDA segments: all the speech cut into overlapping segments (:func:`segments`), each embedded
      wideband, band-limited (:func:`voicecheck.pipeline.to_narrow`) and twice through the
      simulated call channel (independent noise and SNR draws): ``recipes/embed_cache.py``.

The parameters are part of the embedding cache keys (:data:`MATERIAL_KEY`, :data:`SEGMENT_KEY`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from recipes.corpus import SAMPLE_RATE
from recipes.simulate import simulate_call_side

ENROLL_MIN_S = 4.5
"""Shortest enrollment cut from a single long utterance (s)."""

CALL_TARGET_S = 7.5
"""Audio (s) kept for the call when one utterance is split: >= 6 s of net speech after VAD."""

MULTI_ENROLL_S = 8.0
"""Enrollment length aimed at when a speaker has several utterances (whole utterances)."""

CALL_MIN_S, CALL_MAX_S, CALLS_PER_SPEAKER = 8.0, 30.0, 4
"""Calls built from whole utterances: at least this long when possible, at most CALL_MAX_S; at
most CALLS_PER_SPEAKER per speaker so a few long speakers do not dominate the trials."""

SEGMENT_S, SEGMENT_HOP_S = 5.0, 2.5
"""LDA training segments: length and hop (s)."""

GAP_S = 0.4
"""Silence put between concatenated utterances (s)."""

MATERIAL_KEY = f"m{ENROLL_MIN_S}-{CALL_TARGET_S}-{MULTI_ENROLL_S}-{CALL_MIN_S}-{CALL_MAX_S}-{CALLS_PER_SPEAKER}-{GAP_S}"
SEGMENT_KEY = f"s{SEGMENT_S}-{SEGMENT_HOP_S}-{GAP_S}"
"""Cache key parts: change a parameter and only what depends on it is embedded again."""


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded from the text of ``parts`` (same parts, same noise, any split)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def join_utterances(parts: list[np.ndarray]) -> np.ndarray:
    """``parts`` (16 kHz) one after the other with :data:`GAP_S` of silence between; float32."""
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    out: list[np.ndarray] = []
    for p in parts:
        if out:
            out.append(gap)
        out.append(p)
    return np.concatenate(out).astype(np.float32)


def quiet_cut(x: np.ndarray, at: int, search_s: float = 0.6) -> int:
    """A cut point near sample ``at`` in the quietest 20 ms frame within +-``search_s``."""
    hop = int(0.02 * SAMPLE_RATE)
    lo, hi = max(hop, at - int(search_s * SAMPLE_RATE)), min(len(x) - hop, at + int(search_s * SAMPLE_RATE))
    if hi <= lo:
        return at
    starts = np.arange(lo, hi, hop)
    energy = np.array([float(np.mean(x[s : s + hop] ** 2)) for s in starts])
    return int(starts[int(np.argmin(energy))] + hop // 2)


def enrollment_split(utts: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A speaker's enrollment audio and the speech left after it (16 kHz).

    One utterance (or too little beyond the first): join everything and cut at a quiet frame,
    keeping about :data:`CALL_TARGET_S` after the cut and at least :data:`ENROLL_MIN_S` before
    it. Several: whole utterances up to :data:`MULTI_ENROLL_S` enroll (at least one is left).

    Returns:
        (enrollment samples, the remaining utterances: one piece after a cut, else whole ones),
        all float32 at 16 kHz; the remainder may be empty or shorter than a second.
    """
    if len(utts) == 1 or sum(len(u) for u in utts[1:]) < CALL_TARGET_S * SAMPLE_RATE:
        x = join_utterances(utts)
        total_s = len(x) / SAMPLE_RATE
        enroll_s = max(ENROLL_MIN_S, min(total_s - CALL_TARGET_S, total_s / 2))
        cut = quiet_cut(x, int(enroll_s * SAMPLE_RATE))
        return x[:cut], [x[cut:]]
    enroll: list[np.ndarray] = []
    rest = list(utts)
    while rest and sum(len(u) for u in enroll) < MULTI_ENROLL_S * SAMPLE_RATE and len(rest) > 1:
        enroll.append(rest.pop(0))
    return join_utterances(enroll), rest


def speaker_material(utts: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Enrollment audio and call audio (16 kHz) for one speaker.

    The enrollment is :func:`enrollment_split`'s. After a cut, the remainder is the one call (if
    at least a second long). After whole utterances, the rest are grouped into up to
    :data:`CALLS_PER_SPEAKER` calls of :data:`CALL_MIN_S`-:data:`CALL_MAX_S`.

    Returns:
        (enrollment samples, list of call samples), all float32 at 16 kHz.
    """
    enroll, rest = enrollment_split(utts)
    if len(utts) == 1 or sum(len(u) for u in utts[1:]) < CALL_TARGET_S * SAMPLE_RATE:
        return enroll, [rest[0]] if len(rest[0]) >= SAMPLE_RATE else []
    calls: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for u in rest:
        if current and sum(len(c) for c in current) + len(u) > CALL_MAX_S * SAMPLE_RATE:
            calls.append(join_utterances(current))
            current = []
        current.append(u)
        if sum(len(c) for c in current) >= CALL_MIN_S * SAMPLE_RATE:
            calls.append(join_utterances(current))
            current = []
        if len(calls) == CALLS_PER_SPEAKER:
            break
    if current and len(calls) < CALLS_PER_SPEAKER:
        if calls and sum(len(c) for c in current) < CALL_TARGET_S * SAMPLE_RATE:
            calls[-1] = join_utterances([calls[-1], *current])[: int(CALL_MAX_S * SAMPLE_RATE)]
        else:
            calls.append(join_utterances(current))
    return enroll, calls


def segments(utts: list[np.ndarray]) -> list[np.ndarray]:
    """All the speaker's audio cut into :data:`SEGMENT_S` segments every :data:`SEGMENT_HOP_S`."""
    x = join_utterances(utts)
    win, hop = int(SEGMENT_S * SAMPLE_RATE), int(SEGMENT_HOP_S * SAMPLE_RATE)
    if len(x) <= win:
        return [x]
    starts = list(range(0, len(x) - win + 1, hop))
    if starts[-1] + win < len(x) - hop // 2:
        starts.append(len(x) - win)
    return [x[s : s + win] for s in starts]


def telephone(samples: np.ndarray, *seed_parts: object) -> np.ndarray:
    """One simulated call side (8 kHz mu-law, noise at 10-30 dB SNR) of 16 kHz ``samples``, seeded
    by ``seed_parts`` (:func:`rng_for`)."""
    return simulate_call_side(samples, SAMPLE_RATE, rng_for(*seed_parts))
