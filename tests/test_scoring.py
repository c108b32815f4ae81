"""Tests for voicecheck.scoring: similarity, backends, AS-norm, calibration, thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicecheck import metrics, scoring
from voicecheck.errors import ModelMismatchError, UsageError
from voicecheck.scoring import Backend, Calibration


def speakers(
    n_speakers: int,
    per_speaker: int,
    d: int = 24,
    signal_dims: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings whose speaker identity lives in ``signal_dims`` directions of a random basis.

    The other directions carry large within-speaker nuisance (channel/session) variation, so raw
    cosine is poor and LDA has something to remove. The basis is the same for every ``seed``, so
    different seeds give new speakers in the same embedding space.
    """
    basis, _ = np.linalg.qr(np.random.default_rng(1234).normal(size=(d, d)))
    rng = np.random.default_rng(seed)
    centres = np.zeros((n_speakers, d))
    centres[:, :signal_dims] = rng.normal(0.0, 1.0, (n_speakers, signal_dims))
    scales = np.full(d, 2.0)
    scales[:signal_dims] = 0.3
    labels = np.repeat(np.arange(n_speakers), per_speaker)
    X = centres[labels] + rng.normal(size=(labels.size, d)) * scales
    return (X + 3.0) @ basis.T, labels  # offset: centring matters


def fisher_ratio(X: np.ndarray, labels: np.ndarray) -> float:
    """trace(between-class scatter) / trace(within-class scatter)."""
    mean = X.mean(axis=0)
    between = within = 0.0
    for label in np.unique(labels):
        rows = X[labels == label]
        centre = rows.mean(axis=0)
        between += len(rows) * float(np.sum((centre - mean) ** 2))
        within += float(np.sum((rows - centre) ** 2))
    return between / within


def trial_scores(E: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of every pair of rows, split into same-speaker and different-speaker scores."""
    sims = scoring.cosine_matrix(E, E)
    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    return sims[upper][same], sims[upper][~same]


# ------------------------------------------------------------------------------------- cosine


def cosine(a: object, b: object) -> float:
    return float(scoring.cosine_matrix(a, b)[0, 0])


def test_cosine_known_values_and_scale_invariance() -> None:
    assert cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert cosine([1, 1], [3, 3]) == pytest.approx(1.0)
    assert cosine([1, 2], [-2, -4]) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 16))
    assert cosine(5 * a, 0.1 * b) == pytest.approx(cosine(a, b))


def test_unit_scales_rows_and_keeps_zero_rows_zero() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = scoring.unit(x)
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert np.allclose(scoring.unit(np.array([0.0, 2.0])), [0.0, 1.0])


def test_cosine_matrix_shape_and_agreement() -> None:
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    sims = scoring.cosine_matrix(A, B)
    assert sims.shape == (3, 5)
    assert sims[2, 4] == pytest.approx(A[2] @ B[4] / np.linalg.norm(A[2]) / np.linalg.norm(B[4]))
    assert np.all(np.abs(sims) <= 1.0)
    assert scoring.cosine_matrix(A[0], B).shape == (1, 5)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0, 0.0], [1.0, 0.0, 0.0], "dimension 2 and 3"),
        ([0.0, 0.0], [1.0, 0.0], "zero vector"),
        ([1.0, np.nan], [1.0, 0.0], "NaN"),
    ],
)
def test_cosine_rejects_bad_vectors(a: list[float], b: list[float], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        scoring.cosine_matrix(a, b)


def test_cosine_matrix_rejects_zero_rows_and_mismatch() -> None:
    with pytest.raises(UsageError, match="zero vector"):
        scoring.cosine_matrix(np.eye(3), np.array([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(UsageError, match="dimension"):
        scoring.cosine_matrix(np.eye(3), np.eye(4))


# ------------------------------------------------------------------------------------ backend


def test_identity_backend_only_length_normalises() -> None:
    backend = Backend.identity("fake-1", 4)
    x = np.array([3.0, 0.0, 4.0, 0.0])
    out = backend.transform(x)
    assert out.shape == (4,) and out.dtype == np.float32
    np.testing.assert_allclose(out, x / 5.0, rtol=1e-6)
    batch = backend.transform(np.stack([x, 2 * x]))
    assert batch.shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-6)


def test_backend_refuses_other_models_and_dimensions() -> None:
    backend = Backend.identity("fake-1", 4)
    with pytest.raises(ModelMismatchError, match="fake-2"):
        backend.transform(np.ones(4), model="fake-2")
    with pytest.raises(UsageError, match="dimension 3"):
        backend.transform(np.ones(3))
    with pytest.raises(UsageError, match="zero vector"):
        Backend(mean=np.ones(4), model="fake-1").transform(np.ones(4))
    with pytest.raises(UsageError, match="shape"):
        Backend(mean=np.zeros(4), projection=np.zeros((3, 2)))


def test_lda_is_shape_correct_and_increases_fisher_ratio() -> None:
    X, labels = speakers(30, 10, seed=0)
    backend = scoring.fit_lda(X, labels, dim=6, model="fake-1", source="synthetic")
    assert backend.mean.shape == (24,)
    assert backend.projection is not None and backend.projection.shape == (24, 6)
    assert backend.output_dimension == 6 and backend.model == "fake-1"
    # judged on held-out speakers, with the same length normalisation cosine scoring uses
    X_test, labels_test = speakers(30, 10, seed=1)
    raw = Backend.identity("fake-1", 24).transform(X_test)
    projected = backend.transform(X_test)
    assert projected.shape == (300, 6)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, rtol=1e-5)
    assert fisher_ratio(projected, labels_test) > 2 * fisher_ratio(raw, labels_test)


def test_lda_lowers_eer_on_held_out_speakers() -> None:
    X, labels = speakers(40, 8, seed=2)
    X_test, labels_test = speakers(25, 6, seed=3)
    eer_raw = metrics.eer(*trial_scores(X_test - X.mean(axis=0), labels_test))[0]
    for wccn in (True, False):
        backend = scoring.fit_lda(X, labels, dim=4, wccn=wccn)
        eer_lda = metrics.eer(*trial_scores(backend.transform(X_test), labels_test))[0]
        assert eer_lda < 0.5 * eer_raw


def test_wccn_whitens_the_within_class_covariance() -> None:
    X, labels = speakers(20, 50, d=10, seed=4)
    backend = scoring.fit_lda(X, labels, dim=5, wccn=True, shrink=0.0)
    assert backend.projection is not None
    Y = (X - backend.mean) @ backend.projection
    class_means = np.stack([Y[labels == c].mean(axis=0) for c in range(20)])
    within = Y - class_means[labels]
    np.testing.assert_allclose(within.T @ within / len(Y), np.eye(5), atol=1e-6)


def test_lda_clips_dim_and_accepts_singleton_speakers() -> None:
    X, labels = speakers(4, 5, seed=5)
    assert scoring.fit_lda(X, labels, dim=50).output_dimension == 3
    # two speakers with many embeddings, three with one each
    X2 = np.concatenate([X[:10], X[10:11], X[15:16], X[19:20]])
    labels2 = np.array(["a"] * 5 + ["b"] * 5 + ["c", "d", "e"])
    backend = scoring.fit_lda(X2, labels2, dim=10)
    assert backend.output_dimension == 4
    assert np.all(np.isfinite(backend.transform(X2)))


def test_lda_is_deterministic() -> None:
    X, labels = speakers(10, 5, seed=6)
    first = scoring.fit_lda(X, labels, dim=3)
    second = scoring.fit_lda(X.copy(), labels.copy(), dim=3)
    assert first.projection is not None and second.projection is not None
    np.testing.assert_array_equal(first.projection, second.projection)


@pytest.mark.parametrize(
    ("X", "labels", "kwargs", "message"),
    [
        (np.ones((4, 3)), [0, 0, 0, 0], {}, "at least 2 speakers"),
        (np.eye(3), [0, 1, 2], {}, "two or more embeddings"),
        (np.eye(3), [0, 1], {}, "labels must have shape"),
        (np.eye(3), [0, 0, 1], {"dim": 0}, "dim must be >= 1"),
        (np.eye(3), [0, 0, 1], {"shrink": 1.0}, "shrink"),
        (np.ones((4, 3)), [0, 0, 1, 1], {}, "identical"),
    ],
)
def test_lda_errors(X: np.ndarray, labels: list[int], kwargs: dict[str, float], message: str) -> None:
    args: dict[str, float] = {"dim": 2, **kwargs}
    with pytest.raises(UsageError, match=message):
        scoring.fit_lda(X, labels, **args)  # type: ignore[arg-type]


def test_backend_save_load_round_trip(tmp_path: Path) -> None:
    X, labels = speakers(8, 4, seed=7)
    for backend in (
        scoring.fit_lda(X, labels, dim=3, model="ecapa-x", source="synthetic: 8 speakers"),
        Backend.identity("ge2e-y", 24),
    ):
        path = tmp_path / f"{backend.model}.bin"  # exact path kept, no .npz appended
        backend.save(path)
        loaded = Backend.load(path)
        assert (loaded.model, loaded.source) == (backend.model, backend.source)
        np.testing.assert_array_equal(loaded.mean, backend.mean)
        assert (loaded.projection is None) == (backend.projection is None)
        np.testing.assert_allclose(loaded.transform(X), backend.transform(X))


def test_backend_load_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        Backend.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(UsageError, match="not a voicecheck backend"):
        Backend.load(garbage)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean=np.zeros(3))
    with pytest.raises(UsageError, match="lacks"):
        Backend.load(partial)
    bad_shape = tmp_path / "bad_shape.npz"
    np.savez(
        bad_shape,
        format=np.array("voicecheck-backend"),
        mean=np.zeros(3),
        projection=np.zeros((4, 2)),
        model=np.array("m"),
        source=np.array("s"),
    )
    with pytest.raises(UsageError, match="malformed"):
        Backend.load(bad_shape)


def test_domain_mean_adaptation_cancels_a_channel_offset() -> None:
    X, labels = speakers(12, 6, seed=8)
    backend = scoring.fit_lda(X, labels, dim=4, source="lab")
    offset = np.random.default_rng(9).normal(0.0, 2.0, X.shape[1])
    adapted = scoring.with_domain_mean(backend, X + offset)
    np.testing.assert_allclose(adapted.mean, (X + offset).mean(axis=0))
    assert adapted.source.startswith("lab; domain mean from 72")
    np.testing.assert_allclose(adapted.transform(X + offset), backend.transform(X), atol=1e-5)
    assert backend.source == "lab"  # the original is untouched
    with pytest.raises(UsageError, match="dimension"):
        scoring.with_domain_mean(backend, np.ones((3, 5)))


def trained_backend(seed: int = 8, dim: int = 4) -> Backend:
    """An LDA back-end with its training statistics (what CORAL re-colours with)."""
    X, labels = speakers(12, 6, seed=seed)
    return scoring.lda_from_stats(scoring.scatter_stats(X, labels), dim, source="lab")


def domain_rows(n: int, seed: int = 3) -> np.ndarray:
    """In-domain embeddings with another covariance: new speakers through a random linear channel."""
    X, _ = speakers(max(2, n // 4), 4, seed=seed)
    rng = np.random.default_rng(seed)
    return (X[:n] @ (np.eye(X.shape[1]) + 0.5 * rng.normal(size=(X.shape[1], X.shape[1])))) + 1.0


def projected_cov(backend: Backend, X: np.ndarray) -> np.ndarray:
    y = backend.project(X)
    y = y - y.mean(axis=0)
    out: np.ndarray = y.T @ y / (len(y) - 1)
    return out


def test_coral_without_shrinkage_gives_the_domain_the_training_covariance() -> None:
    backend = trained_backend()
    X = domain_rows(40)
    aligned = scoring.with_domain_covariance(backend, X, "coral", 0.0)
    assert aligned.projection is not None and aligned.projection.shape == (24, 4)
    np.testing.assert_allclose(aligned.mean, backend.mean)  # the mean is with_domain_mean's job
    assert "coral covariance alignment (shrink 0) to 40 embeddings" in aligned.source
    p = backend.projection
    assert p is not None and backend.stats is not None
    target = p.T @ (backend.stats.within + backend.stats.between) @ p
    np.testing.assert_allclose(projected_cov(aligned, X), target, rtol=1e-6, atol=1e-9)
    assert not np.allclose(projected_cov(backend, X), target, rtol=0.05)  # it was not aligned before


def test_whitening_without_shrinkage_gives_the_domain_the_identity_covariance() -> None:
    backend = trained_backend()
    X = domain_rows(40)
    aligned = scoring.with_domain_covariance(backend, X, "whiten", 0.0)
    np.testing.assert_allclose(projected_cov(aligned, X), np.eye(4), atol=1e-8)


@pytest.mark.parametrize("method", ["coral", "whiten"])
def test_shrinkage_one_is_todays_space_exactly(method: str) -> None:
    backend = scoring.with_domain_mean(trained_backend(), domain_rows(40))
    X = domain_rows(40, seed=5)
    aligned = scoring.with_domain_covariance(backend, X, method, 1.0)
    assert np.array_equal(aligned.transform(X), backend.transform(X))
    half = scoring.with_domain_covariance(backend, X, method, 0.5)
    assert not np.allclose(half.transform(X), backend.transform(X), atol=1e-3)  # a real change below 1


def test_shrinkage_moves_the_covariance_between_the_domain_and_the_target() -> None:
    backend = trained_backend()
    X = domain_rows(40)
    p = backend.projection
    assert p is not None and backend.stats is not None
    target = p.T @ (backend.stats.within + backend.stats.between) @ p
    gaps = [
        np.linalg.norm(projected_cov(scoring.with_domain_covariance(backend, X, "coral", a), X) - target)
        for a in (1.0, 0.75, 0.25, 0.0)
    ]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
    assert gaps[3] < 1e-6 * np.linalg.norm(target)


def test_domain_covariance_refuses_bad_input() -> None:
    backend = trained_backend()
    with pytest.raises(UsageError, match=r"more in-domain embeddings than the 4 dimensions.*got 4"):
        scoring.with_domain_covariance(backend, domain_rows(4))
    bad = domain_rows(40)
    bad[3, 2] = np.nan
    with pytest.raises(UsageError, match="NaN or infinite"):
        scoring.with_domain_covariance(backend, bad)
    bad[3, 2] = np.inf
    with pytest.raises(UsageError, match="NaN or infinite"):
        scoring.with_domain_covariance(backend, bad)
    with pytest.raises(UsageError, match="dimension"):
        scoring.with_domain_covariance(backend, np.ones((30, 5)))
    with pytest.raises(UsageError, match="unknown"):
        scoring.with_domain_covariance(backend, domain_rows(40), "mystery")
    with pytest.raises(UsageError, match=r"shrink must be in \[0, 1\]"):
        scoring.with_domain_covariance(backend, domain_rows(40), "coral", 1.5)
    no_stats = Backend(backend.mean, backend.projection, source="bare")
    with pytest.raises(UsageError, match="training statistics"):
        scoring.with_domain_covariance(no_stats, domain_rows(40), "coral")
    assert scoring.with_domain_covariance(no_stats, domain_rows(40), "whiten").projection is not None
    flat = np.tile(domain_rows(1), (40, 1))  # one vector repeated: no in-domain variation at all
    with pytest.raises(UsageError, match="singular"):
        scoring.with_domain_covariance(backend, flat, "coral", 0.0)


# ------------------------------------------------------------------------------------ AS-norm


def asnorm(raw: float, enroll: object, test: object, top_n: int) -> float:
    """AS-norm of one trial through the product's grid function."""
    return float(scoring.asnorm_matrix([[raw]], np.atleast_2d(enroll), np.atleast_2d(test), top_n)[0, 0])


def test_asnorm_matches_the_formula() -> None:
    enroll = np.array([0.1, 0.5, 0.3, 0.2, 0.4])
    test = np.array([0.0, 0.2, 0.6, 0.1])
    top_e, top_t = np.array([0.5, 0.4, 0.3]), np.array([0.6, 0.2, 0.1])
    expected = 0.5 * ((0.7 - top_e.mean()) / top_e.std() + (0.7 - top_t.mean()) / top_t.std())
    assert asnorm(0.7, enroll, test, top_n=3) == pytest.approx(expected)


def test_asnorm_is_invariant_to_shift_and_scale() -> None:
    rng = np.random.default_rng(10)
    enroll, test = rng.normal(0.2, 0.1, 300), rng.normal(0.1, 0.05, 250)
    value = asnorm(0.6, enroll, test, top_n=50)
    for scale, shift in ((3.0, -1.0), (0.01, 5.0)):
        moved = asnorm(scale * 0.6 + shift, scale * enroll + shift, scale * test + shift, top_n=50)
        assert moved == pytest.approx(value, rel=1e-9)


def test_asnorm_uses_only_the_top_of_the_cohort() -> None:
    rng = np.random.default_rng(11)
    enroll, test = rng.normal(0.2, 0.1, 100), rng.normal(0.2, 0.1, 100)
    value = asnorm(0.5, enroll, test, top_n=10)
    # lowering scores outside the top 10 changes nothing
    low_e = np.where(enroll < np.sort(enroll)[-10], enroll - 1.0, enroll)
    assert asnorm(0.5, low_e, test, top_n=10) == pytest.approx(value)


def test_asnorm_guards_degenerate_cohorts() -> None:
    value = asnorm(0.5, np.full(10, 0.2), np.full(10, 0.2), top_n=5)
    assert np.isfinite(value)
    # top_n larger than the cohort: all of it is used
    assert asnorm(0.5, [0.1, 0.3], [0.2, 0.4], top_n=100) == pytest.approx(asnorm(0.5, [0.1, 0.3], [0.2, 0.4], 2))
    with pytest.raises(UsageError, match="at least 2 cohort scores"):
        asnorm(0.5, [0.1, 0.3], [0.2, 0.4], top_n=1)
    with pytest.raises(UsageError, match="empty"):
        scoring.asnorm_matrix([[0.5]], np.zeros((1, 0)), [[0.2, 0.4]], top_n=2)
    with pytest.raises(UsageError, match="NaN"):
        asnorm(float("nan"), [0.1, 0.3], [0.2, 0.4], top_n=2)


def test_asnorm_matrix_normalises_every_trial_of_the_grid() -> None:
    rng = np.random.default_rng(12)
    raw = rng.uniform(-1, 1, (3, 4))
    enroll, test = rng.normal(size=(3, 40)), rng.normal(size=(4, 30))
    grid = scoring.asnorm_matrix(raw, enroll, test, top_n=8)
    assert grid.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert grid[i, j] == pytest.approx(asnorm(raw[i, j], enroll[i], test[j], 8))
    with pytest.raises(UsageError, match="rows"):
        scoring.asnorm_matrix(raw, enroll[:2], test, top_n=8)


# -------------------------------------------------------------------------------- calibration


def simulated(n: int = 5000, seed: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-like scores: target ~ N(0.6, 0.1), nontarget ~ N(0.2, 0.1)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 0.1, n), rng.normal(0.2, 0.1, n)


# true LLR of N(0.6, 0.1) vs N(0.2, 0.1): slope (0.6-0.2)/0.01 = 40, offset -(0.36-0.04)/0.02 = -16
TRUE_A, TRUE_B = 40.0, -16.0


@pytest.mark.parametrize("prior", [0.5, 0.1])
def test_calibration_recovers_the_true_llr(prior: float) -> None:
    tar, non = simulated()
    cal = scoring.fit_calibration(tar, non, prior=prior, model="m", source="sim")
    assert cal.a == pytest.approx(TRUE_A, rel=0.08)
    assert cal.b == pytest.approx(TRUE_B, rel=0.08)
    # LLR 0 where the two densities cross (0.4)
    assert cal.llr(0.4) == pytest.approx(0.0, abs=0.2)
    assert (cal.n_target, cal.n_nontarget, cal.prior) == (5000, 5000, prior)


def test_calibration_lowers_cllr_to_near_its_minimum() -> None:
    tar, non = simulated()
    cal = scoring.fit_calibration(tar, non)
    raw_cllr = metrics.cllr(tar, non)
    calibrated = metrics.cllr(cal.llr(tar), cal.llr(non))
    assert calibrated < 0.5 * raw_cllr
    assert calibrated - metrics.min_cllr(tar, non) < 0.02


def test_calibration_llr_shapes() -> None:
    cal = Calibration(a=2.0, b=-1.0)
    assert cal.llr(1.0) == 1.0 and isinstance(cal.llr(1.0), float)
    np.testing.assert_allclose(cal.llr(np.array([[0.0, 1.0]])), [[-1.0, 1.0]])


def test_calibration_stays_finite_on_separable_scores() -> None:
    cal = scoring.fit_calibration([0.8, 0.9, 0.85], [0.1, 0.2, 0.15])
    assert np.isfinite(cal.a) and np.isfinite(cal.b) and cal.a > 0


@pytest.mark.parametrize(
    ("tar", "non", "prior", "message"),
    [
        ([], [0.1], 0.5, "empty"),
        ([0.5, 0.5], [0.5], 0.5, "all scores are equal"),
        ([0.9], [0.1], 1.0, "prior"),
    ],
)
def test_calibration_errors(tar: list[float], non: list[float], prior: float, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        scoring.fit_calibration(tar, non, prior=prior)


# ------------------------------------------------------------------ thresholds and decisions


@pytest.mark.parametrize("ff", [0.0, 0.01, 0.05, 0.2])
def test_threshold_at_false_flag_flags_the_requested_fraction(ff: float) -> None:
    tar = np.random.default_rng(14).normal(0.6, 0.1, 1000)
    threshold = scoring.threshold_at_false_flag(tar, ff)
    flagged = float(np.mean(tar < threshold))
    assert ff - 1e-3 <= flagged <= ff  # within one trial of the target, never above it
    # any higher threshold flags more than allowed
    assert np.mean(tar < np.nextafter(threshold, np.inf)) > ff


def test_threshold_at_false_flag_with_ties() -> None:
    tar = np.array([0.1, 0.5, 0.5, 0.5, 0.9])
    threshold = scoring.threshold_at_false_flag(tar, 0.5)
    assert np.mean(tar < threshold) <= 0.5
    assert threshold == 0.5


@pytest.mark.parametrize("ff", [-0.1, 1.0, 2.0])
def test_threshold_at_false_flag_rejects_bad_fractions(ff: float) -> None:
    with pytest.raises(UsageError, match="max_false_flag"):
        scoring.threshold_at_false_flag([0.5, 0.6], ff)


def test_threshold_at_eer_balances_the_two_errors() -> None:
    rng = np.random.default_rng(15)
    tar, non = rng.normal(0.6, 0.1, 4000), rng.normal(0.3, 0.1, 4000)
    threshold = metrics.threshold_at_eer(tar, non)
    p_miss, p_fa = np.mean(tar < threshold), np.mean(non >= threshold)
    assert abs(p_miss - p_fa) < 0.01
    assert threshold == pytest.approx(0.45, abs=0.02)
