"""The voiceprint store: SQLite in the store directory (default ./enrollment).

A voiceprint is the speech-weighted mean of its recordings' embeddings, kept per band ("wide" and
"narrow") so that a call is always compared with an enrollment embedded in the call's own band.
Collectors' voiceprints (kind "agent") and the watchlist of known proxy-agent voices live here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import ModelMismatchError, NotEnrolledError, StoreError, UsageError
from .types import Voiceprint, check_id

DB_NAME = "voiceprints.sqlite"
SCHEMA_VERSION = "1"

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
    UNIQUE (kind, owner_id, model, content_hash)
);
CREATE INDEX IF NOT EXISTS recordings_owner ON recordings (kind, owner_id, model);
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
"""


def now() -> str:
    """UTC time as ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes, dimension: int) -> np.ndarray:
    v = np.frombuffer(blob, dtype="<f4")
    if v.shape != (dimension,):
        raise StoreError(f"stored vector has {v.size} values, expected {dimension}: the store is damaged")
    return v.copy()


@dataclass(frozen=True)
class WatchEntry:
    """A known proxy-agent voice."""

    label: str
    source: str
    added_on: str
    model: str
    vector: np.ndarray


class VoiceprintStore:
    """Voiceprints, collectors and the watchlist in ``<directory>/voiceprints.sqlite``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.directory / DB_NAME, timeout=30)
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            self._db.commit()
            version = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"voiceprint store {self.directory} cannot be opened: {e}") from None
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"voiceprint store {self.directory / DB_NAME} has schema {version}, this voicecheck "
                f"reads {SCHEMA_VERSION}; use the voicecheck version that wrote it"
            )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:
                yield self._db
        except sqlite3.Error as e:
            raise StoreError(f"voiceprint store {self.directory}: {e}") from None

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
    ) -> bool:
        """Add one recording's embeddings to a voiceprint.

        Args:
            vectors: unit-norm embeddings by band; "narrow" is required, "wide" only for wideband audio.
            replace: forget the owner's earlier recordings for this model first.

        Returns:
            False when this exact audio was already part of the voiceprint (nothing added).
        """
        owner_id = check_id(owner_id, f"{kind} id")
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
            cur = db.execute(
                "INSERT OR IGNORE INTO recordings (kind, owner_id, model, dimension, audio, content_hash, band,"
                " speech_seconds, wide, narrow, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    kind,
                    owner_id,
                    model,
                    dimension,
                    audio,
                    content_hash,
                    band,
                    float(speech_seconds),
                    None if wide is None else to_blob(wide),
                    to_blob(vectors["narrow"]),
                    now(),
                ),
            )
            return cur.rowcount == 1

    def get(self, owner_id: str, model: str, kind: str = "borrower") -> Voiceprint:
        """The voiceprint of ``owner_id`` for ``model``.

        Raises:
            NotEnrolledError: no recordings for this owner.
            ModelMismatchError: enrolled, but only with another model.
        """
        owner_id = check_id(owner_id, f"{kind} id")
        rows = self._db.execute(
            "SELECT model, dimension, band, speech_seconds, wide, narrow, added_at FROM recordings"
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
            parts = [(r[3], from_blob(r[col], dimension)) for r in mine if r[col] is not None]
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
        """The recordings behind a voiceprint (paths, hashes, speech), no vectors."""
        keys = ("audio", "content_hash", "band", "speech_seconds", "model", "added_at")
        sql = f"SELECT {', '.join(keys)} FROM recordings WHERE kind=? AND owner_id=? ORDER BY id"
        return [dict(zip(keys, row, strict=True)) for row in self._db.execute(sql, (kind, owner_id))]

    def remove(self, owner_id: str, kind: str = "borrower") -> int:
        """Delete an owner's voiceprint; returns the number of recordings removed."""
        owner_id = check_id(owner_id, f"{kind} id")
        with self._tx() as db:
            return db.execute("DELETE FROM recordings WHERE kind=? AND owner_id=?", (kind, owner_id)).rowcount

    def all(self, model: str, kind: str) -> list[Voiceprint]:
        """Every voiceprint of a kind for a model."""
        ids = [r["id"] for r in self.summaries(kind, model)]
        return [self.get(str(i), model, kind) for i in ids]

    # -- watchlist ---------------------------------------------------------------------------
    def watch_add(self, label: str, source: str, vector: np.ndarray, model: str, added_on: str | None = None) -> None:
        """Add (or replace) a watchlist voice under ``label`` for ``model``."""
        label = check_id(label, "watchlist label")
        if vector.ndim != 1 or not np.all(np.isfinite(vector)) or not 0.5 <= float(np.linalg.norm(vector)) <= 2.0:
            raise UsageError(f"watchlist entry {label}: not a unit embedding vector")
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO watchlist (label, source, added_on, model, dimension, vector)"
                " VALUES (?,?,?,?,?,?)",
                (label, source, added_on or now()[:10], model, int(len(vector)), to_blob(vector)),
            )

    def watch_list(self, model: str | None = None) -> list[WatchEntry]:
        sql = "SELECT label, source, added_on, model, dimension, vector FROM watchlist"
        rows = self._db.execute(
            sql + (" WHERE model=?" if model else "") + " ORDER BY label", (model,) if model else ()
        )
        return [WatchEntry(r[0], r[1], r[2], r[3], from_blob(r[5], r[4])) for r in rows]

    def watch_remove(self, label: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM watchlist WHERE label=?", (label,)).rowcount


WATCHLIST_FORMAT = "voicecheck-watchlist"


def export_watchlist(store: VoiceprintStore, path: str | Path, model: str) -> int:
    """Write the watchlist of ``model`` as JSON: labels, sources, dates and embeddings, no audio.

    Returns:
        The number of entries written.
    """
    import json

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
    Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(entries)


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
        store.watch_add(label, source or p.name, vector, model, added_on or now()[:10])
        added += 1
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
