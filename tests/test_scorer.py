"""voicecheck.scorer: scoring modes, cohort exclusions, profile overrides, missing thresholds and
model mismatches (numpy only; the shipped GE2E back-end file, never the GE2E model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fakes import workspace
from voicecheck.config import Settings
from voicecheck.errors import ModelMismatchError, UsageError
from voicecheck.scorer import DATA, Cohort, Profile, Scorer, Threshold, load_backend
from voicecheck.types import CallEmbedding, Voiceprint

GE2E_NAME = "ge2e-resemblyzer-0.1.4"


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _settings(tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = dict(
        store=str(tmp_path / "store"), embeddings=str(workspace(tmp_path)), model="fake", backend_file=""
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def _cohort(rng: np.random.Generator, n: int, d: int, owner: str = "") -> Cohort:
    return Cohort(_unit_rows(rng, n, d), [f"h{i}" for i in range(n)], [{owner or f"X{i}"} for i in range(n)])


def _voiceprint(vec: np.ndarray, model: str = "fake-bands", owner: str = "B1") -> Voiceprint:
    return Voiceprint(owner, model, len(vec), {"narrow": vec.astype(np.float32)}, 1, 10.0, "t", "t")


def _call(vec: np.ndarray, model: str = "fake-bands", content_hash: str = "callhash") -> CallEmbedding:
    v = vec.astype(np.float32)
    return CallEmbedding(content_hash, model, "narrow", 1, v, v[None, :], np.array([[0.0, 1.0]]), 5.0, 6.0)


# -- modes -----------------------------------------------------------------------------------------


def test_cosine_mode_without_cohort_or_backend_is_the_raw_cosine(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scorer = Scorer(_settings(tmp_path, thresholds={"cosine": 0.3}), "fake-bands", "fake", None, {})
    assert scorer.mode("narrow") == scorer.mode("wide") == "cosine"
    e, t = _unit_rows(rng, 1, 32)[0], _unit_rows(rng, 5, 32)
    s, raw = scorer.scores(e, t, "narrow")
    assert s.shape == raw.shape == (5,)
    np.testing.assert_allclose(s, t @ e, atol=1e-5)
    np.testing.assert_allclose(raw, t @ e, atol=1e-5)
    assert scorer.threshold("narrow").value == 0.3
    assert scorer.calibration("narrow") is None  # the fake model ships no profile


def test_build_without_backend_file_ignores_the_shipped_backend(tmp_path: Path) -> None:
    scorer = Scorer.build(_settings(tmp_path, model="ge2e", cohort=False), GE2E_NAME, "ge2e")
    assert scorer.mode("narrow") == "cosine"


def test_lda_mode_with_the_shipped_ge2e_backend(tmp_path: Path) -> None:
    assert (DATA / "ge2e-backend.npz").is_file()
    settings = _settings(tmp_path, model="ge2e", backend_file="auto", cohort=False)
    scorer = Scorer.build(settings, GE2E_NAME, "ge2e")
    assert scorer.mode("narrow") == "lda"
    shipped = Profile.load("ge2e", settings.embeddings).modes["lda"]
    assert scorer.threshold("narrow").value == pytest.approx(shipped["threshold"])
    assert scorer.calibration("narrow") is not None
    rng = np.random.default_rng(1)
    e, t = _unit_rows(rng, 1, 256)[0], _unit_rows(rng, 4, 256)
    s, raw = scorer.scores(e, np.vstack([e, t]), "narrow")
    assert s.shape == (5,) and np.all(np.abs(s) <= 1 + 1e-5)  # cosine in the back-end's space
    assert s[0] == pytest.approx(1.0, abs=1e-4) and np.all(s[1:] < s[0])
    np.testing.assert_allclose(raw, np.vstack([e, t]) @ e, atol=1e-5)
    assert not np.allclose(s[1:], raw[1:], atol=1e-3)  # the projection changes the scale


def test_shipped_backend_refuses_another_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="trained for model"):
        load_backend(_settings(tmp_path, backend_file="auto"), "ge2e", "some-other-model")


def test_asnorm_modes_need_cohort_min_calls(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    settings = _settings(tmp_path, thresholds={"cosine": 0.0, "asnorm": 0.0}, cohort_min=20, cohort_top_n=10)
    small = Scorer(settings, "fake-bands", "fake", None, {"narrow": _cohort(rng, 19, 32)})
    assert small.mode("narrow") == "cosine"
    scorer = Scorer(settings, "fake-bands", "fake", None, {"narrow": _cohort(rng, 30, 32)})
    assert scorer.mode("narrow") == "asnorm" and scorer.mode("wide") == "cosine"
    e, t = _unit_rows(rng, 1, 32)[0], _unit_rows(rng, 6, 32)
    s, _ = scorer.scores(e, np.vstack([e, t]), "narrow")
    assert np.all(np.isfinite(s)) and s[0] > np.max(s[1:])  # the enrollment itself scores highest
    assert s[0] > 2.0  # AS-norm scores are z-like, not bounded by 1

    backend_settings = _settings(
        tmp_path, model="ge2e", backend_file="auto", thresholds={"lda+asnorm": 0.0}, cohort_min=20
    )
    lda = Scorer(
        backend_settings,
        GE2E_NAME,
        "ge2e",
        load_backend(backend_settings, "ge2e", GE2E_NAME),
        {"narrow": _cohort(rng, 25, 256)},
    )
    assert lda.mode("narrow") == "lda+asnorm" and lda.mode("wide") == "lda"
    assert lda.threshold("narrow").value == 0.0


def _lda_asnorm(tmp_path: Path, cohort: Cohort, **kw: object) -> Scorer:
    settings = _settings(
        tmp_path, model="ge2e", backend_file="auto", thresholds={"lda+asnorm": 0.0}, cohort_min=20, **kw
    )
    return Scorer(settings, GE2E_NAME, "ge2e", load_backend(settings, "ge2e", GE2E_NAME), {"narrow": cohort})


def test_cohort_covariance_alignment_goes_through_the_scorer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(3)
    cohort = _cohort(rng, 100, 256)
    e, t = _unit_rows(rng, 1, 256)[0], _unit_rows(rng, 6, 256)
    today = _lda_asnorm(tmp_path, cohort).scores(e, t, "narrow")[0]
    for method in ("coral", "whiten"):
        same = _lda_asnorm(tmp_path, cohort, cohort_covariance=method, cohort_covariance_shrink=1.0)
        np.testing.assert_array_equal(same.scores(e, t, "narrow")[0], today)
        aligned = _lda_asnorm(tmp_path, cohort, cohort_covariance=method)
        assert aligned.mode("narrow") == "lda+asnorm"
        backend = aligned.space("narrow").backend
        assert backend is not None and f"{method} covariance alignment (shrink 0.5) to 100" in backend.source
        s = aligned.scores(e, t, "narrow")[0]
        assert s.shape == (6,) and np.all(np.isfinite(s)) and not np.allclose(s, today, atol=1e-3)
    with caplog.at_level("WARNING", logger="voicecheck.scorer"):
        small = _lda_asnorm(tmp_path, _cohort(rng, 64, 256), cohort_covariance="coral")
    assert "too small to align" in caplog.text
    plain = _lda_asnorm(tmp_path, small.space("narrow").cohort)  # type: ignore[arg-type]
    np.testing.assert_array_equal(small.scores(e, t, "narrow")[0], plain.scores(e, t, "narrow")[0])


def test_cohort_covariance_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="coral"):
        _settings(tmp_path, cohort_covariance="lda")
    with pytest.raises(UsageError):
        _settings(tmp_path, cohort_covariance_shrink=1.5)
    assert Settings().cohort_covariance == "off"


def test_build_takes_the_cohort_from_the_callstore(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = _unit_rows(rng, 25, 32)

    class Store:
        def cohort(self, model: str, band: str, limit: int, per_borrower: int = 3):
            assert model == "fake-bands"
            if band == "narrow":
                return vectors[:limit], [f"h{i}" for i in range(len(vectors))][:limit], [set()] * min(limit, 25)
            return np.zeros((0, 32), np.float32), [], []

    assert Scorer.build(_settings(tmp_path, cohort_min=20), "fake-bands", "fake", Store()).mode("narrow") == "asnorm"
    assert (
        Scorer.build(_settings(tmp_path, cohort_min=20, cohort_max=10), "fake-bands", "fake", Store()).mode("narrow")
        == "cosine"
    )
    assert Scorer.build(_settings(tmp_path, cohort=False), "fake-bands", "fake", Store()).mode("narrow") == "cosine"


# -- a call never normalises against itself nor its borrower's calls -------------------------------------


def test_exclude_hash_and_owner(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    settings = _settings(tmp_path, thresholds={"cosine": 0.0, "asnorm": 0.0}, cohort_min=20, cohort_top_n=10)
    enroll = _unit_rows(rng, 1, 32)[0]
    test = enroll + 0.3 * _unit_rows(rng, 1, 32)[0]  # a genuine trial
    test /= np.linalg.norm(test)
    base = _cohort(rng, 40, 32)
    # the test call itself is in the cohort (hash "self"), and 3 calls of borrower B1 sound like the enrollment
    near_enroll = enroll + 0.3 * _unit_rows(rng, 3, 32)
    near_enroll /= np.linalg.norm(near_enroll, axis=1, keepdims=True)
    cohort = Cohort(
        np.vstack([base.vectors, test[None, :], near_enroll]).astype(np.float32),
        [*base.hashes, "self", *[f"b{i}" for i in range(3)]],
        [*base.owners, {"X-self"}, *[{"B1", "B9"} for _ in range(3)]],
    )
    scorer = Scorer(settings, "fake-bands", "fake", None, {"narrow": cohort})

    def one(**kw: str) -> float:
        return float(scorer.scores(enroll, test[None, :], "narrow", **kw)[0][0])

    plain = one()
    assert one(exclude_hash="nobody") == pytest.approx(plain)
    assert one(exclude_owner="nobody") == pytest.approx(plain)
    # with itself in the cohort the test side's top-N mean is inflated -> lower score; excluded -> higher
    assert one(exclude_hash="self") > plain + 0.05
    # the borrower's own calls inflate the enrollment side's cohort stats the same way
    assert one(exclude_owner="B1") > plain + 0.05
    both = one(exclude_hash="self", exclude_owner="B1")
    assert both > max(one(exclude_hash="self"), one(exclude_owner="B1")) - 1e-9

    # Scorer.score passes the call's content hash and the voiceprint's owner as the exclusions
    got = scorer.score(_voiceprint(enroll), _call(test, content_hash="self"))
    assert got.score == pytest.approx(both) and got.mode == "asnorm" and got.band == "narrow"
    assert got.raw_cosine == pytest.approx(float(enroll @ test), abs=1e-5)


def test_exclusions_never_switch_the_score_to_another_scale(tmp_path: Path) -> None:
    """Leaving a borrower's calls out of the cohort keeps the score AS-normalised (the mode's scale,
    which its threshold is on) over what is left; it never falls back silently to a cosine."""
    from voicecheck.scoring import asnorm_matrix, unit

    rng = np.random.default_rng(5)
    settings = _settings(tmp_path, thresholds={"asnorm": 0.0}, cohort_min=20, cohort_top_n=5)
    vectors = _unit_rows(rng, 22, 32)
    owners = [{"B1"} if i < 3 else {f"X{i}"} for i in range(22)]
    scorer = Scorer(
        settings, "fake-bands", "fake", None, {"narrow": Cohort(vectors, [f"h{i}" for i in range(22)], owners)}
    )
    assert scorer.mode("narrow") == "asnorm"
    enroll, test = _unit_rows(rng, 2, 32)
    s, _ = scorer.scores(enroll, test[None, :], "narrow", exclude_owner="B1")
    mean = vectors.mean(axis=0)
    e, t, rest = unit(enroll - mean), unit(test - mean), unit(vectors[3:] - mean)
    want = asnorm_matrix([[float(e @ t)]], (rest @ e)[None, :], (rest @ t)[None, :], 5)[0, 0]
    assert s[0] == pytest.approx(want, abs=1e-5)


# -- profile overrides and missing thresholds ------------------------------------------------------------


def test_missing_threshold_names_calibrate(tmp_path: Path) -> None:
    scorer = Scorer(_settings(tmp_path), "fake-bands", "fake", None, {})
    with pytest.raises(UsageError, match="voicecheck calibrate") as info:
        scorer.threshold("narrow")
    assert "'cosine'" in str(info.value) and "--threshold" in str(info.value)
    with pytest.raises(UsageError, match="voicecheck calibrate"):
        scorer.score(_voiceprint(np.eye(32, dtype=np.float32)[0]), _call(np.eye(32, dtype=np.float32)[0]))
    # labelled trials are scored before any threshold exists (voicecheck calibrate needs this)
    got = scorer.score(
        _voiceprint(np.eye(32, dtype=np.float32)[0]), _call(np.eye(32, dtype=np.float32)[0]), with_threshold=False
    )
    assert got.score == pytest.approx(1.0, abs=1e-5) and np.isnan(got.threshold)


def test_saved_profile_overrides_threshold_and_calibration(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    scorer = Scorer(settings, "fake-bands", "fake", None, {})
    path = scorer.profile.save_mode(
        "fake", settings.embeddings, "cosine", {"threshold": 0.42, "calibration": {"a": 3.0, "b": -1.5}}, "unit test"
    )
    assert path == Path(settings.embeddings) / "calibration" / "fake.json"
    again = Scorer(settings, "fake-bands", "fake", None, {})
    assert again.threshold("narrow").value == pytest.approx(0.42)
    calib = again.calibration("narrow")
    assert calib is not None and (calib.a, calib.b) == (3.0, -1.5)
    assert again.profile.modes["cosine"]["source"] == "unit test"
    v = np.eye(32, dtype=np.float32)[0]
    got = again.score(_voiceprint(v), _call(v))
    assert got.threshold == pytest.approx(0.42) and got.llr == pytest.approx(3.0 * got.score - 1.5, abs=1e-4)
    # --threshold still wins over the profile
    override = Scorer(_settings(tmp_path, thresholds={"cosine": 0.7}), "fake-bands", "fake", None, {})
    assert override.threshold("narrow") == Threshold(0.7, "settings: thresholds.cosine")


def test_saved_profile_overrides_one_shipped_mode_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path, model="ge2e", backend_file="auto", cohort=False)
    shipped = Profile.load("ge2e", settings.embeddings)
    shipped.save_mode("ge2e", settings.embeddings, "lda", {"threshold": 0.123}, "local")
    scorer = Scorer.build(settings, GE2E_NAME, "ge2e")
    assert scorer.threshold("narrow").value == pytest.approx(0.123)
    assert scorer.calibration("narrow") is not None  # merged: the shipped calibration of the mode stays
    plain = Scorer.build(_settings(tmp_path, model="ge2e", cohort=False), GE2E_NAME, "ge2e")
    assert plain.threshold("narrow").value == pytest.approx(shipped.modes["cosine"]["threshold"])


def test_unreadable_calibration_file_is_a_usage_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    bad = Path(settings.embeddings) / "calibration" / "fake.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="fake.json"):
        Scorer(settings, "fake-bands", "fake", None, {})


# -- model mismatch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vp_model", "call_model", "scorer_model"),
    [
        ("fake-bands", "fake-bands-b", "fake-bands"),
        ("fake-bands-b", "fake-bands", "fake-bands"),
        ("fake-bands-b", "fake-bands-b", "fake-bands"),
    ],
)
def test_model_mismatch(tmp_path: Path, vp_model: str, call_model: str, scorer_model: str) -> None:
    scorer = Scorer(_settings(tmp_path, thresholds={"cosine": 0.5}), scorer_model, "fake", None, {})
    v = np.eye(32, dtype=np.float32)[0]
    with pytest.raises(ModelMismatchError, match="different models"):
        scorer.score(_voiceprint(v, vp_model), _call(v, call_model))
