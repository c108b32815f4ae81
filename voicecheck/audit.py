"""The audit log: who did what to whose biometric data, hash-chained so that tampering shows.

``<store>/audit.log`` (0600) holds one JSON object per line: time (UTC), OS user, host, process,
command line, the event (``enroll``, ``check``, ``batch.call``, ``batch``, ``erase``, ``purge``,
``watchlist.add`` ...) and its ids, verdict or reason and counts — never a vector, never a score.
Each line carries ``prev`` (the previous line's ``hash``) and its own ``hash`` over everything else:

- with an encryption key, ``hash`` is HMAC-SHA256 under a subkey derived from the key (HKDF; the
  line names the key id), so someone who can edit the file but lacks the key cannot re-chain it;
- with encryption off, a plain SHA-256 chain (shows accidental damage and naive edits only).

Appends take an exclusive ``flock`` on the file, read the last line's hash and write whole lines,
so any number of processes can append and the chain stays one. :func:`verify` checks the chain and
names the first bad line. Deleting lines at the end cannot be seen from the file alone: keep the
line count and last hash that ``voicecheck audit verify`` prints somewhere else if that matters.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .crypto import Cipher
from .errors import StoreError
from .files import open_private, private_dir

log = logging.getLogger(__name__)

AUDIT_LOG = "audit.log"
GENESIS = "0" * 64
HMAC_ALG = "hmac-sha256"
PLAIN_ALG = "sha256"
_TAIL_BYTES = 1 << 16


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digest(entry: dict[str, Any], key: bytes | None) -> str:
    body = _canonical({k: v for k, v in entry.items() if k != "hash"})
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


_HOST = socket.gethostname


def _program() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else ""


def audit_path(settings: Any) -> Path:
    """``<store>/audit.log``."""
    return Path(settings.store) / AUDIT_LOG


class AuditLog:
    """Appends hash-chained entries to an audit log file.

    Args:
        path: the log file (its folder is created 0700, the file 0600).
        cipher: gives the HMAC key (encrypted stores); plain SHA-256 when it is not encrypted.
    """

    def __init__(self, path: str | Path, cipher: Cipher) -> None:
        self.path = Path(path)
        self.cipher = cipher

    def record(self, event: str, **fields: Any) -> None:
        """Append one entry: ``event`` plus ``fields`` (ids, verdict, reason, counts — no vectors)."""
        self.write([{"event": event, **fields}])

    def write(self, events: list[dict[str, Any]]) -> None:
        """Append entries (each a dict with ``event``) under one lock, in order.

        Raises:
            StoreError: the log cannot be written, or its last line is not an audit entry.
        """
        if not events:
            return
        import fcntl

        private_dir(self.path.parent)
        mac = self.cipher.mac_key()
        base = {"user": _user(), "host": _HOST(), "pid": os.getpid(), "program": _program()}
        try:
            with open_private(self.path, "ab") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                seq, prev = self._tail()
                lines = []
                for e in events:
                    seq += 1
                    entry = {"seq": seq, "time": _now(), **base, **_clean(e), "prev": prev}
                    prev = _sign(entry, mac)
                    lines.append(_canonical(entry) + b"\n")
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise StoreError(f"audit log {self.path} cannot be written: {e.strerror or e}") from None

    def _tail(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, (0, GENESIS) for an empty log; a torn last line (a writer
        killed mid-line) is cut off. Called with the lock held."""
        with open(self.path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]
                log.warning("audit log %s: a torn last line (a writer was killed) was cut off", self.path)
                size = size - _TAIL_BYTES + len(data) if size > _TAIL_BYTES else len(data)
                f.truncate(size)
            if size == 0:
                return 0, GENESIS
            last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            entry = json.loads(last)
            return int(entry["seq"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError):
            raise StoreError(
                f"audit log {self.path}: its last line is not an audit entry; run 'voicecheck audit verify'"
            ) from None


class Trail:
    """Buffers per-call entries of a batch and appends them in chunks (one lock per chunk).

    Args:
        log: the audit log.
        chunk: entries per append.
    """

    def __init__(self, log: AuditLog, chunk: int = 500) -> None:
        self.log = log
        self.chunk = chunk
        self._buffer: list[dict[str, Any]] = []

    def add(self, event: str, **fields: Any) -> None:
        self._buffer.append({"event": event, **fields})
        if len(self._buffer) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        buffer, self._buffer = self._buffer, []
        self.log.write(buffer)


def _sign(entry: dict[str, Any], mac: tuple[str, bytes] | None) -> str:
    """Set the entry's ``alg``, ``kid`` and ``hash`` (over everything else); returns the hash."""
    if mac is None:
        entry["alg"] = PLAIN_ALG
    else:
        entry["alg"], entry["kid"] = HMAC_ALG, mac[0]
    entry["hash"] = _digest(entry, None if mac is None else mac[1])
    return str(entry["hash"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop None values; sets become sorted lists (JSON)."""
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`verify`: ``ok``, lines checked, the first bad line (1-based) and why."""

    ok: bool
    lines: int
    bad_line: int | None = None
    problem: str = ""
    last_hash: str = GENESIS


def verify(path: str | Path, cipher: Cipher) -> Verdict:
    """Check the chain of an audit log line by line.

    With an encrypted store every line must be an HMAC under a key the ring holds; without one,
    every line a plain SHA-256 (a keyed line cannot be checked without the key).
    """
    p = Path(path)
    prev, n = GENESIS, 0
    if not p.exists():
        return Verdict(True, 0)
    with p.open("rb") as f:
        for n, raw in enumerate(f, 1):
            problem = _check_line(raw, prev, n, cipher)
            if problem:
                return Verdict(False, n - 1, n, problem, prev)
            prev = json.loads(raw)["hash"]
    return Verdict(True, n, last_hash=prev)


def _check_line(raw: bytes, prev: str, n: int, cipher: Cipher) -> str:
    if not raw.endswith(b"\n"):
        return "a torn line (no newline at its end)"
    try:
        entry = json.loads(raw)
    except ValueError:
        return "not JSON"
    if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
        return "not an audit entry"
    if entry.get("seq") != n:
        return f"sequence number {entry.get('seq')!r}, expected {n} (a line was removed, added or moved)"
    if entry.get("prev") != prev:
        return "does not chain to the line before it (a line was removed, added or edited)"
    alg = entry.get("alg")
    if cipher.encrypted:
        if alg != HMAC_ALG:
            return f"is {alg!r}, not keyed (hmac-sha256) in an encrypted store's log: the log was rewritten"
        try:
            mac = cipher.mac_key(str(entry.get("kid")))
        except StoreError as e:
            return f"keyed with a key the key ring lacks ({e})"
        key = mac[1] if mac else None
    elif alg == PLAIN_ALG:
        key = None
    else:
        return f"is {alg!r}; checking it needs the encryption key (encryption = false here)"
    if not hmac.compare_digest(_digest(entry, key), entry["hash"]):
        return "its hash does not match its content (the line was edited)"
    return ""


def entries(path: str | Path, borrower_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The entries of an audit log (optionally only those naming ``borrower_id``), oldest first."""
    p = Path(path)
    if not p.exists():
        return
    with p.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                entry = json.loads(raw)
            except ValueError:
                raise StoreError(f"audit log {p}: line {n} is not JSON; run 'voicecheck audit verify'") from None
            if borrower_id is None or _names(entry, borrower_id):
                yield entry


def _names(entry: dict[str, Any], borrower_id: str) -> bool:
    return entry.get("borrower_id") == borrower_id or borrower_id in (entry.get("borrower_ids") or [])


def rechain(path: str | Path, old: Cipher, new: Cipher) -> int:
    """Re-sign every line under ``new`` (key rotation, or a store migrated to encryption), after
    checking the chain under ``old``. Rewritten in place under the append lock (a copy is kept in
    ``audit.log.rechain`` until the rewrite is on disk).

    Returns:
        The number of lines re-signed.

    Raises:
        StoreError: the chain does not verify under ``old`` (nothing is rewritten).
    """
    import fcntl

    from .files import write_private

    p = Path(path)
    if not p.exists():
        return 0
    with open_private(p, "ab") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        result = verify(p, old)
        if not result.ok:
            raise StoreError(
                f"audit log {p}: line {result.bad_line} {result.problem}; it is not re-signed (that would hide the "
                "damage): keep a copy as evidence, move it aside and run again"
            )
        mac = new.mac_key()
        prev, out = GENESIS, []
        for entry in entries(p):
            entry = {k: v for k, v in entry.items() if k not in ("hash", "kid", "alg")}
            entry["prev"] = prev
            prev = _sign(entry, mac)
            out.append(_canonical(entry) + b"\n")
        backup = p.with_name(p.name + ".rechain")
        write_private(backup, p.read_bytes())
        f.truncate(0)
        f.write(b"".join(out))
        f.flush()
        os.fsync(f.fileno())
        backup.unlink()
    return len(out)


def audit_log(settings: Any, cipher: Cipher | None = None) -> AuditLog:
    """The audit log of the settings' store, signed with ``cipher`` (default: the settings' cipher)."""
    from .crypto import cipher_for

    return AuditLog(audit_path(settings), cipher if cipher is not None else cipher_for(settings))
