"""The in-domain back-end: pseudo-labels from the store, adaptation, the schedule and the commands.

A synthetic deployment: each borrower is a random direction of the fake model's 32-d space; the
stored calls wander along a "channel" direction the voiceprints do not have; calls and voiceprints
go into the real stores as the batch would put them.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import NO_REPLAY, workspace
from voicecheck.adapt import (
    LabelledCall,
    PseudoLabels,
    adapt_backend,
    adaptation_weights,
    domain_statistics,
    due,
    pseudo_labels,
    scheduled,
    train_backend,
)
from voicecheck.audit import audit_path, entries
from voicecheck.callstore import CallStore
from voicecheck.config import Settings, load_settings
from voicecheck.crypto import cipher_for
from voicecheck.enrollment import VoiceprintStore
from voicecheck.errors import UsageError
from voicecheck.scorer import Scorer, adapted_backends, load_backend
from voicecheck.scoring import Backend, lda_from_stats, scatter_stats, unit
from voicecheck.types import CallEmbedding, SpeechRegion

D = 32
MODEL = "fake-bands"
DAY = 86400.0


class Deployment:
    """Borrowers' voices, their voiceprints and calls in the stores of a test workspace."""

    def __init__(self, root: Path, n: int = 60, seed: int = 0, **settings: object) -> None:
        self.rng = np.random.default_rng(seed)
        self.settings: Settings = load_settings(
            None,
            store=str(root / "store"),
            embeddings=str(workspace(root)),
            model="fake",
            **{"backend_file": "", "adapt_min_borrowers": 10, "replay": False, **settings},
        )
        self.channel = unit(self.rng.standard_normal(D))
        self.voices = {f"B{i:03d}": unit(self.rng.standard_normal(D)) for i in range(n)}
        self.truth: dict[str, str] = {}  # call id -> who spoke
        self.calls_of: dict[str, list[str]] = {}

    def enroll(self, borrower: str, voice: np.ndarray | None = None, forced: str = "") -> None:
        v = unit((self.voices[borrower] if voice is None else voice) + 0.15 * unit(self.rng.standard_normal(D)))
        db = VoiceprintStore(self.settings.store, cipher_for(self.settings))
        try:
            db.add_recording(
                borrower, MODEL, f"enroll-{borrower}", _h(borrower, "enroll", forced), "narrow", 8.0, {"narrow": v},
                consent="test", forced=forced,
            )  # fmt: skip
        finally:
            db.close()

    def call(self, call_id: str, borrower: str, speaker: str | np.ndarray, noise: float = 0.35) -> None:
        voice = self.voices[speaker] if isinstance(speaker, str) else speaker
        wander = float(self.rng.normal(0.0, 0.6))
        windows = np.stack(
            [unit(voice + wander * self.channel + noise * unit(self.rng.standard_normal(D))) for _ in range(6)]
        ).astype(np.float32)
        times = np.stack([np.arange(6.0), np.arange(6.0) + 1.0], axis=1)
        h = _h(call_id, borrower)
        emb = CallEmbedding(h, MODEL, "narrow", 1, unit(windows.mean(axis=0)), windows, times, 6.0, 7.0,
                            (SpeechRegion(0.0, 7.0),), None, 2)  # fmt: skip
        db = CallStore(self.settings.embeddings, cipher_for(self.settings))
        try:
            db.put(emb, content_hash=h, channel=1, model=MODEL)
            db.link(call_id, borrower, f"{call_id}.wav", h, 1, MODEL)
        finally:
            db.close()
        self.truth[call_id] = speaker if isinstance(speaker, str) else "someone"
        self.calls_of.setdefault(borrower, []).append(call_id)

    def populate(self, calls_each: int = 3) -> Deployment:
        for b in self.voices:
            self.enroll(b)
            for k in range(calls_each):
                self.call(f"{b}-{k}", b, b)
        return self


def _h(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def ood_backend(path: Path, rng: np.random.Generator) -> Path:
    """An out-of-domain back-end of the fake model with statistics (other speakers, no channel)."""
    voices = rng.standard_normal((80, D))
    x = np.repeat(voices, 4, axis=0) + 0.5 * rng.standard_normal((320, D))
    stats = scatter_stats(np.stack([unit(r) for r in x]), np.repeat(np.arange(80), 4))
    info = {"kind": "out-of-domain", "lda": {"dim": 16, "wccn": False, "shrink": 0.3}}
    backend = lda_from_stats(stats, 16, wccn=False, shrink=0.3, model=MODEL, source="test OOD", info=info)
    backend.save(path)
    return path


def test_train_writes_a_private_backend_with_its_provenance(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    done = train_backend(dep.settings, extra=[], clock=lambda: 1_800_000_000.0)
    assert done.path.parent == Path(dep.settings.embeddings) / "backends"
    assert done.path.name == "fake-in-domain-20270115T080000Z.npz"
    assert stat.S_IMODE(done.path.stat().st_mode) == 0o600
    back = Backend.load(done.path)
    assert back.adapted and back.model == MODEL and back.prior is None  # no shipped back-end: in-domain alone
    info = back.info
    assert info["kind"] == "in-domain" and info["trained_at"] == "20270115T080000Z"
    assert info["borrowers_with_two_calls"] >= 10 and info["calls"] == len(done.labels.calls)
    assert isinstance(info["margin"]["levels"]["narrow"], float)
    assert info["margin"]["adapt_max_false_accept"] == dep.settings.adapt_max_false_accept
    assert all(dep.truth[c.call_id] == c.borrower_id for c in done.labels.calls)  # every label right
    assert back.stats is not None and back.stats.n_speakers == len(done.labels.per_borrower)
    trained = [e for e in entries(audit_path(dep.settings)) if e["event"] == "backend.train"]
    assert len(trained) == 1 and trained[0]["file"] == str(done.path) and "vector" not in json.dumps(trained[0])


def test_one_call_and_the_voiceprint_make_a_class_that_counts(tmp_path: Path) -> None:
    # a lender's first night: every borrower has called once; each class is voiceprint + call
    dep = Deployment(tmp_path, n=110, nontarget_per_call=30).populate(calls_each=1)
    done = train_backend(dep.settings, extra=[])
    assert done.labels.borrowers_with_two == 0
    assert done.counted == len(done.labels.per_borrower) >= dep.settings.adapt_min_borrowers
    assert Backend.load(done.path).info["borrowers_counted"] == done.counted
    # without the voiceprints in the classes a call alone shows no variation: refused, nothing written
    before = adapted_backends(dep.settings.embeddings, "fake")
    with pytest.raises(UsageError, match=r"only 0 borrowers have two labelled calls .*adapt_min_borrowers = 10"):
        train_backend(dep.settings, extra=[], with_voiceprints=False)
    assert adapted_backends(dep.settings.embeddings, "fake") == before


def test_only_a_voiceprint_that_joins_the_class_counts() -> None:
    v = np.ones(D)
    labels = PseudoLabels([LabelledCall(f"c{i}", who, v) for i, who in enumerate("AABC")])
    assert labels.borrowers_with_two == 1
    assert labels.borrowers_with_two_vectors() == 1  # no voiceprints: calls only
    assert labels.borrowers_with_two_vectors({"B"}) == 2  # B: one call and the voiceprint; C has none
    assert labels.borrowers_with_two_vectors({"A", "B", "C", "Z"}) == 3  # Z labelled no call: no class


def test_too_few_borrowers_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    dep = Deployment(tmp_path, adapt_min_borrowers=500).populate()
    with pytest.raises(UsageError, match="adapt_min_borrowers = 500"):
        train_backend(dep.settings, extra=[])
    assert adapted_backends(dep.settings.embeddings, "fake") == []


def test_a_refusal_names_calls_never_checked_for_replay(tmp_path: Path) -> None:
    """Calls stored without a replay check (e.g. before the check was on) are never labelled: the
    refusal says so instead of only counting borrowers."""
    dep = Deployment(tmp_path, replay=True).populate()
    with pytest.raises(UsageError, match=r"left out as verdict inconclusive \(replay_not_checked\)"):
        train_backend(dep.settings, extra=[])
    assert adapted_backends(dep.settings.embeddings, "fake") == []


def test_a_model_without_backend_statistics_needs_more_borrowers_than_lda_directions(tmp_path: Path) -> None:
    dep = Deployment(  # 32 borrowers, 32-d vectors; enough calls and trials for the operating point
        tmp_path, n=32, adapt_min_borrowers=2, cohort_per_borrower=4, nontarget_per_call=30
    ).populate(4)
    with pytest.raises(UsageError, match="an LDA of 32 directions needs more borrowers than directions"):
        train_backend(dep.settings, extra=[])
    ood_path = ood_backend(tmp_path / "ood.npz", dep.rng)
    done = train_backend(replace(dep.settings, backend_file=str(ood_path)), extra=[])  # with a prior: fine
    assert done.backend.prior is not None


def test_without_an_operating_point_there_is_no_margin_and_no_training(tmp_path: Path) -> None:
    dep = Deployment(tmp_path, n=12).populate(2)
    with pytest.raises(UsageError, match="operating point"):
        train_backend(dep.settings, extra=[])


def test_a_stricter_margin_labels_fewer_calls_and_says_why(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    loose = pseudo_labels(replace(dep.settings, adapt_max_false_accept=0.05))
    strict = pseudo_labels(replace(dep.settings, adapt_max_false_accept=0.0001))
    assert len(strict.calls) < len(loose.calls)
    assert strict.excluded["accepted without the margin"] > loose.excluded["accepted without the margin"]
    assert strict.levels["narrow"] > loose.levels["narrow"]  # type: ignore[operator]
    assert "no operating point" in str(strict.levels["wide"]) or isinstance(strict.levels["wide"], str)


def test_impostors_rings_watchlist_and_forced_enrollments_teach_nothing(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    names = sorted(dep.voices)
    # an agent enrolled as borrower A0 speaks as A0 and as three other borrowers: a ring voice
    agent = unit(dep.rng.standard_normal(D))
    dep.voices["A0"] = agent
    dep.enroll("A0")
    for k in range(3):
        dep.call(f"A0-{k}", "A0", "A0")
    for b in names[:3]:
        dep.call(f"{b}-agent", b, agent)
    # a forced enrollment, and a borrower whose voice is on the watchlist
    dep.enroll(names[5], forced="voice did not match; forced by a test")
    db = VoiceprintStore(dep.settings.store, cipher_for(dep.settings))
    try:
        db.watch_add("W1", "test", dep.voices[names[6]], MODEL)
    finally:
        db.close()
    labels = pseudo_labels(dep.settings)
    taken = {c.call_id for c in labels.calls}
    assert all(dep.truth[c] == c.split("-")[0] for c in taken)  # no impostor call labelled
    assert not taken & {"A0-0", "A0-1", "A0-2"}  # the ring voice's own calls neither
    assert not any(c.startswith((names[5], names[6])) for c in taken)
    assert labels.excluded["borrower excluded (ring, two voices or forced enrollment)"] >= 3
    assert (
        labels.excluded["a call of the borrower hit the watchlist"]
        + sum(n for why, n in labels.excluded.items() if "watchlist_hit" in why)
        >= 3
    )


def test_reviewed_calls_join_and_excluded_calls_leave(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    first = pseudo_labels(dep.settings)
    dropped = first.calls[0].call_id
    reviewed = LabelledCall("R-1", "B000", unit(dep.voices["B000"]), reviewed=True)
    again = pseudo_labels(dep.settings, extra=[reviewed], exclude=[dropped])
    ids = {c.call_id for c in again.calls}
    assert "R-1" in ids and dropped not in ids
    assert len(again.calls) == len(first.calls)


def test_adaptation_starts_from_the_shipped_statistics_every_time(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    ood_path = ood_backend(tmp_path / "ood.npz", dep.rng)
    ood = Backend.load(ood_path)
    first = train_backend(replace(dep.settings, backend_file=str(ood_path)), extra=[], clock=lambda: 1e9)
    assert first.backend.prior is not None and first.backend.prior.n_vectors == ood.stats.n_vectors  # type: ignore[union-attr]
    w = first.backend.info["weights"]
    assert 0.0 < w["within"] < 1.0 and 0.0 < w["between"] < 1.0
    assert first.backend.info["lda"]["dim"] == 16  # the base's recipe
    assert first.backend.info["base"]["digest"] == ood.digest
    second = train_backend(replace(dep.settings, backend_file="adapted"), extra=[], clock=lambda: 1e9 + DAY)
    assert second.backend.info["base"]["file"] == str(first.path)
    np.testing.assert_allclose(second.backend.prior.within, ood.stats.within, rtol=1e-5)  # type: ignore[union-attr]


def test_the_adapted_backend_learns_the_channel(tmp_path: Path) -> None:
    """Calls wander along a channel direction the OOD back-end never saw; the adapted one scores new
    calls of the same borrowers with a lower EER."""
    from voicecheck.metrics import eer

    dep = Deployment(tmp_path, n=80).populate(4)
    ood_path = ood_backend(tmp_path / "ood.npz", dep.rng)
    ood = Backend.load(ood_path)
    labels = pseudo_labels(replace(dep.settings, backend_file=str(ood_path)))
    rows = np.stack([c.vector for c in labels.calls])
    adapted = adapt_backend(ood, scatter_stats(rows, [c.borrower_id for c in labels.calls]), MODEL, weights=(0.9, 0.5))
    names = sorted(dep.voices)
    prints = np.stack([unit(dep.voices[b] + 0.15 * unit(dep.rng.standard_normal(D))) for b in names])
    tests = np.stack(
        [
            unit(dep.voices[b] + dep.rng.normal(0, 1.2) * dep.channel + 0.35 * unit(dep.rng.standard_normal(D)))
            for b in names
        ]
    )
    same = np.eye(len(names), dtype=bool)

    def test_eer(b: Backend) -> float:
        s = b.transform(prints) @ b.transform(tests).T
        return eer(s[same], s[~same])[0]

    assert test_eer(adapted) < test_eer(ood)


def _offset_labels(rng: np.random.Generator) -> tuple[PseudoLabels, dict[str, np.ndarray], np.ndarray]:
    """Six borrowers with five labelled calls each; every voiceprint sits off its calls along one direction."""
    offset = unit(rng.standard_normal(D))
    calls, prints = [], {}
    for b in range(6):
        voice = rng.standard_normal(D)
        calls += [LabelledCall(f"C{b}-{k}", f"B{b}", voice + 0.3 * rng.standard_normal(D)) for k in range(5)]
        prints[f"B{b}"] = voice + 2.0 * offset
    return PseudoLabels(calls), prints, offset


def test_voiceprint_rows_weigh_the_enrollment_against_call_variation_up_and_keep_the_weights() -> None:
    labels, prints, offset = _offset_labels(np.random.default_rng(5))
    one = domain_statistics(labels, prints)
    four = domain_statistics(labels, prints, voiceprint_rows=4)
    assert four.n_vectors == one.n_vectors == 36 and four.n_speakers == one.n_speakers == 6
    assert adaptation_weights(four) == adaptation_weights(one)
    assert offset @ four.within @ offset > 1.5 * (offset @ one.within @ offset)  # the offset is within-speaker now


def test_within_scale_widens_only_the_within_speaker_covariance() -> None:
    labels, prints, _ = _offset_labels(np.random.default_rng(6))
    one = domain_statistics(labels, prints)
    wide = domain_statistics(labels, prints, within_scale=2.0)
    np.testing.assert_allclose(wide.within, 2.0 * one.within)
    np.testing.assert_allclose(wide.between, one.between)
    assert wide.n_vectors == one.n_vectors


@pytest.mark.parametrize("kwargs", [{"voiceprint_rows": 0}, {"voiceprint_rows": 1.5}, {"within_scale": 0.0},
                                    {"within_scale": float("nan")}])  # fmt: skip
def test_bad_domain_weights_are_refused(kwargs: dict) -> None:
    labels, prints, _ = _offset_labels(np.random.default_rng(7))
    with pytest.raises(UsageError, match=next(iter(kwargs))):
        domain_statistics(labels, prints, **kwargs)


def test_train_records_the_domain_weights(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    plain = train_backend(dep.settings, extra=[], clock=lambda: 1e9)
    heavy = train_backend(dep.settings, extra=[], clock=lambda: 1e9 + DAY, voiceprint_rows=3, within_scale=1.5)
    assert plain.backend.info["voiceprint_rows"] == 1 and plain.backend.info["within_scale"] == 1.0
    assert heavy.backend.info["voiceprint_rows"] == 3 and heavy.backend.info["within_scale"] == 1.5
    assert heavy.backend.stats.n_vectors == plain.backend.stats.n_vectors  # type: ignore[union-attr]
    assert not np.allclose(heavy.backend.stats.within, plain.backend.stats.within)  # type: ignore[union-attr]


def test_backend_file_adapted_selects_the_newest_and_falls_back_to_none(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    settings = replace(dep.settings, backend_file="adapted")
    assert load_backend(settings, "fake", MODEL) is None  # the fake model ships no back-end
    older = train_backend(dep.settings, extra=[], clock=lambda: 1e9)
    newer = train_backend(dep.settings, extra=[], clock=lambda: 1e9 + DAY)
    assert adapted_backends(settings.embeddings, "fake") == [older.path, newer.path]
    assert load_backend(settings, "fake", MODEL).digest == newer.backend.digest  # type: ignore[union-attr]


def test_an_adapted_backend_takes_no_threshold_made_for_another(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    done = train_backend(dep.settings, extra=[])
    folder = Path(dep.settings.embeddings) / "calibration"
    folder.mkdir()
    entry = {"threshold": 0.4, "calibration": {"a": 1.0, "b": 0.0}}
    (folder / "fake.json").write_text(json.dumps({"model": MODEL, "modes": {"lda": entry}}))
    settings = replace(dep.settings, backend_file=str(done.path), cohort=False)
    scorer = Scorer(settings, MODEL, "fake", done.backend, {})
    assert scorer.mode("narrow") == "lda"
    with pytest.raises(UsageError, match="no calibrated threshold"):  # made before, for no recorded back-end
        scorer.threshold("narrow")
    bound = {**entry, "backend": done.backend.digest}
    (folder / "fake.json").write_text(json.dumps({"model": MODEL, "modes": {"lda": bound}}))
    assert Scorer(settings, MODEL, "fake", done.backend, {}).threshold("narrow").value == 0.4


def test_the_schedule(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    now = 1.9e9
    assert not due(dep.settings, lambda: now)  # adapt_every_days = 0: never
    weekly = replace(dep.settings, adapt_every_days=7)
    assert due(weekly, lambda: now)  # no in-domain back-end yet
    got = scheduled(weekly, lambda: now)
    assert got is not None and got["status"] == "trained" and Path(got["file"]).is_file()
    assert not due(weekly, lambda: now + 6 * DAY) and scheduled(weekly, lambda: now + 6 * DAY) is None
    assert due(weekly, lambda: now + 7 * DAY)
    refused = scheduled(replace(weekly, adapt_min_borrowers=999), lambda: now + 8 * DAY)
    assert refused is not None and refused["status"] == "not trained" and "adapt_min_borrowers" in refused["reason"]


def test_plda_scoring_runs_the_operating_point_on_its_own_scale(tmp_path: Path) -> None:
    from voicecheck.operating import OperatingPoint

    dep = Deployment(tmp_path).populate()
    ood_path = ood_backend(tmp_path / "ood.npz", dep.rng)
    settings = replace(dep.settings, backend_file=str(ood_path), backend_scoring="plda")
    calls = CallStore(settings.embeddings, cipher_for(settings))
    vps = VoiceprintStore(settings.store, cipher_for(settings))
    try:
        scorer = Scorer.build(settings, MODEL, "fake", calls, vps)
        point = scorer.operating["narrow"]
        assert scorer.mode("narrow") == "plda" and scorer.space("narrow").cohort is not None
        assert isinstance(point, OperatingPoint) and point.mode == "plda"
        own = scorer.score(vps.get("B001", MODEL), calls.linked("B001-0", MODEL).embedding)  # type: ignore[index, arg-type]
        other = scorer.score(vps.get("B002", MODEL), calls.linked("B001-0", MODEL).embedding)  # type: ignore[index, arg-type]
    finally:
        calls.close()
        vps.close()
    assert own.mode == "plda" and own.score > other.score
    assert own.accepted and not other.accepted
    assert abs(own.score) > 1.0  # a log-likelihood ratio, not a cosine


def test_cli_backend_train_list_rescore_and_eval_compare(tmp_path: Path, vc) -> None:  # noqa: ANN001
    emb = tmp_path / "embeddings"
    dep = Deployment(tmp_path, n=60)
    dep.settings = replace(dep.settings, store=str(tmp_path / "store"), embeddings=str(emb))
    (tmp_path / "voicecheck.toml").write_text(
        f'model = "fake"\nstore = "{tmp_path / "store"}"\nembeddings = "{emb}"\nadapt_min_borrowers = 10\n{NO_REPLAY}',
        encoding="utf-8",
    )
    res = vc("backend", "train")
    assert res.exit_code == 2 and "operating point" in res.output
    dep.populate()
    res = vc("backend", "train")
    assert res.exit_code == 0, res.output
    assert "in-domain back-end" in res.output and "borrowers" in res.output
    res = vc("backend", "list")
    assert res.exit_code == 0 and "fake-in-domain-" in res.output and "no back-end" in res.output
    res = vc("rescore", "--out", tmp_path / "re", "--backend", "adapted")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert summary["backend"]["kind"] == "in-domain"
    trials = tmp_path / "trials.csv"
    rows = ["borrower_id,call_id,label"] + [f"B{i:03d},B{i:03d}-0,1" for i in range(20)]
    rows += [f"B{i:03d},B{(i + 1) % 60:03d}-1,0" for i in range(20)]
    trials.write_text("\n".join(rows) + "\n")
    res = vc("eval", trials, "--out", tmp_path / "ev", "--backend", "adapted", "--compare-backend", "")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["backend"].startswith("in-domain") and metrics["compare"]["backend"] == ""
    assert metrics["compare"]["n_target"] == metrics["n_target"] == 20
    assert "compared with" in res.output


def test_calibrate_binds_its_threshold_to_the_backend_it_was_made_with(tmp_path: Path, vc) -> None:  # noqa: ANN001
    emb = tmp_path / "embeddings"
    (tmp_path / "voicecheck.toml").write_text(
        f'model = "fake"\nstore = "{tmp_path / "store"}"\nembeddings = "{emb}"\nadapt_min_borrowers = 10\n{NO_REPLAY}'
        "operating_point = false\n",
        encoding="utf-8",
    )
    dep = Deployment(tmp_path, n=60, operating_point=True)
    dep.settings = replace(dep.settings, store=str(tmp_path / "store"), embeddings=str(emb))
    dep.populate()
    done = train_backend(dep.settings, extra=[])
    trials = tmp_path / "trials.csv"
    rows = ["borrower_id,call_id,label"] + [f"B{i:03d},B{i:03d}-0,1" for i in range(30)]
    rows += [f"B{i:03d},B{(i + 7) % 60:03d}-1,0" for i in range(30)]
    trials.write_text("\n".join(rows) + "\n")
    res = vc("calibrate", trials, "--backend", str(done.path))
    assert res.exit_code == 0, res.output
    saved = json.loads((emb / "calibration" / "fake.json").read_text())["modes"]
    assert saved["lda+asnorm"]["backend"] == done.backend.digest
    settings = load_settings(tmp_path / "voicecheck.toml")
    calls = CallStore(settings.embeddings, cipher_for(settings))
    try:
        mine = Scorer.build(replace(settings, backend_file=str(done.path)), MODEL, "fake", calls)
        assert mine.threshold("narrow").value == pytest.approx(saved["lda+asnorm"]["threshold"])
        other = train_backend(dep.settings, extra=[], clock=lambda: 2e9)  # same data, another file: same digest
        assert other.backend.digest == done.backend.digest
        plain = Scorer.build(replace(settings, backend_file=""), MODEL, "fake", calls)
        with pytest.raises(UsageError, match="no calibrated threshold"):  # asnorm mode: never calibrated
            plain.threshold("narrow")
    finally:
        calls.close()


def test_qa_reviews_teach_the_backend_without_the_margin(tmp_path: Path) -> None:
    from voicecheck import reviews

    dep = Deployment(tmp_path).populate()
    # a genuine call far from its borrower's usual calls (strong noise: the check alone would not label it)
    dep.call("B010-odd", "B010", "B010", noise=1.2)
    dep.call("B011-agent", "B011", "B012")  # someone else answered as B011
    reviews.record(dep.settings, "B010-odd", "genuine")
    reviews.record(dep.settings, "B011-agent", "impostor")
    reviews.record(dep.settings, "B020-0", "impostor")  # a reviewer overrules a confident match
    plain = pseudo_labels(dep.settings)
    done = train_backend(dep.settings)  # extra=None: the review store
    taken = {c.call_id: c for c in done.labels.calls}
    assert "B010-odd" in taken and taken["B010-odd"].reviewed
    assert "B020-0" not in taken and "B020-0" in {c.call_id for c in plain.calls}
    assert "B011-agent" not in taken
    assert done.backend.info["reviewed_calls"] == 1


def test_audio_linked_to_two_borrowers_teaches_nothing(tmp_path: Path) -> None:
    dep = Deployment(tmp_path).populate()
    first = pseudo_labels(dep.settings)
    shared = next(c.call_id for c in first.calls if c.borrower_id == "B030")
    db = CallStore(dep.settings.embeddings, cipher_for(dep.settings))
    try:
        h = db.linked(shared, MODEL).embedding.content_hash  # type: ignore[union-attr]
        db.link("B031-copy", "B031", "copy.wav", h, 1, MODEL)  # the same recording filed for another borrower
    finally:
        db.close()
    again = pseudo_labels(dep.settings)
    taken = {c.call_id for c in again.calls}
    assert shared not in taken and "B031-copy" not in taken
    assert again.excluded["audio linked to several borrowers"] >= 1  # (B031 now also has two voices)
