"""Tests for voicecheck.metrics: known answers on synthetic score distributions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from voicecheck import metrics
from voicecheck.errors import UsageError


def gaussians(d: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Target ~ N(d, 1), nontarget ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    return rng.normal(d, 1.0, n), rng.normal(0.0, 1.0, n)


def sweep_eer(tar: np.ndarray, non: np.ndarray) -> float:
    """Brute-force: min over thresholds of max(p_miss, p_fa) on the empirical curve."""
    thresholds = np.append(np.unique(np.concatenate([tar, non])), np.inf)
    p_miss = np.array([(tar < t).mean() for t in thresholds])
    p_fa = np.array([(non >= t).mean() for t in thresholds])
    return float(np.min(np.maximum(p_miss, p_fa)))


# ------------------------------------------------------------------------------------------ EER


@pytest.mark.parametrize("d", [1.0, 2.0, 3.0])
def test_eer_of_two_gaussians_matches_theory(d: float) -> None:
    tar, non = gaussians(d)
    value, threshold = metrics.eer(tar, non)
    assert value == pytest.approx(norm.cdf(-d / 2), abs=0.01)
    # the equal-variance crossing point is d / 2
    assert threshold == pytest.approx(d / 2, abs=0.1)


def test_eer_is_zero_when_perfectly_separated() -> None:
    tar = np.array([0.8, 0.9, 0.7])
    non = np.array([0.1, 0.2, 0.3, 0.69])
    value, threshold = metrics.eer(tar, non)
    assert value == 0.0
    assert non.max() < threshold <= tar.min()


def test_eer_is_half_when_scores_carry_no_information() -> None:
    assert metrics.eer(np.full(50, 0.3), np.full(70, 0.3))[0] == pytest.approx(0.5)
    tar, non = np.random.default_rng(1).normal(size=(2, 5000))
    assert metrics.eer(tar, non)[0] == pytest.approx(0.5, abs=0.03)


def test_hull_eer_is_at_most_the_empirical_eer_and_close_to_it() -> None:
    rng = np.random.default_rng(2)
    tar, non = rng.normal(1.5, 1.0, 300), rng.normal(0.0, 1.0, 400)
    hull = metrics.eer(tar, non)[0]
    empirical = sweep_eer(tar, non)
    assert hull <= empirical + 1e-12
    assert empirical - hull < 0.02


def test_eer_is_invariant_to_monotone_transforms() -> None:
    tar, non = gaussians(1.0, n=2000)
    value = metrics.eer(tar, non)[0]
    assert metrics.eer(np.exp(tar), np.exp(non))[0] == pytest.approx(value, abs=1e-12)
    assert metrics.eer(3 * tar - 7, 3 * non - 7)[0] == pytest.approx(value, abs=1e-12)


def test_eer_handles_ties_pessimistically() -> None:
    # one target tied with one nontarget: the tie cannot be split, the hull interpolates
    value = metrics.eer([1.0, 2.0], [0.0, 1.0])[0]
    assert 0.0 < value <= 0.5


# -------------------------------------------------------------------------------------- min DCF


def theoretical_min_dcf(d: float, p: float) -> float:
    grid = np.linspace(-5, 10, 30001)
    cost = p * norm.cdf(grid - d) + (1 - p) * norm.sf(grid)
    return float(cost.min() / min(p, 1 - p))


@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
def test_min_dcf_of_two_gaussians_matches_theory(p_target: float) -> None:
    tar, non = gaussians(2.5, n=40000, seed=3)
    value = metrics.min_dcf(tar, non, p_target)
    assert value == pytest.approx(theoretical_min_dcf(2.5, p_target), abs=0.04)


def test_min_dcf_bounds() -> None:
    assert metrics.min_dcf([0.9, 0.8], [0.1, 0.2], 0.01) == 0.0
    assert metrics.min_dcf(np.full(10, 0.5), np.full(10, 0.5), 0.01) == pytest.approx(1.0)
    tar, non = gaussians(1.0, n=1000)
    assert 0.0 <= metrics.min_dcf(tar, non, 0.05, c_miss=10, c_fa=1) <= 1.0


def test_min_dcf_at_half_prior_is_twice_the_best_error() -> None:
    tar, non = gaussians(1.0, n=500, seed=4)
    thresholds = np.append(np.unique(np.concatenate([tar, non])), np.inf)
    best = min(0.5 * (tar < t).mean() + 0.5 * (non >= t).mean() for t in thresholds)
    assert metrics.min_dcf(tar, non, 0.5) == pytest.approx(2 * best)


@pytest.mark.parametrize("kwargs", [{"p_target": 0.0}, {"p_target": 1.0}, {"p_target": 0.1, "c_fa": 0}])
def test_min_dcf_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        metrics.min_dcf([1.0], [0.0], **kwargs)


# ----------------------------------------------------------------------------------------- Cllr


def test_cllr_known_values() -> None:
    assert metrics.cllr(np.zeros(10), np.zeros(7)) == pytest.approx(1.0)
    assert metrics.cllr(np.full(10, 50.0), np.full(10, -50.0)) < 1e-15
    # badly wrong, confident LLRs cost far more than 1 bit
    assert metrics.cllr(np.full(10, -10.0), np.full(10, 10.0)) > 10


def test_cllr_of_true_llrs_is_below_one_and_near_min_cllr() -> None:
    d = 2.0
    tar, non = gaussians(d, n=20000, seed=5)

    def llr(s: np.ndarray) -> np.ndarray:
        return d * s - d * d / 2  # exact LLR of N(d,1) vs N(0,1)

    actual = metrics.cllr(llr(tar), llr(non))
    minimum = metrics.min_cllr(tar, non)
    assert 0.0 < minimum <= actual < 1.0
    assert actual - minimum < 0.02


def test_min_cllr_properties() -> None:
    tar, non = gaussians(1.5, n=3000, seed=6)
    value = metrics.min_cllr(tar, non)
    assert metrics.min_cllr(np.exp(tar), np.exp(non)) == pytest.approx(value, abs=1e-12)
    assert metrics.min_cllr([0.9, 0.8], [0.1, 0.2]) == pytest.approx(0.0, abs=1e-12)
    assert metrics.min_cllr(np.full(5, 1.0), np.full(9, 1.0)) == pytest.approx(1.0)
    # no calibration can beat the best monotone one
    assert value <= metrics.cllr(tar, non) + 1e-12


# ------------------------------------------------------------------------ detection at false flag


@pytest.mark.parametrize("ff", [0.01, 0.05])
def test_detection_at_false_flag_matches_theory(ff: float) -> None:
    d = 3.0
    tar, non = gaussians(d, n=40000, seed=7)
    expected = norm.cdf(d + norm.ppf(ff))  # threshold t = d + ppf(ff); impostors below t
    assert metrics.detection_at_false_flag(tar, non, ff) == pytest.approx(expected, abs=0.02)


def test_detection_at_false_flag_extremes() -> None:
    assert metrics.detection_at_false_flag([0.9, 0.8], [0.1, 0.2], 0.0) == 1.0
    assert metrics.detection_at_false_flag([0.1, 0.2], [0.9, 0.8], 0.0) == 0.0


def test_detection_grows_with_the_tolerated_false_flag_rate() -> None:
    tar, non = gaussians(1.0, n=2000, seed=8)
    rates = [metrics.detection_at_false_flag(tar, non, ff) for ff in (0.0, 0.01, 0.05, 0.2, 0.5)]
    assert rates == sorted(rates)


# ---------------------------------------------------------------------------------- DET curves


def test_det_curve_is_monotone_from_corner_to_corner() -> None:
    tar, non = gaussians(1.0, n=500)
    p_miss, p_fa = metrics.det_curve(tar, non)
    assert p_miss.shape == p_fa.shape
    assert np.all(np.diff(p_miss) >= 0) and np.all(np.diff(p_fa) <= 0)
    assert (p_miss[0], p_fa[0]) == (0.0, 1.0)
    assert (p_miss[-1], p_fa[-1]) == (1.0, 0.0)


def test_rocch_vertices_lie_on_or_below_the_empirical_curve() -> None:
    tar, non = gaussians(1.0, n=300, seed=9)
    hull_miss, hull_fa = metrics.rocch(tar, non)
    emp_miss, emp_fa = metrics.det_curve(tar, non)
    points = set(zip(emp_miss.tolist(), emp_fa.tolist(), strict=True))
    # every hull vertex is an achievable operating point
    assert all((m, f) in points for m, f in zip(hull_miss.tolist(), hull_fa.tolist(), strict=True))


def test_plot_det_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "det.png"
    metrics.plot_det({"a": gaussians(2.0, n=500), "b": gaussians(1.0, n=500)}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_det_needs_curves(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least one curve"):
        metrics.plot_det({}, tmp_path / "det.png")


# -------------------------------------------------------------------------------------- summary


def test_summary_fields() -> None:
    tar, non = gaussians(2.0, n=1000)
    out = metrics.summary(tar, non)
    assert {
        "eer",
        "min_dcf_0.01",
        "min_dcf_0.05",
        "detect_at_1pct_ff",
        "detect_at_5pct_ff",
        "n_target",
        "n_nontarget",
    } <= out.keys()
    assert "cllr" not in out
    assert out["n_target"] == 1000 and out["n_nontarget"] == 1000
    assert all(0.0 <= out[k] <= 1.0 for k in ("eer", "min_dcf_0.01", "detect_at_5pct_ff"))
    assert out["detect_at_1pct_ff"] <= out["detect_at_5pct_ff"]
    with_llr = metrics.summary(tar, non, 2 * tar - 2, 2 * non - 2)
    assert with_llr["cllr"] == pytest.approx(metrics.cllr(2 * tar - 2, 2 * non - 2))


def test_summary_rejects_half_or_misaligned_llrs() -> None:
    with pytest.raises(UsageError, match="both"):
        metrics.summary([1.0, 2.0], [0.0], target_llr=[1.0, 2.0])
    with pytest.raises(UsageError, match="entries"):
        metrics.summary([1.0, 2.0], [0.0], [1.0], [0.0])


# --------------------------------------------------------------------------------- bad inputs

TWO_ARG: list[Callable[..., Any]] = [
    metrics.eer,
    metrics.cllr,
    metrics.min_cllr,
    metrics.det_curve,
    metrics.rocch,
    metrics.summary,
    lambda t, n: metrics.min_dcf(t, n, 0.01),
    lambda t, n: metrics.detection_at_false_flag(t, n, 0.01),
]


@pytest.mark.parametrize("fn", TWO_ARG)
def test_empty_inputs_raise_usage_error(fn: Callable[..., Any]) -> None:
    with pytest.raises(UsageError, match="empty"):
        fn([], [0.1, 0.2])
    with pytest.raises(UsageError, match="empty"):
        fn([0.1, 0.2], np.array([]))


@pytest.mark.parametrize("fn", TWO_ARG)
def test_non_finite_inputs_raise_usage_error(fn: Callable[..., Any]) -> None:
    with pytest.raises(UsageError, match="NaN"):
        fn([0.5, np.nan], [0.1, 0.2])
