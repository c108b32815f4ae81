"""Key management and store migration: ``voicecheck key init|rotate|show`` and ``store migrate``.

Rotation replaces the key without a window in which data is unreadable: the new key is written to
the key file first, *beside* the old one (the old one still decrypts); every blob of both stores is
re-encrypted under the new key; every blob is then read back with the new key alone; the audit log
is re-signed; only then is the old key dropped from the file. A rotation interrupted at any point
leaves every store readable with the key file as it is, and running it again finishes the job.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from . import audit, callstore, enrollment, replaycheck
from .config import Settings
from .crypto import (
    Cipher,
    Keyring,
    cipher_for,
    create_key_file,
    key_id,
    key_path,
    keyring_for,
    new_key,
    refuse_beside_data,
)
from .crypto import write_key_file as _write_key_file
from .errors import StoreError, UsageError

log = logging.getLogger(__name__)


def init_key(settings: Settings) -> tuple[Path, str]:
    """Create the key file the settings name (default ``$XDG_CONFIG_HOME/voicecheck/key``).

    Returns:
        (key file path, new key id).

    Raises:
        UsageError: the file exists (never overwritten), lies inside a data folder, or VOICECHECK_KEY is set.
    """
    if os.environ.get("VOICECHECK_KEY"):
        raise UsageError(
            "VOICECHECK_KEY is set, so voicecheck takes its key from there and would not read a key file; "
            "unset it to create and use a key file"
        )
    path = key_path(settings)
    refuse_beside_data(path, settings.store, "store")
    refuse_beside_data(path, settings.embeddings, "embeddings")
    return path, create_key_file(path)


def describe_key(settings: Settings) -> dict[str, Any]:
    """Where the key comes from and its ids (never the key itself)."""
    if not settings.encryption:
        return {"encryption": "none (encryption = false)", "source": None, "current": None, "keys": []}
    ring = keyring_for(settings)
    return {"encryption": "aes-256-gcm", "source": ring.source, "current": ring.current, "keys": list(ring.keys)}


def _open_stores(settings: Settings, cipher: Cipher) -> list[Any]:
    """The stores of the settings that exist on disk, opened with ``cipher`` (none is created); the
    replay index among them (its hash values are keyed with a key derived from the store key, so a
    rotation re-keys it: :meth:`voicecheck.replay.FingerprintIndex.reseal`)."""
    out: list[Any] = []
    if (Path(settings.store) / enrollment.DB_NAME).exists():
        out.append(enrollment.VoiceprintStore(settings.store, cipher))
    if (Path(settings.embeddings) / callstore.DB_NAME).exists():
        out.append(callstore.CallStore(settings.embeddings, cipher))
    for kind, path in replaycheck.index_paths(settings).items():
        if path.exists():
            out.append(replaycheck.open_index(settings, cipher, kind))
    return out


def rotate_key(settings: Settings, keep_old: bool = False) -> dict[str, Any]:
    """Re-encrypt the voiceprint and call stores and re-sign the audit log under a new key (module doc).

    Args:
        keep_old: keep the old key(s) in the key file for decryption (other folders still encrypted
            with them); by default they are dropped once every blob reads back under the new key.

    Returns:
        ``{"old": [key ids], "new": key id, "blobs": n, "audit_lines": n, "dropped_old": bool}``.

    Raises:
        UsageError: the key comes from VOICECHECK_KEY (rotation rewrites a key file) or encryption is off.
        StoreError: the audit log does not verify (nothing changed), or a blob does not open.
    """
    if not settings.encryption:
        raise UsageError("encryption = false: there is no key to rotate")
    old = keyring_for(settings)
    if old.path is None:
        raise UsageError(
            "the key comes from VOICECHECK_KEY; rotation writes the new key to a key file: save the current key "
            "in a key file (setting key_file), unset VOICECHECK_KEY and run again"
        )
    log_path = audit.audit_path(settings)
    checked = audit.verify(log_path, Cipher(old))
    if not checked.ok:
        raise StoreError(
            f"audit log {log_path}: line {checked.bad_line} {checked.problem}; rotation stopped before changing "
            "anything (it would re-sign a damaged log): investigate, move the log aside, and run again"
        )
    key = new_key()
    both = Keyring.of([key, *old.keys.values()], old.source, old.path)
    _write_key_file(old.path, [key, *old.keys.values()])
    fresh = Cipher(Keyring.of([key], old.source, old.path))
    blobs = 0
    for store in _open_stores(settings, Cipher(both)):
        try:
            blobs += store.reseal(fresh)
        finally:
            store.close()
    try:
        for store in _open_stores(settings, fresh):  # every blob must open with the new key alone
            try:
                store.verify_all()
            finally:
                store.close()
    except StoreError as e:
        raise StoreError(
            f"key rotation not finished: a blob still needs an old key ({e}); was another voicecheck run writing? "
            f"{old.path} keeps the old and new keys, so everything stays readable: run 'voicecheck key rotate' "
            "again when no other run is writing"
        ) from None
    lines = audit.rechain(log_path, Cipher(both), fresh)
    if not keep_old:
        _write_key_file(old.path, [key])
    new_id = key_id(key)
    audit.AuditLog(log_path, fresh).record(
        "key.rotate",
        old_key_ids=list(old.keys),
        new_key_id=new_id,
        dropped_old=not keep_old,
        counts={"blobs": blobs, "audit_lines": lines},
    )
    return {"old": list(old.keys), "new": new_id, "blobs": blobs, "audit_lines": lines, "dropped_old": not keep_old}


def migrate_stores(settings: Settings) -> list[str]:
    """Upgrade both stores to this schema and to the settings' encryption; re-sign the audit log
    with the key when the store was unencrypted before. Returns one line per store."""
    cipher = cipher_for(settings)
    lines = []
    for name, module, folder in (
        ("voiceprint store", enrollment, settings.store),
        ("call-embedding store", callstore, settings.embeddings),
    ):
        cipher.check_folder(folder, "store" if module is enrollment else "embeddings")
        done = module.migrate(folder, cipher)
        lines.append(f"{name} {Path(folder) / module.DB_NAME}: {done or 'none yet (nothing to migrate)'}")
    lines += replaycheck.migrate(settings, cipher)
    log_path = audit.audit_path(settings)
    if cipher.encrypted and log_path.exists() and not audit.verify(log_path, cipher).ok:
        n = audit.rechain(log_path, Cipher(None), cipher)
        lines.append(f"audit log {log_path}: {n} line(s) re-signed with the key")
    audit.audit_log(settings, cipher).record("store.migrate", results=lines)
    return lines
