"""The operating point in the product: thresholds set from the deployment's own calls (label-free),
the weak-evidence band, tonight's estimated false-flag rate, and the cohort's composition.

Synthetic voices: each borrower is a random direction, calls and voiceprints are noisy copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import workspace
from voicecheck.batch import decision_report
from voicecheck.config import load_settings
from voicecheck.operating import MIN_VOICEPRINTS, OperatingPoint
from voicecheck.scorer import CallVector, Cohort, Scorer
from voicecheck.scoring import unit
from voicecheck.types import Voiceprint

D = 32


class Store:
    """The two methods of VoiceprintStore the scorer reads."""

    def __init__(self, voices: dict[str, np.ndarray]) -> None:
        self.voices = voices

    def summaries(self, kind: str, model: str) -> list[dict[str, object]]:
        return [{"id": b} for b in sorted(self.voices)]

    def get(self, owner: str, model: str, kind: str = "borrower") -> Voiceprint:
        from voicecheck.errors import NotEnrolledError

        if owner not in self.voices:
            raise NotEnrolledError(owner)
        return voiceprint(owner, self.voices[owner])


def voiceprint(owner: str, vector: np.ndarray) -> Voiceprint:
    return Voiceprint(owner, "fake-bands", D, {"narrow": vector}, 1, 8.0, "", "")


def population(n: int, calls_each: int, rng: np.random.Generator, noise: float = 0.6):
    """(voices, voiceprints, cohort of calls) of n borrowers."""
    voices = {f"B{i:03d}": unit(rng.standard_normal(D)) for i in range(n)}
    prints = {b: unit(v + 0.3 * noise * unit(rng.standard_normal(D))) for b, v in voices.items()}
    rows, hashes, owners = [], [], []
    for b, v in voices.items():
        for k in range(calls_each):
            rows.append(unit(v + noise * unit(rng.standard_normal(D))))
            hashes.append(f"{b}-{k}")
            owners.append({b})
    return voices, prints, Cohort(np.stack(rows), hashes, owners)


def scorer(tmp_path: Path, cohort: Cohort, **kw: object) -> Scorer:
    settings = load_settings(None, embeddings=str(workspace(tmp_path)), model="fake", **kw)
    return Scorer(settings, "fake-bands", "fake", None, {"narrow": cohort})


def fresh_calls(voices: dict[str, np.ndarray], rng: np.random.Generator, noise: float = 0.6) -> dict[str, np.ndarray]:
    return {b: unit(v + noise * unit(rng.standard_normal(D))) for b, v in voices.items()}


def test_the_threshold_holds_the_false_accept_rate_on_new_impostor_calls(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    voices, prints, cohort = population(150, 2, rng)
    s = scorer(tmp_path, cohort, max_false_accept=0.05)
    erased = sorted(prints)[:5]  # calls of borrowers whose voiceprints are gone stay in the cohort
    s.measure_operating_points(Store({b: v for b, v in prints.items() if b not in erased}))
    point = s.operating["narrow"]
    assert isinstance(point, OperatingPoint) and point.mode == "asnorm"
    assert point.n_trials >= 2000 and point.n_voiceprints >= MIN_VOICEPRINTS
    limit = s.threshold("narrow")
    assert limit.value == point.threshold and limit.source.startswith("operating point: 5.0% of")
    owners = sorted(voices)
    passed = genuine_ok = trials = 0
    for i, b in enumerate(owners):  # tonight's new calls, each answering as another borrower
        call = fresh_calls({b: voices[b]}, rng)[b]
        other = owners[(i + 1 + rng.integers(len(owners) - 1)) % len(owners)]
        for claimed, genuine in ((other, False), (b, True)):
            got = s.score(
                voiceprint(claimed, prints[claimed]), CallVector(f"new-{b}", "fake-bands", "narrow", call, None)
            )
            if genuine:
                genuine_ok += got.accepted
            else:
                passed += got.accepted
                trials += 1
    assert passed / trials <= 0.12  # 5% asked; 150 trials: within sampling noise, far from the 50% of chance
    assert genuine_ok / len(owners) >= 0.8


def test_too_few_trials_keep_the_profile_threshold_and_say_why(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _, prints, cohort = population(30, 2, rng)
    s = scorer(tmp_path, cohort, thresholds={"asnorm": 1.5})
    s.measure_operating_points(Store(prints))
    assert isinstance(s.operating["narrow"], str) and "too few non-target trials" in s.operating["narrow"]
    assert s.threshold("narrow").value == 1.5  # the settings' threshold for the mode
    plain = scorer(tmp_path, cohort)
    plain.measure_operating_points(Store(prints))
    with pytest.raises(Exception, match="no calibrated threshold"):  # no profile for the fake model: fail closed
        plain.threshold("narrow")


def test_a_threshold_set_for_the_mode_wins_over_the_operating_point(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    _, prints, cohort = population(150, 2, rng)
    s = scorer(tmp_path, cohort, thresholds={"asnorm": 0.7})
    s.measure_operating_points(Store(prints))
    assert isinstance(s.operating["narrow"], OperatingPoint)
    assert s.threshold("narrow").value == 0.7 and s.threshold("narrow").source == "settings: thresholds.asnorm"


def test_a_weak_evidence_band_makes_the_middle_inconclusive(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    voices, prints, cohort = population(150, 2, rng)
    s = scorer(tmp_path, cohort, max_false_accept=0.05, weak_evidence_band=2.0)
    s.measure_operating_points(Store(prints))
    limit = s.threshold("narrow")
    assert limit.lower is not None and limit.lower < limit.value
    b = sorted(voices)[0]
    weak = strong = 0
    for k in range(300):
        other = sorted(voices)[1 + k % 149]
        call = fresh_calls({other: voices[other]}, rng)[other]
        got = s.score(voiceprint(b, prints[b]), CallVector(f"x{k}", "fake-bands", "narrow", call, None))
        assert got.weak == (limit.lower <= got.score < limit.value)
        assert not (got.weak and got.accepted)
        weak += got.weak
        strong += got.accepted
    assert weak > 0  # some impostor calls land in the band instead of a verdict


def test_the_cohort_counts_people_not_calls(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    _, _, few = population(10, 5, rng)  # 50 calls of 10 people
    assert len(few) == 50 and few.people == 10
    assert scorer(tmp_path, few, cohort_min=25).mode("narrow") == "cosine"
    _, _, many = population(30, 1, rng)
    assert scorer(tmp_path, many, cohort_min=25).mode("narrow") == "asnorm"


def test_tonights_false_flag_rate_is_estimated_and_an_alarm_raised(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    non = rng.normal(0.0, 1.0, 4000)
    point = OperatingPoint("narrow", "asnorm", 1.75, 1.75, 0.04, 4000, 200, 100, 0.0, non)
    honest = rng.normal(5.0, 1.0, 950)
    impostors = rng.normal(0.0, 1.0, 50)
    report = point.report(np.concatenate([honest, impostors]), alarm=0.08)
    measured = float(np.mean(honest < 1.75))
    assert abs(report["estimated_false_flag_rate"] - measured) < 0.03 and "warning" not in report
    drifted = point.report(np.concatenate([honest - 3.0, impostors]), alarm=0.08)  # a new channel tonight
    assert drifted["estimated_false_flag_rate"] > 0.08 and "alarm" in drifted["warning"]


def test_the_batch_summary_reports_each_bands_threshold_and_estimate(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    _, prints, cohort = population(150, 2, rng)
    s = scorer(tmp_path, cohort)
    s.measure_operating_points(Store(prints))
    results = tmp_path / "results.jsonl"
    records = [{"score": float(x), "band": "narrow", "scoring": "asnorm"} for x in rng.normal(6.0, 1.0, 200)]
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = decision_report(s, results)
    assert set(report) == {"narrow", "wide"} and "no in-domain cohort" in report["wide"]["source"]
    assert report["narrow"]["source"].startswith("operating point") and report["narrow"]["claimed_calls"] == 200
    assert 0.0 <= report["narrow"]["estimated_false_flag_rate"] <= 0.05


def test_one_voice_enrolled_as_several_borrowers_is_left_out_of_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent enrolled as many borrowers makes same-person pairs look like non-targets; they are
    left out (voiceprints as alike as a call and its own voiceprint) and the threshold stays put."""
    rng = np.random.default_rng(7)
    voices, prints, cohort = population(150, 2, rng)
    clean = scorer(tmp_path, cohort)
    clean.measure_operating_points(Store(prints))
    agent = unit(rng.standard_normal(D))
    twins = {f"T{i:02d}": unit(agent + 0.18 * unit(rng.standard_normal(D))) for i in range(30)}
    calls = [unit(agent + 0.6 * unit(rng.standard_normal(D))) for _ in twins for _ in range(2)]
    rings = Cohort(
        np.concatenate([cohort.vectors, np.stack(calls)]),
        cohort.hashes + [f"t{i}" for i in range(len(calls))],
        cohort.owners + [{t} for t in twins for _ in range(2)],
    )
    guarded = scorer(tmp_path, rings)
    guarded.measure_operating_points(Store({**prints, **twins}))
    monkeypatch.setattr(Scorer, "_not_twins", lambda self, *a: np.ones(len(a[-1][0]), bool))
    unguarded = scorer(tmp_path, rings)
    unguarded.measure_operating_points(Store({**prints, **twins}))
    a, b, c = clean.operating["narrow"], guarded.operating["narrow"], unguarded.operating["narrow"]
    assert isinstance(a, OperatingPoint) and isinstance(b, OperatingPoint) and isinstance(c, OperatingPoint)
    assert b.contamination > a.contamination + 0.005 and "one voice under two borrowers" in b.source
    assert c.threshold - b.threshold > 0.1  # same-person pairs left in would have pushed the threshold up
    assert c.contamination == 0.0


def test_a_night_with_enough_calls_sets_its_own_threshold_end_to_end(vc, tmp_path: Path) -> None:
    """The batch measures the operating point on the real stores (encrypted, 45 enrolled borrowers,
    135 calls: the cohort keeps 3 calls a borrower): records and summary.json name it as the source."""
    from tests.fakes import chord, silence, stereo, write
    from voicecheck.report import RESULTS, read_jsonl

    rng = np.random.default_rng(8)
    voices = {f"B{i:02d}": tuple(float(f) for f in rng.uniform(300, 3300, 3)) for i in range(45)}
    for b, freqs in voices.items():
        x = np.concatenate([silence(0.3), chord(freqs, 4.0), silence(0.3)])
        assert vc("enroll", b, write(tmp_path / "enroll" / f"{b}.wav", x, 16000), "--channel", "0").exit_code == 0
    lines = ["call_id,borrower_id,audio"]
    for n in range(135):
        b = sorted(voices)[n % 45]
        freqs = tuple(f * (1 + rng.normal(0, 0.004)) for f in voices[b])
        voice = chord(freqs, 2.5 + 0.01 * n, 8000)
        voice = voice + 0.01 * rng.standard_normal(len(voice)).astype(np.float32)
        x = np.concatenate([silence(0.3, 8000), voice, silence(0.3, 8000)])  # 8 kHz mu-law: the telephone band
        write(tmp_path / "calls" / f"k{n}.wav", stereo(silence(len(x) / 8000, 8000), x), 8000, subtype="ULAW")
        lines.append(f"K{n},{b},calls/k{n}.wav")
    (tmp_path / "night.csv").write_text("\n".join(lines) + "\n")
    res = vc("batch", tmp_path / "night.csv", "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    narrow = summary["operating_point"]["narrow"]
    assert narrow["source"].startswith("operating point: 4.0% of") and narrow["nontarget_trials"] >= 2500
    assert 0.0 <= narrow["estimated_false_flag_rate"] <= 1.0 and "operating point" in res.output
    records = list(read_jsonl(tmp_path / "out" / RESULTS))
    assert all(r["threshold_source"] == narrow["source"] for r in records if r["score"] is not None)
    assert sum(r["verdict"] == "match" for r in records) >= 110  # honest calls of distinct voices pass
