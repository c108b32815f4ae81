"""The call-embedding store: every processed call's customer embedding, keyed by audio content.

SQLite at ``<embeddings>/calls.sqlite``. The same audio (sha256 of the file, channel, model) is never
embedded twice; ``rescore`` and the cross-call analyses read vectors from here without decoding audio.
The liveness detector's score of each audio (``spoof_scores``, keyed by content, channel and detector;
a scalar, not sealed) and what the replay check found (``replay_checks``, keyed by content, channel and
borrower: JSON of matched spans and item names, no fingerprint; :mod:`voicecheck.replaycheck`) are kept
beside it, erased and purged with it.
Every vector, the window embeddings, their times and the speech regions are sealed with the store's
cipher (:mod:`voicecheck.crypto`), each bound to its row (content hash, channel, model, column).
Erasure (:meth:`CallStore.erase_borrower`) and retention (:meth:`CallStore.purge`) delete with
``secure_delete`` and empty the write-ahead log.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import storage
from .crypto import Cipher, default_cipher
from .enrollment import from_blob, now, to_blob
from .errors import StoreError, UsageError
from .types import CallEmbedding, SpeechRegion

if TYPE_CHECKING:
    from .antispoof import SpoofScore

DB_NAME = "calls.sqlite"
SCHEMA_VERSION = "3"
WHAT = "call-embedding store"
SEALED = ("vector", "narrow_vector", "windows", "window_times", "regions")
"""The sealed columns of ``embeddings`` (``regions``: JSON of [start_s, end_s] pairs, as bytes)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    content_hash TEXT NOT NULL,
    channel INTEGER NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    band TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    speech_seconds REAL NOT NULL,
    duration_s REAL NOT NULL,
    vector BLOB,
    narrow_vector BLOB,
    windows BLOB,
    window_times BLOB,
    regions BLOB NOT NULL,
    channels INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (content_hash, channel, model)
);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT NOT NULL,
    model TEXT NOT NULL,
    borrower_id TEXT NOT NULL,
    audio TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    channel INTEGER NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (call_id, model)
);
CREATE TABLE IF NOT EXISTS spoof_scores (
    content_hash TEXT NOT NULL,
    channel INTEGER NOT NULL,
    detector TEXT NOT NULL,
    score REAL NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (content_hash, channel, detector)
);
CREATE TABLE IF NOT EXISTS replay_checks (
    content_hash TEXT NOT NULL,
    channel INTEGER NOT NULL,
    borrower_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (content_hash, channel, borrower_id)
);
CREATE INDEX IF NOT EXISTS replay_checks_borrower ON replay_checks (borrower_id);
CREATE INDEX IF NOT EXISTS calls_borrower ON calls (model, borrower_id);
CREATE INDEX IF NOT EXISTS calls_content ON calls (content_hash, channel, model);
CREATE TABLE IF NOT EXISTS reviews (
    call_id TEXT PRIMARY KEY,
    borrower_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    label BLOB NOT NULL,
    note BLOB NOT NULL,
    reason TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    reviewed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_borrower ON reviews (borrower_id);
"""
REVIEW_SEALED = ("label", "note")
"""The sealed columns of ``reviews`` (a QA reviewer's decision and note about a call)."""


@dataclass(frozen=True)
class StoredAudio:
    """What the store holds for one audio (content hash, channel, model).

    Attributes:
        status: "ok", or "insufficient_speech" when the audio had too little speech to embed.
        embedding: the customer side's embedding; None when the status is not "ok".
        speech_seconds: net speech the VAD found.
        duration_s: length of the recording (known also when it had too little speech).
    """

    status: str
    embedding: CallEmbedding | None
    speech_seconds: float
    duration_s: float


@dataclass(frozen=True)
class StoredCall:
    """A call as the store knows it: ids plus what is stored of its audio (see :class:`StoredAudio`)."""

    call_id: str
    borrower_id: str
    audio: str
    embedding: CallEmbedding | None
    speech_seconds: float
    duration_s: float = 0.0
    status: str = "ok"
    content_hash: str = ""


_CALL_SQL = (
    "SELECT c.call_id, c.borrower_id, c.audio, e.* FROM calls c JOIN embeddings e"
    " ON e.content_hash=c.content_hash AND e.channel=c.channel AND e.model=c.model WHERE c.model=?"
)
"""Linked calls of one model with their embeddings rows: call id, borrower, audio, then ``embeddings.*``."""


@dataclass(frozen=True)
class Review:
    """A person's decision about one call (see :mod:`voicecheck.reviews`).

    Attributes:
        call_id: the call reviewed.
        borrower_id: whose call it is.
        content_hash: sha256 of the audio the reviewer heard (a review holds for that audio only).
        label: "genuine" (the borrower spoke), "impostor" (someone else did) or "unsure".
        note: the reviewer's free text ("" for none).
        reason: the flag's reason code the reviewer looked at ("" when not known).
        reviewer: OS user who recorded the decision.
        reviewed_at: when (ISO 8601 UTC).
    """

    call_id: str
    borrower_id: str
    content_hash: str
    label: str
    note: str
    reason: str
    reviewer: str
    reviewed_at: str


def review_context(column: str, call_id: str, borrower_id: str, content_hash: str) -> tuple:
    """What a sealed column of a ``reviews`` row is bound to."""
    return ("reviews", column, call_id, borrower_id, content_hash)


def embedding_context(column: str, content_hash: str, channel: int, model: str, dimension: int) -> tuple:
    """What a sealed column of an ``embeddings`` row is bound to (the associated data of its seal)."""
    return ("embeddings", column, content_hash, int(channel), model, int(dimension))


class CallStore:
    """Call embeddings in ``<directory>/calls.sqlite``; one writer process at a time.

    Args:
        directory: the embeddings folder (made 0700).
        cipher: seals the vectors; None takes the environment's key (:func:`voicecheck.crypto.default_cipher`).

    Raises:
        StoreError: unreadable, of another schema (``voicecheck store migrate`` upgrades an older one),
            of the other encryption mode, or the key does not open it.
        UsageError: no key (the message says to run ``voicecheck key init``).
    """

    def __init__(self, directory: str | Path, cipher: Cipher | None = None) -> None:
        self.directory = Path(directory)
        self.cipher = cipher if cipher is not None else default_cipher()
        self.cipher.check_folder(self.directory, "embeddings")
        self.path = self.directory / DB_NAME
        try:
            self._db = storage.connect(self.path, 60)
            # a commit survives the process being killed; against power loss the batch calls sync()
            # once its embedding phase ends (an fsync per call cost ~4% of a one-worker batch)
            self._db.execute("PRAGMA synchronous=NORMAL")
            storage.check_version(storage.stored_version(self._db), SCHEMA_VERSION, self.path, WHAT)
            self._db.executescript(_SCHEMA)
            storage.init_meta(self._db, self.cipher, SCHEMA_VERSION, DB_NAME)
            storage.check_encryption(self._db, self.cipher, self.path, WHAT, DB_NAME)
        except (OSError, sqlite3.Error, UsageError) as e:
            raise StoreError(f"call-embedding store {self.directory} cannot be opened: {e}") from None
        except BaseException:
            if hasattr(self, "_db"):
                self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def checkpoint(self) -> bool:
        """Empty the write-ahead log into the database (see :func:`voicecheck.storage.checkpoint`)."""
        return storage.checkpoint(self._db, self.path)

    def _seal(self, data: bytes | None, column: str, key: tuple[str, int, str], dimension: int) -> bytes | None:
        return None if data is None else self.cipher.seal(data, embedding_context(column, *key, dimension))

    def sync(self) -> None:
        """Make every commit so far durable on disk (a WAL checkpoint, which fsyncs), not only
        safe from a killed process."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as e:
            raise StoreError(f"call-embedding store {self.directory} cannot be synced to disk: {e}") from None

    def put(
        self,
        emb: CallEmbedding | None,
        *,
        content_hash: str,
        channel: int,
        model: str,
        speech_seconds: float = 0.0,
        duration_s: float = 0.0,
    ) -> None:
        """Store an embedding, or (``emb`` None) the fact that this audio has too little speech."""
        key = (content_hash, channel, model)
        if emb is None:
            row: tuple[object, ...] = (
                content_hash,
                channel,
                model,
                "insufficient_speech",
                "",
                0,
                float(speech_seconds),
                float(duration_s),
                None,
                None,
                None,
                None,
                self._seal(b"[]", "regions", key, 0),
                0,
                now(),
            )
        else:
            dim = int(emb.vector.shape[0])
            row = (
                content_hash,
                channel,
                model,
                "ok",
                emb.band,
                dim,
                float(emb.speech_seconds),
                float(emb.duration_s),
                self._seal(to_blob(emb.vector), "vector", key, dim),
                self._seal(
                    None if emb.narrow_vector is None else to_blob(emb.narrow_vector), "narrow_vector", key, dim
                ),
                self._seal(np.asarray(emb.windows, "<f2").tobytes(), "windows", key, dim),
                self._seal(np.asarray(emb.window_times_s, "<f4").tobytes(), "window_times", key, dim),
                self._seal(json.dumps([[r.start_s, r.end_s] for r in emb.regions]).encode(), "regions", key, dim),
                emb.channels,
                now(),
            )
        try:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        except sqlite3.Error as e:
            raise StoreError(f"call-embedding store {self.directory}: {e}") from None

    def put_spoof(self, content_hash: str, channel: int, spoof: SpoofScore) -> None:
        """Store the liveness detector's score of this audio (:mod:`voicecheck.antispoof`)."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO spoof_scores VALUES (?,?,?,?,?)",
                    (content_hash, int(channel), spoof.detector, float(spoof.score), now()),
                )
        except sqlite3.Error as e:
            raise StoreError(f"call-embedding store {self.directory}: {e}") from None

    def spoof_score(self, content_hash: str, channel: int, detector: str) -> SpoofScore | None:
        """The stored score of this audio by ``detector``, or None."""
        from .antispoof import SpoofScore

        row = self._db.execute(
            "SELECT score FROM spoof_scores WHERE content_hash=? AND channel=? AND detector=?",
            (content_hash, int(channel), detector),
        ).fetchone()
        return None if row is None else SpoofScore(detector, float(row[0]))

    def spoof_missing(self, content_hash: str, channel: int, model: str, detector: str) -> bool:
        """Whether this audio has a ``model`` embedding with speech but no score by ``detector``
        (a batch then processes it again)."""
        return (
            self._db.execute(
                "SELECT 1 FROM embeddings e WHERE e.content_hash=? AND e.channel=? AND e.model=? AND e.status='ok'"
                " AND NOT EXISTS (SELECT 1 FROM spoof_scores s WHERE s.content_hash=e.content_hash"
                " AND s.channel=e.channel AND s.detector=?)",
                (content_hash, int(channel), model, detector),
            ).fetchone()
            is not None
        )

    def put_replay(self, content_hash: str, channel: int, borrower_id: str, outcome: str) -> None:
        """Store what the replay check of this audio for ``borrower_id`` found (JSON text,
        :class:`voicecheck.replaycheck.ReplayOutcome`)."""
        self.put_replays([(content_hash, channel, borrower_id, outcome)])

    def put_replays(self, entries: Iterable[tuple[str, int, str, str]]) -> None:
        """:meth:`put_replay` for many (content_hash, channel, borrower_id, outcome) in one transaction."""
        stamp = now()
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO replay_checks VALUES (?,?,?,?,?)",
                    [(h, int(c), b, outcome, stamp) for h, c, b, outcome in entries],
                )
        except sqlite3.Error as e:
            raise StoreError(f"call-embedding store {self.directory}: {e}") from None

    def replay_outcome(self, content_hash: str, channel: int, borrower_id: str) -> str | None:
        """The stored replay check of this audio for ``borrower_id`` (JSON text), or None."""
        row = self._db.execute(
            "SELECT outcome FROM replay_checks WHERE content_hash=? AND channel=? AND borrower_id=?",
            (content_hash, int(channel), borrower_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def replay_missing(self, content_hash: str, channel: int, model: str, borrower_id: str) -> bool:
        """Whether this audio has a ``model`` embedding with speech but no replay check for ``borrower_id``
        (a batch then processes it again)."""
        return (
            self._db.execute(
                "SELECT 1 FROM embeddings e WHERE e.content_hash=? AND e.channel=? AND e.model=? AND e.status='ok'"
                " AND NOT EXISTS (SELECT 1 FROM replay_checks r WHERE r.content_hash=e.content_hash"
                " AND r.channel=e.channel AND r.borrower_id=?)",
                (content_hash, int(channel), model, borrower_id),
            ).fetchone()
            is not None
        )

    def link(self, call_id: str, borrower_id: str, audio: str, content_hash: str, channel: int, model: str) -> str:
        """Record that ``call_id`` (of ``borrower_id``) is this audio.

        Returns:
            "" normally; when the call id was linked to other audio before, the start of that audio's
            hash (the link now points at the new audio: a call is its content, not its id).
        """
        before = self._db.execute(
            "SELECT content_hash, channel FROM calls WHERE call_id=? AND model=?", (call_id, model)
        ).fetchone()
        try:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?)",
                    (call_id, model, borrower_id, audio, content_hash, channel, now()),
                )
        except sqlite3.Error as e:
            raise StoreError(f"call-embedding store {self.directory}: {e}") from None
        return before[0][:12] if before and tuple(before) != (content_hash, channel) else ""

    def lookup(self, content_hash: str, channel: int, model: str) -> StoredAudio | None:
        """What is stored for this audio, or None if it was never processed."""
        row = self._db.execute(
            "SELECT * FROM embeddings WHERE content_hash=? AND channel=? AND model=?", (content_hash, channel, model)
        ).fetchone()
        return None if row is None else StoredAudio(row[3], self._embedding(row), float(row[6]), float(row[7]))

    def linked(self, call_id: str, model: str) -> StoredCall | None:
        """A call id already processed (its borrower, path and what is stored of its audio), else None."""
        row = self._db.execute(_CALL_SQL + " AND c.call_id=?", (model, call_id)).fetchone()
        return None if row is None else self._stored_call(row)

    def _stored_call(self, row: tuple) -> StoredCall:
        """A row of :data:`_CALL_SQL` as a StoredCall (every sealed column opened)."""
        e = row[3:]
        return StoredCall(row[0], row[1], row[2], self._embedding(e), float(e[6]), float(e[7]), e[3], e[0])

    def has(self, content_hash: str, channel: int, model: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM embeddings WHERE content_hash=? AND channel=? AND model=?",
                (content_hash, channel, model),
            ).fetchone()
            is not None
        )

    def count(self, model: str) -> int:
        """Embeddings with a vector for ``model``."""
        return int(
            self._db.execute("SELECT COUNT(*) FROM embeddings WHERE model=? AND status='ok'", (model,)).fetchone()[0]
        )

    def linked_count(self, model: str) -> int:
        """Calls (ids) linked to a borrower for ``model``."""
        return int(self._db.execute("SELECT COUNT(*) FROM calls WHERE model=?", (model,)).fetchone()[0])

    def shared_audio(self, model: str) -> set[str]:
        """Content hashes of audio linked to two or more borrowers for ``model`` (one recording, several people)."""
        rows = self._db.execute(
            "SELECT content_hash FROM calls WHERE model=? GROUP BY content_hash HAVING COUNT(DISTINCT borrower_id) > 1",
            (model,),
        )
        return {str(r[0]) for r in rows}

    def cohort(
        self, model: str, band: str, limit: int, per_borrower: int = 3
    ) -> tuple[np.ndarray, list[str], list[set[str]]]:
        """Up to ``limit`` call vectors of one band for a cohort, chosen by hash (deterministic, unbiased),
        at most ``per_borrower`` of any one borrower's calls (a cohort measures many people, not a
        few people's many calls; unlinked calls from ``cohort build`` each count as their own).

        Returns:
            vectors (n, d) float32, their content hashes, and the borrowers each was linked to.
        """
        col = "vector" if band == "wide" else "CASE WHEN band='narrow' THEN vector ELSE narrow_vector END"
        name = "'vector'" if band == "wide" else "CASE WHEN band='narrow' THEN 'vector' ELSE 'narrow_vector' END"
        owners: dict[str, set[str]] = {}
        for h, b in self._db.execute("SELECT content_hash, borrower_id FROM calls WHERE model=?", (model,)):
            owners.setdefault(h, set()).add(b)
        kept: list[tuple] = []
        taken: Counter[str] = Counter()
        rows = self._db.execute(
            f"SELECT content_hash, dimension, {col}, {name}, channel FROM embeddings WHERE model=? AND status='ok'"
            f" AND {col} IS NOT NULL" + (" AND band='wide'" if band == "wide" else "") + " ORDER BY content_hash",
            (model,),
        )
        for row in rows:
            who = owners.get(row[0], set())
            if any(taken[b] >= per_borrower for b in who):
                continue
            kept.append(row)
            taken.update(who)
            if len(kept) >= limit:
                break
        if not kept:
            return np.zeros((0, 0), np.float32), [], []
        vectors = np.stack([self._cohort_vector(r, band, model) for r in kept])
        return vectors, [r[0] for r in kept], [owners.get(r[0], set()) for r in kept]

    def _cohort_vector(self, row: tuple, band: str, model: str) -> np.ndarray:
        content_hash, dimension, blob, column, channel = row
        ctx = embedding_context(column, content_hash, channel, model, dimension)
        return from_blob(self.cipher.open(blob, ctx, f"{WHAT} {self.path}: call {content_hash[:12]}"), dimension)

    def calls(self, model: str, borrower_id: str | None = None) -> Iterator[StoredCall]:
        """Every linked call for ``model`` (optionally one borrower's), streamed in call-id order."""
        sql, args = _CALL_SQL, [model]
        if borrower_id is not None:
            sql, args = sql + " AND c.borrower_id=?", [model, borrower_id]
        for row in self._db.execute(sql + " ORDER BY c.call_id", args):
            yield self._stored_call(row)

    # -- reviews -------------------------------------------------------------------------------
    def link_of(self, call_id: str) -> tuple[str, str] | None:
        """(borrower, content hash) the call id was last linked to, any model; None when never."""
        row = self._db.execute(
            "SELECT borrower_id, content_hash FROM calls WHERE call_id=? ORDER BY seen_at DESC LIMIT 1", (call_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def put_reviews(self, reviews: list[Review]) -> None:
        """Store reviews (one transaction), each replacing an earlier review of its call."""
        rows = [
            (
                r.call_id,
                r.borrower_id,
                r.content_hash,
                *(
                    self.cipher.seal(getattr(r, c).encode("utf-8"), review_context(c, *_review_key(r)))
                    for c in REVIEW_SEALED
                ),
                r.reason,
                r.reviewer,
                r.reviewed_at,
            )
            for r in reviews
        ]
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO reviews VALUES (?,?,?,?,?,?,?,?)", rows)
        except sqlite3.Error as e:
            raise StoreError(f"{WHAT} {self.directory}: {e}") from None

    def review(self, call_id: str) -> Review | None:
        """The review of a call id, or None."""
        row = self._db.execute("SELECT * FROM reviews WHERE call_id=?", (call_id,)).fetchone()
        return None if row is None else self._review(row)

    def reviews(self, borrower_id: str | None = None) -> Iterator[Review]:
        """Every review (optionally one borrower's), in call-id order."""
        sql, args = "SELECT * FROM reviews", []
        if borrower_id is not None:
            sql, args = sql + " WHERE borrower_id=?", [borrower_id]
        for row in self._db.execute(sql + " ORDER BY call_id", args).fetchall():
            yield self._review(row)

    def _review(self, row: tuple) -> Review:
        call_id, borrower_id, content_hash, label, note, reason, reviewer, reviewed_at = row
        opened = [
            self.cipher.open(
                blob,
                review_context(col, call_id, borrower_id, content_hash),
                f"{WHAT} {self.path}: review of call {call_id!r} {col}",
            ).decode("utf-8")
            for col, blob in zip(REVIEW_SEALED, (label, note), strict=True)
        ]
        return Review(call_id, borrower_id, content_hash, opened[0], opened[1], reason, reviewer, reviewed_at)

    def erase_reviews(self, borrower_id: str, call_ids: list[str], content_hashes: set[str]) -> int:
        """Delete the reviews of ``borrower_id``, of ``call_ids`` and of audio ``content_hashes``
        (overwritten on disk, WAL emptied). Returns the number removed."""
        try:
            with self._db as db:
                n = db.execute("DELETE FROM reviews WHERE borrower_id=?", (borrower_id,)).rowcount
                for column, values in (("call_id", sorted(call_ids)), ("content_hash", sorted(content_hashes))):
                    for i in range(0, len(values), 500):
                        chunk = values[i : i + 500]
                        marks = ",".join("?" * len(chunk))
                        n += db.execute(f"DELETE FROM reviews WHERE {column} IN ({marks})", chunk).rowcount
        except sqlite3.Error as e:
            raise StoreError(f"{WHAT} {self.directory}: {e}") from None
        self.checkpoint()
        return int(n)

    # -- erasure, retention, key rotation ------------------------------------------------------
    def borrower_calls(self, borrower_id: str) -> tuple[list[str], set[str]]:
        """(call ids, content hashes) of every call linked to ``borrower_id``, any model."""
        rows = self._db.execute(
            "SELECT call_id, content_hash FROM calls WHERE borrower_id=? ORDER BY call_id", (borrower_id,)
        ).fetchall()
        return [str(r[0]) for r in rows], {str(r[1]) for r in rows}

    def erase_borrower(self, borrower_id: str, content_hashes: set[str]) -> dict[str, int]:
        """Delete every call linked to ``borrower_id`` and the embeddings of that audio, plus the
        embeddings of ``content_hashes`` (e.g. the borrower's enrollment recordings embedded as calls
        or cohort entries); overwritten on disk, WAL emptied.

        Returns:
            ``{"calls": links removed, "embeddings": embeddings removed, "shared_calls": other borrowers'
            calls of the same audio (kept; their embedding is gone, so the next batch embeds them again)}``.
        """
        try:
            with self._db as db:
                keys = db.execute(
                    "SELECT DISTINCT content_hash, channel, model FROM calls WHERE borrower_id=?", (borrower_id,)
                ).fetchall()
                hashes = sorted({str(k[0]) for k in keys} | set(content_hashes))
                links = db.execute("DELETE FROM calls WHERE borrower_id=?", (borrower_id,)).rowcount
                db.execute("DELETE FROM replay_checks WHERE borrower_id=?", (borrower_id,))
                removed = shared = 0
                for h, channel, model in keys:
                    removed += db.execute(
                        "DELETE FROM embeddings WHERE content_hash=? AND channel=? AND model=?", (h, channel, model)
                    ).rowcount
                for i in range(0, len(hashes), 500):
                    chunk = hashes[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += db.execute(f"DELETE FROM embeddings WHERE content_hash IN ({marks})", chunk).rowcount
                    db.execute(f"DELETE FROM spoof_scores WHERE content_hash IN ({marks})", chunk)
                    db.execute(f"DELETE FROM replay_checks WHERE content_hash IN ({marks})", chunk)
                    shared += db.execute(
                        f"SELECT COUNT(*) FROM calls WHERE content_hash IN ({marks})", chunk
                    ).fetchone()[0]
        except sqlite3.Error as e:
            raise StoreError(f"{WHAT} {self.directory}: {e}") from None
        self.checkpoint()
        return {"calls": int(links), "embeddings": int(removed), "shared_calls": int(shared)}

    def purge(self, cutoff: str) -> dict[str, int]:
        """Delete embeddings created before ``cutoff`` (ISO 8601 UTC), every call link that is
        older or points to no embedding any more, and reviews recorded before it; overwritten on
        disk, WAL emptied.

        Returns:
            ``{"embeddings": n, "calls": n, "reviews": n}`` removed.
        """
        try:
            with self._db as db:
                emb = db.execute("DELETE FROM embeddings WHERE created_at < ?", (cutoff,)).rowcount
                links = db.execute(
                    "DELETE FROM calls WHERE seen_at < ? OR NOT EXISTS (SELECT 1 FROM embeddings e WHERE"
                    " e.content_hash=calls.content_hash AND e.channel=calls.channel AND e.model=calls.model)",
                    (cutoff,),
                ).rowcount
                reviews = db.execute("DELETE FROM reviews WHERE reviewed_at < ?", (cutoff,)).rowcount
                for table in ("spoof_scores", "replay_checks"):
                    db.execute(
                        f"DELETE FROM {table} WHERE created_at < ? OR NOT EXISTS (SELECT 1 FROM embeddings e WHERE"
                        f" e.content_hash={table}.content_hash AND e.channel={table}.channel)",
                        (cutoff,),
                    )
        except sqlite3.Error as e:
            raise StoreError(f"{WHAT} {self.directory}: {e}") from None
        self.checkpoint()
        return {"embeddings": int(emb), "calls": int(links), "reviews": int(reviews)}

    def _sealed_rows(self, after: int, limit: int) -> list[tuple]:
        return _sealed_rows(self._db, after, limit)

    def reseal(self, new: Cipher, chunk: int = 500) -> int:
        """Re-encrypt every sealed column and the key check under ``new`` (key rotation), committing
        every ``chunk`` rows (each blob names its key, so a store rotated halfway stays readable with
        both keys, and a second run finishes it). Returns the number of blobs re-encrypted."""
        n, after = 0, 0
        try:
            while rows := self._sealed_rows(after, chunk):
                with self._db as db:
                    n += _reseal_rows(db, rows, self.cipher, new, self.path)
                after = rows[-1][0]
            with self._db as db:
                n += _reseal_reviews(db, self.cipher, new, self.path)
                db.execute("UPDATE meta SET value=? WHERE key='key_check'", (storage.seal_check(new, DB_NAME),))
        except sqlite3.Error as e:
            raise StoreError(f"{WHAT} {self.directory}: {e}") from None
        self.cipher = new
        self.checkpoint()
        return n

    def verify_all(self, chunk: int = 500) -> int:
        """Open every sealed blob (StoreError on the first that fails); returns how many were checked."""
        n, after = 0, 0
        while rows := self._sealed_rows(after, chunk):
            for _rowid, h, channel, model, dim, *blobs in rows:
                for col, blob in zip(SEALED, blobs, strict=True):
                    if blob is not None:
                        self.cipher.open(blob, embedding_context(col, h, channel, model, dim), f"call {h[:12]} {col}")
                        n += 1
            after = rows[-1][0]
        return n + sum(1 for _ in self.reviews()) * len(REVIEW_SEALED)

    def _embedding(self, row: tuple) -> CallEmbedding | None:
        """A stored ``embeddings`` row as a CallEmbedding (None when it had too little speech); every
        sealed column is opened (StoreError when one fails authentication)."""
        if row[3] != "ok":
            return None
        content_hash, channel, model, dimension = row[0], row[1], row[2], row[5]
        what = f"{WHAT} {self.path}: call {content_hash[:12]}"
        opened = [
            None
            if blob is None
            else self.cipher.open(
                blob, embedding_context(col, content_hash, channel, model, dimension), f"{what} {col}"
            )
            for col, blob in zip(SEALED, row[8:13], strict=True)
        ]
        try:
            return _embedding(row, *opened)
        except (ValueError, TypeError) as e:
            raise StoreError(f"{what}: damaged ({e})") from None


def _sealed_rows(db: sqlite3.Connection, after: int, limit: int) -> list[tuple]:
    """Up to ``limit`` embeddings rows after ``rowid``: (rowid, hash, channel, model, dimension, *sealed)."""
    return db.execute(
        "SELECT rowid, content_hash, channel, model, dimension, " + ", ".join(SEALED) + " FROM embeddings"
        " WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, limit),
    ).fetchall()


def _reseal_rows(db: sqlite3.Connection, rows: list[tuple], old: Cipher, new: Cipher, path: Path) -> int:
    """Open the sealed columns of ``rows`` with ``old``, seal them with ``new``; returns the blobs done."""
    n = 0
    for rowid, h, channel, model, dim, *blobs in rows:
        out = []
        for col, blob in zip(SEALED, blobs, strict=True):
            ctx = embedding_context(col, h, channel, model, dim)
            data = blob.encode("utf-8") if isinstance(blob, str) else blob  # schema 2 kept regions as text
            out.append(
                None if data is None else new.seal(old.open(data, ctx, f"{WHAT} {path}: call {h[:12]} {col}"), ctx)
            )
            n += data is not None
        db.execute("UPDATE embeddings SET " + ", ".join(f"{c}=?" for c in SEALED) + " WHERE rowid=?", (*out, rowid))
    return n


def _review_key(r: Review) -> tuple[str, str, str]:
    return r.call_id, r.borrower_id, r.content_hash


def _reseal_reviews(db: sqlite3.Connection, old: Cipher, new: Cipher, path: Path) -> int:
    """Open the sealed review columns with ``old``, seal them with ``new``; returns the blobs done."""
    n = 0
    cols = ", ".join(REVIEW_SEALED)
    for rowid, call_id, borrower_id, content_hash, *blobs in db.execute(
        f"SELECT rowid, call_id, borrower_id, content_hash, {cols} FROM reviews"
    ).fetchall():
        out = []
        for col, blob in zip(REVIEW_SEALED, blobs, strict=True):
            ctx = review_context(col, call_id, borrower_id, content_hash)
            out.append(new.seal(old.open(blob, ctx, f"{WHAT} {path}: review of call {call_id!r} {col}"), ctx))
            n += 1
        db.execute(f"UPDATE reviews SET {', '.join(f'{c}=?' for c in REVIEW_SEALED)} WHERE rowid=?", (*out, rowid))
    return n


def migrate(directory: str | Path, cipher: Cipher) -> str:
    """Bring the call store in ``directory`` to this schema and to ``cipher``'s encryption, in place.

    Schema 2 (plaintext vectors, regions as text) has every sealed column sealed under ``cipher`` in
    one transaction; the file is then rewritten (VACUUM) and the WAL truncated, so no plaintext vector
    stays in it. An unencrypted schema-3 store is encrypted the same way.

    Returns:
        What was done ("" when there is no store; "up to date" when nothing was needed).

    Raises:
        StoreError: an encrypted store and ``cipher`` plaintext, a schema it cannot migrate, or damage.
    """
    path = Path(directory) / DB_NAME
    if not path.exists():
        return ""
    try:
        db = storage.connect(path, 60)
    except sqlite3.Error as e:
        raise StoreError(f"{WHAT} {path} cannot be opened: {e}") from None
    try:
        version = storage.stored_version(db)
        mode = db.execute("SELECT value FROM meta WHERE key='encryption'").fetchone() if version else None
        current = "none" if mode is None else str(mode[0])
        if version not in ("2", SCHEMA_VERSION):
            storage.check_version(version, SCHEMA_VERSION, path, WHAT)
            raise StoreError(
                f"{WHAT} {path} has schema {version!r}, which this voicecheck cannot migrate; move the file aside "
                "(calls are embedded again on the next batch)"
            )
        if current != "none" and not cipher.encrypted:
            raise StoreError(f"{WHAT} {path} is encrypted; voicecheck never turns an encrypted store into plaintext")
        if version == SCHEMA_VERSION and current == cipher.mode:
            if cipher.encrypted:
                storage.check_encryption(db, cipher, path, WHAT, DB_NAME)
            return "up to date"
        n, after = 0, 0
        with db:
            while rows := _sealed_rows(db, after, 500):
                n += _reseal_rows(db, rows, Cipher(None), cipher, path)
                after = rows[-1][0]
            if db.execute("SELECT 1 FROM sqlite_master WHERE name='reviews'").fetchone():
                n += _reseal_reviews(db, Cipher(None), cipher, path)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('encryption', ?)", (cipher.mode,))
            db.execute("DELETE FROM meta WHERE key='key_check'")
            if cipher.encrypted:
                db.execute("INSERT INTO meta VALUES ('key_check', ?)", (storage.seal_check(cipher, DB_NAME),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        db.execute("VACUUM")
        storage.checkpoint(db, path)
    except sqlite3.Error as e:
        raise StoreError(f"{WHAT} {path}: migration failed, nothing changed: {e}") from None
    finally:
        db.close()
    done = "encrypted" if cipher.encrypted else "kept unencrypted"
    return f"schema {version} -> {SCHEMA_VERSION}, {n} blob(s) {done}"


def _embedding(
    row: tuple,
    vector: bytes | None,
    narrow: bytes | None,
    windows: bytes | None,
    times: bytes | None,
    regions: bytes | None,
) -> CallEmbedding | None:
    (
        content_hash,
        channel,
        model,
        status,
        band,
        dimension,
        speech,
        duration,
        _vector,
        _narrow,
        _windows,
        _times,
        _regions,
        channels,
        _created,
    ) = row
    if status != "ok":
        return None
    if vector is None or windows is None or times is None or regions is None:
        raise ValueError("an embedding row without its vector, windows or times")
    return CallEmbedding(
        content_hash=content_hash,
        model=model,
        band=band,
        channel=channel,
        vector=from_blob(vector, dimension),
        narrow_vector=None if narrow is None else from_blob(narrow, dimension),
        windows=np.frombuffer(windows, "<f2").astype(np.float32).reshape(-1, dimension),
        window_times_s=np.frombuffer(times, "<f4").astype(np.float64).reshape(-1, 2),
        speech_seconds=speech,
        duration_s=duration,
        regions=tuple(SpeechRegion(a, b) for a, b in json.loads(regions.decode("utf-8"))),
        channels=channels,
    )
