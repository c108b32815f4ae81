"""Labelled trials: score them, measure accuracy (``voicecheck eval``) and fit calibration (``calibrate``).

A trials CSV has ``label`` (1/target/genuine or 0/nontarget/impostor) and either
``enroll_audio,test_audio`` (paths relative to the CSV) or ``borrower_id`` plus ``audio``/``call_id``
scored against the voiceprint store and the call-embedding store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .analysis import side_cosine, windows_overlap
from .callstore import CallStore
from .config import Settings
from .crypto import cipher_for
from .embedders import model_spec
from .enrollment import VoiceprintStore, now
from .errors import UsageError, VoicecheckError
from .files import private_dir
from .manifest import read_rows
from .pipeline import Engine
from .scorer import Scorer
from .types import CallEmbedding, Voiceprint

TARGET = {"1", "target", "genuine", "true", "same", "yes"}
NONTARGET = {"0", "nontarget", "impostor", "false", "different", "no"}


def _label(value: str, row: int, path: Path) -> int:
    v = value.strip().lower()
    if v in TARGET:
        return 1
    if v in NONTARGET:
        return 0
    raise UsageError(f"{path} row {row}: label {value!r} is neither target (1) nor non-target (0)")


MIN_REVIEWED = 20
"""Fewest QA-reviewed genuine and impostor calls (each) that ``eval``/``calibrate --reviewed`` use."""


def score_trials(
    path: str | Path | None,
    settings: Settings,
    report: Callable[[str], None] = lambda s: None,
    compare: str | None = None,
) -> tuple[list[dict[str, Any]], Scorer, Scorer | None]:
    """Score every trial of a trials CSV (None: the QA-reviewed calls) with the product's scorer.

    Args:
        compare: another ``backend_file`` value (e.g. "auto", the shipped back-end): each trial is
            scored with it too (``compare_score``), from the same embeddings.

    Returns:
        One dict per trial (enroll, test, label, score, raw_cosine, band, [compare_score], or error), the
        scorer used and the comparison scorer (None without ``compare``).
    """
    if path is None:
        return score_reviewed(settings, report, compare)
    p = Path(path)
    rows = list(read_rows(p, ("label",)))
    if not rows:
        raise UsageError(f"trials file {p} has no rows")
    cols = set(rows[0][1])
    by_audio = {"enroll_audio", "test_audio"} <= cols
    if not by_audio and "borrower_id" not in cols:
        raise UsageError(f"trials file {p} needs columns enroll_audio,test_audio,label or borrower_id,audio,label")
    spec = model_spec(settings.model, settings.embeddings)
    cipher = cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    store = VoiceprintStore(settings.store, cipher)
    engine: Engine | None = None
    enrolled: dict[str, Voiceprint] = {}
    tested: dict[str, CallEmbedding] = {}
    out: list[dict[str, Any]] = []
    try:
        scorer, other = _scorers(settings, spec.name, spec.key, calls, compare)
        for n, f in rows:
            trial: dict[str, Any] = {"row": n, "label": _label(f.get("label", ""), n, p)}
            try:
                if by_audio:
                    enroll_path, test_path = _beside(p, f["enroll_audio"]), _beside(p, f["test_audio"])
                    trial.update(enroll=enroll_path, test=test_path)
                    engine = engine or Engine(settings)
                    if enroll_path not in enrolled:
                        got = engine.embed_enrollment(enroll_path, settings.channel)
                        enrolled[enroll_path] = Voiceprint(
                            enroll_path,
                            engine.model,
                            len(got.vectors["narrow"]),
                            got.vectors,
                            1,
                            got.speech_seconds,
                            now(),
                            now(),
                        )
                    voiceprint = enrolled[enroll_path]
                else:
                    voiceprint = store.get(f["borrower_id"], spec.name)
                    trial.update(enroll=f["borrower_id"], test=f.get("audio") or f.get("call_id", ""))
                    test_path = f.get("audio", "")
                    if not test_path and f.get("call_id"):
                        linked = calls.linked(f["call_id"], spec.name)
                        if linked is None or linked.embedding is None:
                            raise UsageError(f"call {f['call_id']!r} has no stored embedding")
                        tested[f["call_id"]] = linked.embedding
                        test_path = f["call_id"]
                if test_path not in tested:
                    engine = engine or Engine(settings)
                    # on the finer timeline, the one the Judge's takeover test runs on near a decision
                    tested[test_path] = engine.embed_call(test_path, settings.channel, refine=lambda emb: "calibrate")
                _score_into(trial, scorer, other, voiceprint, tested[test_path], settings)
            except VoicecheckError as e:
                trial["error"] = f"{e.code}: {e}"
                report(f"row {n}: skipped: {e}")
            out.append(trial)
    finally:
        calls.close()
        store.close()
    return out, scorer, other


def _score_into(
    trial: dict[str, Any],
    scorer: Scorer,
    other: Scorer | None,
    voiceprint: Voiceprint,
    test: CallEmbedding,
    settings: Settings,
) -> None:
    """A trial's score (and the comparison back-end's, and the test call's side cosine) into ``trial``."""
    s = scorer.score(voiceprint, test, with_threshold=False)
    trial.update(score=s.score, raw_cosine=s.raw_cosine, band=s.band, mode=s.mode)
    if other is not None:
        trial["compare_score"] = other.score(voiceprint, test, with_threshold=False).score
    trial["side_cosine"] = fine_side_cosine(test, settings)


def _scorers(
    settings: Settings, model: str, key: str, calls: CallStore, compare: str | None
) -> tuple[Scorer, Scorer | None]:
    """The scorer of the settings and, with ``compare``, the same one with that back-end instead."""
    scorer = Scorer.build(settings, model, key, calls)
    other = None if compare is None else Scorer.build(replace(settings, backend_file=compare), model, key, calls)
    return scorer, other


def score_reviewed(
    settings: Settings, report: Callable[[str], None] = lambda s: None, compare: str | None = None
) -> tuple[list[dict[str, Any]], Scorer, Scorer | None]:
    """Trials from the deployment's own QA reviews (issue 11.5): each call reviewed genuine or impostor
    against the borrower it was made for, scored as the batch scores it (the store's cohort).

    Reviews mostly cover flagged calls, so rates measured on them describe the reviewed calls; a
    calibration on them is best with a sample of matches reviewed too (the README's day-one guide).

    Raises:
        UsageError: fewer than :data:`MIN_REVIEWED` reviewed genuine or impostor calls.
    """
    from .reviews import reviewed_calls

    spec = model_spec(settings.model, settings.embeddings)
    reviewed = reviewed_calls(settings, spec.name)
    genuine = sum(c.genuine for c in reviewed)
    if genuine < MIN_REVIEWED or len(reviewed) - genuine < MIN_REVIEWED:
        raise UsageError(
            f"{genuine} calls reviewed genuine and {len(reviewed) - genuine} impostor; --reviewed needs at least "
            f"{MIN_REVIEWED} of each (voicecheck review CALL_ID --label ...), or give a trials CSV"
        )
    cipher = cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    store = VoiceprintStore(settings.store, cipher)
    out: list[dict[str, Any]] = []
    try:
        scorer, other = _scorers(settings, spec.name, spec.key, calls, compare)
        for n, c in enumerate(reviewed, 1):
            trial: dict[str, Any] = {"row": n, "label": int(c.genuine), "enroll": c.borrower_id, "test": c.call_id}
            try:
                _score_into(trial, scorer, other, store.get(c.borrower_id, spec.name), c.embedding, settings)
            except VoicecheckError as e:
                trial["error"] = f"{e.code}: {e}"
                report(f"reviewed call {c.call_id}: skipped: {e}")
            out.append(trial)
    finally:
        calls.close()
        store.close()
    return out, scorer, other


def fine_side_cosine(emb: CallEmbedding, settings: Settings) -> float | None:
    """:func:`voicecheck.analysis.side_cosine` of a test call for :func:`fit_takeover`, on the timeline the
    Judge's takeover test decides on: None for a call stored on the coarse timeline (windows back to
    back, left so because it was far from every decision, :mod:`voicecheck.refine`), whose side cosine
    runs lower than the finer timeline's and would pull the fitted limit down."""
    if not windows_overlap(emb.window_times_s):
        return None
    return side_cosine(emb.windows, emb.window_times_s, settings.takeover_min_segment_s)


def _beside(csv_path: Path, value: str) -> str:
    v = Path(value)
    return str(v if v.is_absolute() else csv_path.parent / v)


def split_scores(trials: list[dict[str, Any]], key: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """(target scores, non-target scores) of the trials that were scored (``key``: which score)."""
    ok = [t for t in trials if key in t]
    tar = np.array([t[key] for t in ok if t["label"] == 1])
    non = np.array([t[key] for t in ok if t["label"] == 0])
    if len(tar) == 0 or len(non) == 0:
        raise UsageError(f"need scored target and non-target trials; got {len(tar)} target and {len(non)} non-target")
    return tar, non


def write_scores(path: Path, trials: list[dict[str, Any]]) -> None:

    cols = ["row", "enroll", "test", "label", "score", "raw_cosine", "llr", "band", "mode", "compare_score", "error"]
    from .report import write_csv

    write_csv(path, trials, cols)


def evaluate(
    path: str | Path | None,
    out_dir: str | Path,
    settings: Settings,
    report: Callable[[str], None] = lambda s: None,
    compare: str | None = None,
) -> dict[str, Any]:
    """EER, minDCF (0.01, 0.05), Cllr, impostors flagged at 1%/5% false flags; writes scores.csv,
    metrics.json and det.png into ``out_dir``.

    Args:
        compare: another back-end (a ``backend_file`` value: "auto" for the shipped one, "adapted",
            a path, "") to score the same trials with; its figures are under ``compare`` and its DET
            curve is drawn beside.
    """
    from . import metrics
    from .report import write_json

    trials, scorer, other = score_trials(path, settings, report, compare)
    tar, non = split_scores(trials)
    band = next(t["band"] for t in trials if "band" in t)
    calib = scorer.calibration(band)
    tar_llr = non_llr = None
    if calib is not None:
        for t in trials:
            if "score" in t:
                t["llr"] = float(calib.llr(t["score"]))
        tar_llr, non_llr = calib.llr(tar), calib.llr(non)
    out = private_dir(out_dir)
    result = _figures(scorer, band, tar, non, tar_llr, non_llr)
    result.update(
        trials="QA-reviewed calls" if path is None else str(path), errors=sum(1 for t in trials if "error" in t)
    )
    curves: dict[str, tuple[npt.ArrayLike, npt.ArrayLike]] = {
        f"{scorer.model} ({scorer.mode(band)}, {result['backend'] or 'no back-end'})": (tar, non)
    }
    if other is not None:
        o_tar, o_non = split_scores(trials, "compare_score")
        o_cal = other.calibration(band)
        o_llr = (None, None) if o_cal is None else (o_cal.llr(o_tar), o_cal.llr(o_non))
        result["compare"] = {**_figures(other, band, o_tar, o_non, *o_llr), "errors": result["errors"]}
        curves[f"{other.model} ({other.mode(band)}, {result['compare']['backend'] or 'no back-end'})"] = (o_tar, o_non)
    write_scores(out / "scores.csv", trials)
    metrics.plot_det(curves, out / "det.png")
    write_json(out / "metrics.json", result)
    return result


def _figures(
    scorer: Scorer,
    band: str,
    tar: np.ndarray,
    non: np.ndarray,
    tar_llr: np.ndarray | None,
    non_llr: np.ndarray | None,
) -> dict[str, Any]:
    """One scorer's figures on the trials, with which model, mode and back-end produced them."""
    from . import metrics

    result = metrics.summary(tar, non, tar_llr, non_llr)
    b = scorer.backend
    label = "" if b is None else f"{b.info.get('kind', 'out-of-domain')} {b.digest[:12]}"
    result.update(model=scorer.model, mode=scorer.mode(band), backend=label)
    return result


def calibrate(
    path: str | Path | None,
    settings: Settings,
    max_false_flag: float | None = 0.05,
    report: Callable[[str], None] = lambda s: None,
    at_llr: float | None = None,
) -> dict[str, Any]:
    """Fit score -> LLR and a threshold on labelled trials; store them for the current scoring mode.

    The threshold is where the fitted LLR equals ``at_llr`` when given; otherwise it flags at most
    ``max_false_flag`` of the genuine trials (None: at the EER).
    """
    from .metrics import threshold_at_eer
    from .scoring import fit_calibration, threshold_at_false_flag

    trials, scorer, _ = score_trials(path, settings, report)
    tar, non = split_scores(trials)
    band = next(t["band"] for t in trials if "band" in t)
    mode = scorer.mode(band)
    what = "--reviewed (QA-reviewed calls)" if path is None else str(path)
    source = f"voicecheck calibrate {what} ({len(tar)} target, {len(non)} non-target trials, {now()[:10]})"
    calib = fit_calibration(tar, non, model=scorer.model, source=source)
    if at_llr is not None:
        if calib.a <= 0:
            raise UsageError(
                f"the calibration fitted on {what} does not rise with the score (slope {calib.a:.3g}): "
                "the trials do not separate targets from non-targets; check their labels"
            )
        threshold = (at_llr - calib.b) / calib.a
    elif max_false_flag is not None:
        threshold = threshold_at_false_flag(tar, max_false_flag)
    else:
        threshold = threshold_at_eer(tar, non)
    values = {
        "threshold": float(threshold),
        "calibration": {"a": calib.a, "b": calib.b},
        "false_flag_target": None if at_llr is not None else max_false_flag,
        "llr_target": at_llr,
        "genuine_flagged": float(np.mean(tar < threshold)),
        "impostors_flagged": float(np.mean(non < threshold)),
        "n_target": len(tar),
        "n_nontarget": len(non),
    }
    saved = scorer.profile.save_mode(scorer.key, settings.embeddings, mode, values, source, scorer.backend)
    takeover = fit_takeover(trials, settings, what)
    if takeover is not None:
        scorer.profile.save_takeover(scorer.key, settings.embeddings, takeover)
    return {"mode": mode, "path": str(saved), **values, "takeover": takeover}


TAKEOVER_GENUINE_SHARE = 0.05
"""The takeover limit :func:`fit_takeover` fits: the raw side cosine that this share of genuine calls
falls below (so the side test keeps at least 95% of genuine calls from being flagged a takeover)."""

TAKEOVER_MIN_CALLS = 20
"""Fewest genuine test calls long enough for two sides that :func:`fit_takeover` fits a limit on."""


def fit_takeover(trials: list[dict[str, Any]], settings: Settings, where: str) -> dict[str, Any] | None:
    """The model's takeover limit from the genuine (target) trials' test calls, or None when fewer than
    :data:`TAKEOVER_MIN_CALLS` distinct ones have two sides of ``takeover_min_segment_s`` of speech.

    A genuine call holds one voice, so the cosine between its two sides' mean embeddings is what the
    side test must let through; the limit is the :data:`TAKEOVER_GENUINE_SHARE` quantile of those
    cosines (each test call counted once).
    """
    cosines = {t["test"]: t["side_cosine"] for t in trials if t["label"] == 1 and t.get("side_cosine") is not None}
    if len(cosines) < TAKEOVER_MIN_CALLS:
        return None
    values = np.array(list(cosines.values()), dtype=np.float64)
    return {
        "max_side_cosine": round(float(np.quantile(values, TAKEOVER_GENUINE_SHARE)), 4),
        "genuine_share_below": TAKEOVER_GENUINE_SHARE,
        "n_calls": len(values),
        "min_segment_s": settings.takeover_min_segment_s,
        "source": f"voicecheck calibrate {where}: {TAKEOVER_GENUINE_SHARE:.0%} quantile of the side cosines of "
        f"{len(values)} genuine test calls ({now()[:10]})",
    }
