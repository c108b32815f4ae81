"""The operating point: a decision threshold set from the deployment's own calls, without labels.

A call scored against ANOTHER borrower's voiceprint is, with near certainty, a different-speaker
trial in exactly tonight's channel, cohort and normalisation. The batch (and ``check``) scores a
sample of such pairs drawn from the call store (tonight's calls and the store's history) and sets
the threshold where at most ``max_false_accept`` of them pass: the false-accept rate a deployment
can observe, which commercial voice biometrics use for the same reason. Below enough trials the
profile's threshold stays, and the record says so. The same sample estimates tonight's share of
honest borrowers flagged (:func:`estimate_false_flag_rate`).

The maths here is numpy only and was chosen in ``benchmarks/transfer.py`` (leave-one-corpus-out:
see benchmarks/results/transfer.md). Conventions as in :mod:`voicecheck.scoring`: a call *passes*
when ``score >= threshold`` and is *flagged* below it; a false accept is a non-target at or above
the threshold, a false flag a genuine call below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import UsageError

MIN_TRIALS_PER_RATE = 100
"""An operating point needs at least ``MIN_TRIALS_PER_RATE / max_false_accept`` non-target trials
(2,500 at 4%): the quantile's binomial error is then about a tenth of the rate (measured in
benchmarks/transfer.py: 1,000 trials at 5% realised 3.8-6.1%, 3,000 trials 4.4-5.7%)."""

MIN_CALLS = 100
"""...and trials spread over at least this many stored calls..."""

MIN_VOICEPRINTS = 25
"""...and at least this many other borrowers' voiceprints (a few people's voices are no population)."""


def finite_scores(values: npt.ArrayLike, what: str, min_size: int = 1) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size < min_size:
        raise UsageError(f"{what}: {arr.size} values, at least {min_size} needed.")
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{what} must be finite; got {int(np.sum(~np.isfinite(arr)))} non-finite values.")
    return arr


def fraction(value: float, what: str, low_open: bool = True) -> float:
    ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    if not (math.isfinite(value) and ok):
        raise UsageError(f"{what} must be a fraction in {'(0' if low_open else '[0'}, 1); got {value}.")
    return float(value)


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
    non = finite_scores(nontarget_scores, "non-target scores")
    claimed = finite_scores(claimed_scores, "claimed-identity scores")
    fraction(limit, "limit", low_open=False)
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
    non = np.sort(finite_scores(nontarget_scores, "non-target scores"))[::-1]
    fraction(max_false_accept, "max_false_accept")
    fraction(contamination, "contamination", low_open=False)
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
    p = fraction(max_false_accept, "max_false_accept")
    return math.sqrt(p * (1.0 - p) / n)


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
    claimed = finite_scores(claimed_scores, "claimed-identity scores")
    non = np.sort(finite_scores(nontarget_scores, "non-target scores"))
    fraction(anchor, "anchor")
    if not math.isfinite(threshold):
        raise UsageError(f"threshold must be finite; got {threshold}.")
    t0 = float(np.quantile(non, anchor))
    n_t0 = float(np.mean(non < t0)) or anchor
    pi = float(np.clip(np.mean(claimed < t0) / n_t0, 0.0, 0.99))
    flagged = float(np.mean(claimed < threshold))
    n_thr = float(np.mean(non < threshold))
    rate = float(np.clip((flagged - pi * n_thr) / (1.0 - pi), 0.0, 1.0))
    return FalseFlagEstimate(rate, pi, flagged, int(claimed.size), int(non.size))


@dataclass(frozen=True)
class OperatingPoint:
    """One band's threshold set from in-domain non-target trials.

    Attributes:
        band, mode: the band and scoring mode the trials were scored in.
        threshold: a call matches from here (``max_false_accept / w`` of the trials pass it).
        lower: a call is a mismatch below here; between the two it is ``inconclusive``
            (weak_evidence). Equal to ``threshold`` without a weak-evidence band (w = 1).
        max_false_accept: the rate asked for.
        n_trials, n_calls, n_voiceprints: what the sample rests on.
        contamination: share of the sampled pairs left out as one person enrolled as two borrowers.
        nontarget: the sample's scores (for tonight's false-flag estimate; never stored).
    """

    band: str
    mode: str
    threshold: float
    lower: float
    max_false_accept: float
    n_trials: int
    n_calls: int
    n_voiceprints: int
    contamination: float
    nontarget: np.ndarray

    @property
    def source(self) -> str:
        guard = (
            f", {self.contamination:.2%} of pairs left out as one voice under two borrowers"
            if self.contamination
            else ""
        )
        return (
            f"operating point: {self.max_false_accept:.1%} of {self.n_trials} non-target trials pass "
            f"({self.n_calls} stored calls x {self.n_voiceprints} other borrowers' voiceprints{guard})"
        )

    def report(self, claimed: npt.ArrayLike, alarm: float, used: Any = None) -> dict[str, object]:
        """What summary.json says of this band: the threshold used (``used``, a
        :class:`voicecheck.scorer.Threshold`; None: this point's), its basis, what this operating
        point rests on, and tonight's estimated share of honest borrowers flagged at the threshold
        used (with a warning above ``alarm``)."""
        threshold = self.threshold if used is None else float(used.value)
        flagged_below = self.lower if used is None else float(used.mismatch_below)
        out: dict[str, object] = {
            "mode": self.mode,
            "threshold": round(threshold, 4),
            "mismatch_below": round(flagged_below, 4),
            "source": self.source if used is None else str(used.source),
            "max_false_accept": self.max_false_accept,
            "nontarget_trials": self.n_trials,
            "calls": self.n_calls,
            "voiceprints": self.n_voiceprints,
            "contamination": round(self.contamination, 4),
        }
        claimed = np.asarray(claimed, dtype=np.float64)
        if claimed.size:
            est = estimate_false_flag_rate(claimed, self.nontarget, flagged_below)
            out.update(
                estimated_false_flag_rate=round(est.rate, 4),
                flagged_share=round(est.flagged_share, 4),
                estimated_impostor_share=round(est.impostor_share, 4),
                claimed_calls=est.n_claimed,
            )
            if est.rate > alarm or est.flagged_share > 2 * alarm:
                out["warning"] = (
                    f"an estimated {est.rate:.1%} of honest borrowers (and {est.flagged_share:.1%} of all calls) "
                    f"were flagged tonight, above the {alarm:.0%} alarm: a new channel, codec or call centre? "
                    "Review a sample of flagged calls and run voicecheck calibrate on labelled ones"
                )
        return out


def choose_pairs(
    owners: list[set[str]], pool: list[str], per_call: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Other borrowers' voiceprints for each call: ``per_call`` of ``pool`` whose owner is not the call's.

    Args:
        owners: the borrowers each call is linked to.
        pool: the voiceprints' owners.
        per_call: voiceprints per call (fewer when the pool is small).

    Returns:
        (call index, pool index), each shape (n_pairs,).
    """
    calls: list[np.ndarray] = []
    voiceprints: list[np.ndarray] = []
    index = np.arange(len(pool))
    for i, who in enumerate(owners):
        allowed = index[[p not in who for p in pool]]
        if len(allowed) == 0:
            continue
        pick = rng.choice(allowed, size=min(per_call, len(allowed)), replace=False)
        calls.append(np.full(len(pick), i))
        voiceprints.append(pick)
    if not calls:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(calls).astype(np.int64), np.concatenate(voiceprints).astype(np.int64)


def operating_point(
    band: str,
    mode: str,
    nontarget: npt.ArrayLike,
    n_calls: int,
    n_voiceprints: int,
    max_false_accept: float,
    band_width: float = 1.0,
    dropped: float = 0.0,
) -> OperatingPoint | str:
    """The operating point of a band from its non-target sample, or why there is none yet.

    Args:
        nontarget: the sample's scores (pairs of two borrowers with one voice already left out).
        band_width: w >= 1: match from the threshold for ``max_false_accept / w``, mismatch below
            the one for ``max_false_accept * w`` (capped at 0.5).
        dropped: share of the sampled pairs left out as one person enrolled twice (reported).

    Returns:
        The OperatingPoint, or a sentence saying what is missing (the profile's threshold applies).
    """
    non = np.asarray(nontarget, dtype=np.float64)
    needed = math.ceil(MIN_TRIALS_PER_RATE / max_false_accept)
    if non.size < needed or n_calls < MIN_CALLS or n_voiceprints < MIN_VOICEPRINTS:
        return (
            f"too few non-target trials for an operating point ({non.size} trials, {n_calls} calls, "
            f"{n_voiceprints} voiceprints; needs {needed}, {MIN_CALLS} and {MIN_VOICEPRINTS})"
        )
    upper = nontarget_threshold(non, max_false_accept / band_width)
    lower = nontarget_threshold(non, min(max_false_accept * band_width, 0.5))
    return OperatingPoint(
        band, mode, upper, min(lower, upper), max_false_accept, int(non.size), n_calls, n_voiceprints, dropped, non
    )
