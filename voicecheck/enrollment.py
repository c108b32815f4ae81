"""The voiceprint store: SQLite in the store directory (default ./enrollment).

A voiceprint is the speech-weighted mean of its recordings' embeddings, kept per band ("wide" and
"narrow") so that a call is always compared with an enrollment embedded in the call's own band.
Collectors' voiceprints (kind "agent") and the watchlist of known proxy-agent voices live here too.

Every vector is sealed with the store's cipher (:mod:`voicecheck.crypto`: AES-256-GCM, bound to its
row), every recording records its source and a consent reference, every watchlist entry where its
voice came from (calls, recordings, an imported file), so that erasing a person finds it all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import storage
from .crypto import Cipher, default_cipher
from .errors import ModelMismatchError, NotEnrolledError, StoreError, UsageError
from .types import Voiceprint, check_id

DB_NAME = "voiceprints.sqlite"
SCHEMA_VERSION = "2"
WHAT = "voiceprint store"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    model TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    audio TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    band TEXT NOT NULL,
    speech_seconds REAL NOT NULL,
    wide BLOB,
    narrow BLOB NOT NULL,
    added_at TEXT NOT NULL,
    consent TEXT NOT NULL DEFAULT '',
    forced TEXT NOT NULL DEFAULT '',
    UNIQUE (kind, owner_id, model, content_hash)
);
CREATE INDEX IF NOT EXISTS recordings_owner ON recordings (kind, owner_id, model);
CREATE INDEX IF NOT EXISTS recordings_content ON recordings (content_hash);
CREATE TABLE IF NOT EXISTS watchlist (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    added_on TEXT NOT NULL,
    model TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (label, model)
);
CREATE TABLE IF NOT EXISTS watchlist_sources (
    label TEXT NOT NULL,
    model TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    borrower_id TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL DEFAULT '',
    audio TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS watchlist_sources_label ON watchlist_sources (label, model);
"""
"""``recordings.audio`` is the recording's source as given (path or URI); ``consent`` the consent
reference; ``forced`` why a refused recording was added anyway ('' when it was not). One
``watchlist_sources`` row per call or recording an entry was made from (provenance, for erasure)."""


def now() -> str:
    """UTC time as ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes, dimension: int) -> np.ndarray:
    v = np.frombuffer(blob, dtype="<f4")
    if v.shape != (dimension,):
        raise StoreError(f"stored vector has {v.size} values, expected {dimension}: the store is damaged")
    if not np.all(np.isfinite(v)):
        raise StoreError("stored vector holds a non-finite value: the store is damaged")
    return v.copy()


def recording_context(column: str, kind: str, owner_id: str, model: str, content_hash: str, dimension: int) -> tuple:
    """What a recording's vector is bound to (the associated data of its seal)."""
    return ("recordings", column, kind, owner_id, model, content_hash, int(dimension))


def watch_context(label: str, model: str, dimension: int) -> tuple:
    """What a watchlist vector is bound to."""
    return ("watchlist", "vector", label, model, int(dimension))


@dataclass(frozen=True)
class WatchEntry:
    """A known proxy-agent voice."""

    label: str
    source: str
    added_on: str
    model: str
    vector: np.ndarray


@dataclass(frozen=True)
class WatchSource:
    """Where a watchlist voice came from: a stored call (call id, borrower) or a recording (audio)."""

    call_id: str = ""
    borrower_id: str = ""
    content_hash: str = ""
    audio: str = ""


class VoiceprintStore:
    """Voiceprints, collectors and the watchlist in ``<directory>/voiceprints.sqlite``.

    Args:
        directory: the store folder (created 0700).
        cipher: seals the vectors; None takes the environment's key (:func:`voicecheck.crypto.default_cipher`).

    Raises:
        StoreError: unreadable, of another schema (``voicecheck store migrate`` upgrades an older one),
            of the other encryption mode, or the key does not open it.
        UsageError: no key (the message says to run ``voicecheck key init``).
    """

    def __init__(self, directory: str | Path, cipher: Cipher | None = None) -> None:
        self.directory = Path(directory)
        self.cipher = cipher if cipher is not None else default_cipher()
        self.cipher.check_folder(self.directory, "store")
        self.path = self.directory / DB_NAME
        try:
            self._db = storage.connect(self.path, 30)
            storage.check_version(storage.stored_version(self._db), SCHEMA_VERSION, self.path, WHAT)
            self._db.executescript(_SCHEMA)
            storage.init_meta(self._db, self.cipher, SCHEMA_VERSION, DB_NAME)
            storage.check_encryption(self._db, self.cipher, self.path, WHAT, DB_NAME)
        except (OSError, sqlite3.Error, UsageError) as e:
            raise StoreError(f"voiceprint store {self.directory} cannot be opened: {e}") from None
        except BaseException:
            if hasattr(self, "_db"):
                self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:
                yield self._db
        except sqlite3.Error as e:
            raise StoreError(f"voiceprint store {self.directory}: {e}") from None

    def checkpoint(self) -> bool:
        """Empty the write-ahead log into the database (see :func:`voicecheck.storage.checkpoint`)."""
        return storage.checkpoint(self._db, self.path)

    def _seal(self, vector: np.ndarray, context: tuple) -> bytes:
        return self.cipher.seal(to_blob(vector), context)

    def _open(self, blob: bytes, context: tuple, dimension: int, what: str) -> np.ndarray:
        return from_blob(self.cipher.open(blob, context, f"{WHAT} {self.path}: {what}"), dimension)

    # -- voiceprints -------------------------------------------------------------------------
    def add_recording(
        self,
        owner_id: str,
        model: str,
        audio: str,
        content_hash: str,
        band: str,
        speech_seconds: float,
        vectors: dict[str, np.ndarray],
        replace: bool = False,
        kind: str = "borrower",
        *,
        consent: str,
        forced: str = "",
    ) -> bool:
        """Add one recording's embeddings to a voiceprint.

        Args:
            audio: the recording's source as given (path or URI).
            vectors: unit-norm embeddings by band; "narrow" is required, "wide" only for wideband audio.
            replace: forget the owner's earlier recordings for this model first.
            consent: the consent reference for this recording (required: biometric data is processed
                only with consent).
            forced: why a recording the checks refused is added anyway ('' when none was refused).

        Returns:
            False when this exact audio was already part of the voiceprint (nothing added).
        """
        owner_id = check_id(owner_id, f"{kind} id")
        if not consent.strip():
            raise UsageError(f"{kind} {owner_id}: a consent reference is required for every enrollment recording")
        dimension = int(len(vectors["narrow"]))
        with self._tx() as db:
            other = db.execute(
                "SELECT model FROM recordings WHERE kind=? AND owner_id=? AND model<>? LIMIT 1", (kind, owner_id, model)
            ).fetchone()
            if other and not replace:
                raise ModelMismatchError(
                    f"{kind} {owner_id} is enrolled with model {other[0]}, not {model}; "
                    "enroll with the same model, or pass --replace to start over"
                )
            if replace:
                db.execute("DELETE FROM recordings WHERE kind=? AND owner_id=?", (kind, owner_id))
            wide = vectors.get("wide")

            def ctx(col: str) -> tuple:
                return recording_context(col, kind, owner_id, model, content_hash, dimension)

            cur = db.execute(
                "INSERT OR IGNORE INTO recordings (kind, owner_id, model, dimension, audio, content_hash, band,"
                " speech_seconds, wide, narrow, added_at, consent, forced) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    kind,
                    owner_id,
                    model,
                    dimension,
                    audio,
                    content_hash,
                    band,
                    float(speech_seconds),
                    None if wide is None else self._seal(wide, ctx("wide")),
                    self._seal(vectors["narrow"], ctx("narrow")),
                    now(),
                    consent.strip(),
                    forced,
                ),
            )
            return cur.rowcount == 1

    def get(self, owner_id: str, model: str, kind: str = "borrower") -> Voiceprint:
        """The voiceprint of ``owner_id`` for ``model``.

        Raises:
            NotEnrolledError: no recordings for this owner.
            ModelMismatchError: enrolled, but only with another model.
            StoreError: a vector that fails authentication or is damaged.
        """
        owner_id = check_id(owner_id, f"{kind} id")
        rows = self._db.execute(
            "SELECT model, dimension, band, speech_seconds, wide, narrow, added_at, content_hash FROM recordings"
            " WHERE kind=? AND owner_id=? ORDER BY id",
            (kind, owner_id),
        ).fetchall()
        if not rows:
            raise NotEnrolledError(f"{kind} {owner_id!r} has no voiceprint in {self.directory}")
        mine = [r for r in rows if r[0] == model]
        if not mine:
            raise ModelMismatchError(
                f"{kind} {owner_id!r} is enrolled with model {rows[0][0]}, not {model}: vectors of different"
                " models cannot be compared; re-enroll with this model or check with that one"
            )
        dimension = mine[0][1]
        vectors: dict[str, np.ndarray] = {}
        for band, col in (("wide", 4), ("narrow", 5)):
            parts = [
                (
                    r[3],
                    self._open(
                        r[col],
                        recording_context(band, kind, owner_id, model, r[7], dimension),
                        dimension,
                        f"{kind} {owner_id} {band} vector",
                    ),
                )
                for r in mine
                if r[col] is not None
            ]
            if parts and (band == "narrow" or len(parts) == len(mine)):
                total = sum(w * v for w, v in parts)
                vectors[band] = (total / np.linalg.norm(total)).astype(np.float32)
        return Voiceprint(
            owner_id=owner_id,
            model=model,
            dimension=dimension,
            vectors=vectors,
            recording_count=len(mine),
            speech_seconds=float(sum(r[3] for r in mine)),
            created_at=mine[0][6],
            updated_at=mine[-1][6],
            kind=kind,
        )

    def recording_vectors(
        self, owner_id: str, model: str, band: str = "narrow", kind: str = "borrower"
    ) -> tuple[list[str], np.ndarray]:
        """Each recording's own unit-norm embedding in ``band`` (not their mean): the recordings'
        content hashes and the vectors, shape (n, dimension); n is 0 when there are none.

        Raises:
            StoreError: a vector that fails authentication or is damaged.
        """
        if band not in ("wide", "narrow"):
            raise UsageError(f"band must be 'wide' or 'narrow', got {band!r}")
        owner_id = check_id(owner_id, f"{kind} id")
        rows = self._db.execute(
            f"SELECT dimension, content_hash, {band} FROM recordings WHERE kind=? AND owner_id=? AND model=?"
            f" AND {band} IS NOT NULL ORDER BY id",
            (kind, owner_id, model),
        ).fetchall()
        hashes = [str(r[1]) for r in rows]
        what = f"{kind} {owner_id} {band} recording vector"
        vectors = [
            self._open(blob, recording_context(band, kind, owner_id, model, h, dim), dim, what) for dim, h, blob in rows
        ]
        return hashes, (np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32))

    def summaries(self, kind: str = "borrower", model: str | None = None) -> list[dict[str, object]]:
        """One row per (owner, model): counts and times, no vectors."""
        sql = (
            "SELECT owner_id, model, dimension, COUNT(*), SUM(speech_seconds), MIN(added_at), MAX(added_at)"
            " FROM recordings WHERE kind=?" + (" AND model=?" if model else "") + " GROUP BY owner_id, model"
            " ORDER BY owner_id"
        )
        args = (kind, model) if model else (kind,)
        keys = ("id", "model", "dimension", "recordings", "speech_seconds", "created_at", "updated_at")
        return [dict(zip(keys, row, strict=True)) for row in self._db.execute(sql, args)]

    def recordings(self, owner_id: str, kind: str = "borrower") -> list[dict[str, object]]:
        """The recordings behind a voiceprint (source, hash, speech, consent), no vectors."""
        keys = ("audio", "content_hash", "band", "speech_seconds", "model", "added_at", "consent", "forced")
        sql = f"SELECT {', '.join(keys)} FROM recordings WHERE kind=? AND owner_id=? ORDER BY id"
        return [dict(zip(keys, row, strict=True)) for row in self._db.execute(sql, (kind, owner_id))]

    def owners_of(self, content_hash: str) -> list[tuple[str, str]]:
        """(kind, owner id) of every voiceprint this exact recording is part of."""
        rows = self._db.execute(
            "SELECT DISTINCT kind, owner_id FROM recordings WHERE content_hash=? ORDER BY kind, owner_id",
            (content_hash,),
        )
        return [(str(k), str(o)) for k, o in rows]

    def remove(self, owner_id: str, kind: str = "borrower") -> int:
        """Delete an owner's voiceprint (overwritten on disk, WAL emptied); returns the recordings removed."""
        owner_id = check_id(owner_id, f"{kind} id")
        with self._tx() as db:
            n = db.execute("DELETE FROM recordings WHERE kind=? AND owner_id=?", (kind, owner_id)).rowcount
        self.checkpoint()
        return int(n)

    def all(self, model: str, kind: str) -> list[Voiceprint]:
        """Every voiceprint of a kind for a model."""
        ids = [r["id"] for r in self.summaries(kind, model)]
        return [self.get(str(i), model, kind) for i in ids]

    # -- watchlist ---------------------------------------------------------------------------
    def watch_add(
        self,
        label: str,
        source: str,
        vector: np.ndarray,
        model: str,
        added_on: str | None = None,
        provenance: list[WatchSource] | None = None,
    ) -> None:
        """Add (or replace) a watchlist voice under ``label`` for ``model``.

        Args:
            provenance: the calls and recordings the voice was made from (kept for erasure).
        """
        label = check_id(label, "watchlist label")
        if vector.ndim != 1 or not np.all(np.isfinite(vector)) or not 0.5 <= float(np.linalg.norm(vector)) <= 2.0:
            raise UsageError(f"watchlist entry {label}: not a unit embedding vector")
        dimension = int(len(vector))
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO watchlist (label, source, added_on, model, dimension, vector)"
                " VALUES (?,?,?,?,?,?)",
                (
                    label,
                    source,
                    added_on or now()[:10],
                    model,
                    dimension,
                    self._seal(vector, watch_context(label, model, dimension)),
                ),
            )
            db.execute("DELETE FROM watchlist_sources WHERE label=? AND model=?", (label, model))
            db.executemany(
                "INSERT INTO watchlist_sources VALUES (?,?,?,?,?,?)",
                [(label, model, p.call_id, p.borrower_id, p.content_hash, p.audio) for p in provenance or []],
            )

    def watch_list(self, model: str | None = None) -> list[WatchEntry]:
        sql = "SELECT label, source, added_on, model, dimension, vector FROM watchlist"
        rows = self._db.execute(
            sql + (" WHERE model=?" if model else "") + " ORDER BY label", (model,) if model else ()
        )
        return [
            WatchEntry(
                r[0], r[1], r[2], r[3], self._open(r[5], watch_context(r[0], r[3], r[4]), r[4], f"watchlist {r[0]}")
            )
            for r in rows
        ]

    def watch_sources(self, label: str) -> list[WatchSource]:
        """Where the watchlist voice ``label`` came from (every model)."""
        rows = self._db.execute(
            "SELECT call_id, borrower_id, content_hash, audio FROM watchlist_sources WHERE label=? ORDER BY rowid",
            (label,),
        )
        return [WatchSource(*r) for r in rows]

    def watch_remove(self, label: str) -> int:
        with self._tx() as db:
            db.execute("DELETE FROM watchlist_sources WHERE label=?", (label,))
            n = db.execute("DELETE FROM watchlist WHERE label=?", (label,)).rowcount
        self.checkpoint()
        return int(n)

    # -- erasure and key rotation -------------------------------------------------------------
    def erase_person(self, borrower_id: str, content_hashes: set[str]) -> dict[str, Any]:
        """Delete a borrower's voiceprint and every watchlist entry made from their calls or recordings.

        Args:
            content_hashes: content hashes of the borrower's calls (from the call store).

        Returns:
            ``{"recordings": n, "watchlist_entries": n, "watchlist_labels": [...], "enrollment_hashes": set}``;
            the enrollment hashes let the call store erase embeddings of the same audio.
        """
        with self._tx() as db:
            own = {
                str(h)
                for (h,) in db.execute(
                    "SELECT content_hash FROM recordings WHERE kind='borrower' AND owner_id=?", (borrower_id,)
                )
            }
            hashes = sorted(own | set(content_hashes))
            labels: set[tuple[str, str]] = set(
                db.execute("SELECT label, model FROM watchlist_sources WHERE borrower_id=?", (borrower_id,))
            )
            for chunk in _chunks(hashes):
                marks = ",".join("?" * len(chunk))
                labels |= set(
                    db.execute(f"SELECT label, model FROM watchlist_sources WHERE content_hash IN ({marks})", chunk)
                )
            removed = 0
            for label, model in sorted(labels):
                db.execute("DELETE FROM watchlist_sources WHERE label=? AND model=?", (label, model))
                removed += db.execute("DELETE FROM watchlist WHERE label=? AND model=?", (label, model)).rowcount
            n = db.execute("DELETE FROM recordings WHERE kind='borrower' AND owner_id=?", (borrower_id,)).rowcount
        self.checkpoint()
        return {
            "recordings": int(n),
            "watchlist_entries": int(removed),
            "watchlist_labels": sorted({label for label, _ in labels}),
            "enrollment_hashes": own,
        }

    def reseal(self, new: Cipher) -> int:
        """Re-encrypt every vector and the key check under ``new`` (key rotation), in one transaction.

        Returns:
            The number of blobs re-encrypted.
        """
        with self._tx() as db:
            n = _reseal(db, self.cipher, new, self.path)
        self.cipher = new
        self.checkpoint()
        return n

    def verify_all(self) -> int:
        """Open every sealed blob (StoreError on the first that fails); returns how many were checked."""
        n = 0
        for kind, owner, model, h, dim, wide, narrow in self._db.execute(
            "SELECT kind, owner_id, model, content_hash, dimension, wide, narrow FROM recordings"
        ).fetchall():
            for col, blob in (("wide", wide), ("narrow", narrow)):
                if blob is not None:
                    self._open(blob, recording_context(col, kind, owner, model, h, dim), dim, f"{kind} {owner} {col}")
                    n += 1
        n += len(self.watch_list())
        return n


def _reseal(db: sqlite3.Connection, old: Cipher, new: Cipher, path: Path) -> int:
    """Open every vector of the database with ``old`` and seal it with ``new`` (inside the caller's
    transaction), and write the key check and encryption mode of ``new``; returns the blobs resealed."""
    n = 0
    rows = db.execute("SELECT id, kind, owner_id, model, content_hash, dimension, wide, narrow FROM recordings")
    for rid, kind, owner, model, h, dim, wide, narrow in rows.fetchall():
        out = []
        for col, blob in (("wide", wide), ("narrow", narrow)):
            ctx = recording_context(col, kind, owner, model, h, dim)
            what = f"{WHAT} {path}: {kind} {owner} {col} vector"
            out.append(None if blob is None else new.seal(old.open(blob, ctx, what), ctx))
            n += blob is not None
        db.execute("UPDATE recordings SET wide=?, narrow=? WHERE id=?", (*out, rid))
    for wid, label, model, dim, vector in db.execute(
        "SELECT id, label, model, dimension, vector FROM watchlist"
    ).fetchall():
        ctx = watch_context(label, model, dim)
        sealed = new.seal(old.open(vector, ctx, f"{WHAT} {path}: watchlist {label}"), ctx)
        db.execute("UPDATE watchlist SET vector=? WHERE id=?", (sealed, wid))
        n += 1
    db.execute("INSERT OR REPLACE INTO meta VALUES ('encryption', ?)", (new.mode,))
    db.execute("DELETE FROM meta WHERE key='key_check'")
    if new.encrypted:
        db.execute("INSERT INTO meta VALUES ('key_check', ?)", (storage.seal_check(new, DB_NAME),))
    return n


def migrate(directory: str | Path, cipher: Cipher) -> str:
    """Bring the voiceprint store in ``directory`` to this schema and to ``cipher``'s encryption, in place.

    Schema 1 (plaintext vectors, no consent) gains the consent and provenance columns (recordings
    enrolled before get the consent reference "not recorded ..."); every vector is sealed under
    ``cipher``; the file is then rewritten (VACUUM) and the WAL truncated, so no plaintext vector stays
    in it. An unencrypted schema-2 store is encrypted the same way.

    Returns:
        What was done, one line ("" when there is no store; "up to date" when nothing was needed).

    Raises:
        StoreError: an encrypted store and ``cipher`` plaintext (voicecheck never decrypts a store to
            plaintext), a newer schema, or a damaged store.
    """
    path = Path(directory) / DB_NAME
    if not path.exists():
        return ""
    try:
        db = storage.connect(path, 30)
    except sqlite3.Error as e:
        raise StoreError(f"{WHAT} {path} cannot be opened: {e}") from None
    try:
        return _migrate(db, path, cipher)
    except sqlite3.Error as e:
        raise StoreError(f"{WHAT} {path}: migration failed, nothing changed: {e}") from None
    finally:
        db.close()


def _migrate(db: sqlite3.Connection, path: Path, cipher: Cipher) -> str:
    version = storage.stored_version(db)
    mode = db.execute("SELECT value FROM meta WHERE key='encryption'").fetchone() if version else None
    current = "none" if version == "1" or mode is None else str(mode[0])
    if version not in ("1", SCHEMA_VERSION):
        storage.check_version(version, SCHEMA_VERSION, path, WHAT)
        raise StoreError(f"{WHAT} {path} has schema {version!r}, which this voicecheck cannot migrate")
    if current != "none" and not cipher.encrypted:
        raise StoreError(f"{WHAT} {path} is encrypted; voicecheck never turns an encrypted store into plaintext")
    if version == SCHEMA_VERSION and current == cipher.mode:
        if cipher.encrypted:
            storage.check_encryption(db, cipher, path, WHAT, DB_NAME)
        return "up to date"
    columns = {r[1] for r in db.execute("PRAGMA table_info(recordings)")}
    with db:
        for col in ("consent", "forced"):
            if col not in columns:
                db.execute(f"ALTER TABLE recordings ADD COLUMN {col} TEXT NOT NULL DEFAULT ''")
        db.execute(
            "UPDATE recordings SET consent='not recorded (enrolled before voicecheck recorded consent)'"
            " WHERE consent=''"
        )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        n = _reseal(db, Cipher(None), cipher, path) if current == "none" else 0
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    db.execute("VACUUM")
    storage.checkpoint(db, path)
    return (
        f"schema {version} -> {SCHEMA_VERSION}, {n} vector(s) {'encrypted' if cipher.encrypted else 'kept unencrypted'}"
    )


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


WATCHLIST_FORMAT = "voicecheck-watchlist"


def export_watchlist(store: VoiceprintStore, path: str | Path, model: str) -> int:
    """Write the watchlist of ``model`` as JSON: labels, sources, dates and embeddings, no audio.

    The file is created 0600: it holds voice embeddings (biometric data), in plaintext so that another
    institution can import them; share it over an encrypted channel.

    Returns:
        The number of entries written.
    """
    import json

    from .files import private_dir, write_private

    entries = store.watch_list(model)
    data = {
        "format": WATCHLIST_FORMAT,
        "version": 1,
        "model": model,
        "dimension": int(entries[0].vector.shape[0]) if entries else None,
        "exported_at": now(),
        "entries": [
            {
                "label": e.label,
                "source": e.source,
                "added_on": e.added_on,
                "vector": [round(float(x), 7) for x in e.vector],
            }
            for e in entries
        ],
    }
    private_dir(Path(path).parent)
    write_private(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    _audit(store, "watchlist.export", file=str(path), model=model, labels=[e.label for e in entries])
    return len(entries)


def _audit(store: VoiceprintStore, event: str, **fields: Any) -> None:
    """Record a watchlist change in the store's audit log, signed with the store's cipher."""
    from .audit import AUDIT_LOG, AuditLog

    AuditLog(store.directory / AUDIT_LOG, store.cipher).record(event, **fields)


MAX_WATCHLIST_BYTES = 64 * 1024 * 1024
"""Largest watchlist file ``import`` reads (a 256-d entry takes about 3 KB of JSON)."""

MAX_WATCHLIST_ENTRIES = 100_000
"""Most entries one watchlist file may hold."""

VECTOR_NORM_RANGE = (0.5, 2.0)
"""Exported vectors are unit-norm (rounded); one far off that is not a voice embedding."""


def import_watchlist(
    store: VoiceprintStore, path: str | Path, model: str, dimension: int, replace: bool = False
) -> tuple[int, int]:
    """Add a shared watchlist file's entries for ``model``; existing labels are kept unless ``replace``.

    Every entry is checked before any is stored (all or nothing): a label, a list of ``dimension``
    finite JSON numbers with a norm near 1. The file must be a regular file of at most
    :data:`MAX_WATCHLIST_BYTES` with at most :data:`MAX_WATCHLIST_ENTRIES` entries.

    Returns:
        (entries added, entries skipped because the label exists).

    Raises:
        UsageError: unreadable file, not a voicecheck watchlist, or an invalid entry (named).
        ModelMismatchError: the file's embeddings come from another model.
    """
    import json

    from .files import read_regular

    p = Path(path)
    if dimension <= 0:
        raise UsageError(f"model {model} has no known dimension; set dimension in models.toml before importing")

    def no_constant(name: str) -> object:
        raise ValueError(f"{name} is not a number")

    try:
        data = json.loads(
            read_regular(p, MAX_WATCHLIST_BYTES, "watchlist file").decode("utf-8"), parse_constant=no_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UsageError(f"watchlist file {p} is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict) or data.get("format") != WATCHLIST_FORMAT:
        raise UsageError(f"{p} is not a voicecheck watchlist export (format {WATCHLIST_FORMAT!r})")
    if data.get("model") != model:
        raise ModelMismatchError(
            f"watchlist {p} holds {data.get('model')!r} embeddings, not {model}: they cannot be compared; "
            f"import it with --model set to the model it was made with"
        )
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise UsageError(f"watchlist {p}: 'entries' must be a list of entries")
    if len(entries) > MAX_WATCHLIST_ENTRIES:
        raise UsageError(f"watchlist {p}: {len(entries)} entries, more than the {MAX_WATCHLIST_ENTRIES} allowed")
    checked = [_watch_entry(e, n, p, dimension) for n, e in enumerate(entries, 1)]
    existing = {e.label for e in store.watch_list(model)}
    added = skipped = 0
    for label, source, added_on, vector in checked:
        if label in existing and not replace:
            skipped += 1
            continue
        store.watch_add(
            label,
            source or p.name,
            vector,
            model,
            added_on or now()[:10],
            provenance=[WatchSource(audio=f"imported from {p}")],
        )
        added += 1
    _audit(store, "watchlist.import", file=str(p), model=model, counts={"added": added, "skipped": skipped})
    return added, skipped


def _watch_entry(entry: object, n: int, p: Path, dimension: int) -> tuple[str, str, str, np.ndarray]:
    """(label, source, added_on, unit vector) of one watchlist entry, or UsageError naming it."""
    where = f"watchlist {p}: entry {n}"
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be an object with label and vector")
    label = entry.get("label")
    if not isinstance(label, str):
        raise UsageError(f"{where} lacks a text label")
    label = check_id(label, "watchlist label")
    where += f" ({label})"
    values = entry.get("vector")
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise UsageError(f"{where}: vector must be a list of numbers")
    if len(values) != dimension:
        raise UsageError(f"{where}: vector has {len(values)} values, the model's embeddings have {dimension}")
    vector = np.asarray(values, dtype=np.float64)
    norm = float(np.linalg.norm(vector)) if np.all(np.isfinite(vector)) else float("nan")
    if not VECTOR_NORM_RANGE[0] <= norm <= VECTOR_NORM_RANGE[1]:
        raise UsageError(f"{where}: vector norm {norm:.3g} is not that of an embedding (about 1); the file is damaged")
    texts = [entry.get(k, "") for k in ("source", "added_on")]
    if not all(isinstance(t, str) and len(t) <= 500 for t in texts):
        raise UsageError(f"{where}: source and added_on must be short text")
    return label, texts[0], texts[1], (vector / norm).astype(np.float32)
