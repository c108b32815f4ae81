"""Replay detection: an index of fingerprints and the time-consistent match (issue 15, item 1).

Items are enrollment recordings (per borrower) and stored calls (of any borrower), each stored with
its :data:`~voicecheck.fingerprint.INDEX_PARAMS` fingerprint. A call is looked up with its denser
:data:`~voicecheck.fingerprint.QUERY_PARAMS` fingerprint:

1. each of its hash values is looked up in a SQLite table keyed by hash value (a B-tree search per
   distinct value: the cost grows with the rows that share the call's hash values, not with the
   number of items stored);
2. per item, the differences (item time - call time) of the hits are counted; replayed audio piles
   its hits on one difference (+- ``tolerance_frames``), chance hits spread over all of them;
3. the hits on the best difference are grouped in time (gaps <= ``max_gap_s``); the largest group
   gives the matched span in both recordings and the matched seconds;
4. a :class:`MatchRule` decides: at least ``min_hits`` time-consistent hits spanning at least
   ``min_matched_s`` seconds.

Hash values may be stored keyed (``key``, or a cipher that derives one): each value is replaced by a
keyed pseudo-random function of it (AES-256 of the value, see ``FingerprintIndex._stored_values``), so
the table does not show raw landmark values to whoever reads the file without the key. Looking up
still works, with the key. The file is created 0600.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import zlib
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import storage
from .crypto import Cipher
from .errors import StoreError, UsageError
from .fingerprint import INDEX_PARAMS, Fingerprint, FingerprintParams, stable_order, stable_sort
from .jit import compiled

log = logging.getLogger(__name__)

ItemKind = Literal["enrollment", "call"]

_SCHEMA_VERSION = "3"
"""Written into new indexes. Schema 3 stores item rows packed as :func:`_pack` writes them (``_ROWS_V2``);
schema 2 (read as well) keeps them as compressed int64 pairs, and its items are written that way."""
_SCHEMA_READ = ("2", "3")
_INDEX_KEY_PURPOSE = b"voicecheck replay index v1"
_KEYED_TWEAK = int.from_bytes(b"vc-fp-1\0", "little")
"""Second half of every block keyed (domain separation: no other use of the key encrypts this)."""
"""HKDF ``info`` of the hash key an encrypted store's index uses (:meth:`voicecheck.crypto.Cipher.derive`)."""
_KEY_CHECK_TEXT = b"voicecheck replay index key check"
_CACHE_KIB = 65536  # 64 MiB of page cache: bulk inserts into a large index stay fast
_IN_CHUNK = 30000  # bound parameters per statement (SQLite allows 32766)
DEFAULT_MAX_ROWS = 100_000
"""Row budget of a search over all items: ~0.1 s of SQLite reads per call."""
_TABLE_BITS = 20
"""Hash values below 2**this are keyed through a table (pair hashes: 20 bits, see ``_stored_values``)."""
_TABLE_AFTER = 1 << 24
"""Values an index keys one by one before it reads them from a table: making one cost ~11 ms here, what
reading ~2**24 values from it saves over keying them (~1 ns a value; ~1,000 batch calls of 45 s)."""
_TABLES_KEPT = 2
_AES_BLOCKS = 4096
"""Blocks keyed per AES call (64 KB: stays in the CPU's cache)."""
_TABLES: dict[bytes, np.ndarray] = {}
"""Tables of keyed values by :meth:`FingerprintIndex._value_tag` (the last few keys used)."""
_LAST_ARRANGED: list[tuple[bytes, np.ndarray, np.ndarray, _Values]] = []
_ROWS_CACHED = 1 << 21
"""Most item rows an open index keeps decoded (~32 MB): a borrower's items are read again for each
of their calls in a batch."""
_DELTA_SPAN = 1 << 24
"""Frames (recordings up to ~46 h); (item, delta) is packed as item * 2**25 + delta + 2**24."""


@dataclass(frozen=True)
class MatchRule:
    """When time-consistent hits count as a replay.

    Attributes:
        min_hits: least hits on one time difference (+- ``tolerance_frames``) in the matched span.
        min_matched_s: least length (s) of the matched span in the call.
        tolerance_frames: hits within this many frames (the index's ``frame_s``: 10 ms as shipped) of
            the best difference count.
        max_gap_s: hits further apart than this (s, in the call) start a new span.
        max_candidates: items examined in detail per call (best first by hit count).
    """

    min_hits: int = 15
    min_matched_s: float = 1.0
    tolerance_frames: int = 2
    max_gap_s: float = 2.0
    max_candidates: int = 20

    def __post_init__(self) -> None:
        ok = (
            self.min_hits >= 1
            and np.isfinite(self.min_matched_s)
            and self.min_matched_s >= 0.0
            and self.tolerance_frames >= 0
            and np.isfinite(self.max_gap_s)
            and self.max_gap_s > 0.0
            and self.max_candidates >= 1
        )
        if not ok:
            raise UsageError(
                f"match rule {self} is not valid: min_hits >= 1, min_matched_s >= 0 s, tolerance_frames >= 0, "
                "max_gap_s > 0 s and max_candidates >= 1, all finite."
            )


DEFAULT_RULE = MatchRule()
"""Chosen by ``benchmarks/replay.py`` on the non-EVAL speakers of shared/speech (1.5 x the most
frame-counted hits any wrong item had; of the spans 1-3 s the one catching most replays, the longer
when within one point), judged on the EVAL speakers: see ``benchmarks/results/replay.md``."""


@dataclass(frozen=True)
class ReplayMatch:
    """The stretch of a call that recurs in a stored item.

    Attributes:
        item: name of the stored recording or call (as given to :meth:`FingerprintIndex.add`).
        kind: "enrollment" or "call".
        owner: borrower the item belongs to ("" when not given).
        call_start_s, call_end_s: matched span in the looked-up call's time axis (s).
        item_start_s, item_end_s: the same span in the item's time axis (s).
        matched_s: ``call_end_s - call_start_s``.
        hits: time-consistent hits in the span, counted once per 10 ms frame of the call (a burst
            of hashes from one chance coincidence of a few landmarks counts as little).
        offset_s: item time minus call time of the hits (s).
        is_replay: the span passes the rule it was judged by.
    """

    item: str
    kind: str
    owner: str
    call_start_s: float
    call_end_s: float
    item_start_s: float
    item_end_s: float
    matched_s: float
    hits: int
    offset_s: float
    is_replay: bool


@dataclass(frozen=True)
class ReplayCheck:
    """The answer for one call. Only returned when the call WAS checked.

    Attributes:
        replay: some item passes the rule.
        matches: items that pass, most hits first.
        best: the item with most time-consistent hits, passing or not (None without any hit).
        rule: the rule applied.
        query_hashes: hashes looked up.
        rows: index rows that shared a hash value with the call (the lookup's work).
        items_in_index: items in the index when it was asked.
        skipped_values: distinct hash values of the call not looked up (common ones beyond the row
            budget of a search over all items; 0 for a borrower-scoped search).
        owner: the borrower the search was limited to (None: all items).
    """

    replay: bool
    matches: tuple[ReplayMatch, ...]
    best: ReplayMatch | None
    rule: MatchRule
    query_hashes: int
    rows: int
    items_in_index: int
    skipped_values: int = 0
    owner: str | None = None


def _key_check(key: bytes) -> str:
    return hashlib.blake2b(_KEY_CHECK_TEXT, key=key, digest_size=16).hexdigest()


class FingerprintIndex:
    """A SQLite index of fingerprints: hash value -> (item, time).

    Args:
        path: the index file; created (mode 0600, WAL, deleted rows overwritten) when missing.
        key: optional secret (16-64 bytes). Given when the index is created, every hash value is
            stored keyed, and the same key must be given to open it again.
        params: the fingerprints' parameters (their hashing part must match the stored ones).
        cipher: the product's way (instead of ``key``): with an encrypted cipher the hash values are
            keyed with a key derived from the store key (:meth:`voicecheck.crypto.Cipher.derive`: never
            stored) and each item's raw rows are sealed too, so :meth:`reseal` can re-key the whole
            index on a key rotation; with ``encryption = false`` the index is unkeyed.
        all_items: (when the index is created) keep the table keyed by hash value that searches over
            ALL items need (``query(owner=None)``); without it an index serves borrower-scoped
            searches only, and storing an item costs a fraction (no B-tree rows per hash). An
            existing index keeps what it was created with.

    Raises:
        StoreError: the file is not an index, was made with other fingerprint parameters, or the key
            is missing, unexpected or wrong (or the store key it was derived from is not in the ring).
        UsageError: a key of the wrong length, or both ``key`` and ``cipher``.
    """

    def __init__(
        self,
        path: str | Path,
        key: bytes | None = None,
        params: FingerprintParams = INDEX_PARAMS,
        cipher: Cipher | None = None,
        all_items: bool = True,
    ) -> None:
        if key is not None and not (isinstance(key, bytes) and 16 <= len(key) <= 64):
            raise UsageError("the index key must be 16 to 64 bytes; generate one with os.urandom(32).")
        if key is not None and cipher is not None:
            raise UsageError("give the index a key or a cipher (which derives its key), not both.")
        self.path = Path(path)
        self.params = params
        self.hash_key = params.hash_key()
        # keyed values: 31 bits (4 bytes in SQLite) keep pair hashes (20 bits) apart; triplets need 47
        self._keyed_mask = (1 << 31) - 1 if params.hash_bits <= 24 else (1 << 47) - 1
        self._cipher = cipher if cipher is not None and cipher.encrypted else None
        self._key, self.key_id = key, ""
        self._aes: object | None = None
        self._keyed_values = 0  # values keyed one by one so far (a table pays off beyond _TABLE_AFTER)
        self._rows_cache: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._rows_cached = 0
        self.all_items = all_items
        try:
            self._db = storage.connect(self.path, 60)
            self._db.execute("PRAGMA synchronous=NORMAL")  # commits survive a killed process; sync() for power loss
            self._db.execute(f"PRAGMA cache_size = {-_CACHE_KIB}")  # B-tree pages kept in memory
            created = storage.stored_version(self._db) is None and not self._has_table("items")
            if self._cipher is not None:
                self._derive_key(created)
            if created:
                self._create()
            self._check_meta()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a fingerprint index ({exc}); pass another path.") from exc
        except BaseException:
            if hasattr(self, "_db"):
                self._db.close()
            raise

    # --- file -------------------------------------------------------------------------------

    def _has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        return self._db.execute(sql, (name,)).fetchone() is not None

    def _derive_key(self, created: bool) -> None:
        """The hash key from the cipher: from the store key the index was made with (kept in meta)."""
        assert self._cipher is not None
        kid = None
        if not created and self._has_table("meta"):
            row = self._db.execute("SELECT value FROM meta WHERE key='key_id'").fetchone()
            kid = None if row is None else str(row[0])
            if kid is None:
                raise StoreError(
                    f"{self.path} was made without encryption and encryption is on: run 'voicecheck store migrate' "
                    "to key it (or set encryption = false)"
                )
        derived = self._cipher.derive(_INDEX_KEY_PURPOSE, kid)
        assert derived is not None
        self.key_id, self._key = derived

    def _create(self) -> None:
        with self._db:
            self._db.executescript(
                """
                CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE items(
                    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, owner TEXT NOT NULL,
                    duration_s REAL NOT NULL, n_hashes INTEGER NOT NULL, rows BLOB NOT NULL, sealed BLOB,
                    added_at TEXT NOT NULL);
                CREATE TABLE landmarks(
                    hash INTEGER NOT NULL, item INTEGER NOT NULL, frame INTEGER NOT NULL,
                    PRIMARY KEY(hash, item, frame)) WITHOUT ROWID;
                CREATE INDEX items_owner ON items(owner);
                CREATE INDEX items_added ON items(kind, added_at);
                CREATE TABLE buckets(hash INTEGER PRIMARY KEY, n INTEGER NOT NULL);
                """
            )
            meta = {"schema": _SCHEMA_VERSION, "hash_key": self.hash_key, "keyed": "1" if self._key else "0"}
            meta["all_items"] = "1" if self.all_items else "0"
            if self._key:
                meta["key_check"] = _key_check(self._key)
            if self.key_id:
                meta["key_id"] = self.key_id
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())

    def _check_meta(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        self.all_items = meta.get("all_items", "1") == "1"
        if meta.get("schema") not in _SCHEMA_READ:
            raise StoreError(
                f"{self.path}: index schema {meta.get('schema')!r}, this version reads {' and '.join(_SCHEMA_READ)}."
            )
        self._packed_rows = meta.get("schema") != "2"
        if meta.get("hash_key") != self.hash_key:
            raise StoreError(
                f"{self.path} holds fingerprints {meta.get('hash_key')!r}, not {self.hash_key!r}, and the two never "
                "meet: rebuild the index with this version's fingerprints -- move the file aside, and a call index "
                "refills as batches fingerprint calls again (calls stored before are not looked up until then), an "
                "enrollment index with `voicecheck enroll --replace` and each borrower's recordings."
            )
        keyed = meta.get("keyed") == "1"
        if keyed and self._key is None and meta.get("key_id"):
            raise StoreError(
                f"{self.path} is keyed with the store key {meta['key_id']} and encryption = false is set: remove the "
                "opt-out and give the key it was made with"
            )
        if keyed and self._key is None:
            raise StoreError(f"{self.path} is keyed: pass its key (without it no lookup can match).")
        if not keyed and self._key is not None:
            raise StoreError(f"{self.path} was created without a key; open it without one or build a keyed index.")
        if keyed and self._key is not None and meta.get("key_check") != _key_check(self._key):
            raise StoreError(f"{self.path}: wrong key (its key check does not match); pass the key it was made with.")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FingerprintIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def count(self, owner: str | None = None) -> int:
        """Items stored (of one borrower when ``owner`` is given)."""
        if owner is None:
            return len(self)
        return int(self._db.execute("SELECT COUNT(*) FROM items WHERE owner = ?", (owner,)).fetchone()[0])

    def added_at(self, item: str) -> str | None:
        """When ``item`` was stored (ISO 8601 UTC), None when it is not."""
        row = self._db.execute("SELECT added_at FROM items WHERE name = ?", (item,)).fetchone()
        return None if row is None else str(row[0])

    def _item_id(self, item: str) -> int | None:
        row = self._db.execute("SELECT id FROM items WHERE name = ?", (item,)).fetchone()
        return None if row is None else int(row[0])

    def __contains__(self, item: object) -> bool:
        return self._db.execute("SELECT 1 FROM items WHERE name = ?", (item,)).fetchone() is not None

    # --- hash values --------------------------------------------------------------------------

    def _stored_values(self, hashes: np.ndarray) -> np.ndarray:
        """Hash values as stored: raw, or keyed (31 or 47 bits, see ``__init__``).

        The keyed value of h is the first 8 bytes of AES-256 (key: a BLAKE2b of the index key) of the
        16-byte block (h, "vc-fp-1"), masked: a keyed pseudo-random function, computed for a whole
        fingerprint in a few AES calls (a lookup or an erasure keys thousands of values: ~2-3 ns a
        value). Once an index has keyed :data:`_TABLE_AFTER` values, pair hashes (< 2**20) are read from
        a table of all 2**20 keyed values instead (~4 MB, made once per key in a process: the batch's two
        indexes share it)."""
        raw = np.asarray(hashes, dtype=np.int64)
        if self._key is None:
            return raw
        in_table = raw.size == 0 or (raw.min() >= 0 and raw.max() < 1 << _TABLE_BITS)
        worth_it = self._keyed_values >= _TABLE_AFTER or self._value_tag() in _TABLES
        if self.params.hash_bits <= _TABLE_BITS and in_table and worth_it:
            return self._keyed_table()[raw].astype(np.int64)
        self._keyed_values += raw.size
        return self._keyed(raw.reshape(-1))  # repeated values are keyed again: cheaper than finding them

    def _value_tag(self) -> bytes:
        """Names how this index turns hashes into stored values (the same for indexes with one key);
        reveals nothing of the key."""
        if self._key is None:
            return b"raw"
        return hashlib.blake2b(self._key, digest_size=16, person=b"vc-fp-tag-1").digest()

    def _keyed(self, values: np.ndarray) -> np.ndarray:
        """Keyed values of non-negative ``values`` (int64, shape (n,)).

        The blocks go through AES :data:`_AES_BLOCKS` at a time into one reused buffer: encrypting
        into a fresh 16 MB ``bytes`` (a whole table) ran at ~0.9 GB/s here, in place at ~5-8 GB/s."""
        v = np.asarray(values).reshape(-1).astype("<u8")
        out = np.empty(v.size, dtype="<u8")
        blocks = np.empty((min(v.size, _AES_BLOCKS), 2), dtype="<u8")
        blocks[:, 1] = _KEYED_TWEAK
        buffer = np.empty(blocks.size + 2, dtype="<u8")  # update_into wants a block's room to spare
        plain, sealed = blocks.reshape(-1).view(np.uint8), buffer.view(np.uint8)  # byte views, as it takes them
        encryptor = self._encryptor()
        for start in range(0, v.size, _AES_BLOCKS):
            n = min(_AES_BLOCKS, v.size - start)
            blocks[:n, 0] = v[start : start + n]
            encryptor.update_into(plain[: 16 * n], sealed)
            out[start : start + n] = buffer[: 2 * n : 2]
        return (out & np.uint64(self._keyed_mask)).view(np.int64)

    def _keyed_table(self) -> np.ndarray:
        """The keyed value of every h < 2**_TABLE_BITS (uint32: pair indexes key to 31 bits)."""
        tag = self._value_tag()
        table = _TABLES.get(tag)
        if table is None:
            table = self._keyed(np.arange(1 << _TABLE_BITS, dtype=np.int64)).astype(np.uint32)
            while len(_TABLES) >= _TABLES_KEPT:
                _TABLES.pop(next(iter(_TABLES)))
            _TABLES[tag] = table
        return table

    def _arranged(self, fp: Fingerprint) -> _Values:
        """``fp``'s stored values arranged for a lookup; the last arrangement is kept, so a call looked
        up in the two indexes of one key is keyed and sorted once."""
        tag = self._value_tag()
        for cached_tag, hashes, frames, arranged in _LAST_ARRANGED:
            if cached_tag == tag and hashes is fp.hashes and frames is fp.frames:
                return arranged
        arranged = _Values.of(self._stored_values(fp.hashes), fp.frames)
        _LAST_ARRANGED[:] = [(tag, fp.hashes, fp.frames, arranged)]
        return arranged

    def _encryptor(self) -> Any:
        """The index's AES-ECB encryption context, made once: ECB keeps no state between whole blocks,
        so one context keys every value (a new one per lookup cost ~17 us)."""
        if self._aes is None:
            from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
            from cryptography.hazmat.primitives.ciphers import algorithms, modes

            assert self._key is not None
            aes_key = hashlib.blake2b(self._key, digest_size=32, person=b"vc-fp-aes-1").digest()
            self._aes = AesCipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
        return self._aes

    # --- items --------------------------------------------------------------------------------

    def _check_fingerprint(self, fp: Fingerprint, what: str) -> None:
        if fp.hash_key != self.hash_key:
            raise UsageError(
                f"{what} was made with fingerprint parameters {fp.hash_key!r}, the index holds {self.hash_key!r}."
            )
        if len(fp) == 0:
            raise UsageError(f"{what} has no hashes; fingerprint() raises FingerprintError instead of making one.")

    def add(self, item: str, fp: Fingerprint, kind: ItemKind, owner: str = "", commit: bool = True) -> None:
        """Store one recording's fingerprint (use :data:`~voicecheck.fingerprint.INDEX_PARAMS`).

        Args:
            item: unique name, e.g. the call's content hash or "enrollment:<borrower>:<n>".
            fp: its fingerprint.
            kind: "enrollment" or "call".
            owner: the borrower it belongs to.
            commit: False leaves the item in the open transaction (seen by this object's lookups,
                by no other connection) until :meth:`commit`; closing first, or an error in a later
                add, drops every item not committed.

        Raises:
            UsageError: an empty name, an unknown kind, a name already stored, or a fingerprint
                with other parameters.
        """
        self.add_many([(item, fp, kind, owner)], commit)

    def add_many(self, entries: Iterable[tuple[str, Fingerprint, ItemKind, str]], commit: bool = True) -> int:
        """Store many fingerprints in one transaction (rows inserted in hash order). Returns the count."""
        return self._insert(
            (
                (item, kind, owner, float(fp.duration_s), fp.hashes, fp.frames, "")
                for item, fp, kind, owner in self._checked(entries)
            ),
            commit,
        )

    def commit(self) -> None:
        """Commit the items added with ``commit=False``.

        Raises:
            StoreError: the file cannot be written.
        """
        try:
            self._db.commit()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path} cannot be written: {e}") from None

    @contextmanager
    def _transaction(self, commit: bool) -> Iterator[None]:
        """One transaction, committed at the end (``commit``) or left open; rolled back on an error."""
        if commit:
            with self._db:
                yield
            return
        try:
            yield
        except BaseException:
            self._db.rollback()
            raise

    def _checked(
        self, entries: Iterable[tuple[str, Fingerprint, ItemKind, str]]
    ) -> Iterator[tuple[str, Fingerprint, ItemKind, str]]:
        for item, fp, kind, owner in entries:
            self._check_fingerprint(fp, f"fingerprint of {item!r}")
            yield item, fp, kind, owner

    def _insert(
        self, entries: Iterable[tuple[str, str, str, float, np.ndarray, np.ndarray, str]], commit: bool = True
    ) -> int:
        """Insert (name, kind, owner, duration_s, raw hashes, frames, added_at or "" for now) in one
        transaction, committed unless ``commit`` is False (see :meth:`add`)."""
        rows: list[np.ndarray] = []
        n = 0
        stamp = _now()
        with self._transaction(commit):
            for item, kind, owner, duration_s, hashes, frames, added_at in entries:
                if not item or kind not in ("enrollment", "call"):
                    raise UsageError(f"item {item!r} of kind {kind!r}: need a name and kind 'enrollment' or 'call'.")
                if item in self:
                    raise UsageError(f"item {item!r} is already in the index; remove it first to replace it.")
                values = self._stored_values(hashes)
                sealed = None
                frames_packed = _FramesPacked(frames)  # the same frames in both blobs: compressed once
                if self._cipher is not None:  # the raw rows, for a re-keying (reseal); never readable without the key
                    raw_rows = _pack(np.asarray(hashes), frames, self._packed_rows, frames_packed)
                    sealed = self._cipher.seal(raw_rows, ("replay-index", "rows", item))
                cur = self._db.execute(
                    "INSERT INTO items(name, kind, owner, duration_s, n_hashes, rows, sealed, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item,
                        kind,
                        owner,
                        duration_s,
                        int(values.size),
                        _pack(values, frames, self._packed_rows, frames_packed),
                        sealed,
                        added_at or stamp,
                    ),
                )
                if self.all_items:  # rows for the table keyed by hash value
                    item_id = int(cur.lastrowid or 0)
                    rows.append(np.stack([values, np.full(values.size, item_id), frames.astype(np.int64)], axis=1))
                n += 1
            if rows and self.all_items:
                table = _unique_rows(np.concatenate(rows))  # sorted by hash, item, frame; no duplicate
                self._db.executemany("INSERT INTO landmarks VALUES (?, ?, ?)", table.tolist())
                values, counts = np.unique(table[:, 0], return_counts=True)
                self._db.executemany(
                    "INSERT INTO buckets VALUES (?, ?) ON CONFLICT(hash) DO UPDATE SET n = n + excluded.n",
                    zip(values.tolist(), counts.tolist(), strict=True),
                )
        return n

    def remove(self, item: str) -> bool:
        """Erase one item and all its rows. Returns False when it was not stored."""
        found = self._db.execute("SELECT id, rows FROM items WHERE name = ?", (item,)).fetchone()
        if found is None:
            return False
        item_id, blob = int(found[0]), found[1]
        for key in [k for k in self._rows_cache if k[0] == item_id]:
            self._rows_cached -= len(self._rows_cache.pop(key))
        values = _sorted_unique(_unpack(blob)[:, 0]) if self.all_items else np.zeros(0, dtype=np.int64)
        with self._db:
            for v in values.tolist():
                gone = self._db.execute("DELETE FROM landmarks WHERE hash = ? AND item = ?", (v, item_id)).rowcount
                self._db.execute("UPDATE buckets SET n = n - ? WHERE hash = ?", (gone, v))
            self._db.execute("DELETE FROM buckets WHERE n <= 0")
            self._db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        return True

    def remove_owner(self, owner: str, kind: ItemKind | None = None) -> int:
        """Erase every item of one borrower (their enrollments and calls, or those of ``kind``). Returns how many."""
        if not owner:
            raise UsageError("owner must be a borrower id; an empty owner would erase every unowned item.")
        sql, args = "SELECT name FROM items WHERE owner = ?", [owner]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [owner, kind]
        names = [r[0] for r in self._db.execute(sql, args).fetchall()]
        return sum(self.remove(name) for name in names)

    def remove_older(self, cutoff: str, kind: ItemKind = "call") -> int:
        """Erase the items of ``kind`` stored before ``cutoff`` (ISO 8601 UTC, as :func:`_now` writes).
        Returns how many."""
        sql = "SELECT name FROM items WHERE kind = ? AND added_at < ?"
        names = [r[0] for r in self._db.execute(sql, (kind, cutoff)).fetchall()]
        return sum(self.remove(name) for name in names)

    def checkpoint(self) -> bool:
        """Empty the write-ahead log into the file (after an erasure: no copy of removed rows stays in it)."""
        return storage.checkpoint(self._db, self.path)

    def sync(self) -> None:
        """Make every commit durable on disk (a WAL checkpoint, which fsyncs)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path} cannot be synced to disk: {e}") from None

    def _raw_items(self, cipher: Cipher | None) -> Iterator[tuple[str, str, str, float, np.ndarray, np.ndarray, str]]:
        """Every item with its raw rows, in the order stored: (name, kind, owner, duration_s, hashes,
        frames, added_at); keyed items need their sealed rows and ``cipher`` to open them."""
        keyed = self._key is not None
        cur = self._db.execute("SELECT name, kind, owner, duration_s, rows, sealed, added_at FROM items ORDER BY id")
        for name, kind, owner, duration_s, rows, sealed, added_at in cur:
            if keyed:
                if sealed is None or cipher is None or not cipher.encrypted:
                    raise StoreError(
                        f"{self.path}: item {name!r} keeps only keyed hash values, which cannot be keyed anew; "
                        "the index cannot be re-keyed (remove the file: calls are fingerprinted again as they come)"
                    )
                rows = cipher.open(sealed, ("replay-index", "rows", name), f"{self.path}: rows of {name}")
            raw = _unpack(rows)
            yield name, kind, owner, float(duration_s), raw[:, 0].astype(np.uint32), raw[:, 1], added_at

    def reseal(self, new: Cipher) -> int:
        """Re-key the index under ``new``'s current key (a key rotation; or keying an unkeyed index when
        encryption is switched on): a new file is built beside this one from every item's raw rows and
        put in its place; this object then reads it. Returns the items carried over.

        Raises:
            StoreError: an index keyed with an explicit key (no sealed raw rows), or a blob that does not open.
        """
        old_cipher = self._cipher
        fresh_path = self.path.with_name(self.path.name + ".rekey")
        for suffix in ("", "-wal", "-shm"):
            Path(str(fresh_path) + suffix).unlink(missing_ok=True)
        fresh = FingerprintIndex(fresh_path, params=self.params, cipher=new, all_items=self.all_items)
        try:
            n = fresh._insert(self._raw_items(old_cipher))
            fresh.checkpoint()
        finally:
            fresh.close()
        self.close()
        os.replace(fresh_path, self.path)
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.__init__(self.path, params=self.params, cipher=new, all_items=self.all_items)  # type: ignore[misc]
        return n

    def verify_all(self) -> int:
        """Open every sealed item (StoreError on the first that fails); returns how many were checked."""
        return sum(1 for _ in self._raw_items(self._cipher)) if self._key is not None else len(self)

    # --- lookup -------------------------------------------------------------------------------

    def _select(self, sql: str, values: list[int], tail: list[int] | None = None) -> list[tuple]:
        """``sql`` with its first ``IN ({})`` over ``values`` in chunks (SQLite's limit on bound
        parameters), the optional second ``IN ({})`` over ``tail``."""
        tail = tail or []
        step = max(1, _IN_CHUNK - len(tail))
        found: list[tuple] = []
        for start in range(0, len(values), step):
            chunk = values[start : start + step]
            text = sql.format(",".join("?" * len(chunk)), ",".join("?" * len(tail)))
            found += self._db.execute(text, chunk + tail).fetchall()
        return found

    def _owner_hits(
        self, owner: str, q: _Values, exclude: Collection[str], before: str | None, added_before: str | None
    ) -> tuple[np.ndarray, dict[int, tuple[str, str, str]], int]:
        """:meth:`_search` among one borrower's items: (hash, item, frame, value) rows of their items
        (stored before item ``before`` and time ``added_before``, none named in ``exclude``) whose hash is
        one of the call's (value: its index in ``q.distinct``), read from the items' own copies, in the
        order of the items (:meth:`_Values.hits`); each item's name, kind and owner by id; and how many
        items the borrower has. One read of the borrower's items serves all three (an item named in
        ``exclude`` that is not theirs has none of their rows); a few small reads in all, whatever the
        size of the index."""
        found = self._db.execute("SELECT id, name, kind, added_at FROM items WHERE owner = ?", (owner,)).fetchall()
        ids = {str(name): int(item_id) for item_id, name, _, _ in found}
        before_id = None if before is None else ids[before] if before in ids else self._item_id(before)
        before_id = (1 << 62) if before_id is None else before_id
        until = added_before or "9999"
        excluded = {ids[name] for name in exclude if name in ids}
        searched = [
            (int(item_id), str(added_at))
            for item_id, _, _, added_at in found
            if int(item_id) < before_id and str(added_at) < until and int(item_id) not in excluded
        ]
        hits = q.hits([self._item_rows(item_id, added_at) for item_id, added_at in searched], [i for i, _ in searched])
        return hits, {int(item_id): (str(name), str(kind), owner) for item_id, name, kind, _ in found}, len(found)

    def _all_hits(
        self, q: _Values, exclude: Collection[str], before: str | None, added_before: str | None, max_rows: int
    ) -> tuple[np.ndarray, int]:
        """:meth:`_search` over all items: (hash, item, frame, value) rows of the items stored before
        item ``before`` and time ``added_before``, none named in ``exclude``, from the table keyed by hash
        value, rarest values first within ``max_rows`` rows; and the distinct values skipped."""
        named = {name: self._item_id(name) for name in {*exclude, *([] if before is None else [before])}}
        before_id = named[before] if before is not None else None
        before_id = (1 << 62) if before_id is None else before_id
        wanted, skipped = self._within_budget(q.distinct, max_rows)
        found = self._select("SELECT hash, item, frame FROM landmarks WHERE hash IN ({})", wanted.tolist())
        hits = np.asarray(found, dtype=np.int64).reshape(-1, 3)
        hits = np.column_stack([hits, np.searchsorted(q.distinct, hits[:, 0])])
        hits = hits[hits[:, 1] < before_id]
        if added_before is not None:
            later = [r[0] for r in self._db.execute("SELECT id FROM items WHERE added_at >= ?", (added_before,))]
            hits = hits[~np.isin(hits[:, 1], later)]
        excluded = {item_id for name in exclude if (item_id := named[name]) is not None}
        if excluded and hits.size:
            hits = hits[~np.isin(hits[:, 1], list(excluded))]
        return hits, skipped

    def _item_rows(self, item_id: int, added_at: str) -> np.ndarray:
        """An item's (stored value, frame) rows, int64, shape (n, 2): decoded once, then kept (items
        never change; the key includes the time stored, so a reused id is another entry)."""
        key = (item_id, added_at)
        rows = self._rows_cache.get(key)
        if rows is not None:
            self._rows_cache.move_to_end(key)
            return rows
        blob = self._db.execute("SELECT rows FROM items WHERE id = ?", (item_id,)).fetchone()[0]
        rows = _unpack(blob)
        self._rows_cache[key] = rows
        self._rows_cached += len(rows)
        while self._rows_cached > _ROWS_CACHED and len(self._rows_cache) > 1:
            self._rows_cached -= len(self._rows_cache.popitem(last=False)[1])
        return rows

    def _within_budget(self, distinct: np.ndarray, max_rows: int) -> tuple[np.ndarray, int]:
        """The query's stored hash values to look up, rarest first while their rows add up to <=
        ``max_rows``; and how many stored values that leaves out."""
        sizes = dict(self._select("SELECT hash, n FROM buckets WHERE hash IN ({})", distinct.tolist()))
        stored = np.array(sorted(sizes), dtype=np.int64)
        if stored.size == 0:
            return stored, 0
        n = np.array([sizes[v] for v in stored.tolist()], dtype=np.int64)
        order = np.argsort(n, kind="stable")
        keep = np.cumsum(n[order]) <= max_rows
        return np.sort(stored[order][keep]), int(np.sum(~keep))

    def query(
        self,
        fp: Fingerprint,
        exclude: Collection[str] = (),
        rule: MatchRule = DEFAULT_RULE,
        owner: str | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        before: str | None = None,
        added_before: str | None = None,
    ) -> ReplayCheck:
        """Look a call up (use its :data:`~voicecheck.fingerprint.QUERY_PARAMS` fingerprint).

        Two scopes:

        * ``owner`` given: that borrower's items only (their enrollments and earlier calls), read from
          the copy of their rows each item keeps; the work grows with the borrower's items, not
          with the index.
        * ``owner`` None: every item. Hash values are looked up rarest first until their rows add up
          to ``max_rows``; common values beyond that are skipped (``skipped_values``), so the work
          per call stays bounded as the index grows, at the cost of hits on common values.

        Args:
            fp: the call's fingerprint.
            exclude: item names never to report (the call itself when it is already stored).
            rule: when hits count as a replay.
            owner: the borrower whose items alone are searched; None searches all.
            max_rows: row budget of a search over all items (>= 1).
            before: when this item is stored, only items stored before it are searched (a call looked
                up again is never a replay of what came after it: its own copies, an enrollment cut from it).
            added_before: only items stored before this time (ISO 8601 UTC) are searched (``before``
                for a call stored in another index).

        Returns:
            :class:`ReplayCheck`; ``replay`` is True when some item passes ``rule``.

        Raises:
            UsageError: a fingerprint made with other parameters, an empty one, or max_rows < 1.
        """
        matches, rows, skipped, _ = self._search(fp, exclude, rule, owner, max_rows, before, added_before)
        passing = tuple(m for m in matches if m.is_replay)
        return ReplayCheck(
            replay=bool(passing),
            matches=passing,
            best=matches[0] if matches else None,
            rule=rule,
            query_hashes=len(fp),
            rows=rows,
            items_in_index=len(self),
            skipped_values=skipped,
            owner=owner,
        )

    def matches(
        self,
        fp: Fingerprint,
        owner: str,
        rule: MatchRule = DEFAULT_RULE,
        exclude: Collection[str] = (),
        before: str | None = None,
        added_before: str | None = None,
    ) -> tuple[tuple[ReplayMatch, ...], int]:
        """:meth:`query`'s ``matches`` among one borrower's items, and how many items the borrower has
        in the index (:meth:`count`), without the figures a :class:`ReplayCheck` also reports: its
        ``items_in_index`` counts the whole index, a scan of it that grows with the index (``SELECT
        COUNT(*)``), which the batch's look-ups have no use for.

        Raises:
            UsageError: as :meth:`query`.
        """
        found, _, _, items = self._search(fp, exclude, rule, owner, DEFAULT_MAX_ROWS, before, added_before)
        return tuple(m for m in found if m.is_replay), items

    def _search(
        self,
        fp: Fingerprint,
        exclude: Collection[str],
        rule: MatchRule,
        owner: str | None,
        max_rows: int,
        before: str | None,
        added_before: str | None,
    ) -> tuple[list[ReplayMatch], int, int, int]:
        """:meth:`query`'s search: every span found, passing ``rule`` or not, most hits first; the
        index rows that shared a hash value with the call; the distinct values skipped; the items
        ``owner`` has in the index (0 when None)."""
        self._check_fingerprint(fp, "the call's fingerprint")
        if max_rows < 1:
            raise UsageError(f"max_rows must be >= 1, got {max_rows}.")
        q = self._arranged(fp)
        if owner is not None:
            hits, about, items = self._owner_hits(owner, q, exclude, before, added_before)
            skipped = 0
        elif not self.all_items:
            raise UsageError(f"{self.path} keeps no table for searches over all items: give an owner.")
        else:
            (hits, skipped), items = self._all_hits(q, exclude, before, added_before, max_rows), 0
        spans = _best_spans(q, hits, rule, self.params.frame_s)
        if owner is None:
            sql = "SELECT id, name, kind, owner FROM items WHERE id IN ({})"
            about = {int(r[0]): tuple(r[1:]) for r in self._select(sql, [item for item, _ in spans])}
        matches = [self._describe(about[item], span, rule) for item, span in spans]
        matches.sort(key=lambda m: (-m.hits, m.item))
        return matches, int(hits.shape[0]), skipped, items

    def _describe(self, about: tuple[str, str, str], span: _Span, rule: MatchRule) -> ReplayMatch:
        """The match of one span in an item (``about``: its name, kind and owner)."""
        name, kind, owner = about
        hop_s = self.params.frame_s
        matched_s = (span.call_last - span.call_first) * hop_s
        return ReplayMatch(
            item=name,
            kind=kind,
            owner=owner,
            call_start_s=span.call_first * hop_s,
            call_end_s=span.call_last * hop_s,
            item_start_s=span.item_first * hop_s,
            item_end_s=span.item_last * hop_s,
            matched_s=matched_s,
            hits=span.hits,
            offset_s=span.delta * hop_s,
            is_replay=span.hits >= rule.min_hits and matched_s >= rule.min_matched_s,
        )


def compile_loops() -> None:
    """Compile (or load from numba's cache) the look-up's loops now, once per process, by looking up a
    few generated values: the batch's parent does it when its :class:`~voicecheck.replaycheck.Ledger`
    is made, so no call pays it (CPU figures in ``benchmarks/results/replay.md``)."""
    values = np.random.default_rng(0).integers(0, 1 << 31, 64)
    q = _Values.of(values, np.arange(values.size))
    hits = q.hits([np.column_stack([values, np.arange(values.size) + 5])], [1])
    _best_spans(q, hits, DEFAULT_RULE, INDEX_PARAMS.frame_s)


def _now() -> str:
    """Now as ISO 8601 UTC with microseconds (compares as text with the stores' timestamps in seconds,
    as retention does, and orders items stored within one second)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by sorting (numpy 2's hashing unique is several times slower on int64 here)."""
    s = np.sort(np.asarray(values).reshape(-1))
    if s.size == 0:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


_SEEN_BITS = 18
"""Low bits of a value that :attr:`_Values.seen` keeps a bit for (2**18 bits: 32 KB, in the first-level cache)."""


@dataclass(frozen=True)
class _Values:
    """A call's (stored) hash values arranged for a lookup.

    Attributes:
        sorted_values, sorted_frames: the hashes' values and frames by value (stable: equal values
            keep the fingerprint's order), int64, shape (n,).
        distinct: the distinct values, sorted, shape (d,).
        first, count: where each distinct value's run starts in ``sorted_values`` and its length.
        directory, shift: the distinct values by bucket, the bucket of a value v being
            ``(v - distinct[0]) >> shift``: bucket j's values are ``distinct[directory[j]:directory[j + 1]]``
            (int32, one bucket per distinct value or fewer; shape (2**b + 1,), 2**b >= d).
        seen: bit ``v & (2**_SEEN_BITS - 1)`` is set for every distinct value v (uint64 words, 32 KB):
            most values that are not the call's are told by this bit alone, without a bucket's read.
    """

    sorted_values: np.ndarray
    sorted_frames: np.ndarray
    distinct: np.ndarray
    first: np.ndarray
    count: np.ndarray
    directory: np.ndarray
    shift: int
    seen: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, frames: np.ndarray) -> _Values:
        values, frames = np.asarray(values, dtype=np.int64), np.asarray(frames, dtype=np.int64)
        low = int(values.min()) if values.size else 0
        if values.size and int(values.max()) - low < 1 << 48:  # sorted with their frames, no permutation
            v, f = stable_sort(values - low, frames)
            v += low
        else:
            order = stable_order(values)
            v, f = np.ascontiguousarray(values[order]), frames[order]
        distinct, first, count, directory, shift, seen = compiled(_runs_loop)(v, _SEEN_BITS)
        return cls(v, f, distinct, first, count, directory, int(shift), seen)

    def hits(self, parts: list[np.ndarray], items: list[int]) -> np.ndarray:
        """The rows of ``parts`` (each an item's (stored value, frame) rows, int64, shape (n_i, 2); of
        item ``items[i]``) whose value is one of the call's, part after part, each in its order:
        (value, item, frame, index of the value in :attr:`distinct`), int64, shape (k, 4).

        A value whose bit in :attr:`seen` is set is looked for among the few distinct values of its
        bucket (:attr:`directory`): a cache line or two, where a binary search per value
        (``np.searchsorted``) cost ~60 ns here."""
        out = np.empty((sum(len(p) for p in parts), 4), dtype=np.int64)  # pages never written are never touched
        loop, k = compiled(_hits_loop), 0
        for rows, item in zip(parts, items, strict=True):
            rows = np.ascontiguousarray(rows, dtype=np.int64)
            k = loop(self.distinct, self.directory, self.shift, self.seen, rows, item, out, k)
        return out[:k]


def _runs_loop(v: np.ndarray, seen_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """Of sorted int64 ``v``: its distinct values, where each one's run starts and its length, and the
    :attr:`_Values.directory`, ``shift`` and ``seen`` (of ``seen_bits`` low bits) of the distinct values
    (run compiled: :func:`voicecheck.jit.compiled`)."""
    n = v.size
    first = np.empty(n, dtype=np.int64)
    d = 0
    for k in range(n):
        if k == 0 or v[k] != v[k - 1]:
            first[d] = k
            d += 1
    first = first[:d].copy()
    count = np.empty(d, dtype=np.int64)
    for r in range(d):
        count[r] = (first[r + 1] if r + 1 < d else n) - first[r]
    distinct = v[first]
    bits = 0  # 2**bits buckets, at least one per distinct value
    while (1 << bits) < d:
        bits += 1
    span = np.uint64(distinct[d - 1]) - np.uint64(distinct[0]) if d else np.uint64(0)  # exact as unsigned
    width = 0
    while width < 64 and (span >> np.uint64(width)) != np.uint64(0):
        width += 1
    shift = max(0, width - bits)
    directory = np.empty((1 << bits) + 1, dtype=np.int32)
    seen = np.zeros(1 << max(0, seen_bits - 6), dtype=np.uint64)
    j = 0  # directory[j]: the first distinct value of bucket j or a later one
    for r in range(d):
        bucket = np.int64((np.uint64(distinct[r]) - np.uint64(distinct[0])) >> np.uint64(shift))
        while j <= bucket:
            directory[j] = r
            j += 1
        low_bits = distinct[r] & ((1 << seen_bits) - 1)
        seen[low_bits >> 6] |= np.uint64(1) << np.uint64(low_bits & 63)
    directory[j:] = d
    return distinct, first, count, directory, shift, seen


def _hits_loop(
    distinct: np.ndarray,
    directory: np.ndarray,
    shift: int,
    seen: np.ndarray,
    rows: np.ndarray,
    item: int,
    out: np.ndarray,
    k: int,
) -> int:
    """:meth:`_Values.hits` of one item's ``rows``, written into ``out`` from row ``k`` on; returns
    the rows written so far (run compiled: :func:`voicecheck.jit.compiled`)."""
    if distinct.size == 0:
        return k
    low, high, mask = distinct[0], distinct[distinct.size - 1], seen.size * 64 - 1
    for j in range(rows.shape[0]):
        value = rows[j, 0]
        if value < low or value > high or not (seen[(value & mask) >> 6] >> np.uint64(value & 63)) & np.uint64(1):
            continue
        bucket = np.int64((np.uint64(value) - np.uint64(low)) >> np.uint64(shift))
        for t in range(directory[bucket], directory[bucket + 1]):
            if distinct[t] >= value:
                if distinct[t] == value:
                    out[k, 0], out[k, 1], out[k, 2], out[k, 3] = value, item, rows[j, 1], t
                    k += 1
                break
    return k


def _unique_rows(rows: np.ndarray) -> np.ndarray:
    """(hash, item, frame) rows sorted by hash, item, frame, duplicates dropped (int64, shape (k, 3))."""
    rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = np.any(rows[1:] != rows[:-1], axis=1)
    return rows[keep]


_ROWS_V2 = b"VCR2"
"""Starts an item's rows packed by columns (a zlib stream starts with 0x78, never with this)."""


class _FramesPacked:
    """An item's frames as :func:`_pack` writes them by columns, compressed on first use (an item's raw
    and keyed rows share them)."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames
        self._packed: bytes | None = None

    def __call__(self) -> bytes:
        if self._packed is None:
            self._packed = zlib.compress(np.asarray(self.frames, dtype=np.int64).astype("<u4").tobytes(), 1)
        return self._packed


def _pack(
    values: np.ndarray, frames: np.ndarray, by_columns: bool = True, frames_packed: _FramesPacked | None = None
) -> bytes:
    """An item's (stored hash value, frame) rows, for erasure, re-keying and borrower-scoped lookups.

    By columns (schema 3, when every value and frame fits in 32 bits): ``_ROWS_V2``, the row count
    (uint32), the values as uint32 (random when keyed: not worth compressing), then the frames as
    uint32, compressed (they increase slowly; ``frames_packed``, made from ``frames``, when given).
    About 5 bytes per row and ~10x less zlib work than schema 2's compressed int64 pairs, which values
    of more than 32 bits (keyed triplets) keep."""
    v, f = np.asarray(values, dtype=np.int64), np.asarray(frames, dtype=np.int64)
    fits = v.size == 0 or (v.min() >= 0 and v.max() < 1 << 32 and f.min() >= 0 and f.max() < 1 << 32)
    if by_columns and fits:
        head = _ROWS_V2 + np.uint32(v.size).tobytes()
        return head + v.astype("<u4").tobytes() + (frames_packed or _FramesPacked(f))()
    return zlib.compress(np.stack([v, f], axis=1).tobytes(), 1)


def _unpack(blob: bytes) -> np.ndarray:
    """The rows :func:`_pack` packed (either layout), int64, shape (n, 2)."""
    if blob[:4] != _ROWS_V2:
        return np.frombuffer(zlib.decompress(blob), dtype=np.int64).reshape(-1, 2)
    n = int(np.frombuffer(blob, dtype="<u4", count=1, offset=4)[0])
    values = np.frombuffer(blob, dtype="<u4", count=n, offset=8)
    frames = np.frombuffer(zlib.decompress(blob[8 + 4 * n :]), dtype="<u4")
    if frames.size != n:
        raise StoreError(f"replay index rows hold {n} values but {frames.size} frames: the file is damaged.")
    return np.stack([values, frames], axis=1).astype(np.int64)


@dataclass(frozen=True)
class _Span:
    call_first: int
    call_last: int
    item_first: int
    item_last: int
    hits: int
    delta: int


def _best_spans(q: _Values, hits: np.ndarray, rule: MatchRule, hop_s: float) -> list[tuple[int, _Span]]:
    """Per candidate item, the largest group of hits on its best time difference.

    Every index hit (hash, item, frame, index of its value in ``q.distinct``) is paired with every call
    frame holding its value (:func:`_pairs_loop`); the pairs are ordered by their key ``item * 2**25 +
    (item frame - call frame) + 2**24`` (a compact key of the same order is sorted: :func:`stable_sort`),
    and :func:`_spans_loop` finds each item's best difference (most pairs with keys within
    ``rule.tolerance_frames``, the smallest of equals), keeps the ``rule.max_candidates`` items with
    most pairs on it (fewer ids first among equals) and splits each one's pairs near it where the call
    has gaps > ``rule.max_gap_s``: the first group with most pairs is its span. Integer work in compiled
    loops (:func:`voicecheck.jit.compiled`; in numpy it took ~25 passes, ~0.35 ms a lookup)."""
    if hits.size == 0:
        return []
    hits = np.ascontiguousarray(hits, dtype=np.int64)
    items, keys, call_frames, low, bits = compiled(_pairs_loop)(q.first, q.count, q.sorted_frames, hits)
    keys, call_frames = stable_sort(keys, call_frames)  # a group's order does not matter (_spans_loop)
    gap = int(round(rule.max_gap_s / hop_s))
    spans = compiled(_spans_loop)
    found = spans(keys, call_frames, items, low, bits, rule.tolerance_frames, rule.max_candidates, gap)
    return [
        (item, _Span(call_first, call_last, item_first, item_last, hits=n, delta=delta))
        for item, delta, call_first, call_last, item_first, item_last, n in found.tolist()
    ]


def _pairs_loop(
    first: np.ndarray, count: np.ndarray, sorted_frames: np.ndarray, hits: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Every hit (a row of ``hits``) with every call frame of its value (``sorted_frames[first[v]:
    first[v] + count[v]]``), hit after hit: the hits' distinct items (sorted), and per pair its compact
    key ``rank << bits | (item frame - call frame - low)`` (rank: of its item among them) and its call
    frame (int64, shape (n,) each); ``low``, the least difference the frames allow, and ``bits``. The
    compact keys sort as the pairs' keys ``item * 2**25 + difference + 2**24`` do (run compiled:
    :func:`voicecheck.jit.compiled`)."""
    k = hits.shape[0]
    starts = np.empty(k, dtype=np.int64)  # the first item of each run of hits of one item
    n_runs, n = 0, 0
    for h in range(k):
        n += count[hits[h, 3]]
        if h == 0 or hits[h, 1] != hits[h - 1, 1]:
            starts[n_runs] = hits[h, 1]
            n_runs += 1
    runs = np.sort(starts[:n_runs])  # the batch's look-ups: one run per item
    items = np.empty(n_runs, dtype=np.int64)
    n_items = 0
    for r in range(n_runs):
        if r == 0 or runs[r] != runs[r - 1]:
            items[n_items] = runs[r]
            n_items += 1
    items = items[:n_items].copy()
    low = hits[:, 2].min() - sorted_frames.max()
    widest, bits = hits[:, 2].max() - sorted_frames.min() - low, 0
    while (1 << bits) <= widest:
        bits += 1
    keys, call_frames = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    p, rank = 0, 0
    for h in range(k):
        if h == 0 or hits[h, 1] != hits[h - 1, 1]:
            rank = np.searchsorted(items, hits[h, 1])
        v, frame = hits[h, 3], hits[h, 2]
        for j in range(first[v], first[v] + count[v]):
            keys[p], call_frames[p] = (rank << bits) | (frame - sorted_frames[j] - low), sorted_frames[j]
            p += 1
    return items, keys, call_frames, low, bits


def _spans_loop(
    keys: np.ndarray,
    call_frames: np.ndarray,
    items: np.ndarray,
    low: int,
    bits: int,
    tol: int,
    max_candidates: int,
    gap: int,
) -> np.ndarray:
    """:func:`_best_spans`' search over the pairs (compact ``keys`` sorted, as :func:`_pairs_loop`
    makes them; equal keys in any order): per candidate, most pairs first, (item, delta, call_first,
    call_last, item_first, item_last, hits counted once per call frame), int64, shape (candidates, 7).
    Windows, items and ranges are those of the pairs' full keys ``item * 2**25 + delta + 2**24``.
    Run compiled: :func:`voicecheck.jit.compiled`."""
    span, n = 2 * _DELTA_SPAN, keys.size
    deltas = (keys & ((1 << bits) - 1)) + low
    full = items[keys >> bits] * span + deltas + _DELTA_SPAN
    best_key, best_window = np.empty(items.size, dtype=np.int64), np.empty(items.size, dtype=np.int64)
    n_best, lo, hi, p = 0, 0, 0, 0
    while p < n:  # per distinct key: the pairs within tol of it; per item, its first largest window
        end = p + 1
        while end < n and full[end] == full[p]:
            end += 1
        while full[lo] < full[p] - tol:
            lo += 1
        hi = max(hi, end)
        while hi < n and full[hi] <= full[p] + tol:
            hi += 1
        if n_best == 0 or best_key[n_best - 1] // span != full[p] // span:
            best_key[n_best], best_window[n_best] = full[p], hi - lo
            n_best += 1
        elif hi - lo > best_window[n_best - 1]:
            best_key[n_best - 1], best_window[n_best - 1] = full[p], hi - lo
        p = end
    n_out = min(max_candidates, n_best)
    out = np.empty((n_out, 7), dtype=np.int64)
    taken = np.zeros(n_best, dtype=np.bool_)
    for c in range(n_out):  # the items by window, most first; among equals the earlier (a stable sort)
        pick = -1
        for b in range(n_best):
            if not taken[b] and (pick < 0 or best_window[b] > best_window[pick]):
                pick = b
        taken[pick] = True
        item, delta = best_key[pick] // span, best_key[pick] % span - _DELTA_SPAN
        first = np.searchsorted(full, item * span + max(delta - tol + _DELTA_SPAN, 0), side="left")
        last = np.searchsorted(full, item * span + min(delta + tol + _DELTA_SPAN, span - 1), side="right")
        by_time = first + np.argsort(call_frames[first:last])  # equal call frames in any order: groups are sets
        out[c, 0], out[c, 1], size, start = item, delta, -1, 0
        for j in range(1, by_time.size + 1):
            if j < by_time.size and call_frames[by_time[j]] - call_frames[by_time[j - 1]] <= gap:
                continue
            if j - start > size:  # a group ends: the first with most pairs is kept
                group = by_time[start:j]
                frames = call_frames[group]
                size = j - start
                out[c, 2], out[c, 3] = frames[0], frames[-1]
                out[c, 4], out[c, 5] = (deltas[group] + frames).min(), (deltas[group] + frames).max()
                out[c, 6] = 1 + np.count_nonzero(frames[1:] != frames[:-1])
            start = j
    return out
