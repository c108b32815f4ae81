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
from voicecheck.operating import (  # noqa: F401 - the product's maths, re-exported for transfer.py
    FalseFlagEstimate,
    contamination_share,
    estimate_false_flag_rate,
    false_accept_quantile_error,
    finite_scores,
    fraction,
    nontarget_threshold,
    sample_nontarget_pairs,
)

MISMATCH, INCONCLUSIVE, MATCH = -1, 0, 1
"""Codes returned by :func:`band_decisions`."""

_GAUSS_LOG_ABS = -0.6351814227307391
"""E[log |Z|] for a standard normal Z: turns a mean log-residual into a log standard deviation."""


# --------------------------------------------------------------------------------------------
# the label-free sample
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# the threshold and its guard
# --------------------------------------------------------------------------------------------


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
        s = finite_scores(scores, "scores")
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
    s = finite_scores(scores, "non-target scores", min_size=3)
    X = _design(quality, s.size)
    if s.size <= 2 * X.shape[1]:
        raise UsageError(f"{s.size} non-target scores cannot fit {X.shape[1]} coefficients twice over.")
    fraction(trim, "trim", low_open=False)
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
    s = finite_scores(scores, "non-target scores")
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
        s = finite_scores(scores, "scores")
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
    tar = finite_scores(target_scores, "target scores")
    non = finite_scores(nontarget_scores, "non-target scores")
    fraction(prior, "prior")
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
    s = finite_scores(scores, "scores", min_size=0)
    if not (math.isfinite(mismatch_below) and math.isfinite(match_from) and mismatch_below <= match_from):
        raise UsageError(f"band edges must be finite with lower <= upper; got {mismatch_below}, {match_from}.")
    out = np.full(s.size, INCONCLUSIVE, dtype=np.int8)
    out[s < mismatch_below] = MISMATCH
    out[s >= match_from] = MATCH
    return out
