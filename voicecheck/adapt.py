"""The in-domain back-end: learn the deployment's own channel and language from its verified calls.

A shipped back-end was trained on public read speech through a simulated channel; a lender's calls
are other codecs, handsets and languages. ``voicecheck backend train`` (:func:`train_backend`)
labels the store's calls by borrower where the product itself is confident (:func:`pseudo_labels`):
a call the 1:1 check accepts with a wide margin -- its score reaches the level only
``adapt_max_false_accept`` of the operating point's non-target trials reach -- and that nothing
else flags (no speaker change, no watchlist hit, no ring voice, a borrower with one voice, an
enrollment nobody forced), plus calls a QA reviewer marked genuine. Each labelled borrower's class
holds those calls and the borrower's telephone-band voiceprint: a class of two or more vectors (two
calls, or one call and the voiceprint) shows how one voice varies in the real channel, and
``adapt_min_borrowers`` counts such borrowers. Their speaker statistics are interpolated
with the out-of-domain ones the shipped back-end carries (:func:`voicecheck.scoring.interpolate_stats`,
weights growing with the in-domain data: :func:`adaptation_weights`), LDA (and so PLDA) is fitted
again, and the result is written to ``<embeddings>/backends/<key>-in-domain-<UTC time>.npz`` with
its provenance. ``backend_file = "adapted"`` selects the newest; ``rescore`` applies it to stored
calls without audio and ``eval --compare-backend`` measures it against the shipped one.

Self-confirmation: an impostor the product accepted wrongly must not teach the back-end that his
voice belongs. The margin keeps most accepted impostors out (they pass near the threshold, seldom
far above it), ring and watchlist voices and two-voice borrowers are excluded, and
``benchmarks/adaptation.py`` measures what 10% impostor calls in the store do to the result.

A model without a shipped back-end (ECAPA, an ONNX model) gets one from its in-domain data alone.
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .config import Settings
from .errors import UsageError, VoicecheckError
from .scoring import Backend, ScatterStats, interpolate_stats, lda_from_stats, scatter_stats

log = logging.getLogger(__name__)

RELEVANCE_WITHIN = 200.0
"""In-domain within-speaker degrees of freedom (calls minus borrowers) at which the within-speaker
covariance is half in-domain, half out-of-domain (chosen in benchmarks/adaptation.py at GE2E's shipped hop of
1.6 s from 1000 / 500, 200 / 100, 50 / 25, 20 / 10 and in-domain only: EER 6.85, 6.50, 6.52, 6.63 and 8.21% on
the development lender; 50 / 25 won at hop 0.8 and is as good within 0.02 points)."""

RELEVANCE_BETWEEN = 100.0
"""In-domain borrowers at which the between-speaker covariance is half in-domain (same benchmark)."""

VOICEPRINT_ROWS = 1
"""Rows each labelled borrower's voiceprint counts as in its class (:func:`domain_statistics`). 3 was tried
(benchmarks/adaptation.py --candidates): cross-session EER 8.29 -> 6.77% on the development lender, but
1.42 -> 1.63% on the held-out one, so it is not the default."""

WITHIN_SCALE = 1.0
"""Factor on the in-domain within-speaker covariance (:func:`domain_statistics`); 1.5 and 2 were tried and
changed the development lender's cross-session EER by under 0.1 points (benchmarks/adaptation.py --candidates)."""

MAX_CALLS_PER_BORROWER = 20
"""Most calls of one borrower used (a few frequent callers must not make the statistics)."""

MAX_CALLS = 200_000
"""Most stored calls judged for training (evenly spread over the store)."""

DEFAULT_LDA: dict[str, Any] = {"dim": 64, "wccn": False, "shrink": 0.5}
"""LDA settings for a model whose base back-end does not name its own (GE2E's shipped recipe)."""


@dataclass(frozen=True)
class LabelledCall:
    """A call whose speaker is taken as known.

    Attributes:
        call_id: the call.
        borrower_id: whose voice it is.
        vector: its telephone-band embedding, raw (as stored), shape (d,).
        reviewed: labelled by a QA reviewer (else by the product's own confident decision).
    """

    call_id: str
    borrower_id: str
    vector: np.ndarray
    reviewed: bool = False


@dataclass
class PseudoLabels:
    """The training calls :func:`pseudo_labels` chose, and why the others were left out.

    Attributes:
        calls: the labelled calls (at most :data:`MAX_CALLS_PER_BORROWER` per borrower).
        excluded: reason -> calls left out.
        levels: band -> the score a call needed in that band (None: the band gave no labels, and why).
        modes: band -> the scoring mode the levels are on.
        judged: stored calls judged.
    """

    calls: list[LabelledCall]
    excluded: Counter[str] = field(default_factory=Counter)
    levels: dict[str, float | str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    judged: int = 0

    @property
    def per_borrower(self) -> Counter[str]:
        return Counter(c.borrower_id for c in self.calls)

    @property
    def borrowers_with_two(self) -> int:
        """Borrowers with two or more labelled calls (within-speaker variation in the real channel)."""
        return sum(1 for n in self.per_borrower.values() if n >= 2)

    def borrowers_with_two_vectors(self, voiceprints: Iterable[str] = ()) -> int:
        """Borrowers whose class holds two or more vectors: two labelled calls, or one labelled call and
        the borrower's voiceprint (``voiceprints``: the borrowers whose voiceprint joins their class, as
        :func:`domain_statistics` adds it). What ``adapt_min_borrowers`` counts."""
        joined = set(voiceprints)
        return sum(1 for b, n in self.per_borrower.items() if n + (b in joined) >= 2)


# --------------------------------------------------------------------------------------------
# which calls are taken as their borrower's voice
# --------------------------------------------------------------------------------------------


def pseudo_labels(settings: Settings, extra: Sequence[LabelledCall] = (), exclude: Iterable[str] = ()) -> PseudoLabels:
    """Label the store's calls by borrower where the product is confident (see the module notes).

    Every stored call is judged as ``rescore`` would judge it (the configured back-end, the store's
    cohort and operating point). A call is labelled when its verdict is ``match`` and its score
    reaches its band's level: the ``1 - adapt_max_false_accept`` quantile of the operating point's
    non-target sample (never below the threshold). Left out: calls of other verdicts, below the
    level, in a band with no operating point, mono recordings (the vector mixes both sides), audio
    linked to several borrowers, calls of ring voices (``rings`` with verified calls included) and of
    their borrowers, borrowers whose calls hold two voices, borrowers with a forced enrollment
    recording, borrowers with a call that hit the watchlist, calls in ``exclude`` (e.g. reviewed as
    impostors), and calls beyond :data:`MAX_CALLS_PER_BORROWER` of one borrower.

    Args:
        settings: run settings (model, stores, back-end, ``adapt_max_false_accept``).
        extra: calls labelled by people (QA reviews); added whatever their score.
        exclude: call ids never to use.

    Raises:
        UsageError: no band has an operating point (too few stored calls or voiceprints yet).
    """
    from .callstore import CallStore
    from .crypto import cipher_for
    from .embedders import model_spec
    from .enrollment import VoiceprintStore
    from .pipeline import Judge

    spec = model_spec(settings.model, settings.embeddings)
    cipher = cipher_for(settings)
    skip_calls, skip_borrowers = _flagged_voices(settings)
    skip_calls |= set(exclude)
    calls = CallStore(settings.embeddings, cipher)
    voiceprints = VoiceprintStore(settings.store, cipher)
    try:
        judge = Judge.open(settings, voiceprints, calls)
        out = PseudoLabels([], modes={b: judge.scorer.mode(b) for b in ("narrow", "wide")})
        out.levels = _levels(judge.scorer, settings.adapt_max_false_accept)
        if not any(isinstance(v, float) for v in out.levels.values()):
            raise UsageError(
                "backend train labels calls with the margin of the operating point, which this store does not have "
                f"yet ({'; '.join(f'{b} band: {v}' for b, v in out.levels.items())}): "
                "run more nightly batches first"
            )
        forced = _forced(voiceprints, spec.name)
        shared = calls.shared_audio(spec.name)
        step = max(1, math.ceil(calls.linked_count(spec.name) / MAX_CALLS))
        candidates, watched = [], set()
        for i, c in enumerate(calls.calls(spec.name)):  # streamed: a store's calls need not fit in memory
            if i % step:
                continue
            spoof = None
            if judge.liveness is not None and c.embedding is not None:  # a synthetic voice is no label either
                spoof = calls.spoof_score(c.embedding.content_hash, c.embedding.channel, judge.liveness.name)
            why, hit = _why_not(c, judge, spoof, out.levels, shared, skip_calls, skip_borrowers | forced)
            out.judged += 1
            if hit:
                watched.add(c.borrower_id)
            if isinstance(why, str):
                out.excluded[why] += 1
            else:
                candidates.append(LabelledCall(c.call_id, c.borrower_id, why))
        for call in candidates:
            if call.borrower_id in watched:
                out.excluded["a call of the borrower hit the watchlist"] += 1
            elif out.per_borrower[call.borrower_id] < MAX_CALLS_PER_BORROWER:
                out.calls.append(call)
            else:
                out.excluded["borrower has enough calls"] += 1
    finally:
        calls.close()
        voiceprints.close()
    people = [c for c in extra if c.call_id not in skip_calls]  # a person's label wins over the product's
    heard = {c.call_id for c in people}
    out.calls = [c for c in out.calls if c.call_id not in heard] + people
    return out


def _levels(scorer: Any, max_false_accept: float) -> dict[str, float | str]:
    """Per band, the score a call needs to be labelled (or why the band gives no labels)."""
    from .operating import OperatingPoint, nontarget_threshold

    levels: dict[str, float | str] = {}
    for band in ("narrow", "wide"):
        point = scorer.operating.get(band)
        if not isinstance(point, OperatingPoint) or point.mode != scorer.mode(band):
            levels[band] = str(point or "no operating point")
            continue
        level = nontarget_threshold(point.nontarget, max_false_accept)
        levels[band] = float(max(level, scorer.threshold(band).value))
    return levels


def _why_not(
    c: Any,
    judge: Any,
    spoof: Any,
    levels: dict[str, float | str],
    shared: set[str],
    skip_calls: set[str],
    skip_borrowers: set[str],
) -> tuple[str | np.ndarray, bool]:
    """(why a stored call is not labelled, or its telephone-band vector; whether it hit the watchlist)."""
    emb = c.embedding
    if emb is None:
        return "too little speech", False
    if c.call_id in skip_calls:
        return "ring voice or reviewed impostor", False
    if c.borrower_id in skip_borrowers:
        return "borrower excluded (ring, two voices or forced enrollment)", False
    if emb.channels == 1:
        return "mono recording", False
    if emb.content_hash in shared:
        return "audio linked to several borrowers", False
    result = judge(c.call_id, c.borrower_id, c.audio, emb, c.speech_seconds, None, spoof)
    hit = bool(result.watchlist_hits)
    if result.verdict != "match":
        return f"verdict {result.verdict} ({result.reason})", hit
    level = levels.get(str(result.band))
    if not isinstance(level, float):
        return f"no operating point in the {result.band} band", hit
    if result.score is None or result.score < level:
        return "accepted without the margin", hit
    vector = emb.vector if emb.band == "narrow" else emb.narrow_vector
    return ("no telephone-band vector" if vector is None else np.asarray(vector, np.float64)), hit


def _flagged_voices(settings: Settings) -> tuple[set[str], set[str]]:
    """(call ids, borrower ids) of ring voices and of borrowers whose calls hold two voices."""
    from .crosscall import inconsistent_borrowers, rings

    calls: set[str] = set()
    borrowers: set[str] = set()
    for ring in rings(settings, settings.ring_min_borrowers, include_verified=True):
        calls.update(ring["calls"])
        borrowers.update(ring["borrowers"])
    borrowers.update(b["borrower_id"] for b in inconsistent_borrowers(settings))
    return calls, borrowers


def _forced(voiceprints: Any, model: str) -> set[str]:
    """Borrowers with an enrollment recording the checks refused and someone forced."""
    out = set()
    for row in voiceprints.summaries("borrower", model):
        if any(r.get("forced") for r in voiceprints.recordings(str(row["id"]))):
            out.add(str(row["id"]))
    return out


def reviewed_calls(settings: Settings) -> tuple[list[LabelledCall], set[str]]:
    """(calls a QA reviewer marked genuine, call ids marked impostor) from the review store
    (``voicecheck review``; :func:`voicecheck.reviews.reviewed_calls`: the reviewed audio's own embedding)."""
    from .reviews import reviewed_calls as read_reviews

    genuine, impostors = [], set()
    for r in read_reviews(settings):
        emb = r.embedding
        vector = emb.vector if emb.band == "narrow" else emb.narrow_vector
        if r.genuine and vector is not None:
            genuine.append(LabelledCall(r.call_id, r.borrower_id, np.asarray(vector, np.float64), reviewed=True))
        elif not r.genuine:
            impostors.add(r.call_id)
    return genuine, impostors


# --------------------------------------------------------------------------------------------
# statistics and the adapted back-end
# --------------------------------------------------------------------------------------------


def domain_statistics(
    labels: PseudoLabels,
    voiceprints: dict[str, np.ndarray] | None = None,
    voiceprint_rows: int = 1,
    within_scale: float = 1.0,
) -> ScatterStats:
    """Speaker statistics of the labelled calls, one speaker per borrower; with ``voiceprints``
    (borrower -> telephone-band voiceprint vector) each borrower's voiceprint is one more row of
    its class (enrollment against call: the variation a check actually compares).

    Args:
        voiceprint_rows: each voiceprint counts as this many rows of its class (>= 1; weighs the
            enrollment-against-call variation up). The statistics still count it as one row, so the
            interpolation weights (:func:`adaptation_weights`) do not change with it.
        within_scale: the within-speaker covariance is multiplied by this (>= 1 widens it: the margin
            keeps only calls close to their voiceprint, so the labelled calls vary less than a
            borrower's calls do).

    Raises:
        UsageError: fewer than two borrowers, none with two rows, or a weight out of range.
    """
    if not (isinstance(voiceprint_rows, int) and voiceprint_rows >= 1):
        raise UsageError(f"voiceprint_rows must be an integer >= 1; got {voiceprint_rows!r}.")
    if not (math.isfinite(within_scale) and within_scale > 0):
        raise UsageError(f"within_scale must be a finite number > 0; got {within_scale!r}.")
    rows = [c.vector for c in labels.calls]
    owners = [c.borrower_id for c in labels.calls]
    added = 0
    for borrower in sorted(set(owners)) if voiceprints else ():
        if borrower in voiceprints:  # type: ignore[operator]
            rows += [np.asarray(voiceprints[borrower], np.float64)] * voiceprint_rows  # type: ignore[index]
            owners += [borrower] * voiceprint_rows
            added += 1
    if not rows:
        raise UsageError("no call was labelled: nothing to train an in-domain back-end on")
    stats = scatter_stats(np.stack(rows), np.array(owners))
    if voiceprint_rows == 1 and within_scale == 1.0:
        return stats
    return replace(stats, within=within_scale * stats.within, n_vectors=len(labels.calls) + added)


def adaptation_weights(domain: ScatterStats, relevance: tuple[float, float] | None = None) -> tuple[float, float]:
    """(within, between) interpolation weights of the in-domain statistics: ``n / (n + r)`` with
    ``n`` the in-domain within-speaker degrees of freedom and borrowers, ``r`` the relevance
    factors (default :data:`RELEVANCE_WITHIN`, :data:`RELEVANCE_BETWEEN`; relevance MAP, as GMM
    adaptation weighs new data: little data moves little)."""
    r_within, r_between = relevance or (RELEVANCE_WITHIN, RELEVANCE_BETWEEN)
    if not (r_within >= 0 and r_between >= 0):
        raise UsageError(f"relevance factors must be >= 0; got {relevance}.")
    dof = domain.n_vectors - domain.n_speakers
    return dof / (dof + r_within), domain.n_speakers / (domain.n_speakers + r_between)


def adapt_backend(
    base: Backend | None,
    domain: ScatterStats,
    model: str,
    info: dict[str, Any] | None = None,
    weights: tuple[float, float] | None = None,
) -> Backend:
    """The back-end fitted from ``domain`` statistics interpolated with ``base``'s out-of-domain ones.

    The prior is ``base.prior`` when ``base`` is itself adapted (a retrain starts again from the
    shipped statistics, never from its own output), else ``base.stats``; with neither (a model with
    no shipped back-end) the in-domain statistics are used alone. LDA is fitted again with the base's
    recipe (``base.info["lda"]``, else :data:`DEFAULT_LDA`).

    Args:
        weights: (within, between) interpolation weights; None: :func:`adaptation_weights`.
    """
    prior = None if base is None else (base.prior or base.stats)
    if prior is not None and prior.dimension != domain.dimension:
        raise UsageError(
            f"the back-end's statistics have dimension {prior.dimension}, the calls {domain.dimension}: "
            "they come from different models"
        )
    a, b = weights or adaptation_weights(domain)
    stats = domain if prior is None else interpolate_stats(prior, domain, a, b)
    lda = {**DEFAULT_LDA, **({} if base is None else base.info.get("lda", {}))}
    meta = {**(info or {}), "kind": "in-domain", "lda": lda}
    meta["weights"] = {"within": 1.0, "between": 1.0} if prior is None else {"within": a, "between": b}
    source = f"in-domain LDA from {domain.n_vectors} labelled calls of {domain.n_speakers} borrowers"
    if prior is not None:
        source += f", interpolated with {prior.n_vectors} out-of-domain vectors of {prior.n_speakers} speakers"
    return lda_from_stats(
        stats, int(lda["dim"]), bool(lda["wccn"]), float(lda["shrink"]), model, source, prior=prior, info=meta
    )


@dataclass
class Trained:
    """What :func:`train_backend` wrote (or would have)."""

    path: Path
    backend: Backend
    labels: PseudoLabels
    counted: int = 0
    """Borrowers counted towards ``adapt_min_borrowers`` (:meth:`PseudoLabels.borrowers_with_two_vectors`)."""


def train_backend(
    settings: Settings,
    extra: Sequence[LabelledCall] | None = None,
    exclude: Iterable[str] = (),
    report: Callable[[str], None] = log.info,
    clock: Callable[[], float] = time.time,
    relevance: tuple[float, float] | None = None,
    with_voiceprints: bool = True,
    voiceprint_rows: int = VOICEPRINT_ROWS,
    within_scale: float = WITHIN_SCALE,
) -> Trained:
    """Train and write an in-domain back-end from the store (see the module notes).

    Args:
        settings: run settings; ``adapt_min_borrowers`` is the fewest borrowers accepted whose class
            holds two or more vectors (labelled calls, and the voiceprint with ``with_voiceprints``).
        extra: labelled calls from people; None reads the review store (:func:`reviewed_calls`).
        exclude: call ids never to use (with ``extra`` None, the calls reviewed as impostors are added).
        clock: the time (seconds since the epoch) the file is stamped with.
        relevance: the interpolation's relevance factors (:func:`adaptation_weights`).
        with_voiceprints: add each labelled borrower's voiceprint to its class (:func:`domain_statistics`).
        voiceprint_rows, within_scale: weights of the in-domain statistics (:func:`domain_statistics`).

    Returns:
        The file written, the back-end and the labels it came from.

    Raises:
        UsageError: too few borrowers, no operating point yet, or a file that cannot be written.
    """
    from .audit import audit_log
    from .crypto import cipher_for
    from .embedders import model_spec
    from .files import private_dir, write_private
    from .scorer import BACKENDS_DIR, backend_path, load_backend

    spec = model_spec(settings.model, settings.embeddings)
    reviewed, impostors = reviewed_calls(settings) if extra is None else (list(extra), set())
    labels = pseudo_labels(settings, reviewed, {*exclude, *impostors})
    prints = voiceprint_vectors(settings, spec.name, labels) if with_voiceprints else None
    counted = labels.borrowers_with_two_vectors(prints or ())
    what = "two labelled calls, or one and their voiceprint" if with_voiceprints else "two labelled calls"
    report(
        f"judged {labels.judged} stored calls: {len(labels.calls)} labelled ({sum(c.reviewed for c in labels.calls)} "
        f"reviewed) for {len(labels.per_borrower)} borrowers, {labels.borrowers_with_two} with two or more; "
        f"{counted} with {what}"
    )
    for why, n in labels.excluded.most_common():
        report(f"  left out {n}: {why}")
    if counted < settings.adapt_min_borrowers:
        raise UsageError(
            f"only {counted} borrowers have {what} the product is confident about "
            f"(adapt_min_borrowers = {settings.adapt_min_borrowers}){_most_left_out(labels)}: a back-end from so few "
            "voices would fit them, not the channel; run more nightly batches first (or lower adapt_min_borrowers "
            "knowingly)"
        )
    base = load_backend(settings, spec.key, spec.name)
    _enough_without_prior(base, labels)
    stats = domain_statistics(labels, prints, voiceprint_rows, within_scale)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    info = {
        "trained_at": stamp,
        "model": spec.name,
        "base": {"file": str(backend_path(settings, spec.key) or ""), "digest": "" if base is None else base.digest},
        "calls": len(labels.calls),
        "reviewed_calls": sum(c.reviewed for c in labels.calls),
        "borrowers": len(labels.per_borrower),
        "borrowers_with_two_calls": labels.borrowers_with_two,
        "borrowers_counted": counted,
        "judged": labels.judged,
        "excluded": dict(labels.excluded),
        "margin": {"adapt_max_false_accept": settings.adapt_max_false_accept, "levels": labels.levels},
        "modes": labels.modes,
        "relevance": dict(zip(("within", "between"), relevance or (RELEVANCE_WITHIN, RELEVANCE_BETWEEN), strict=True)),
        "voiceprints_in_classes": with_voiceprints,
        "voiceprint_rows": voiceprint_rows,
        "within_scale": within_scale,
    }
    backend = adapt_backend(base, stats, spec.name, info, adaptation_weights(stats, relevance))
    path = private_dir(Path(settings.embeddings) / BACKENDS_DIR) / f"{spec.key}-in-domain-{stamp}.npz"
    write_private(path, backend.to_bytes())
    audit_log(settings, cipher_for(settings)).record(
        "backend.train",
        model=spec.name,
        file=str(path),
        counts={"calls": len(labels.calls), "borrowers": len(labels.per_borrower), "judged": labels.judged},
    )
    report(f'wrote {path} (select it with backend_file = "adapted")')
    return Trained(path, backend, labels, counted)


def _most_left_out(labels: PseudoLabels) -> str:
    """The commonest reason calls were left out, for a refusal (calls stored before the replay check was
    on, for instance, are all ``inconclusive (replay_not_checked)`` until a batch checks them)."""
    if not labels.excluded:
        return ""
    why, n = labels.excluded.most_common(1)[0]
    return f"; {n} of {labels.judged} stored calls judged were left out as {why}"


def _enough_without_prior(base: Backend | None, labels: PseudoLabels) -> None:
    """A back-end from the in-domain calls alone (no out-of-domain statistics to interpolate with) has
    only as many LDA directions as borrowers minus one: refuse it below the base recipe's dimension.

    Raises:
        UsageError: too few borrowers for a model that ships no back-end statistics.
    """
    if base is not None and (base.prior or base.stats) is not None:
        return
    dim = int({**DEFAULT_LDA, **({} if base is None else base.info.get("lda", {}))}["dim"])
    dim = min([dim, *(len(c.vector) for c in labels.calls[:1])])
    if len(labels.per_borrower) <= dim:
        raise UsageError(
            f"this model ships no back-end statistics to adapt, so its back-end would come from the "
            f"{len(labels.per_borrower)} labelled borrowers alone, and an LDA of {dim} directions needs more "
            "borrowers than directions: run more nightly batches first"
        )


def voiceprint_vectors(settings: Settings, model: str, labels: PseudoLabels) -> dict[str, np.ndarray]:
    """Telephone-band voiceprint vectors of the labelled borrowers."""
    from .crypto import cipher_for
    from .enrollment import VoiceprintStore
    from .errors import ModelMismatchError, NotEnrolledError

    store = VoiceprintStore(settings.store, cipher_for(settings))
    out = {}
    try:
        for borrower in sorted(labels.per_borrower):
            try:
                vector = store.get(borrower, model).for_band("narrow")
            except (NotEnrolledError, ModelMismatchError):
                continue
            if vector is not None:
                out[borrower] = np.asarray(vector, np.float64)
    finally:
        store.close()
    return out


# --------------------------------------------------------------------------------------------
# the schedule
# --------------------------------------------------------------------------------------------


def due(settings: Settings, clock: Callable[[], float] = time.time) -> bool:
    """Is a scheduled retrain due: ``adapt_every_days`` > 0 and the newest in-domain back-end of the
    model (if any) at least that many days old?"""
    from .embedders import model_spec
    from .scorer import adapted_backends

    if settings.adapt_every_days <= 0:
        return False
    found = adapted_backends(settings.embeddings, model_spec(settings.model, settings.embeddings).key)
    if not found:
        return True
    stamp = found[-1].stem.rsplit("-", 1)[-1]
    try:
        made = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return True
    return clock() - made >= settings.adapt_every_days * 86400 - 3600  # an hour's slack: nightly runs drift


def scheduled(settings: Settings, clock: Callable[[], float] = time.time) -> dict[str, Any] | None:
    """The nightly batch's retrain: None when not due, else what happened (never raises for a
    refusal: a store too small yet is a normal night). The new back-end serves from the next run."""
    if not due(settings, clock):
        return None
    try:
        done = train_backend(settings, clock=clock)
    except VoicecheckError as e:
        log.warning("scheduled back-end training did not write a back-end: %s", e)
        return {"status": "not trained", "reason": str(e)}
    return {
        "status": "trained",
        "file": str(done.path),
        "calls": len(done.labels.calls),
        "borrowers_with_two_calls": done.labels.borrowers_with_two,
        "borrowers_counted": done.counted,
    }


def describe_backends(settings: Settings) -> tuple[list[dict[str, Any]], str]:
    """The model's in-domain back-ends in the workspace (oldest first) with their provenance, and the
    back-end file the settings select ("" for none)."""
    from .embedders import model_spec
    from .scorer import adapted_backends, backend_path

    key = model_spec(settings.model, settings.embeddings).key
    rows = []
    for path in adapted_backends(settings.embeddings, key):
        info = Backend.load(path).info
        rows.append(
            {
                "file": str(path),
                "trained_at": info.get("trained_at"),
                "calls": info.get("calls"),
                "borrowers": info.get("borrowers"),
                "borrowers_with_two_calls": info.get("borrowers_with_two_calls"),
                "borrowers_counted": info.get("borrowers_counted"),
                "adapt_max_false_accept": (info.get("margin") or {}).get("adapt_max_false_accept"),
                "weights": info.get("weights"),
            }
        )
    active = backend_path(settings, key)
    return rows, "" if active is None else str(active)
