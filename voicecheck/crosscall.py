"""Cross-call analyses over the call-embedding store: inconsistent borrowers and rings.

Vectors are the stored call embeddings in the telephone band, mapped into the product's scoring
space (:func:`scoring_space`: the Scorer's narrow-band :class:`voicecheck.scorer.Space` — the
model's back-end, LDA for GE2E — re-centred on the stored calls' own mean, the in-domain mean).
The cosine in that space is the scale of the voices-per-borrower threshold; rings link calls on
that cosine normalised against each call's cosines to other borrowers' calls
(:func:`voicecheck.analysis.link_scores`). Both defaults in :mod:`voicecheck.analysis` were chosen
in benchmarks/analysis.py. Calls the 1:1 check accepts as their own borrower's enrolled voice
(:func:`verified_calls`) join no ring: a sound-alike honest borrower is the commonest false ring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import VOICES_THRESHOLD, find_rings, voices_per_borrower
from .callstore import CallStore
from .config import Settings
from .crypto import cipher_for
from .embedders import model_spec
from .errors import UsageError
from .scorer import CallVector, Scorer
from .scoring import unit
from .types import CallEmbedding

log = logging.getLogger(__name__)

DOMAIN_MEAN_SAMPLE = 50000
"""At most this many stored calls (an even spread over the store) estimate the in-domain mean."""


@dataclass(frozen=True)
class Calls:
    """Stored calls of one model with a telephone-band vector, in call-id order.

    Attributes:
        vectors: each call's telephone-band vector, (n, d) float32, raw unit-norm (what cross-call
            analyses compare).
        calls: each call as the 1:1 check scores it (own band, content hash), for :func:`verified_calls`.
    """

    call_ids: list[str]
    borrower_ids: list[str]
    vectors: np.ndarray
    calls: list[CallVector]


def cross_call_vector(emb: CallEmbedding) -> np.ndarray | None:
    """What cross-call analyses compare of a stored call: the telephone-band vector, None without one.

    For a narrowband call, the mean of its stored windows: the call vector on the coarse timeline (windows
    back to back), the mean of windows every 0.8 s when the call was refined (:mod:`voicecheck.refine`
    refines the calls rings may group), which separates short calls' voices better
    (benchmarks/analysis.py). A wideband call's telephone-band vector is its channel-matched one.
    """
    if emb.band != "narrow":
        return emb.narrow_vector
    if not len(emb.windows):
        return emb.vector
    return unit(np.asarray(emb.windows, dtype=np.float32).mean(axis=0))


def stored_calls(settings: Settings) -> Calls:
    """Every linked call with speech and a telephone-band vector (float32; n x d floats in memory);
    the vectors as :func:`cross_call_vector` takes them."""
    model = model_spec(settings.model, settings.embeddings).name
    store = CallStore(settings.embeddings, cipher_for(settings))
    ids: list[str] = []
    owners: list[str] = []
    rows: list[np.ndarray] = []
    calls: list[CallVector] = []
    try:
        for c in store.calls(model):
            emb = c.embedding
            vector = None if emb is None else cross_call_vector(emb)
            if emb is not None and vector is not None:
                ids.append(c.call_id)
                owners.append(c.borrower_id)
                rows.append(vector)
                wide = emb.band == "wide"
                calls.append(
                    CallVector(emb.content_hash, model, emb.band, emb.vector, emb.narrow_vector if wide else None)
                )
    finally:
        store.close()
    dim = rows[0].shape[0] if rows else 0
    return Calls(ids, owners, np.stack(rows) if rows else np.zeros((0, dim), np.float32), calls)


def scorer_for(settings: Settings, voiceprints: Any | None = None) -> Scorer:
    """The product's Scorer for the settings' model; with ``voiceprints`` (the store), the cohort
    from the call store and each band's operating point, as the batch builds it."""
    spec = model_spec(settings.model, settings.embeddings)
    if voiceprints is None:
        return Scorer.build(settings, spec.name, spec.key, None)
    store = CallStore(settings.embeddings, cipher_for(settings))
    try:
        return Scorer.build(settings, spec.name, spec.key, store, voiceprints)
    finally:
        store.close()


def scoring_space(settings: Settings, vectors: np.ndarray, block: int = 8192) -> np.ndarray:
    """Map raw call vectors into the product's scoring space (unit rows; cosine = similarity there).

    The Scorer's narrow-band space (:meth:`voicecheck.scorer.Space.recentred`): its back-end (GE2E
    ships an LDA; none means plain centring) re-centred on the mean of ``vectors`` (at most
    :data:`DOMAIN_MEAN_SAMPLE` of them, evenly spread), as the scorer re-centres on its cohort. With
    fewer than ``settings.cohort_min`` rows their mean is no domain mean (two calls centred on their
    own mean point in opposite directions), so the back-end keeps its shipped mean, or the rows are
    only length-normalised. Rows are transformed in blocks: memory O(n k), no n x n matrix.

    Args:
        settings: run settings (model, embeddings folder, ``backend_file``, ``cohort_min``).
        vectors: raw call embeddings of ``settings.model``, shape (n, d).

    Returns:
        float32, shape (n, k): k is the back-end's output dimension (d without a back-end).
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise UsageError(f"vectors must have shape (n, d), got shape {x.shape}.")
    space = scorer_for(settings).space("narrow")
    if len(x) >= max(2, settings.cohort_min):
        step = -(-len(x) // DOMAIN_MEAN_SAMPLE)
        space = space.recentred(x[::step])
    width = x.shape[1] if space.backend is None else space.backend.output_dimension
    out = np.empty((len(x), width), np.float32)
    for s in range(0, len(x), block):
        out[s : s + block] = space.transform(x[s : s + block])
    return out


def inconsistent_borrowers(settings: Settings, threshold: float = VOICES_THRESHOLD) -> list[dict[str, Any]]:
    """Borrowers whose stored calls hold two or more distinct voices, with the calls of each voice.

    Args:
        settings: run settings.
        threshold: least mean cosine between calls of one voice, in :func:`scoring_space`.
    """
    calls = stored_calls(settings)
    if len(calls.call_ids) == 0:
        return []
    vectors = scoring_space(settings, calls.vectors)
    found = _voices(calls, vectors, threshold)
    _audited("consistency", settings, [b["borrower_id"] for b in found], len(calls.call_ids))
    return found


def _audited(event: str, settings: Settings, borrowers: list[str], calls: int) -> None:
    """Record a cross-call analysis in the audit log: who it listed (ids only) and over how many calls."""
    from .audit import audit_log

    audit_log(settings).record(event, borrower_ids=sorted(set(borrowers)), counts={"calls": calls})


def _voices(calls: Calls, vectors: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    """The borrowers among ``calls`` whose calls hold two or more voices (``vectors`` in the scoring space)."""
    order = sorted(range(len(calls.call_ids)), key=lambda i: (calls.borrower_ids[i], calls.call_ids[i]))
    found = []
    for borrower, members in groupby(order, key=lambda i: calls.borrower_ids[i]):
        idx = list(members)
        groups = voices_per_borrower(vectors[idx], [calls.call_ids[i] for i in idx], threshold)
        if groups:
            found.append(
                {
                    "borrower_id": borrower,
                    "calls": len(idx),
                    "voices": [{"voice": n + 1, "calls": g} for n, g in enumerate(groups)],
                }
            )
    return found


def verified_calls(settings: Settings, calls: Calls) -> np.ndarray:
    """Which calls the 1:1 check accepts as their own borrower's voice, one flag per call.

    A call is verified when its borrower has a voiceprint for the model and the Scorer accepts the
    call against it as the batch scores it (:meth:`voicecheck.scorer.Scorer.score_many`: the call's
    own band, channel matching, the call store's cohort without the borrower's calls, the threshold
    of that band's mode). Borrowers with no voiceprint for the model have no verified calls; with no
    calibrated threshold nothing is verified (a warning says so).
    """
    from .enrollment import DB_NAME, VoiceprintStore
    from .errors import ModelMismatchError, NotEnrolledError

    out = np.zeros(len(calls.call_ids), dtype=bool)
    if not len(out) or not (Path(settings.store) / DB_NAME).is_file():
        return out
    voiceprints = VoiceprintStore(settings.store, cipher_for(settings))
    try:
        scorer = scorer_for(settings, voiceprints)
        order = sorted(range(len(out)), key=lambda i: calls.borrower_ids[i])
        for borrower, members in groupby(order, key=lambda i: calls.borrower_ids[i]):
            idx = list(members)
            try:
                voiceprint = voiceprints.get(borrower, scorer.model)
                out[idx] = [s.accepted for s in scorer.score_many(voiceprint, [calls.calls[i] for i in idx])]
            except (NotEnrolledError, ModelMismatchError):
                continue
            except UsageError as e:
                log.warning("rings: calls are not checked against their borrowers' voiceprints: %s", e)
                return np.zeros(len(out), dtype=bool)
    finally:
        voiceprints.close()
    return out


def rings(
    settings: Settings,
    min_borrowers: int = 3,
    link_threshold: float | None = None,
    include_verified: bool = False,
) -> list[dict[str, Any]]:
    """Voices that speak as ``min_borrowers`` or more different borrowers, most borrowers first.

    Args:
        settings: run settings.
        min_borrowers: least distinct borrowers of a ring.
        link_threshold: least link score between any two calls of a ring: their cosine in
            :func:`scoring_space`, in standard deviations above each call's cosines to other
            borrowers' calls (:func:`voicecheck.analysis.link_scores`); None: the default for
            ``min_borrowers`` (:func:`voicecheck.analysis.ring_link_threshold`).
        include_verified: let calls the 1:1 check accepts as their own borrower's voice
            (:func:`verified_calls`) join rings too. Off by default: such a call is the borrower
            speaking, and sound-alike honest borrowers were most of the false rings measured; on
            when an agent may have enrolled as the borrower.
    """
    calls = stored_calls(settings)
    if len(calls.call_ids) < 2:
        return []
    eligible = None
    if not include_verified:
        verified = verified_calls(settings, calls)
        if verified.any():
            log.info("rings: %d calls verified as their own borrower's voice join no ring", int(verified.sum()))
        eligible = ~verified
    found = find_rings(
        scoring_space(settings, calls.vectors),
        calls.call_ids,
        calls.borrower_ids,
        min_borrowers=min_borrowers,
        link_threshold=link_threshold,
        eligible=eligible,
    )
    out = [
        {
            "voice": n + 1,
            "borrowers": sorted(set(r.borrowers)),
            "calls": list(r.calls),
            "cohesion": round(float(r.cohesion), 4),
        }
        for n, r in enumerate(found)
    ]
    _audited("rings", settings, [b for r in found for b in r.borrowers], len(calls.call_ids))
    return sorted(out, key=lambda r: (-len(r["borrowers"]), -r["cohesion"]))
