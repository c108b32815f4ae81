"""Cross-call analyses over the call-embedding store: inconsistent borrowers and rings.

Vectors are the stored call embeddings in the telephone band, centred on their own mean (the
in-domain mean) and renormalised: the scale the thresholds in :mod:`voicecheck.analysis` were
chosen on (benchmarks/analysis.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np

from .analysis import VOICES_THRESHOLD, centre, find_rings, voices_per_borrower
from .callstore import CallStore
from .config import Settings
from .embedders import model_spec


@dataclass(frozen=True)
class Calls:
    """Stored calls of one model with a telephone-band vector, in borrower order."""

    call_ids: list[str]
    borrower_ids: list[str]
    vectors: np.ndarray  # (n, d) float32, raw unit-norm


def stored_calls(settings: Settings) -> Calls:
    """Every linked call with speech, its narrowband vector (float32; n x d floats in memory)."""
    model = model_spec(settings.model, settings.embeddings).name
    store = CallStore(settings.embeddings)
    ids: list[str] = []
    owners: list[str] = []
    rows: list[np.ndarray] = []
    try:
        for c in store.calls(model):
            emb = c.embedding
            vector = None if emb is None else (emb.vector if emb.band == "narrow" else emb.narrow_vector)
            if vector is not None:
                ids.append(c.call_id)
                owners.append(c.borrower_id)
                rows.append(vector)
    finally:
        store.close()
    dim = rows[0].shape[0] if rows else 0
    return Calls(ids, owners, np.stack(rows) if rows else np.zeros((0, dim), np.float32))


def inconsistent_borrowers(settings: Settings, threshold: float = VOICES_THRESHOLD) -> list[dict[str, Any]]:
    """Borrowers whose stored calls hold two or more distinct voices, with the calls of each voice."""
    calls = stored_calls(settings)
    if len(calls.call_ids) == 0:
        return []
    vectors = centre(calls.vectors)
    order = sorted(range(len(calls.call_ids)), key=lambda i: (calls.borrower_ids[i], calls.call_ids[i]))
    found = []
    for borrower, members in groupby(order, key=lambda i: calls.borrower_ids[i]):
        idx = list(members)
        groups = voices_per_borrower(vectors[idx], [calls.call_ids[i] for i in idx], threshold)
        if groups:
            found.append({"borrower_id": borrower, "calls": len(idx),
                          "voices": [{"voice": n + 1, "calls": g} for n, g in enumerate(groups)]})
    return found


def rings(settings: Settings, min_borrowers: int = 3) -> list[dict[str, Any]]:
    """Voices that speak as ``min_borrowers`` or more different borrowers, most borrowers first."""
    calls = stored_calls(settings)
    if len(calls.call_ids) < 2:
        return []
    found = find_rings(centre(calls.vectors), calls.call_ids, calls.borrower_ids, min_borrowers=min_borrowers)
    out = [{"voice": n + 1, "borrowers": sorted(set(r.borrowers)), "calls": list(r.calls),
            "cohesion": round(float(r.cohesion), 4)} for n, r in enumerate(found)]
    return sorted(out, key=lambda r: (-len(r["borrowers"]), -r["cohesion"]))
