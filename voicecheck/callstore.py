"""The call-embedding store: every processed call's customer embedding, keyed by audio content.

SQLite at ``<embeddings>/calls.sqlite``. The same audio (sha256 of the file, channel, model) is never
embedded twice; ``rescore`` and the cross-call analyses read vectors from here without decoding audio.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .enrollment import from_blob, now, to_blob
from .errors import StoreError
from .types import CallEmbedding, SpeechRegion

DB_NAME = "calls.sqlite"
SCHEMA_VERSION = "2"

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
    regions TEXT NOT NULL,
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
CREATE INDEX IF NOT EXISTS calls_borrower ON calls (model, borrower_id);
CREATE INDEX IF NOT EXISTS calls_content ON calls (content_hash, channel, model);
"""


@dataclass(frozen=True)
class StoredCall:
    """A call as the store knows it: ids plus its embedding (None when it had too little speech)."""

    call_id: str
    borrower_id: str
    audio: str
    embedding: CallEmbedding | None
    speech_seconds: float


class CallStore:
    """Call embeddings in ``<directory>/calls.sqlite``; one writer process at a time."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.directory / DB_NAME, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            # a commit survives the process being killed; against power loss the batch calls sync()
            # once its embedding phase ends (an fsync per call cost ~4% of a one-worker batch)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            with self._db:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            version = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"call-embedding store {self.directory} cannot be opened: {e}") from None
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"call-embedding store {self.directory / DB_NAME} has schema {version}, this voicecheck uses "
                f"{SCHEMA_VERSION}; move the file aside (calls are embedded again on the next batch)"
            )

    def close(self) -> None:
        self._db.close()

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
                "[]",
                0,
                now(),
            )
        else:
            row = (
                content_hash,
                channel,
                model,
                "ok",
                emb.band,
                int(emb.vector.shape[0]),
                float(emb.speech_seconds),
                float(emb.duration_s),
                to_blob(emb.vector),
                None if emb.narrow_vector is None else to_blob(emb.narrow_vector),
                np.asarray(emb.windows, "<f2").tobytes(),
                np.asarray(emb.window_times_s, "<f4").tobytes(),
                json.dumps([[r.start_s, r.end_s] for r in emb.regions]),
                emb.channels,
                now(),
            )
        try:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        except sqlite3.Error as e:
            raise StoreError(f"call-embedding store {self.directory}: {e}") from None

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

    def lookup(self, content_hash: str, channel: int, model: str) -> tuple[str, CallEmbedding | None, float] | None:
        """(status, embedding or None, speech seconds) for this audio, or None if never processed."""
        row = self._db.execute(
            "SELECT * FROM embeddings WHERE content_hash=? AND channel=? AND model=?", (content_hash, channel, model)
        ).fetchone()
        if row is None:
            return None
        return row[3], _embedding(row), float(row[6])

    def linked(self, call_id: str, model: str) -> tuple[str, CallEmbedding | None, float] | None:
        """(status, embedding or None, speech seconds) of a call id already processed, else None."""
        row = self._db.execute(
            "SELECT content_hash, channel FROM calls WHERE call_id=? AND model=?", (call_id, model)
        ).fetchone()
        return None if row is None else self.lookup(row[0], row[1], model)

    def duration_s(self, call_id: str, model: str) -> float | None:
        """Length of a linked call's recording (known also when it had too little speech), else None."""
        row = self._db.execute(
            "SELECT e.duration_s FROM calls c JOIN embeddings e ON e.content_hash=c.content_hash"
            " AND e.channel=c.channel AND e.model=c.model WHERE c.call_id=? AND c.model=?",
            (call_id, model),
        ).fetchone()
        return None if row is None else float(row[0])

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

    def cohort(self, model: str, band: str, limit: int) -> tuple[np.ndarray, list[str], list[set[str]]]:
        """Up to ``limit`` call vectors of one band for a cohort, chosen by hash (deterministic, unbiased).

        Returns:
            vectors (n, d) float32, their content hashes, and the borrowers each was linked to.
        """
        col = "vector" if band == "wide" else "CASE WHEN band='narrow' THEN vector ELSE narrow_vector END"
        rows = self._db.execute(
            f"SELECT content_hash, dimension, {col} FROM embeddings WHERE model=? AND status='ok'"
            f" AND {col} IS NOT NULL"
            + (" AND band='wide'" if band == "wide" else "")
            + " ORDER BY content_hash LIMIT ?",
            (model, limit),
        ).fetchall()
        if not rows:
            return np.zeros((0, 0), np.float32), [], []
        hashes = [r[0] for r in rows]
        owners: dict[str, set[str]] = {h: set() for h in hashes}
        for h, b in self._db.execute("SELECT content_hash, borrower_id FROM calls WHERE model=?", (model,)):
            if h in owners:
                owners[h].add(b)
        vectors = np.stack([from_blob(r[2], r[1]) for r in rows])
        return vectors, hashes, [owners[h] for h in hashes]

    def calls(self, model: str, borrower_id: str | None = None) -> Iterator[StoredCall]:
        """Every linked call for ``model`` (optionally one borrower's), streamed in call-id order."""
        sql = (
            "SELECT c.call_id, c.borrower_id, c.audio, e.* FROM calls c JOIN embeddings e"
            " ON e.content_hash=c.content_hash AND e.channel=c.channel AND e.model=c.model WHERE c.model=?"
        )
        args: tuple[str, ...] = (model,)
        if borrower_id is not None:
            sql += " AND c.borrower_id=?"
            args = (model, borrower_id)
        for row in self._db.execute(sql + " ORDER BY c.call_id", args):
            yield StoredCall(row[0], row[1], row[2], _embedding(row[3:]), float(row[3 + 6]))


def _embedding(row: tuple) -> CallEmbedding | None:
    (
        content_hash,
        channel,
        model,
        status,
        band,
        dimension,
        speech,
        duration,
        vector,
        narrow,
        windows,
        times,
        regions,
        channels,
        _created,
    ) = row
    if status != "ok":
        return None
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
        regions=tuple(SpeechRegion(a, b) for a, b in json.loads(regions)),
        channels=channels,
    )
