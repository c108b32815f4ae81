"""Erasure on request, retention, and voiceprint removal — each audited.

``erase`` removes everything voicecheck keeps about one borrower's voice: the voiceprint (every
recording), every call linked to the borrower with the embeddings of that audio (vector, windows,
times), the embeddings of the enrollment audio where it was also stored as a call or cohort entry,
and every watchlist entry made from the borrower's calls or recordings. Deletes run with SQLite's
``secure_delete`` (content overwritten with zeros) and end with a WAL checkpoint that truncates the
write-ahead log, so no copy of a vector stays in the database files. The audit log keeps the fact of
the erasure (ids and counts, never vectors).

The steps run in :data:`STEPS` order after :func:`gather` has collected the borrower's call ids and
audio hashes from every store (so that a step never depends on data an earlier step deleted). A new
per-person table adds one step there: a function taking the :class:`Erasure` and returning its
counts (the QA reviews of :mod:`voicecheck.reviews` are one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .audit import audit_log
from .callstore import CallStore
from .config import Settings
from .crypto import Cipher, cipher_for
from .enrollment import VoiceprintStore
from .errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class Erasure:
    """One erasure request: the borrower and what :func:`gather` found of them in every store.

    Attributes:
        call_ids: ids of the borrower's calls in the call store (every model).
        call_hashes: content hashes of those calls' audio.
        enrollment_hashes: content hashes of the borrower's enrollment recordings.
    """

    borrower_id: str
    settings: Settings
    cipher: Cipher
    call_ids: list[str] = field(default_factory=list)
    call_hashes: set[str] = field(default_factory=set)
    enrollment_hashes: set[str] = field(default_factory=set)

    @property
    def hashes(self) -> set[str]:
        """Every audio of the borrower: calls and enrollment recordings."""
        return self.call_hashes | self.enrollment_hashes


def gather(request: Erasure) -> None:
    """Fill in the borrower's call ids and audio hashes from both stores (reads only)."""
    calls = CallStore(request.settings.embeddings, request.cipher)
    try:
        request.call_ids, request.call_hashes = calls.borrower_calls(request.borrower_id)
    finally:
        calls.close()
    store = VoiceprintStore(request.settings.store, request.cipher)
    try:
        request.enrollment_hashes = {str(r["content_hash"]) for r in store.recordings(request.borrower_id)}
    finally:
        store.close()


def erase_calls(request: Erasure) -> dict[str, Any]:
    """The borrower's calls and the embeddings of their audio (see :meth:`CallStore.erase_borrower`)."""
    calls = CallStore(request.settings.embeddings, request.cipher)
    try:
        return calls.erase_borrower(request.borrower_id, request.hashes)
    finally:
        calls.close()


def erase_voiceprint(request: Erasure) -> dict[str, Any]:
    """The voiceprint and the watchlist entries made from the borrower's calls or recordings."""
    store = VoiceprintStore(request.settings.store, request.cipher)
    try:
        done = store.erase_person(request.borrower_id, request.hashes)
    finally:
        store.close()
    done.pop("enrollment_hashes", None)
    return done


def erase_reviews(request: Erasure) -> dict[str, Any]:
    """The QA reviews (label and note) of the borrower's calls and of their audio."""
    calls = CallStore(request.settings.embeddings, request.cipher)
    try:
        return {"reviews": calls.erase_reviews(request.borrower_id, request.call_ids, request.hashes)}
    finally:
        calls.close()


def erase_replay(request: Erasure) -> dict[str, Any]:
    """The borrower's fingerprints in the replay index: their enrollment recordings and calls, and any
    item of their audio stored under someone else (the same file in another borrower's call)."""
    from .replaycheck import call_item, index_paths, open_index

    n = 0
    for kind, path in index_paths(request.settings).items():
        if not path.exists():
            continue
        index = open_index(request.settings, request.cipher, kind)
        try:
            n += index.remove_owner(request.borrower_id)
            n += sum(index.remove(call_item(h)) for h in sorted(request.hashes))
            index.checkpoint()
        finally:
            index.close()
    return {"replay_items": n}


STEPS: tuple[tuple[str, Callable[[Erasure], dict[str, Any]]], ...] = (
    ("calls", erase_calls),
    ("voiceprint", erase_voiceprint),
    ("reviews", erase_reviews),
    ("replay", erase_replay),
)
"""The erasure steps, in order (the call store first: the voiceprint store holds the enrollment hashes
a re-run needs if an erasure is interrupted; reviews and the replay index last, keyed by the borrower
and the call ids and hashes :func:`gather` collected, so a re-run still finds them)."""


def erase(settings: Settings, borrower_id: str) -> dict[str, Any]:
    """Remove everything stored about ``borrower_id``'s voice (see the module doc) and audit it.

    Returns:
        Counts: ``recordings``, ``watchlist_entries`` (+ ``watchlist_labels``), ``calls``, ``embeddings``,
        ``shared_calls`` (other borrowers' calls of the same audio, whose embedding went too), ``reviews``.

    Raises:
        UsageError: an empty borrower id.
    """
    if not borrower_id.strip():
        raise UsageError("give the id of the borrower to erase")
    cipher = cipher_for(settings)
    request = Erasure(borrower_id, settings, cipher)
    gather(request)
    counts: dict[str, Any] = {}
    for name, step in STEPS:
        counts.update(step(request))
        log.info("erase %s: %s done", borrower_id, name)
    audit_log(settings, cipher).record("erase", borrower_id=borrower_id, call_ids=request.call_ids, counts=counts)
    return counts


def cutoff(days: float) -> str:
    """ISO 8601 UTC time ``days`` ago (as the stores write their timestamps)."""
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds")


def purge(
    settings: Settings, older_than_days: float, trigger: str = "purge", cipher: Cipher | None = None
) -> dict[str, Any]:
    """Remove call embeddings stored more than ``older_than_days`` ago, their call links, and QA reviews
    recorded before then; audited.

    Returns:
        ``{"embeddings": n, "calls": n, "reviews": n, "older_than_days": d}``.

    Raises:
        UsageError: a negative or non-finite age.
    """
    import math

    if not (math.isfinite(older_than_days) and older_than_days >= 0):
        raise UsageError(f"the retention age must be a number of days >= 0, got {older_than_days!r}")
    cipher = cipher or cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    try:
        counts: dict[str, Any] = calls.purge(cutoff(older_than_days))
    finally:
        calls.close()
    counts["replay_items"] = purge_replay(settings, cipher, cutoff(older_than_days))
    counts["older_than_days"] = older_than_days
    audit_log(settings, cipher).record("purge", trigger=trigger, counts=counts)
    return counts


def purge_replay(settings: Settings, cipher: Cipher, before: str) -> int:
    """Remove the calls stored in the replay index before ``before`` (ISO 8601 UTC); enrollment
    recordings stay while their voiceprint does. Returns how many."""
    from .replaycheck import index_paths, open_index

    if not index_paths(settings)["call"].exists():
        return 0
    index = open_index(settings, cipher, "call")
    try:
        n = index.remove_older(before, kind="call")
        index.checkpoint()
    finally:
        index.close()
    return n


def apply_retention(settings: Settings, cipher: Cipher | None = None) -> dict[str, Any] | None:
    """Purge by the ``retention_days`` setting (the nightly batch calls this first); None when it is 0."""
    if settings.retention_days <= 0:
        return None
    counts = purge(settings, settings.retention_days, "retention_days", cipher)
    removed, links, days = counts["embeddings"], counts["calls"], settings.retention_days
    if removed or links:
        log.info("retention: %d call embeddings and %d call links older than %d days removed", removed, links, days)
    return counts


def remove_voiceprint(settings: Settings, owner_id: str, kind: str = "borrower") -> int:
    """Delete one voiceprint (not the calls: :func:`erase` removes everything); audited.

    Returns:
        The number of recordings removed.
    """
    cipher = cipher_for(settings)
    store = VoiceprintStore(settings.store, cipher)
    try:
        n = store.remove(owner_id, kind=kind)
    finally:
        store.close()
    counts = {"recordings": n}
    if kind == "borrower":
        counts["replay_items"] = _remove_enrollment_prints(settings, cipher, owner_id)
    audit_log(settings, cipher).record("voiceprint.remove", kind=kind, borrower_id=owner_id, counts=counts)
    return n


def _remove_enrollment_prints(settings: Settings, cipher: Cipher, owner_id: str) -> int:
    """The fingerprints of a removed voiceprint's recordings (their calls' stay, as the calls do)."""
    from .replaycheck import index_paths, open_index

    if not index_paths(settings)["enrollment"].exists():
        return 0
    index = open_index(settings, cipher, "enrollment")
    try:
        n = index.remove_owner(owner_id.strip(), kind="enrollment")
        index.checkpoint()
    finally:
        index.close()
    return n


def remove_watch_entry(settings: Settings, label: str) -> int:
    """Remove a watchlist voice (every model) and its provenance; audited. Returns the entries removed."""
    cipher = cipher_for(settings)
    store = VoiceprintStore(settings.store, cipher)
    try:
        n = store.watch_remove(label)
    finally:
        store.close()
    audit_log(settings, cipher).record("watchlist.remove", label=label, counts={"entries": n})
    return n
