"""Evaluation of verification scores: EER, minDCF, Cllr, detection at a false-flag rate, DET plots.

Conventions (the same as :mod:`voicecheck.scoring`): a trial is accepted (``match``) when its
score is at or above the threshold. *Target* trials are genuine (same speaker); *nontarget* trials
are impostors. ``p_miss`` is the fraction of genuine trials flagged (a false flag); ``p_fa`` is the
fraction of impostor trials passed as a match. Every rate is a fraction in [0, 1].

numpy only; matplotlib is imported inside :func:`plot_det` alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import UsageError
from .scoring import as_scores, threshold_at_false_flag

_LN2 = math.log(2.0)


def error_rates(
    target_scores: npt.ArrayLike, nontarget_scores: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical error rates at every distinct threshold.

    Returns:
        ``(thresholds, p_miss, p_fa)``, each shape (k,): thresholds ascending (the distinct scores,
        then +inf); ``p_miss`` = fraction of targets below the threshold (genuine flagged, rising
        from 0 to 1); ``p_fa`` = fraction of nontargets at or above it (impostors passed, falling
        from 1 to 0).
    """
    tar = np.sort(as_scores(target_scores, "target scores"))
    non = np.sort(as_scores(nontarget_scores, "nontarget scores"))
    thresholds = np.append(np.unique(np.concatenate([tar, non])), np.inf)
    p_miss = np.searchsorted(tar, thresholds, side="left") / tar.size
    p_fa = (non.size - np.searchsorted(non, thresholds, side="left")) / non.size
    return thresholds, p_miss, p_fa


def threshold_at_eer(target_scores: npt.ArrayLike, nontarget_scores: npt.ArrayLike) -> float:
    """Threshold where the genuine-flag and impostor-pass rates are closest to equal.

    Picks, among the distinct scores, the threshold minimising ``max(p_miss, p_fa)``.

    Args:
        target_scores: genuine-trial scores, shape (n_t,).
        nontarget_scores: impostor-trial scores, shape (n_n,).

    Returns:
        A threshold (one of the observed scores).

    Raises:
        UsageError: empty or non-finite inputs.
    """
    thresholds, p_miss, p_fa = error_rates(target_scores, nontarget_scores)
    worst = np.maximum(p_miss, p_fa)[:-1]  # +inf (flag everything) is never the EER point
    return float(thresholds[int(np.argmin(worst))])


def _pair(target: npt.ArrayLike, nontarget: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return as_scores(target, "target scores"), as_scores(nontarget, "nontarget scores")


def _pav(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators on 0/1 labels sorted by score.

    Returns:
        ``(means, widths)``: the strictly increasing block means (target fraction per block) and
        the number of trials in each block; ``widths.sum() == labels.size``.
    """
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    run_widths = np.diff(np.concatenate([starts, [labels.size]]))
    run_sums = labels[starts].astype(np.int64) * run_widths
    sums: list[int] = []
    widths: list[int] = []
    for s, w in zip(run_sums.tolist(), run_widths.tolist(), strict=True):
        sums.append(s)
        widths.append(w)
        # merge while the previous block's mean >= this block's mean (exact integer comparison)
        while len(widths) > 1 and sums[-2] * widths[-1] >= sums[-1] * widths[-2]:
            s_last, w_last = sums.pop(), widths.pop()
            sums[-1] += s_last
            widths[-1] += w_last
    width_arr = np.asarray(widths, dtype=np.int64)
    return np.asarray(sums, dtype=np.float64) / width_arr, width_arr


def _sorted_labels(tar: np.ndarray, non: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores ascending with their 0/1 labels and original positions; targets first among ties.

    Putting targets first among ties is the pessimistic order (BOSARIS ``rocch``); PAV then pools
    every tie, so tied scores never get different posteriors.
    """
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(tar.size, dtype=np.int64), np.zeros(non.size, dtype=np.int64)])
    order = np.argsort(scores, kind="stable")
    return scores[order], labels[order], order


def rocch(target: npt.ArrayLike, nontarget: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the ROC convex hull (via PAV), as in BOSARIS ``rocch``.

    Args:
        target: genuine-trial scores, shape (n_t,).
        nontarget: impostor-trial scores, shape (n_n,).

    Returns:
        ``(p_miss, p_fa)``, each shape (v,), from (0, 1) (accept all) to (1, 0) (reject all).
    """
    tar, non = _pair(target, nontarget)
    _, labels, _ = _sorted_labels(tar, non)
    _, widths = _pav(labels.astype(np.float64))
    left = np.concatenate([[0], np.cumsum(widths)])  # trials rejected at each vertex
    cum_targets = np.concatenate([[0], np.cumsum(labels)])
    miss = cum_targets[left]
    fa = (labels.size - left) - (tar.size - miss)
    return miss / tar.size, fa / non.size


def eer(target: npt.ArrayLike, nontarget: npt.ArrayLike) -> tuple[float, float]:
    """Equal error rate from the ROC convex hull, and an operating threshold near it.

    The EER is exact for the convex hull of the empirical ROC (BOSARIS ``rocch2eer``): where the
    hull crosses ``p_miss == p_fa``. Perfect separation gives 0; scores carrying no information
    give 0.5 (the hull never does worse than chance).

    Args:
        target: genuine-trial scores, shape (n_t,).
        nontarget: impostor-trial scores, shape (n_n,).

    Returns:
        ``(eer, threshold)``: eer in [0, 0.5]; threshold an observed score minimising
        ``max(p_miss, p_fa)`` (see :func:`threshold_at_eer`).

    Raises:
        UsageError: empty or non-finite inputs.
    """
    p_miss, p_fa = rocch(target, nontarget)
    x1, x2 = p_fa[:-1], p_fa[1:]
    y1, y2 = p_miss[:-1], p_miss[1:]
    dx, dy = x1 - x2, y2 - y1  # both >= 0 along the hull
    sloped = (dx > 0) & (dy > 0)
    denom = np.where(sloped, dx + dy, 1.0)
    # x = y crossing of the line through (x1, y1), (x2, y2); the EER is the largest candidate.
    candidates = np.where(sloped, (x1 * y2 - x2 * y1) / denom, 0.0)
    value = float(max(0.0, candidates.max(initial=0.0)))
    return value, threshold_at_eer(target, nontarget)


def min_dcf(
    target: npt.ArrayLike,
    nontarget: npt.ArrayLike,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Minimum normalised detection cost over all thresholds.

    ``DCF = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa``, divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))`` (the cost of the best fixed decision).

    Args:
        target: genuine-trial scores, shape (n_t,).
        nontarget: impostor-trial scores, shape (n_n,).
        p_target: prior of a genuine trial, in (0, 1).
        c_miss: cost of flagging a genuine trial, > 0.
        c_fa: cost of passing an impostor, > 0.

    Returns:
        minDCF in [0, 1].

    Raises:
        UsageError: empty/non-finite inputs or parameters out of range.
    """
    if not 0.0 < p_target < 1.0:
        raise UsageError(f"p_target must be in (0, 1); got {p_target}.")
    if not (c_miss > 0 and c_fa > 0):
        raise UsageError(f"costs must be positive; got c_miss={c_miss}, c_fa={c_fa}.")
    # the lowest threshold accepts everything and +inf rejects everything, so both trivial
    # decisions are among the candidates and the result is at most 1
    _, p_miss, p_fa = error_rates(target, nontarget)
    cost = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return float(cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def cllr(target_llr: npt.ArrayLike, nontarget_llr: npt.ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits (Brümmer & du Preez 2006).

    Args:
        target_llr: natural-log LRs of genuine trials, shape (n_t,).
        nontarget_llr: natural-log LRs of impostor trials, shape (n_n,).

    Returns:
        Cllr >= 0; 1 bit for an uninformative system (all LLRs 0), 0 for a perfect one.

    Raises:
        UsageError: empty or non-finite inputs.
    """
    tar, non = _pair(target_llr, nontarget_llr)
    return _cllr(tar, non)


def _cllr(tar: np.ndarray, non: np.ndarray) -> float:
    c_tar = np.mean(np.logaddexp(0.0, -tar))
    c_non = np.mean(np.logaddexp(0.0, non))
    return float(0.5 * (c_tar + c_non) / _LN2)


def min_cllr(target: npt.ArrayLike, nontarget: npt.ArrayLike) -> float:
    """Cllr after the best monotone calibration (PAV), in bits: the discrimination-only loss.

    Invariant to any strictly increasing transform of the scores; ``cllr - min_cllr`` is the
    calibration loss.

    Args:
        target: genuine-trial scores, shape (n_t,).
        nontarget: impostor-trial scores, shape (n_n,).

    Returns:
        min Cllr in [0, 1].
    """
    tar, non = _pair(target, nontarget)
    _, labels, order = _sorted_labels(tar, non)
    means, widths = _pav(labels.astype(np.float64))
    posterior = np.repeat(means, widths)
    with np.errstate(divide="ignore"):
        llr_sorted = np.log(posterior) - np.log1p(-posterior) - math.log(tar.size / non.size)
    llr = np.empty_like(llr_sorted)
    llr[order] = llr_sorted
    return _cllr(llr[: tar.size], llr[tar.size :])


def detection_at_false_flag(target: npt.ArrayLike, nontarget: npt.ArrayLike, false_flag: float) -> float:
    """Fraction of impostor trials flagged at the threshold that flags ``false_flag`` of genuine.

    The threshold is :func:`voicecheck.scoring.threshold_at_false_flag` on the target scores, so
    the genuine flag rate is at most ``false_flag``.

    Args:
        target: genuine-trial scores, shape (n_t,).
        nontarget: impostor-trial scores, shape (n_n,).
        false_flag: tolerated genuine flag rate in [0, 1).

    Returns:
        Impostor detection rate in [0, 1] (higher is better).
    """
    tar, non = _pair(target, nontarget)
    threshold = threshold_at_false_flag(tar, false_flag)
    return float(np.mean(non < threshold))


def det_curve(target: npt.ArrayLike, nontarget: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Empirical DET/ROC points at every distinct threshold.

    Returns:
        ``(p_miss, p_fa)``, each shape (k,), ordered by rising threshold: ``p_miss`` rises from
        0 to 1, ``p_fa`` falls from 1 to 0.
    """
    _, p_miss, p_fa = error_rates(target, nontarget)
    return p_miss, p_fa


_DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def plot_det(
    curves: dict[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    path: str | Path,
    title: str = "DET",
) -> None:
    """Write a PNG DET plot (normal-deviate axes) with one curve per system.

    Args:
        curves: label -> (target scores, nontarget scores). The EER is added to each label.
        path: PNG file to write.
        title: plot title.

    Raises:
        UsageError: no curves, bad scores, or an unwritable path.
    """
    if not curves:
        raise UsageError("plot_det needs at least one curve.")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.special import ndtri

    lo, hi = 0.0005, 0.6  # axis range; points outside are drawn off the axes, not squashed onto them

    def deviate(p: np.ndarray) -> np.ndarray:
        return np.asarray(ndtri(np.clip(p, 1e-6, 1 - 1e-6)))

    fig = Figure(figsize=(6, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, (tar, non) in curves.items():
        p_miss, p_fa = det_curve(tar, non)
        value, _ = eer(tar, non)
        ax.plot(deviate(p_fa), deviate(p_miss), label=f"{label} (EER {100 * value:.2f}%)")
    ticks = deviate(np.asarray(_DET_TICKS))
    names = [f"{100 * t:g}" for t in _DET_TICKS]
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    ax.set_xlim(deviate(np.asarray([lo]))[0], deviate(np.asarray([hi]))[0])
    ax.set_ylim(deviate(np.asarray([lo]))[0], deviate(np.asarray([hi]))[0])
    ax.plot(ticks, ticks, color="0.8", linewidth=0.8, linestyle=":")
    ax.set_xlabel("Impostor calls passed as match (%)")
    ax.set_ylabel("Genuine calls flagged (%)")
    ax.set_title(title)
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right", fontsize="small")
    try:
        from .report import save_figure

        save_figure(fig, path, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise UsageError(f"cannot write DET plot {str(path)!r}: {exc}") from exc


def summary(
    target: npt.ArrayLike,
    nontarget: npt.ArrayLike,
    target_llr: npt.ArrayLike | None = None,
    nontarget_llr: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """The standard figures for one system, ready for JSON.

    Args:
        target: genuine-trial scores, shape (n_t,).
        nontarget: impostor-trial scores, shape (n_n,).
        target_llr: calibrated LLRs of the genuine trials, shape (n_t,) (optional).
        nontarget_llr: calibrated LLRs of the impostor trials, shape (n_n,) (optional).

    Returns:
        ``eer``, ``eer_threshold``, ``min_dcf_0.01``, ``min_dcf_0.05``, ``detect_at_1pct_ff``,
        ``detect_at_5pct_ff``, ``min_cllr``, ``n_target``, ``n_nontarget``, and ``cllr`` when
        both LLR arrays are given. Rates are fractions in [0, 1]; Cllr in bits.

    Raises:
        UsageError: empty/non-finite inputs, only one LLR array, or LLR arrays whose lengths
            differ from the scores'.
    """
    tar, non = _pair(target, nontarget)
    if (target_llr is None) != (nontarget_llr is None):
        raise UsageError("give both target_llr and nontarget_llr, or neither.")
    value, threshold = eer(tar, non)
    out: dict[str, Any] = {
        "eer": value,
        "eer_threshold": threshold,
        "min_dcf_0.01": min_dcf(tar, non, 0.01),
        "min_dcf_0.05": min_dcf(tar, non, 0.05),
        "detect_at_1pct_ff": detection_at_false_flag(tar, non, 0.01),
        "detect_at_5pct_ff": detection_at_false_flag(tar, non, 0.05),
        "min_cllr": min_cllr(tar, non),
        "n_target": int(tar.size),
        "n_nontarget": int(non.size),
    }
    if target_llr is not None and nontarget_llr is not None:
        t_llr, n_llr = (
            as_scores(target_llr, "target LLRs"),
            as_scores(nontarget_llr, "nontarget LLRs"),
        )
        if t_llr.size != tar.size or n_llr.size != non.size:
            raise UsageError(
                f"LLR arrays have {t_llr.size} and {n_llr.size} entries but there are "
                f"{tar.size} target and {non.size} nontarget scores."
            )
        out["cllr"] = cllr(t_llr, n_llr)
    return out
