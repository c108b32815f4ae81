"""Operating point from a deployment's own calls: the maths, ready to move into the product.

A batch scores each call against its claimed borrower's voiceprint (the *claimed-identity* score)
and also against a sample of OTHER borrowers' voiceprints (*non-target* scores: with near
certainty different speakers, in exactly tonight's channel, cohort and normalisation). These
functions turn those label-free scores into decisions:

* :func:`sample_nontarget_pairs` — which other voiceprints each call is scored against;
* :func:`nontarget_threshold` — the threshold that lets at most ``max_false_accept`` of the
  non-target trials pass, with an optional guard against same-person pairs in the sample (one
  agent enrolled as two borrowers: :func:`contamination_share`);
* :class:`NontargetModel` — condition-aware scores: the non-target mean and spread as a linear
  function of quality measures (log net speech of call and enrollment, ...), fitted label-free,
  so that a short and a long call face the same false-accept rate;
* :func:`binned_thresholds` — the alternative: one non-target quantile per condition bin;
* :class:`QualityCalibration` / :func:`fit_quality_calibration` — labelled calibration with
  quality measures, ``llr = a * score + b + c . q``;
* :func:`band_decisions` — ``mismatch`` / ``inconclusive`` / ``match`` with a weak-evidence band;
* :func:`estimate_false_flag_rate` — tonight's share of honest borrowers flagged, without labels:
  the claimed-identity scores are a mixture of genuine calls and a few impostors whose
  distribution is the (known) non-target one.

Conventions as in :mod:`voicecheck.scoring`: a score is a similarity (higher = more alike); a call
*passes* (``match``) when ``score >= threshold`` and is *flagged* (``mismatch``) below it. A false
accept is a non-target at or above the threshold; a false flag is a genuine call below it.
numpy only; invalid inputs raise :class:`voicecheck.errors.UsageError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicecheck.errors import UsageError

MISMATCH, INCONCLUSIVE, MATCH = -1, 0, 1
"""Codes returned by :func:`band_decisions`."""

_GAUSS_LOG_ABS = -0.6351814227307391
"""E[log |Z|] for a standard normal Z: turns a mean log-residual into a log standard deviation."""


def _scores(values: npt.ArrayLike, what: str, min_size: int = 1) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size < min_size:
        raise UsageError(f"{what}: {arr.size} values, at least {min_size} needed.")
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{what} must be finite; got {int(np.sum(~np.isfinite(arr)))} non-finite values.")
    return arr


def _fraction(value: float, what: str, low_open: bool = True) -> float:
    ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    if not (math.isfinite(value) and ok):
        raise UsageError(f"{what} must be a fraction in {'(0' if low_open else '[0'}, 1); got {value}.")
    return float(value)


# --------------------------------------------------------------------------------------------
# the label-free sample
# --------------------------------------------------------------------------------------------


def sample_nontarget_pairs(
    claimed: npt.ArrayLike, n_voiceprints: int, per_call: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Other borrowers' voiceprints to score each call against (what a batch would do).

    Args:
        claimed: index of each call's claimed borrower in ``range(n_voiceprints)``, shape (n_calls,).
        n_voiceprints: voiceprints in the store, >= 2.
        per_call: voiceprints sampled per call (without replacement), >= 1; clipped to
            ``n_voiceprints - 1``.
        rng: random source.

    Returns:
        (call index, voiceprint index), each shape (n_pairs,), n_pairs = n_calls * min(per_call,
        n_voiceprints - 1); no pair has a call's own claimed voiceprint.

    Raises:
        UsageError: fewer than 2 voiceprints, ``per_call`` < 1 or a claimed index out of range.
    """
    owner = np.asarray(claimed, dtype=np.int64).ravel()
    if n_voiceprints < 2 or per_call < 1:
        raise UsageError(f"need >= 2 voiceprints and per_call >= 1; got {n_voiceprints} and {per_call}.")
    if owner.size and (owner.min() < 0 or owner.max() >= n_voiceprints):
        raise UsageError(
            f"claimed voiceprint indices must be in [0, {n_voiceprints}); got {owner.min()}..{owner.max()}."
        )
    k = min(per_call, n_voiceprints - 1)
    # k of the other n - 1 voiceprints: draw from 0..n-2 and step over the call's own one
    draws = np.array([rng.choice(n_voiceprints - 1, size=k, replace=False) for _ in range(owner.size)], np.int64)
    voiceprints = draws.reshape(owner.size, k) + (draws.reshape(owner.size, k) >= owner[:, None])
    return np.repeat(np.arange(owner.size), k), voiceprints.ravel()


# --------------------------------------------------------------------------------------------
# the threshold and its guard
# --------------------------------------------------------------------------------------------


def contamination_share(nontarget_scores: npt.ArrayLike, claimed_scores: npt.ArrayLike, limit: float = 0.01) -> float:
    """Estimated share of same-person pairs in a non-target sample (label-free), at most ``limit``.

    Same-person pairs (one agent enrolled as two borrowers) score like genuine calls. Tonight's
    claimed-identity scores are mostly genuine, so their median is a level that different-speaker
    pairs rarely reach: about half of the same-person pairs are above it. The estimate is twice the
    share of the sample above that median. Different-speaker pairs above it bias it upwards, a lot
    where genuine and non-target scores overlap (a poor scoring system): ``limit`` bounds what the
    guard can cost in false accepts on a clean sample.

    Args:
        nontarget_scores: the sample, shape (n,), n >= 1.
        claimed_scores: tonight's claimed-identity scores (genuine calls and a few impostors), (m,).
        limit: the largest share returned, in [0, 1).

    Returns:
        The estimated share in [0, ``limit``].
    """
    non = _scores(nontarget_scores, "non-target scores")
    claimed = _scores(claimed_scores, "claimed-identity scores")
    _fraction(limit, "limit", low_open=False)
    return float(min(limit, 2.0 * np.mean(non > np.median(claimed))))


def nontarget_threshold(nontarget_scores: npt.ArrayLike, max_false_accept: float, contamination: float = 0.0) -> float:
    """The threshold at which at most ``max_false_accept`` of the non-target trials pass.

    The result is the ``k``-th highest score with ``k = floor(max_false_accept * n_clean)``
    (so exactly ``k`` non-targets score at or above it, ties aside); with ``k = 0`` it is just
    above the highest score. ``contamination`` (e.g. :func:`contamination_share`) is the share of
    the sample taken to be same-person pairs: that many of the highest scores are left out first
    and ``n_clean`` counts what remains. It costs ``contamination`` in false accepts when the
    sample is in fact clean.

    Args:
        nontarget_scores: in-domain non-target scores, shape (n,), n >= 1.
        max_false_accept: tolerated share of non-targets passing, in (0, 1).
        contamination: share of the sample to drop from the top, in [0, 1).

    Returns:
        The threshold on the same scale as the scores.

    Raises:
        UsageError: empty or non-finite scores, fractions out of range.
    """
    non = np.sort(_scores(nontarget_scores, "non-target scores"))[::-1]
    _fraction(max_false_accept, "max_false_accept")
    _fraction(contamination, "contamination", low_open=False)
    drop = int(math.floor(contamination * non.size + 1e-9))
    clean = non[drop:]
    if clean.size == 0:
        raise UsageError(f"contamination {contamination} leaves none of the {non.size} non-target scores.")
    k = int(math.floor(max_false_accept * clean.size + 1e-9))
    if k == 0:
        return float(np.nextafter(clean[0], np.inf))
    return float(clean[k - 1])


def false_accept_quantile_error(n: int, max_false_accept: float) -> float:
    """Binomial standard error of the false-accept share realised by a quantile of ``n`` non-targets.

    ``sqrt(p (1 - p) / n)``: the share of a *new* non-target population passing a threshold set at
    ``p = max_false_accept`` on ``n`` independent non-target scores varies by about this much. Trials
    sharing calls or voiceprints are not independent, so read ``n`` as an upper bound on the
    effective count.
    """
    if n < 1:
        raise UsageError(f"n must be >= 1; got {n}.")
    p = _fraction(max_false_accept, "max_false_accept")
    return math.sqrt(p * (1.0 - p) / n)


# --------------------------------------------------------------------------------------------
# condition-aware thresholds
# --------------------------------------------------------------------------------------------


def _design(quality: npt.ArrayLike, n: int) -> np.ndarray:
    q = np.asarray(quality, dtype=np.float64)
    if q.size == 0:
        q = np.zeros((n, 0))
    elif q.size % n == 0:
        q = q.reshape(n, -1)
    if q.ndim != 2 or q.shape[0] != n or not np.all(np.isfinite(q)):
        raise UsageError(f"quality measures must be finite with one row per score ({n}); got shape {q.shape}.")
    return np.hstack([np.ones((n, 1)), q])


@dataclass(frozen=True)
class NontargetModel:
    """Non-target score distribution as a function of quality measures (fitted label-free).

    ``mean(q) = m . [1, q]`` and ``log std(q) = s . [1, q]``; :meth:`standardise` maps a score to
    ``(score - mean(q)) / std(q)``, so one quantile of the standardised non-target sample gives a
    threshold per condition with the same false-accept share in each (where the model fits).

    Attributes:
        mean_coef: coefficients of the mean, shape (1 + p,).
        log_std_coef: coefficients of the log standard deviation, shape (1 + p,).
        n: non-target scores it was fitted on.
    """

    mean_coef: np.ndarray
    log_std_coef: np.ndarray
    n: int

    def standardise(self, scores: npt.ArrayLike, quality: npt.ArrayLike) -> np.ndarray:
        """Standardised scores, shape (n,), for ``scores`` (n,) with ``quality`` (n, p)."""
        s = _scores(scores, "scores")
        X = _design(quality, s.size)
        if X.shape[1] != self.mean_coef.size:
            raise UsageError(f"model has {self.mean_coef.size - 1} quality measures; got {X.shape[1] - 1}.")
        return np.asarray((s - X @ self.mean_coef) / np.exp(X @ self.log_std_coef))


def fit_nontarget_model(scores: npt.ArrayLike, quality: npt.ArrayLike, trim: float = 0.02) -> NontargetModel:
    """Fit :class:`NontargetModel` to in-domain non-target scores (no labels needed).

    The mean by least squares; the log standard deviation by least squares on the log absolute
    residuals (plus the Gaussian constant). The highest ``trim`` share of residuals is left out of
    both second passes so that a few same-person pairs do not pull the fit.

    Args:
        scores: non-target scores, shape (n,), n > 2 (p + 1).
        quality: quality measures per score, shape (n, p) (p may be 0: a constant model).
        trim: share of the largest residuals ignored in the refit, in [0, 1).

    Returns:
        The fitted model.
    """
    s = _scores(scores, "non-target scores", min_size=3)
    X = _design(quality, s.size)
    if s.size <= 2 * X.shape[1]:
        raise UsageError(f"{s.size} non-target scores cannot fit {X.shape[1]} coefficients twice over.")
    _fraction(trim, "trim", low_open=False)
    mean_coef = np.linalg.lstsq(X, s, rcond=None)[0]
    resid = s - X @ mean_coef
    keep = resid <= np.quantile(resid, 1.0 - trim) if trim > 0 else np.ones(s.size, bool)
    mean_coef = np.linalg.lstsq(X[keep], s[keep], rcond=None)[0]
    resid = s - X @ mean_coef
    log_abs = np.log(np.maximum(np.abs(resid[keep]), 1e-9)) - _GAUSS_LOG_ABS
    log_std_coef = np.linalg.lstsq(X[keep], log_abs, rcond=None)[0]
    return NontargetModel(mean_coef=mean_coef, log_std_coef=log_std_coef, n=int(s.size))


def binned_thresholds(
    scores: npt.ArrayLike, bins: npt.ArrayLike, max_false_accept: float, min_count: int, fallback: float
) -> dict[int, float]:
    """One non-target threshold per condition bin (e.g. bins of call net speech).

    Args:
        scores: non-target scores, shape (n,).
        bins: integer bin of each score, shape (n,).
        max_false_accept: tolerated share of non-targets passing in each bin, in (0, 1).
        min_count: fewest scores a bin needs for its own threshold.
        fallback: threshold of bins with fewer (e.g. the pooled :func:`nontarget_threshold`).

    Returns:
        {bin: threshold} for every bin present in ``bins``.
    """
    s = _scores(scores, "non-target scores")
    b = np.asarray(bins).ravel()
    if b.size != s.size:
        raise UsageError(f"{s.size} scores but {b.size} bins.")
    out = {}
    for value in np.unique(b):
        these = s[b == value]
        out[int(value)] = nontarget_threshold(these, max_false_accept) if these.size >= min_count else float(fallback)
    return out


# --------------------------------------------------------------------------------------------
# labelled calibration with quality measures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityCalibration:
    """``llr = a * score + b + c . q`` (natural log), fitted on labelled trials.

    Attributes:
        a: score slope.
        b: offset.
        c: quality coefficients, shape (p,).
    """

    a: float
    b: float
    c: np.ndarray

    def llr(self, scores: npt.ArrayLike, quality: npt.ArrayLike) -> np.ndarray:
        """LLRs, shape (n,), of ``scores`` (n,) with ``quality`` (n, p)."""
        s = _scores(scores, "scores")
        X = _design(quality, s.size)[:, 1:]
        if X.shape[1] != self.c.size:
            raise UsageError(f"calibration has {self.c.size} quality measures; got {X.shape[1]}.")
        return np.asarray(self.a * s + self.b + X @ self.c)


def fit_quality_calibration(
    target_scores: npt.ArrayLike,
    nontarget_scores: npt.ArrayLike,
    target_quality: npt.ArrayLike,
    nontarget_quality: npt.ArrayLike,
    prior: float = 0.5,
) -> QualityCalibration:
    """Prior-weighted logistic regression (as :func:`voicecheck.scoring.fit_calibration`) with quality terms.

    Minimises the Cllr-style cost at ``prior`` by Newton's method on standardised inputs with a tiny
    ridge, so separable classes still give a finite answer.

    Args:
        target_scores / nontarget_scores: shape (n_t,) / (n_n,).
        target_quality / nontarget_quality: shape (n_t, p) / (n_n, p).
        prior: target prior in (0, 1).

    Returns:
        The fitted calibration.
    """
    tar = _scores(target_scores, "target scores")
    non = _scores(nontarget_scores, "non-target scores")
    _fraction(prior, "prior")
    X = np.vstack([_design(target_quality, tar.size), _design(nontarget_quality, non.size)])
    X = np.hstack([np.concatenate([tar, non])[:, None], X])  # [score, 1, q...]
    centre, spread = X.mean(axis=0), X.std(axis=0)
    spread[1] = 1.0
    centre[1] = 0.0
    if np.any(spread[[0, *range(2, X.shape[1])]] <= 1e-12):
        raise UsageError("a score or quality measure has no spread; it cannot be calibrated on.")
    Z = (X - centre) / spread
    y = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    w = np.concatenate([np.full(tar.size, prior / tar.size), np.full(non.size, (1 - prior) / non.size)])
    offset = math.log(prior) - math.log1p(-prior)
    theta = np.zeros(Z.shape[1])
    ridge = 1e-6
    for _ in range(100):
        eta = Z @ theta + offset
        post = 0.5 * (1.0 + np.tanh(0.5 * eta))
        grad = Z.T @ (w * (post - y)) + ridge * theta
        hess = (Z * (w * post * (1 - post))[:, None]).T @ Z + ridge * np.eye(Z.shape[1])
        step = np.linalg.solve(hess, -grad)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    coef = theta / spread  # back to raw inputs
    b = float(coef[1] - np.sum(coef * centre))
    return QualityCalibration(a=float(coef[0]), b=b, c=np.asarray(coef[2:]))


# --------------------------------------------------------------------------------------------
# decisions and the unlabelled false-flag estimate
# --------------------------------------------------------------------------------------------


def band_decisions(scores: npt.ArrayLike, mismatch_below: float, match_from: float) -> np.ndarray:
    """``MISMATCH`` below ``mismatch_below``, ``MATCH`` from ``match_from``, ``INCONCLUSIVE`` between.

    With ``mismatch_below == match_from`` there is no band (a plain threshold).

    Args:
        scores: shape (n,).
        mismatch_below: lower edge of the weak-evidence band.
        match_from: upper edge, >= ``mismatch_below``.

    Returns:
        int8 codes, shape (n,).
    """
    s = _scores(scores, "scores", min_size=0)
    if not (math.isfinite(mismatch_below) and math.isfinite(match_from) and mismatch_below <= match_from):
        raise UsageError(f"band edges must be finite with lower <= upper; got {mismatch_below}, {match_from}.")
    out = np.full(s.size, INCONCLUSIVE, dtype=np.int8)
    out[s < mismatch_below] = MISMATCH
    out[s >= match_from] = MATCH
    return out


@dataclass(frozen=True)
class FalseFlagEstimate:
    """Tonight's share of genuine calls flagged, estimated without labels.

    Attributes:
        rate: estimated share of genuine calls below the threshold, in [0, 1].
        impostor_share: estimated share of impostor calls among the claimed-identity scores.
        flagged_share: share of all claimed-identity calls below the threshold (what is observed).
        n_claimed: claimed-identity scores used.
        n_nontarget: non-target scores used.
    """

    rate: float
    impostor_share: float
    flagged_share: float
    n_claimed: int
    n_nontarget: int


def estimate_false_flag_rate(
    claimed_scores: npt.ArrayLike, nontarget_scores: npt.ArrayLike, threshold: float, anchor: float = 0.5
) -> FalseFlagEstimate:
    """Share of honest borrowers flagged at ``threshold``, from unlabelled scores.

    The claimed-identity distribution is ``F = (1 - pi) G + pi N``: genuine calls ``G`` and a share
    ``pi`` of impostors, whose scores follow the non-target distribution ``N`` (known from the
    sample). Below the non-target ``anchor`` quantile ``t0`` genuine calls are rare, so
    ``pi ~ F(t0) / N(t0)``; then ``G(threshold) = (F(threshold) - pi N(threshold)) / (1 - pi)``.
    Genuine calls below ``t0`` make ``pi`` too high and the rate slightly too low (by about
    ``G(t0) / anchor``).

    Args:
        claimed_scores: each call against its claimed borrower, shape (m,), m >= 1.
        nontarget_scores: in-domain non-target sample, shape (n,), n >= 1.
        threshold: the decision threshold (flagged = score below it).
        anchor: non-target quantile below which genuine calls are taken to be absent, in (0, 1).

    Returns:
        The estimate (rate and impostor share clipped to [0, 1]).
    """
    claimed = _scores(claimed_scores, "claimed-identity scores")
    non = np.sort(_scores(nontarget_scores, "non-target scores"))
    _fraction(anchor, "anchor")
    if not math.isfinite(threshold):
        raise UsageError(f"threshold must be finite; got {threshold}.")
    t0 = float(np.quantile(non, anchor))
    n_t0 = float(np.mean(non < t0)) or anchor
    pi = float(np.clip(np.mean(claimed < t0) / n_t0, 0.0, 0.99))
    flagged = float(np.mean(claimed < threshold))
    n_thr = float(np.mean(non < threshold))
    rate = float(np.clip((flagged - pi * n_thr) / (1.0 - pi), 0.0, 1.0))
    return FalseFlagEstimate(rate, pi, flagged, int(claimed.size), int(non.size))
