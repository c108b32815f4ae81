"""Checks a 1:1 comparison misses: a speaker change within a call, two voices on a mono recording,
several voices behind one borrower, and one voice behind many borrowers.

Everything here is numpy maths on embeddings the pipeline has already computed; no audio, no torch.
Vectors are float arrays of unit-norm rows unless said otherwise. Scores passed in through a
``score_fn`` are on the product's scale (see :mod:`voicecheck.scorer`); similarities computed here
are cosines of the vectors as given. Cross-call callers pass vectors through the product's scoring
space first (:func:`voicecheck.crosscall.scoring_space`: the shipped LDA back-end re-centred on the
calls' own mean; :func:`centre` for a model without a back-end).

Defaults were tuned in ``benchmarks/analysis.py`` on the TUNE speakers of the split the shipped
GE2E back-end was trained with (``recipes/corpus.py``, seed 0; 8 kHz mu-law simulated calls)
and checked on its EVAL speakers; see ``benchmarks/results/analysis.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import UsageError
from .scoring import unit

log = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Scores rows of embeddings, shape (n, d), against one fixed voiceprint -> shape (n,)."""

TAKEOVER_MARGIN = 0.0
"""Default distance below the threshold the low side of a change must score (product-score scale:
whatever ``score_fn`` returns; GE2E ``lda+asnorm`` in the benchmark)."""

TAKEOVER_MAX_SIDE_COSINE = 0.87
"""Default: the two sides' mean window embeddings (raw GE2E window cosine) must be at most this alike."""

SPLIT_MAX_CENTROID_COSINE = 0.825
"""Default: two clusters of one recording whose mean embeddings are more alike than this are one voice."""

SPLIT_MIN_SHARE = 0.10
"""Default: the smaller of two clusters must hold at least this fraction of the windows."""

RING_LINK_THRESHOLD = 1.8
"""Default link score for :func:`find_rings`, on the scale of :func:`link_scores`: how many standard
deviations two calls' cosine (GE2E call vectors in :func:`voicecheck.crosscall.scoring_space`,
shipped LDA) stands above what each of them scores against other borrowers' calls. Chosen for
``min_borrowers=3`` on TUNE speakers over short impostor clips and calls of >= 6 s of speech
together (benchmarks/analysis.py)."""

RING_PAIR_LINK_THRESHOLD = 2.6
"""Default link score when a ring may be two borrowers (``min_borrowers=2``): a pair of calls is weaker
evidence than three or more that all link, so it must link more strongly (chosen on TUNE for
``min_borrowers=2`` the same way, 2.6 with GE2E windows back to back and ring candidates refined, 2.55
before; at 1.8 pairs of sound-alike borrowers flood the list)."""


def ring_link_threshold(min_borrowers: int) -> float:
    """The default link score for :func:`find_rings` at ``min_borrowers``."""
    return RING_PAIR_LINK_THRESHOLD if min_borrowers <= 2 else RING_LINK_THRESHOLD


RING_COHORT_MAX = 2000
"""At most this many calls (an even spread of the population) form the cohort that
:func:`cohort_stats` measures each call against."""

RING_MIN_COHORT = 20
"""Below this many calls of other borrowers in a call's cohort, :func:`find_rings` warns that its
normalisation rests on too few calls."""

VOICES_THRESHOLD = 0.45
"""Default average-link cut for :func:`voices_per_borrower`: cosine of GE2E call vectors in the
scoring space (:func:`voicecheck.crosscall.scoring_space`, shipped LDA)."""

EXACT_SEARCH_MAX = 20000
"""Up to this many vectors :func:`knn` searches exactly (blocked numpy); above, an HNSW index."""


# --- helpers ------------------------------------------------------------------------------------


def _rows(x: np.ndarray, what: str, dimension: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise UsageError(f"{what} must have shape (n, d), got shape {a.shape}.")
    if dimension is not None and a.shape[1] != dimension:
        raise UsageError(f"{what} has dimension {a.shape[1]}, expected {dimension}: vectors of different models?")
    if not np.all(np.isfinite(a)):
        raise UsageError(f"{what} contains NaN or infinite values.")
    return a


def centre(vectors: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Subtract a domain mean and rescale rows to unit norm (centred cosine).

    Args:
        vectors: shape (n, d).
        mean: shape (d,); None uses the mean of ``vectors`` (fine for a batch of many calls).

    Returns:
        float32, shape (n, d), unit-norm rows.
    """
    v = _rows(vectors, "vectors")
    m = v.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float32)
    return unit(v - m)


def _speech_model(times_s: np.ndarray) -> tuple[float, float]:
    """(window length, hop) in seconds of speech, estimated from window times."""
    t = np.asarray(times_s, dtype=np.float64)
    lengths = t[:, 1] - t[:, 0]
    window_s = float(np.median(lengths)) if len(t) else 0.0
    steps = np.diff(t[:, 0])
    steps = steps[steps > 1e-6]
    hop_s = float(np.median(steps)) if len(steps) else window_s
    return window_s, min(hop_s, window_s) if window_s > 0 else hop_s


def windows_overlap(times_s: np.ndarray) -> bool:
    """Whether a call's windows overlap (most start before the previous one ends): the finer timeline of
    a model whose windows go back to back (:mod:`voicecheck.refine`), or any model that overlaps its
    windows. One window counts as overlapping (nothing coarser exists).

    Args:
        times_s: (start, end) of each window in recording time, seconds, shape (n, 2), in call order.
    """
    t = np.asarray(times_s, dtype=np.float64).reshape(-1, 2)
    if len(t) < 2:
        return True
    # back to back, a window starts where the previous one ends (later across a pause); the window
    # aligned to the end of the speech overlaps its neighbour on either timeline, so count the majority
    return bool(np.mean(t[1:, 0] < t[:-1, 1] - 1e-3) > 0.5)


def _side_s(count: np.ndarray, window_s: float, hop_s: float) -> np.ndarray:
    """Net speech on one side of a split after ``count`` consecutive windows.

    The split is put in the middle of the overlap of the two windows that meet there, so the two
    sides of a call add up to its speech: ``(count - 1) * hop + (window + hop) / 2``.
    """
    count = np.asarray(count, dtype=np.float64)
    return np.where(count > 0, (count - 1) * hop_s + (window_s + hop_s) / 2.0, 0.0)


def net_speech_s(times_s: np.ndarray, count: int | None = None) -> float:
    """Net speech (s) of a call's first ``count`` windows, measured as ``min_segment_s`` measures a side.

    The measure :func:`change_point` applies to each side of a split: ``(count - 1) * hop +
    (window + hop) / 2``, the side ending in the middle of its last window's overlap with the next
    (so the two sides of a split add up to the speech the windows span). Window length and hop are
    the medians of the window times, so pauses in the recording do not count.

    Args:
        times_s: (start, end) of each window in seconds, shape (n, 2), in call order.
        count: windows counted from the first, 0 <= count <= n; None counts all n.

    Returns:
        Seconds of speech, >= 0 (0.0 for no windows).
    """
    t = np.asarray(times_s, dtype=np.float64).reshape(-1, 2)
    window_s, hop_s = _speech_model(t)
    return float(_side_s(np.asarray(len(t) if count is None else count), window_s, hop_s))


def _check_windows(windows: np.ndarray, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = _rows(windows, "windows")
    t = np.asarray(times_s, dtype=np.float64)
    if t.shape != (len(w), 2):
        raise UsageError(f"times_s must have shape ({len(w)}, 2) to match windows, got {t.shape}.")
    return w, t


# --- 1. speaker change within a call ------------------------------------------------------------


@dataclass(frozen=True)
class SpeakerChange:
    """A likely takeover: the voice changes at ``change_s`` and one side does not match.

    Attributes:
        change_s: recording time of the change, seconds.
        before_score: score of the speech before the change against the voiceprint (product scale).
        after_score: score of the speech after the change.
        which: the side that scores lower, the one that does not match: "later" (borrower then
            someone else) or "earlier".
        side_cosine: cosine of the two sides' mean window embeddings (lower = more different).
    """

    change_s: float
    before_score: float
    after_score: float
    which: Literal["later", "earlier"]
    side_cosine: float


def change_point(windows: np.ndarray, times_s: np.ndarray, min_segment_s: float = 4.0) -> tuple[int, float] | None:
    """The best single change point of a window sequence.

    Maximises the between-sides scatter ``k (n - k) / n * |mean_left - mean_right|^2`` (Ward's
    criterion: the split that most reduces the within-side spread), over the splits that leave at
    least ``min_segment_s`` of speech on each side. O(n d).

    Args:
        windows: unit-norm window embeddings in time order, shape (n, d).
        times_s: window start/end in seconds, shape (n, 2).
        min_segment_s: least net speech on each side, seconds.

    Returns:
        (index of the first window after the change, the criterion), or None when the call is too
        short for two sides of ``min_segment_s``.
    """
    w, t = _check_windows(windows, times_s)
    n = len(w)
    if n < 2:
        return None
    window_s, hop_s = _speech_model(t)
    k = np.arange(1, n)
    ok = (_side_s(k, window_s, hop_s) >= min_segment_s - 1e-9) & (
        _side_s(n - k, window_s, hop_s) >= min_segment_s - 1e-9
    )
    if not ok.any():
        return None
    c = np.cumsum(w.astype(np.float64), axis=0)
    total = c[-1]
    left = c[:-1] / k[:, None]
    right = (total - c[:-1]) / (n - k)[:, None]
    crit = k * (n - k) / n * np.sum((left - right) ** 2, axis=1)
    crit[~ok] = -np.inf
    best = int(np.argmax(crit))
    return best + 1, float(crit[best])


def side_cosine(windows: np.ndarray, times_s: np.ndarray, min_segment_s: float = 4.0) -> float | None:
    """Raw cosine between the mean window embeddings of the two sides of a call's best change point
    (:func:`change_point`): what :func:`detect_speaker_change` compares with ``max_side_cosine``.

    Returns:
        The cosine in [-1, 1], or None when the call is too short for two sides of ``min_segment_s``.
    """
    w, t = _check_windows(windows, times_s)
    found = change_point(w, t, min_segment_s)
    if found is None:
        return None
    sides = unit(np.stack([w[: found[0]].mean(axis=0), w[found[0] :].mean(axis=0)]))
    return float(sides[0] @ sides[1])


def detect_speaker_change(
    windows: np.ndarray,
    times_s: np.ndarray,
    enroll: np.ndarray,
    score_fn: ScoreFn,
    threshold: float,
    min_segment_s: float = 4.0,
    margin: float = TAKEOVER_MARGIN,
    max_side_cosine: float = TAKEOVER_MAX_SIDE_COSINE,
) -> SpeakerChange | None:
    """Flag a call where the borrower speaks for part of it and someone else for the rest.

    Finds the best single change point (:func:`change_point`) and reports a change when the two
    sides' mean embeddings have cosine at most ``max_side_cosine`` (two voices) and the lower-scoring
    side scores below ``threshold - margin`` against the voiceprint (that side is not the borrower).
    ``which`` names the lower-scoring side. When the other side also scores below the threshold the
    whole call usually fails the 1:1 check anyway; the change is then extra evidence. One change
    is looked for; a borrower-impostor-borrower call is found when the impostor's part is the
    longer tail or head.

    With the product's GE2E scorer (LDA + AS-norm) the score test does most of the work; the
    side-cosine test keeps a genuine call whose weaker half scores low from being flagged (halves
    of one speaker's call mostly have raw cosine >= 0.87, a borrower and another speaker mostly
    0.6-0.85; benchmarks/analysis.py). It is a raw cosine of the model's windows, so its default
    is GE2E's; another model needs its own.

    Args:
        windows: unit-norm window embeddings in time order, shape (n, d).
        times_s: window start/end in recording time, seconds, shape (n, 2).
        enroll: the voiceprint, shape (d,) (only passed through to ``score_fn``'s owner; kept for
            the dimension check).
        score_fn: scores rows, shape (m, d), against the voiceprint on the product's scale -> (m,).
        threshold: the product's match threshold on that scale.
        min_segment_s: least net speech on each side of the change, seconds.
        margin: how far below ``threshold`` the non-matching side must score (product scale, >= 0).
        max_side_cosine: the sides' means (raw cosine of the windows as given) must be at most
            this alike.

    Returns:
        The change, or None (no change, or the call too short to have two sides).
    """
    w, t = _check_windows(windows, times_s)
    e = np.asarray(enroll, dtype=np.float32).reshape(-1)
    if e.shape[0] != w.shape[1]:
        raise UsageError(f"enroll has dimension {e.shape[0]}, windows {w.shape[1]}: vectors of different models?")
    found = change_point(w, t, min_segment_s)
    if found is None:
        return None
    k, _ = found
    sides = unit(np.stack([w[:k].mean(axis=0), w[k:].mean(axis=0)]))
    side_cosine = float(sides[0] @ sides[1])
    before, after = (float(s) for s in np.asarray(score_fn(sides), dtype=np.float64).reshape(2))
    if side_cosine > max_side_cosine:
        return None
    change_s = float(t[k, 0])  # windows straddling the change split about evenly; see the benchmark
    if min(before, after) >= threshold - margin:
        return None
    return SpeakerChange(change_s, before, after, "later" if after < before else "earlier", side_cosine)


def near_speaker_change(
    windows: np.ndarray,
    times_s: np.ndarray,
    score_fn: ScoreFn | None,
    threshold: float,
    min_segment_s: float = 4.0,
    cosine_margin: float = 0.0,
    score_margin: float = 0.0,
    margin: float = TAKEOVER_MARGIN,
    max_side_cosine: float = TAKEOVER_MAX_SIDE_COSINE,
) -> bool:
    """Whether :func:`detect_speaker_change` on a finer timeline of this call could flag a change:
    on this (coarse) timeline the best change's sides are within ``cosine_margin`` of the side test
    and its lower side within ``score_margin`` of the score test.

    The coarse timeline (windows back to back) sees each side through half as many windows, so its
    side cosine runs lower and its side scores noisier than the finer timeline's; the margins cover
    that (chosen in benchmarks/analysis.py on TUNE so that the finer timeline's takeover figures are
    kept). A call too short to split here but with the speech for two sides of ``min_segment_s`` is
    near too.

    Args:
        windows: unit-norm window embeddings in time order, shape (n, d).
        times_s: window start/end in recording time, seconds, shape (n, 2).
        score_fn: as for :func:`detect_speaker_change`; None decides by the side test alone.
        threshold, min_segment_s, margin, max_side_cosine: :func:`detect_speaker_change`'s.
        cosine_margin: how far above ``max_side_cosine`` the sides' cosine may be (>= 0).
        score_margin: how far above ``threshold - margin`` the lower side may score (product scale, >= 0).

    Returns:
        True when the call should be judged on the finer timeline.
    """
    w, t = _check_windows(windows, times_s)
    found = change_point(w, t, min_segment_s)
    if found is None:
        return len(w) >= 2 and net_speech_s(t) >= 2 * min_segment_s
    k, _ = found
    sides = unit(np.stack([w[:k].mean(axis=0), w[k:].mean(axis=0)]))
    if float(sides[0] @ sides[1]) > max_side_cosine + cosine_margin:
        return False
    if score_fn is None:
        return True
    lower = float(np.min(np.asarray(score_fn(sides), dtype=np.float64)))
    return lower < threshold - margin + score_margin


def similarity_timeline(
    windows: np.ndarray, times_s: np.ndarray, enroll: np.ndarray, score_fn: ScoreFn, span_s: float = 4.0
) -> list[dict[str, float]]:
    """Score successive spans of about ``span_s`` of speech against the voiceprint.

    Spans are consecutive windows covering ``span_s`` of speech, stepping by half a span; the last
    span is aligned to the end. A call shorter than one span gives one span.

    Returns:
        [{"start_s", "end_s", "score"}], in time order; times in recording time, seconds.
    """
    w, t = _check_windows(windows, times_s)
    del enroll  # score_fn closes over it
    if len(w) == 0:
        return []
    window_s, hop_s = _speech_model(t)
    per_span = max(1, int(round((span_s - window_s) / hop_s)) + 1) if hop_s > 0 else len(w)
    per_span = min(per_span, len(w))
    step = max(1, per_span // 2)
    starts = list(range(0, len(w) - per_span + 1, step))
    if starts[-1] != len(w) - per_span:
        starts.append(len(w) - per_span)
    means = unit(np.stack([w[s : s + per_span].mean(axis=0) for s in starts]))
    scores = np.asarray(score_fn(means), dtype=np.float64).reshape(len(starts))
    return [
        {
            "start_s": round(float(t[s, 0]), 2),
            "end_s": round(float(t[s + per_span - 1, 1]), 2),
            "score": round(float(v), 4),
        }
        for s, v in zip(starts, scores, strict=True)
    ]


# --- 2. two speakers on one channel ---------------------------------------------------------------


def _two_means(x: np.ndarray, init: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Spherical 2-means from an initial labelling; returns labels (n,) in {0, 1}."""
    labels = init.astype(np.int64)
    for _ in range(iterations):
        if labels.min() == labels.max():
            break
        cents = unit(np.stack([x[labels == c].mean(axis=0) for c in (0, 1)]))
        new = np.argmax(x @ cents.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def split_two_speakers(
    windows: np.ndarray,
    times_s: np.ndarray,
    max_centroid_cosine: float = SPLIT_MAX_CENTROID_COSINE,
    min_share: float = SPLIT_MIN_SHARE,
    smooth: int = 1,
) -> np.ndarray:
    """Split one channel's windows into two voices, or keep them as one.

    The windows are centred on their own mean (two voices then point in opposite directions),
    split by the sign of the first principal component, refined by spherical 2-means, and the
    labels smoothed with a running majority over ``2 * smooth + 1`` windows (turns last longer
    than one hop). The split is kept only when the clusters' mean embeddings (raw cosine) are at
    most ``max_centroid_cosine`` alike and the smaller one holds at least ``min_share`` of the
    windows; otherwise every window is one speaker.

    Args:
        windows: unit-norm window embeddings in time order, shape (n, d).
        times_s: window start/end, seconds, shape (n, 2).

    Returns:
        int labels, shape (n,): 0 for the voice that speaks first, 1 for the other; all 0 when one voice.
    """
    w, _ = _check_windows(windows, times_s)
    n = len(w)
    if n < 4:
        return np.zeros(n, dtype=np.int64)
    x = unit(w - w.mean(axis=0))
    _, _, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    labels = _two_means(x, (x @ vt[0] > 0).astype(np.int64))
    if smooth > 0 and n > 2 * smooth + 1:
        padded = np.pad(labels, smooth, mode="edge")
        votes = np.lib.stride_tricks.sliding_window_view(padded, 2 * smooth + 1).mean(axis=1)
        labels = (votes > 0.5).astype(np.int64)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < max(2, min_share * n):
        return np.zeros(n, dtype=np.int64)
    cents = unit(np.stack([w[labels == c].mean(axis=0) for c in (0, 1)]))
    if float(cents[0] @ cents[1]) > max_centroid_cosine:
        return np.zeros(n, dtype=np.int64)
    if labels[0] == 1:
        labels = 1 - labels
    return labels


def near_two_speakers(
    windows: np.ndarray,
    times_s: np.ndarray,
    cosine_margin: float = 0.0,
    max_centroid_cosine: float = SPLIT_MAX_CENTROID_COSINE,
    min_share: float = SPLIT_MIN_SHARE,
) -> bool:
    """Whether :func:`split_two_speakers` on a finer timeline of this recording could find two voices:
    on this (coarse) timeline, unsmoothed, the split's centroids are within ``cosine_margin`` of
    ``max_centroid_cosine``. A recording of 2-3 coarse windows (too few to split here, enough on
    the finer timeline) is near too.

    Args:
        windows: unit-norm window embeddings in time order, shape (n, d).
        times_s: window start/end, seconds, shape (n, 2).
        cosine_margin: how far above ``max_centroid_cosine`` the clusters' cosine may be (>= 0).

    Returns:
        True when the recording should be split on the finer timeline.
    """
    w, t = _check_windows(windows, times_s)
    if len(w) < 4:
        return len(w) >= 2
    return bool(split_two_speakers(w, t, max_centroid_cosine + cosine_margin, min_share, smooth=0).any())


def customer_windows(
    windows: np.ndarray,
    times_s: np.ndarray,
    agent_voiceprints: np.ndarray | None = None,
    agent_score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    agent_threshold: float = 0.75,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Which windows of a mono (both parties on one channel) recording are the customer's.

    Rule:

    1. Split the windows into two voices (:func:`split_two_speakers`, or ``labels`` if given).
    2. With collector voiceprints: the collector is the voice whose mean scores highest against any
       collector voiceprint, if that score is at least ``agent_threshold``; then windows of the
       other voice that themselves match a collector are dropped too. If no voice matches a
       collector, both voices are kept when the split found one voice, else step 3 decides.
       One voice that matches a collector means there is no customer speech (empty mask).
    3. Without collector voiceprints (or none matching): the collector is the voice that speaks
       first (collectors open outbound calls and greet inbound ones), the customer the other.
       When only one voice is found, every window is kept.

    Args:
        windows: unit-norm window embeddings in time order, shape (n, d).
        times_s: window start/end, seconds, shape (n, 2).
        agent_voiceprints: collector voiceprints, shape (k, d), or None.
        agent_score_fn: ``(voiceprint (d,), rows (m, d)) -> scores (m,)`` on the scale of
            ``agent_threshold``; None = raw cosine (the default threshold is a GE2E cosine).
        agent_threshold: score at or above which a voice is a collector.
        labels: a two-voice labelling to use instead of :func:`split_two_speakers`, shape (n,).

    Returns:
        bool mask, shape (n,): True for the customer's windows.
    """
    w, t = _check_windows(windows, times_s)
    n = len(w)
    lab = split_two_speakers(w, t) if labels is None else np.asarray(labels, dtype=np.int64)
    if lab.shape != (n,):
        raise UsageError(f"labels must have shape ({n},), got {lab.shape}.")
    voices = [c for c in (0, 1) if np.any(lab == c)]
    if agent_voiceprints is not None and len(agent_voiceprints):
        agents = _rows(agent_voiceprints, "agent_voiceprints", w.shape[1])
        score = agent_score_fn or (lambda a, rows: unit(rows) @ unit(a))
        means = unit(np.stack([w[lab == c].mean(axis=0) for c in voices]))
        voice_scores = np.array(
            [[float(np.asarray(score(a, means[i : i + 1])).reshape(-1)[0]) for a in agents] for i in range(len(voices))]
        ).max(axis=1)
        best = int(np.argmax(voice_scores))
        if voice_scores[best] >= agent_threshold:
            if len(voices) == 1:
                return np.zeros(n, dtype=bool)
            mask = lab != voices[best]
            window_scores = np.max(
                np.stack([np.asarray(score(a, w), dtype=np.float64).reshape(n) for a in agents]), axis=0
            )
            return mask & (window_scores < agent_threshold)
    if len(voices) == 1:
        return np.ones(n, dtype=bool)
    first = int(lab[0])  # the collector opens the call
    return lab != first


# --- 3. several voices behind one borrower ------------------------------------------------------


def average_link(x: np.ndarray, threshold: float) -> np.ndarray:
    """Average-linkage clusters of unit rows whose mean pairwise cosine stays >= threshold; labels (n,)."""
    if len(x) == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = 1.0 - np.clip(x.astype(np.float64) @ x.astype(np.float64).T, -1.0, 1.0)
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform((d + d.T) / 2.0, checks=False), method="average")
    return fcluster(z, t=1.0 - threshold, criterion="distance").astype(np.int64) - 1


def voices_per_borrower(
    vectors: np.ndarray, call_ids: Sequence[str], threshold: float = VOICES_THRESHOLD, min_calls: int = 1
) -> list[list[str]]:
    """Group one borrower's calls by voice; report the groups when there are two or more.

    Average-linkage agglomerative clustering on cosine, cut where the mean similarity between two
    groups falls below ``threshold``. The scale is the cosine of the vectors as given: pass vectors
    through :func:`voicecheck.crosscall.scoring_space` for the default.

    Args:
        vectors: the borrower's call embeddings, shape (n, d).
        call_ids: one id per row.
        threshold: least mean cosine between calls of one voice.
        min_calls: a group needs at least this many calls to count as a voice (1 = a single odd
            call is a voice; 2 = need a repeat).

    Returns:
        Groups of call ids, largest first, when at least two groups have ``min_calls`` calls; else [].
    """
    v = _rows(vectors, "vectors")
    if len(call_ids) != len(v):
        raise UsageError(f"{len(call_ids)} call ids for {len(v)} vectors; pass one id per row.")
    if len(v) < 2:
        return []
    labels = average_link(unit(v), threshold)
    groups = [[call_ids[int(i)] for i in np.flatnonzero(labels == c)] for c in np.unique(labels)]
    groups = sorted((g for g in groups if len(g) >= min_calls), key=lambda g: (-len(g), g[0]))
    return groups if len(groups) >= 2 else []


# --- 4. one voice behind many borrowers ---------------------------------------------------------


@dataclass(frozen=True)
class Ring:
    """Calls in one voice spread over several borrowers.

    Attributes:
        calls: call ids in the cluster.
        borrowers: the distinct borrower ids those calls were made for, sorted.
        cohesion: mean pairwise cosine of the cluster's vectors.
    """

    calls: list[str]
    borrowers: list[str]
    cohesion: float


def knn(vectors: np.ndarray, k: int, exact_max: int | None = None, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every row by inner product (cosine for unit rows), self excluded.

    Exact blocked numpy search up to ``exact_max`` rows (None: :data:`EXACT_SEARCH_MAX`; memory
    O(block * n)); above it an HNSW index from faiss (``pip install faiss-cpu``), or the exact
    search when faiss is missing.

    Returns:
        (similarities, indices), each shape (n, min(k, n - 1)); missing neighbours have index -1.
    """
    x = np.ascontiguousarray(unit(_rows(vectors, "vectors")))
    n = len(x)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    if n > (EXACT_SEARCH_MAX if exact_max is None else exact_max):
        try:
            import faiss
        except ImportError:
            log.warning("faiss is not installed; exact search over %d vectors (pip install faiss-cpu)", n)
        else:
            index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.add(x)
            index.hnsw.efSearch = max(64, 2 * k)
            sims, idx = index.search(x, k + 1)
            return _drop_self(sims, idx.astype(np.int64), k)
    sims = np.empty((n, k + 1), np.float32)
    idx = np.empty((n, k + 1), np.int64)
    for s in range(0, n, block):
        g = x[s : s + block] @ x.T
        part = np.argpartition(-g, k, axis=1)[:, : k + 1]
        ps = np.take_along_axis(g, part, axis=1)
        order = np.argsort(-ps, axis=1)
        idx[s : s + block] = np.take_along_axis(part, order, axis=1)
        sims[s : s + block] = np.take_along_axis(ps, order, axis=1)
    return _drop_self(sims, idx, k)


def _drop_self(sims: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(idx)
    self_hit = idx == np.arange(n)[:, None]
    # keep the first k neighbours that are not the row itself
    order = np.argsort(self_hit, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes of the undirected graph with edges a[i]-b[i]."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def cohort_stats(
    vectors: np.ndarray, borrower_ids: Sequence[str], cohort_max: int = RING_COHORT_MAX, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How alike each call is to calls of other borrowers: the mean and spread of its cosines to them.

    The cohort is the whole population up to ``cohort_max`` calls, else an even spread of
    ``cohort_max`` of them; a call's own borrower's calls (and the call itself) are left out of its
    statistics. These are population statistics, so they estimate the same thing in a store of 40
    calls or of millions. Memory O(block * cohort_max), time O(n * cohort_max * d).

    Args:
        vectors: unit-norm call embeddings, shape (n, d).
        borrower_ids: the borrower of each call, one per row.
        cohort_max: most calls in the cohort.

    Returns:
        (mean, standard deviation, cohort size), each shape (n,): cosine statistics of each call
        against the cohort's calls of other borrowers. A call with no such call gets mean 0 and
        deviation 1 (its link scores are then plain cosines); a deviation is at least 1e-4.
    """
    x = unit(_rows(vectors, "vectors"))
    n = len(x)
    if len(borrower_ids) != n:
        raise UsageError(f"{len(borrower_ids)} borrower ids for {n} vectors; pass one per row.")
    owner = np.unique(np.asarray(borrower_ids, dtype=object).astype(str), return_inverse=True)[1]
    step = -(-n // cohort_max) if n else 1
    cohort = np.arange(0, n, step)
    cohort_t, cohort_owner = np.ascontiguousarray(x[cohort].T), owner[cohort]  # gathered once, not per block
    mean, sd, count = np.zeros(n), np.ones(n), np.zeros(n, np.int64)
    for s in range(0, n, block):
        sims = (x[s : s + block] @ cohort_t).astype(np.float64)
        other = owner[s : s + block, None] != cohort_owner[None, :]
        m = other.sum(axis=1)
        mu = np.where(other, sims, 0.0).sum(axis=1) / np.maximum(m, 1)
        var = np.where(other, (sims - mu[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(m, 1)
        mean[s : s + block] = np.where(m > 0, mu, 0.0)
        sd[s : s + block] = np.where(m > 0, np.maximum(np.sqrt(var), 1e-4), 1.0)
        count[s : s + block] = m
    return mean, sd, count


def link_scores(
    cosines: np.ndarray, mean_a: np.ndarray, sd_a: np.ndarray, mean_b: np.ndarray, sd_b: np.ndarray
) -> np.ndarray:
    """Normalised similarity of call pairs (symmetric S-norm): ``0.5 * (z_a + z_b)``.

    ``z_a = (cosine - mean_a) / sd_a`` says how far the pair's cosine stands above what call a
    scores against other borrowers (:func:`cohort_stats`), in standard deviations; likewise for b.
    A call that resembles everyone (a long, clean call) needs a higher cosine to link than a short
    noisy clip whose cosines are all small, so one threshold serves calls of any length.

    Args:
        cosines: cosines of the pairs, any shape; the other arguments broadcast against it.

    Returns:
        Link scores, same shape as ``cosines`` (about 0 for a typical pair of different voices).
    """
    c = np.asarray(cosines, dtype=np.float64)
    return 0.5 * ((c - mean_a) / sd_a + (c - mean_b) / sd_b)


def _complete_link(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Complete-linkage clusters in which every pair has score >= threshold; labels (n,)."""
    if len(scores) == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    top = float(np.max(scores))
    d = top - (scores + scores.T) / 2.0  # a distance >= 0 on the pairs; the diagonal is unused
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(np.maximum(d, 0.0), checks=False), method="complete")
    return fcluster(z, t=top - threshold, criterion="distance").astype(np.int64) - 1


def find_rings(
    vectors: np.ndarray,
    call_ids: Sequence[str],
    borrower_ids: Sequence[str],
    min_borrowers: int = 3,
    link_threshold: float | None = None,
    k: int = 20,
    max_component: int = 3000,
    eligible: np.ndarray | None = None,
) -> list[Ring]:
    """Find voices that speak for several borrowers.

    1. Normalise (:func:`_normalisation`): a pair's link score (:func:`link_scores`) is how far its
       cosine stands above each call's cosines to other borrowers' calls, so long calls and short
       clips share one threshold.
    2. k-nearest-neighbour graph (:func:`knn`: exact for small n, HNSW for large n) with edges of link
       score >= ``link_threshold``; its connected components (:func:`_linked_components`).
    3. In each component with ``min_borrowers`` borrowers, complete linkage (:func:`_rings_in`): every
       pair of a cluster links, so a chain of look-alikes is not one voice; a component larger than
       ``max_component`` is split again one standard deviation stricter first.
    4. Clusters whose calls span ``min_borrowers`` distinct borrowers are rings.

    Memory O(n k) + O(c^2) for the largest component c; no n x n matrix.

    Args:
        vectors: call embeddings, shape (n, d); pass them through
            :func:`voicecheck.crosscall.scoring_space` for the default threshold.
        call_ids: one id per row.
        borrower_ids: the borrower each call was made for, one per row.
        min_borrowers: least distinct borrowers of a ring (>= 2).
        link_threshold: least link score (:func:`link_scores`) between any two calls of a ring;
            None: :func:`ring_link_threshold` of ``min_borrowers``.
        k: neighbours per call.
        max_component: largest component clustered at once (see step 3).
        eligible: which calls may join a ring, bool per row (None: all). The others still
            normalise the link scores (step 1) but form no edge: e.g. calls already verified as
            their own borrower's voice (:func:`voicecheck.crosscall.verified_calls`).

    Returns:
        Rings, most borrowers first; ``cohesion`` is the mean pairwise cosine of the ring's calls.
    """
    x = unit(_rows(vectors, "vectors"))
    n = len(x)
    if len(call_ids) != n or len(borrower_ids) != n:
        raise UsageError(f"{n} vectors, {len(call_ids)} call ids, {len(borrower_ids)} borrower ids: pass one per row.")
    if min_borrowers < 2:
        raise UsageError(f"min_borrowers must be at least 2, got {min_borrowers}.")
    if n < min_borrowers:
        return []
    if link_threshold is None:
        link_threshold = ring_link_threshold(min_borrowers)
    borrowers = np.unique(np.asarray(borrower_ids, dtype=object).astype(str), return_inverse=True)[1]
    mean, sd = _normalisation(x, borrower_ids)

    def edges(members: np.ndarray, thr: float) -> np.ndarray:
        return _linked_components(x, members, (mean, sd), k, thr)

    if eligible is None:
        everyone = np.arange(n)
    else:
        ok = np.asarray(eligible, dtype=bool).reshape(-1)
        if ok.shape != (n,):
            raise UsageError(f"eligible must have one flag per call ({n}), got shape {ok.shape}.")
        everyone = np.flatnonzero(ok)
        if len(everyone) < 2:
            return []
    todo = [(everyone, edges(everyone, link_threshold), link_threshold)]
    rings: list[Ring] = []
    while todo:
        members_all, comp, thr = todo.pop()
        for c in np.unique(comp):
            members = members_all[comp == c]
            if len(members) < 2 or len(np.unique(borrowers[members])) < min_borrowers:
                continue
            if len(members) > max_component:
                todo.append((members, edges(members, thr + 1.0), thr + 1.0))
                continue
            stats = (mean[members], sd[members])
            rings += _rings_in(
                x[members], members, stats, link_threshold, borrowers, call_ids, borrower_ids, min_borrowers
            )
    rings.sort(key=lambda r: (-len(r.borrowers), -r.cohesion))
    return rings


def _normalisation(x: np.ndarray, borrower_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 of :func:`find_rings`: each call's cohort mean and deviation (:func:`cohort_stats`),
    with a warning when some call has too few calls of other borrowers to normalise against."""
    mean, sd, count = cohort_stats(x, borrower_ids)
    if count.min() < RING_MIN_COHORT:
        log.warning(
            "rings: some calls have only %d calls of other borrowers to normalise against (want >= %d); "
            "with so few stored calls the link scores are rough",
            int(count.min()),
            RING_MIN_COHORT,
        )
    return mean, sd


def _linked_components(
    x: np.ndarray, members: np.ndarray, stats: tuple[np.ndarray, np.ndarray], k: int, thr: float
) -> np.ndarray:
    """Step 2 of :func:`find_rings`: component label of each member in the kNN graph of its members
    whose edges have link score >= ``thr`` (``stats``: every call's cohort mean and deviation)."""
    mean, sd = stats
    sims, idx = knn(x[members], k)
    a = np.repeat(np.arange(len(members)), idx.shape[1])
    b = idx.ravel()
    ok = b >= 0
    a, b = a[ok], b[ok]
    g_a, g_b = members[a], members[b]
    keep = link_scores(sims.ravel()[ok], mean[g_a], sd[g_a], mean[g_b], sd[g_b]) >= thr
    return components(len(members), a[keep], b[keep])


def _rings_in(
    x: np.ndarray,
    members: np.ndarray,
    stats: tuple[np.ndarray, np.ndarray],
    link_threshold: float,
    borrowers: np.ndarray,
    call_ids: Sequence[str],
    borrower_ids: Sequence[str],
    min_borrowers: int,
) -> list[Ring]:
    """Step 3 of :func:`find_rings` for one component: complete-linkage clusters whose every pair links,
    kept when their calls span ``min_borrowers`` borrowers. ``x`` holds the members' unit rows, ``stats``
    their cohort mean and deviation."""
    g = x.astype(np.float64)
    cos = g @ g.T
    mean, sd = stats
    labels = _complete_link(link_scores(cos, mean[:, None], sd[:, None], mean, sd), link_threshold)
    found = []
    for lab in np.unique(labels):
        pick = np.flatnonzero(labels == lab)
        group = members[pick]
        if len(group) < 2 or len(np.unique(borrowers[group])) < min_borrowers:
            continue
        m = len(group)
        block = cos[np.ix_(pick, pick)]
        found.append(
            Ring(
                calls=[call_ids[i] for i in group],
                borrowers=sorted({str(borrower_ids[i]) for i in group}),
                cohesion=round(float((np.sum(block) - np.trace(block)) / (m * (m - 1))), 4),
            )
        )
    return found
