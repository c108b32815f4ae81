"""PLDA, speaker statistics and their interpolation: known answers on synthetic Gaussians."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from voicecheck.errors import UsageError
from voicecheck.metrics import eer
from voicecheck.scoring import (
    PLDA_RIDGE,
    Backend,
    ScatterStats,
    fit_lda,
    fit_plda,
    interpolate_stats,
    lda_from_stats,
    scatter_stats,
    unit,
)


def random_covs(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    return a @ a.T + 0.3 * np.eye(d), b @ b.T


def speakers(
    rng: np.random.Generator,
    between: np.ndarray,
    within: np.ndarray,
    n_spk: int,
    per: int,
    mean: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows = speaker + noise with speaker ~ N(mean, between), noise ~ N(0, within)."""
    d = between.shape[0]
    centres = rng.multivariate_normal(np.zeros(d) if mean is None else mean, between, n_spk)
    x = np.repeat(centres, per, axis=0) + rng.multivariate_normal(np.zeros(d), within, n_spk * per)
    return x, np.repeat(np.arange(n_spk), per)


def test_plda_llr_is_the_two_covariance_likelihood_ratio() -> None:
    rng = np.random.default_rng(0)
    d = 4
    within, between = random_covs(rng, d)
    plda = fit_plda(within, between)
    within = within + PLDA_RIDGE * (within + between)  # the model's own regularised W
    total = within + between
    joint = multivariate_normal(np.zeros(2 * d), np.block([[total, between], [between, total]]))
    single = multivariate_normal(np.zeros(d), total)
    x, y = rng.standard_normal((5, d)), rng.standard_normal((3, d))
    expected = np.array([[joint.logpdf(np.r_[a, b]) - single.logpdf(a) - single.logpdf(b) for b in y] for a in x])
    got = plda.llr(plda.project(x), plda.project(y))
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, got.T.T)  # same call, same shape
    np.testing.assert_allclose(plda.llr_pairs(plda.project(x[:3]), plda.project(y)), np.diag(got[:3]), atol=1e-9)
    np.testing.assert_allclose(plda.llr(plda.project(y), plda.project(x)), got.T, atol=1e-9)  # symmetric


def test_fit_plda_diagonalises_both_covariances() -> None:
    rng = np.random.default_rng(1)
    within, between = random_covs(rng, 6)
    plda = fit_plda(within, between)
    ridge = PLDA_RIDGE * (within + between)
    np.testing.assert_allclose(plda.basis.T @ (within + ridge) @ plda.basis, np.eye(6), atol=1e-6)
    np.testing.assert_allclose(plda.basis.T @ between @ plda.basis, np.diag(plda.psi), atol=1e-6)
    assert np.all(plda.psi >= 0) and np.all(np.diff(plda.psi) <= 1e-12)  # sorted, strongest first
    assert np.max(plda.psi) < 1 / PLDA_RIDGE  # the ridge bounds every between/within ratio


def test_plda_of_rank_deficient_statistics_stays_finite() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 10))  # 6 calls of 3 speakers in 10 dimensions: W has rank 3
    stats = scatter_stats(x, [0, 0, 1, 1, 2, 2])
    plda = fit_plda(stats.within, stats.between)
    s = plda.llr(plda.project(x), plda.project(x))
    assert np.all(np.isfinite(s)) and np.all(plda.psi < 1 / PLDA_RIDGE)


def test_scatter_stats_recover_the_generating_covariances() -> None:
    rng = np.random.default_rng(2)
    between, within = np.diag([4.0, 2.0, 1.0, 0.5, 0.1]), 0.3 * np.eye(5)
    x, labels = speakers(rng, between, within, 600, 5)
    stats = scatter_stats(x, labels)
    assert stats.n_vectors == 3000 and stats.n_speakers == 600 and stats.dimension == 5
    np.testing.assert_allclose(stats.within, within, atol=0.03)
    np.testing.assert_allclose(np.diag(stats.between), np.diag(between), rtol=0.1, atol=0.04)
    assert np.min(np.linalg.eigvalsh(stats.between)) >= -1e-9  # positive semi-definite


def test_scatter_stats_refuse_data_without_within_speaker_variation() -> None:
    with pytest.raises(UsageError, match="one with two or more"):
        scatter_stats(np.eye(3), ["a", "b", "c"])
    with pytest.raises(UsageError, match=">= 2 speakers"):
        scatter_stats(np.ones((3, 2)) + np.arange(3)[:, None], ["a", "a", "a"])


def test_interpolation_moves_from_the_prior_to_the_domain() -> None:
    d = 3
    prior = ScatterStats(np.zeros(d), np.eye(d), 2 * np.eye(d), 100, 10)
    domain = ScatterStats(np.ones(d), 3 * np.eye(d), 4 * np.eye(d), 50, 5)
    none = interpolate_stats(prior, domain, 0.0, 0.0)
    np.testing.assert_allclose(none.within, prior.within)
    np.testing.assert_allclose(none.between, prior.between)
    np.testing.assert_allclose(none.mean, domain.mean)  # the domain's centre always
    half = interpolate_stats(prior, domain, 0.5, 0.25)
    np.testing.assert_allclose(half.within, 2 * np.eye(d))
    np.testing.assert_allclose(half.between, 2.5 * np.eye(d))
    with pytest.raises(UsageError, match="within_weight"):
        interpolate_stats(prior, domain, 1.5, 0.0)
    with pytest.raises(UsageError, match="different models"):
        interpolate_stats(prior, ScatterStats(np.ones(2), np.eye(2), np.eye(2), 5, 2), 0.5, 0.5)


def test_plda_is_unchanged_by_whitening_the_projection() -> None:
    rng = np.random.default_rng(3)
    within, between = random_covs(rng, 8)
    x, labels = speakers(rng, between, within, 80, 4)
    stats = scatter_stats(x, labels)
    plain = lda_from_stats(stats, 5, wccn=False)
    whitened = lda_from_stats(stats, 5, wccn=True)
    a, b = x[:6], x[6:12]

    def llr(backend: Backend) -> np.ndarray:
        p = backend.plda()
        return p.llr(p.project(backend.project(a)), p.project(backend.project(b)))

    np.testing.assert_allclose(llr(plain), llr(whitened), rtol=1e-5, atol=1e-5)


def test_lda_from_stats_scores_like_lda_from_the_embeddings() -> None:
    rng = np.random.default_rng(4)
    within, between = random_covs(rng, 10)
    x, labels = speakers(rng, between, within, 200, 4)
    direct = fit_lda(x, labels, 4, wccn=True, shrink=0.1)
    from_stats = lda_from_stats(scatter_stats(x, labels), 4, wccn=True, shrink=0.1)
    a, b = (
        direct.transform(x[:50]) @ direct.transform(x[50:100]).T,
        from_stats.transform(x[:50]) @ from_stats.transform(x[50:100]).T,
    )
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_plda_separates_speakers_and_adaptation_recovers_a_new_channel() -> None:
    """Out-of-domain speakers vary along some directions; in the new domain a strong channel
    direction the prior never saw makes one speaker's calls differ. Interpolating the in-domain
    statistics in lowers the in-domain EER; the OOD-only back-end scores it near chance on that axis."""
    rng = np.random.default_rng(5)
    d = 12
    between = np.diag(np.r_[np.full(6, 1.0), np.full(6, 0.05)])
    within_ood = 0.2 * np.eye(d)
    channel = np.zeros(d)
    channel[0] = 1.0  # in the new domain, calls wander along a speaker direction
    within_new = within_ood + 2.5 * np.outer(channel, channel)
    x_ood, l_ood = speakers(rng, between, within_ood, 300, 4)
    shift = np.r_[np.full(d // 2, 0.5), np.zeros(d // 2)]
    x_new, l_new = speakers(rng, between, within_new, 200, 4, mean=shift)
    x_test, l_test = speakers(rng, between, within_new, 100, 2, mean=shift)
    ood = lda_from_stats(scatter_stats(x_ood, l_ood), 6, wccn=False, shrink=0.1)
    adapted = lda_from_stats(
        interpolate_stats(ood.stats, scatter_stats(x_new, l_new), 0.8, 0.5), 6, wccn=False, shrink=0.1, prior=ood.stats
    )  # type: ignore[arg-type]
    same = l_test[:, None] == l_test[None, :]
    off = ~np.eye(len(l_test), dtype=bool)

    def test_eer(backend: Backend) -> float:
        p = backend.plda()
        u = p.project(backend.project(x_test))
        s = p.llr(u, u)
        return eer(s[same & off], s[~same])[0]

    ood_eer, adapted_eer = test_eer(ood), test_eer(adapted)
    assert adapted_eer < 0.7 * ood_eer
    assert adapted.adapted and not ood.adapted and adapted.prior is ood.stats


def test_backend_file_keeps_statistics_prior_and_provenance(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    within, between = random_covs(rng, 5)
    x, labels = speakers(rng, between, within, 40, 3)
    stats = scatter_stats(x, labels)
    backend = lda_from_stats(stats, 3, model="fake-bands", source="test", prior=stats, info={"calls": 120})
    path = tmp_path / "b.npz"
    backend.save(path)
    back = Backend.load(path)
    assert back.digest == backend.digest and back.adapted and back.info == {"calls": 120}
    assert back.stats is not None and back.stats.n_speakers == 40
    np.testing.assert_allclose(back.stats.within, stats.within, rtol=1e-5)  # stored as float32
    u, v = backend.transform(x[:4]), back.transform(x[:4])
    np.testing.assert_allclose(u, v, atol=1e-6)


def test_a_backend_without_statistics_cannot_score_with_plda(tmp_path: Path) -> None:
    bare = Backend(mean=np.zeros(4), projection=np.eye(4)[:, :2], model="fake-bands", source="old file")
    path = tmp_path / "old.npz"
    bare.save(path)
    loaded = Backend.load(path)
    assert loaded.stats is None and not loaded.adapted
    with pytest.raises(UsageError, match="backend train"):
        loaded.plda()


def test_project_is_transform_before_length_normalisation() -> None:
    b = Backend(mean=np.full(3, 0.1), projection=np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    x = np.array([[0.3, 0.2, 0.5]])
    np.testing.assert_allclose(unit(b.project(x)), b.transform(x), atol=1e-6)
