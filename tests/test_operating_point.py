"""Tests for benchmarks/operating_point.py: label-free thresholds, guard, condition models, estimator.

Scores are generated (Gaussian non-targets and genuine trials), so every property is checked
against a known answer with a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import operating_point as op
from voicecheck.errors import UsageError
from voicecheck.scoring import fit_calibration


def gaussian(n: int, mean: float = 0.0, std: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, n)


# ------------------------------------------------------------------------------ the sample


def test_sample_pairs_never_hold_the_calls_own_voiceprint_and_are_distinct_per_call() -> None:
    claimed = np.array([0, 0, 3, 7, 9, 9])
    calls, vps = op.sample_nontarget_pairs(claimed, 10, 4, np.random.default_rng(1))
    assert calls.shape == vps.shape == (24,)
    assert np.all(vps != claimed[calls])
    assert np.all((vps >= 0) & (vps < 10))
    for c in range(len(claimed)):
        assert len(set(vps[calls == c])) == 4


def test_sample_pairs_clip_to_the_other_voiceprints() -> None:
    calls, vps = op.sample_nontarget_pairs([0, 1, 2], 3, 50, np.random.default_rng(0))
    assert calls.size == 6
    assert sorted(vps[calls == 0]) == [1, 2]


@pytest.mark.parametrize("claimed, n, k", [([0, 5], 5, 2), ([0], 1, 1), ([0], 4, 0)])
def test_sample_pairs_reject_bad_input(claimed: list[int], n: int, k: int) -> None:
    with pytest.raises(UsageError):
        op.sample_nontarget_pairs(claimed, n, k, np.random.default_rng(0))


# ------------------------------------------------------------------------------ the threshold


@pytest.mark.parametrize("mfa", [0.001, 0.01, 0.05])
def test_threshold_lets_exactly_the_allowed_share_pass(mfa: float) -> None:
    non = gaussian(20000)
    thr = op.nontarget_threshold(non, mfa)
    assert np.sum(non >= thr) == int(mfa * non.size)


def test_threshold_generalises_to_new_nontargets_within_the_binomial_error() -> None:
    thr = op.nontarget_threshold(gaussian(20000, seed=1), 0.01)
    fresh = np.mean(gaussian(200000, seed=2) >= thr)
    assert abs(fresh - 0.01) < 4 * op.false_accept_quantile_error(20000, 0.01)


def test_threshold_with_no_allowed_pass_is_above_every_score() -> None:
    non = gaussian(50)
    assert op.nontarget_threshold(non, 0.01) > non.max()


def test_contamination_drops_that_share_from_the_top() -> None:
    non = np.arange(1000.0)
    # 10 dropped, then 1% of 990 = 9 allowed to pass: the 9th highest of what is left
    assert op.nontarget_threshold(non, 0.01, contamination=0.01) == 1000 - 10 - 9


@pytest.mark.parametrize("mfa, c", [(0.0, 0.0), (1.0, 0.0), (float("nan"), 0.0), (0.01, 1.0), (0.01, -0.1)])
def test_threshold_rejects_bad_fractions(mfa: float, c: float) -> None:
    with pytest.raises(UsageError):
        op.nontarget_threshold(gaussian(100), mfa, c)


def test_threshold_rejects_non_finite_scores() -> None:
    with pytest.raises(UsageError, match="finite"):
        op.nontarget_threshold([0.1, np.nan, 0.3], 0.1)


def test_quantile_error_shrinks_with_the_square_root_of_n() -> None:
    assert op.false_accept_quantile_error(400, 0.01) == pytest.approx(2 * op.false_accept_quantile_error(1600, 0.01))


# ------------------------------------------------------------------------------ the guard


def contaminated(delta: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A non-target sample with a share ``delta`` of same-person (genuine-like) pairs, and claimed scores."""
    non = gaussian(n, seed=seed)
    same = gaussian(int(delta * n), 4.5, 1.0, seed=seed + 1)
    non[: same.size] = same
    return non, gaussian(3000, 4.5, 1.0, seed=seed + 2)


@pytest.mark.parametrize("delta", [0.0, 0.01, 0.03])
def test_contamination_share_estimates_the_injected_share(delta: float) -> None:
    non, claimed = contaminated(delta)
    assert op.contamination_share(non, claimed, limit=0.5) == pytest.approx(delta, abs=0.004)


def test_contamination_share_is_bounded_by_its_limit() -> None:
    non, claimed = contaminated(0.03)
    assert op.contamination_share(non, claimed) == 0.01
    # overlapping genuine and non-target scores (a poor system) would read as heavy contamination
    assert op.contamination_share(gaussian(5000), gaussian(500, 0.5, 1.0, seed=3), limit=0.02) == 0.02


def test_guard_puts_a_contaminated_threshold_back_near_the_clean_one() -> None:
    clean_thr = op.nontarget_threshold(gaussian(20000), 0.01)
    non, claimed = contaminated(0.02)
    plain = op.nontarget_threshold(non, 0.01)
    guarded = op.nontarget_threshold(non, 0.01, op.contamination_share(non, claimed, limit=0.05))
    assert plain > clean_thr + 0.5  # 2% same-person pairs push the 1% quantile far up
    assert abs(guarded - clean_thr) < 0.1


# ------------------------------------------------------------------------------ conditions


def conditioned(n: int = 40000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-target scores whose mean and spread fall with log net speech (short calls score wider)."""
    rng = np.random.default_rng(seed)
    log_speech = np.log(rng.uniform(3.0, 60.0, n))
    mean = 1.0 - 0.3 * log_speech
    std = np.exp(0.6 - 0.25 * log_speech)
    return mean + std * rng.normal(size=n), log_speech[:, None]


def test_nontarget_model_equalises_the_false_accept_share_across_conditions() -> None:
    scores, q = conditioned()
    model = op.fit_nontarget_model(scores, q)
    z = model.standardise(scores, q)
    thr_z, thr_raw = op.nontarget_threshold(z, 0.01), op.nontarget_threshold(scores, 0.01)
    short, long = q[:, 0] < np.log(6.0), q[:, 0] > np.log(30.0)
    assert np.mean(z[short] >= thr_z) == pytest.approx(0.01, abs=0.005)
    assert np.mean(z[long] >= thr_z) == pytest.approx(0.01, abs=0.005)
    assert np.mean(scores[short] >= thr_raw) > 2 * np.mean(scores[long] >= thr_raw)  # what it fixes


def test_nontarget_model_without_measures_is_a_plain_standardisation() -> None:
    s = gaussian(5000, 2.0, 3.0)
    model = op.fit_nontarget_model(s, np.zeros((5000, 0)), trim=0.0)
    assert model.mean_coef[0] == pytest.approx(2.0, abs=0.1)
    assert np.exp(model.log_std_coef[0]) == pytest.approx(3.0, rel=0.05)


def test_nontarget_model_rejects_mismatched_measures() -> None:
    scores, q = conditioned(1000)
    model = op.fit_nontarget_model(scores, q)
    with pytest.raises(UsageError, match="quality measures"):
        model.standardise(scores, np.hstack([q, q]))
    with pytest.raises(UsageError, match="one row per score"):
        op.fit_nontarget_model(scores, q[:10])


def test_binned_thresholds_hold_each_bin_to_the_rate_and_fall_back_for_small_bins() -> None:
    scores, q = conditioned()
    bins = (q[:, 0] > np.log(15.0)).astype(int)
    bins[:50] = 7  # a bin too small for its own quantile
    th = op.binned_thresholds(scores, bins, 0.02, min_count=500, fallback=99.0)
    assert th[7] == 99.0
    for b in (0, 1):
        assert np.mean(scores[bins == b] >= th[b]) == pytest.approx(0.02, abs=0.002)


# ------------------------------------------------------------------------------ calibration


def test_quality_calibration_matches_the_products_fit_when_quality_carries_nothing() -> None:
    rng = np.random.default_rng(3)
    tar, non = gaussian(2000, 2.0, 1.0, 1), gaussian(8000, 0.0, 1.0, 2)
    cal = op.fit_quality_calibration(tar, non, rng.normal(size=(2000, 1)), rng.normal(size=(8000, 1)))
    plain = fit_calibration(tar, non)
    assert cal.a == pytest.approx(plain.a, rel=0.05)
    assert cal.b == pytest.approx(plain.b, abs=0.1)
    assert abs(cal.c[0]) < 0.1


def test_quality_calibration_learns_a_quality_shift() -> None:
    # genuine and impostor means both rise by 1.0 per unit of q: the llr must subtract a * q
    rng = np.random.default_rng(4)
    q_t, q_n = rng.uniform(0, 2, (4000, 1)), rng.uniform(0, 2, (16000, 1))
    tar = 2.0 + q_t[:, 0] + rng.normal(size=4000)
    non = q_n[:, 0] + rng.normal(size=16000)
    cal = op.fit_quality_calibration(tar, non, q_t, q_n)
    assert cal.a == pytest.approx(2.0, rel=0.1)  # LLR slope of two unit-variance Gaussians 2 apart
    assert cal.c[0] == pytest.approx(-cal.a, rel=0.1)
    llr = cal.llr(np.array([1.0, 2.0]), np.array([[0.0], [1.0]]))
    assert llr[0] == pytest.approx(llr[1], abs=0.1)


# ------------------------------------------------------------------------------ decisions


def test_band_decisions_codes() -> None:
    codes = op.band_decisions([-1.0, 0.0, 0.5, 1.0, 2.0], 0.0, 1.0)
    assert codes.tolist() == [op.MISMATCH, op.INCONCLUSIVE, op.INCONCLUSIVE, op.MATCH, op.MATCH]
    assert op.band_decisions([0.4, 0.6], 0.5, 0.5).tolist() == [op.MISMATCH, op.MATCH]


def test_band_decisions_reject_a_reversed_band() -> None:
    with pytest.raises(UsageError, match="lower <= upper"):
        op.band_decisions([0.0], 1.0, 0.0)


# ------------------------------------------------------------------------------ estimator


@pytest.mark.parametrize("pi", [0.0, 0.05, 0.15])
def test_false_flag_estimate_recovers_the_genuine_rate_from_an_unlabelled_mixture(pi: float) -> None:
    # the estimate's standard error here is about 0.004 (pi-hat rests on the impostors below the median)
    non = gaussian(20000, seed=5)
    thr = op.nontarget_threshold(non, 0.01)
    genuine = gaussian(20000, 4.0, 1.0, seed=6)
    impostors = gaussian(int(pi / (1 - pi) * 20000), seed=7)
    est = op.estimate_false_flag_rate(np.concatenate([genuine, impostors]), non, thr)
    truth = float(np.mean(genuine < thr))
    assert 0.05 < truth < 0.3  # a rate worth estimating
    assert est.rate == pytest.approx(truth, abs=0.015)
    assert est.impostor_share == pytest.approx(pi, abs=0.01)
    assert est.flagged_share >= est.rate - 1e-9 or pi == 0.0


def test_false_flag_estimate_rejects_bad_input() -> None:
    with pytest.raises(UsageError):
        op.estimate_false_flag_rate([], [0.0], 0.0)
    with pytest.raises(UsageError, match="threshold"):
        op.estimate_false_flag_rate([1.0], [0.0], float("nan"))
