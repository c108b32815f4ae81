"""The SQLite files that hold biometric data: private, overwritten on delete, encryption recorded.

Both stores (voiceprints, call embeddings) open their database here: the folder 0700, the database
created 0600 before SQLite opens it (so the -wal and -shm files SQLite derives from it are 0600 too),
WAL journal, ``secure_delete`` on (deleted rows are overwritten with zeros, not left in free pages).
The meta table records the schema version and the store's encryption (``aes-256-gcm`` or ``none``)
with a sealed key check, so a store opened with the wrong key, without a key, or with the opposite
encryption setting is refused at once with a message saying what to do.
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import stat
from pathlib import Path

from .crypto import Cipher
from .errors import StoreError, UsageError
from .files import DIR_MODE, FILE_MODE, ensure_private_file, private_dir

log = logging.getLogger(__name__)

KEY_CHECK = b"voicecheck key check"
_warned: set[str] = set()
MIGRATE_HINT = "run 'voicecheck store migrate'"


DATA_FOLDER_ENTRIES = frozenset(
    {"voiceprints.sqlite", "calls.sqlite", "audit.log", "audit.log.rechain", ".voicecheck.lock", "README.md"}
    | {"replay.sqlite", "replay.sqlite.rekey"}
    | {"models.toml", "weights", "backends", "calibration"}
)
"""What a store or embeddings folder holds (besides the databases' -wal, -shm and -journal files)."""


def private_folder(directory: Path) -> Path:
    """``directory`` as a 0700 folder: created so, or tightened when it exists with wider permissions,
    belongs to this user and holds only voicecheck's own files (a shared folder such as the home
    folder or /tmp is never changed: a warning says the files in it are 0600 but listable)."""
    private_dir(directory)
    info = directory.stat()
    if not info.st_mode & 0o077 or info.st_uid != os.getuid():
        return directory
    names = {n.removesuffix("-wal").removesuffix("-shm").removesuffix("-journal") for n in os.listdir(directory)}
    if names <= DATA_FOLDER_ENTRIES and not info.st_mode & stat.S_ISVTX:
        os.chmod(directory, DIR_MODE)
        log.info("folder %s made private (mode %04o -> 0700)", directory, stat.S_IMODE(info.st_mode))
    elif str(directory) not in _warned:
        _warned.add(str(directory))
        log.warning(
            "folder %s (mode %04o) holds other files, so voicecheck leaves its mode alone: its files are 0600 "
            "but other users can list them; keep biometric data in a folder of its own",
            directory,
            stat.S_IMODE(info.st_mode),
        )
    return directory


def connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    """Open the database at ``path`` privately (see the module doc), WAL, secure_delete on.

    Raises:
        UsageError: a symbolic link or a folder where the database should be.
        sqlite3.Error: the file is not a database (the caller turns it into a StoreError).
    """
    private_folder(path.parent)
    ensure_private_file(path)  # 0600 before SQLite creates it; an existing one is made 0600
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.is_symlink():
            raise UsageError(f"{side} is a symbolic link; voicecheck does not write through links")
        if side.exists():
            os.chmod(side, FILE_MODE)
    db = sqlite3.connect(path, timeout=timeout_s)
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA journal_mode=WAL")
    return db


def stored_version(db: sqlite3.Connection) -> str | None:
    """The schema version in the meta table, or None for a new (empty) database."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return None if row is None else str(row[0])


def check_version(version: str | None, current: str, path: Path, what: str) -> None:
    """Refuse a store of another schema version, saying how to go on."""
    if version is None or version == current:
        return
    if version.isdigit() and int(version) < int(current):
        raise StoreError(
            f"{what} {path} has schema {version}, this voicecheck reads {current} (biometric data is now encrypted "
            f"and enrollments record consent); {MIGRATE_HINT} to upgrade it in place"
        )
    raise StoreError(f"{what} {path} has schema {version}, newer than this voicecheck's {current}; upgrade voicecheck")


def init_meta(db: sqlite3.Connection, cipher: Cipher, current: str, context: str) -> None:
    """Record the schema version, the encryption mode and (encrypted) the key check in a new store."""
    with db:  # one transaction: a second process creating the same store sees all of it or none
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (current,))
        new = db.execute("INSERT OR IGNORE INTO meta VALUES ('encryption', ?)", (cipher.mode,)).rowcount == 1
        if new and cipher.encrypted:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('key_check', ?)", (seal_check(cipher, context),))


def seal_check(cipher: Cipher, context: str) -> str:
    """The key check of a store: a known text sealed under the current key (base64)."""
    return base64.b64encode(cipher.seal(KEY_CHECK, ("meta", "key_check", context))).decode("ascii")


def check_encryption(db: sqlite3.Connection, cipher: Cipher, path: Path, what: str, context: str) -> None:
    """Refuse to mix: an encrypted store needs the key; an unencrypted one refuses a key (migrate it).

    Raises:
        StoreError: the store's encryption differs from the settings', or the key does not open it.
    """
    row = db.execute("SELECT value FROM meta WHERE key='encryption'").fetchone()
    mode = None if row is None else str(row[0])
    if mode == "none" and cipher.encrypted:
        raise StoreError(
            f"{what} {path} is UNENCRYPTED (created with encryption = false) and encryption is on: voicecheck does "
            f"not mix the two; {MIGRATE_HINT} to encrypt it, or set encryption = false to go on without"
        )
    if mode != "none" and not cipher.encrypted:
        raise StoreError(
            f"{what} {path} is encrypted ({mode}) and encryption = false is set: an encrypted store is never "
            "written in plaintext; remove the opt-out and give the key it was encrypted with"
        )
    if cipher.encrypted:
        check = db.execute("SELECT value FROM meta WHERE key='key_check'").fetchone()
        if check is None:
            raise StoreError(f"{what} {path} lacks its key check: the store was altered; restore it from a backup")
        cipher.open(base64.b64decode(check[0]), ("meta", "key_check", context), f"{what} {path}: key check")
    else:
        warn_plaintext(path, what)


def warn_plaintext(path: Path, what: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning(
            "%s %s holds biometric data UNENCRYPTED (encryption = false); to encrypt it, remove the opt-out, "
            "run 'voicecheck key init' and 'voicecheck store migrate'",
            what,
            path,
        )


def checkpoint(db: sqlite3.Connection, path: Path) -> bool:
    """Move every committed page from the WAL into the database and truncate the WAL to zero bytes.

    Returns:
        True when the WAL was emptied; False when another connection still reads an older snapshot
        (its pages stay in the WAL until that reader ends; a warning says so).
    """
    try:
        busy, _log_frames, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as e:
        raise StoreError(f"{path}: WAL checkpoint failed: {e}") from None
    if busy:
        log.warning("%s: another process holds the database open; its write-ahead log is emptied when it ends", path)
    return not busy
