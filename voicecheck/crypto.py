"""Encryption at rest for biometric data: the key, its file, and sealed blobs (AES-256-GCM).

Every biometric blob voicecheck stores (voiceprint vectors, call and window embeddings, window
times, speech regions, watchlist vectors) is sealed with AES-256-GCM under a 256-bit key:

    b"VCE1" | key id (8 bytes) | nonce (12 random bytes) | ciphertext | GCM tag (16 bytes)

The associated data is the header plus the blob's *context* (table, column, the row's identity:
owner, content hash, model, dimension), so a blob copied to another row, column or store fails
authentication exactly like an edited one: :class:`voicecheck.errors.StoreError`, never a vector.

The key comes, in this order, from ``VOICECHECK_KEY`` (base64 of 32 bytes), else from the key file
(setting ``key_file`` / env ``VOICECHECK_KEY_FILE``, default ``$XDG_CONFIG_HOME/voicecheck/key``).
A key file holds one or more keys; the first encrypts, the others only decrypt (kept during a
rotation). The key never lives beside the data: a key file inside the store or embeddings folder
is refused. With ``encryption = false`` (explicit opt-out) blobs are stored as plain bytes and every
run says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StoreError, UsageError

log = logging.getLogger(__name__)

MAGIC = b"VCE1"
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
AES_GCM = "aes-256-gcm"
PLAINTEXT = "none"
KEY_FORMAT = "voicecheck-key"
MAX_KEY_FILE_BYTES = 64 * 1024
INIT_HINT = "run 'voicecheck key init' to create one"


def key_id(key: bytes) -> str:
    """A key's public id: 16 hex digits derived from the key (the same key always has the same id)."""
    return hashlib.sha256(b"voicecheck key id v1\0" + key).hexdigest()[: 2 * KEY_ID_BYTES]


def new_key() -> bytes:
    """32 random bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


@dataclass(frozen=True)
class Keyring:
    """Keys by id; ``current`` encrypts, every key decrypts. ``source`` names where they came from."""

    keys: dict[str, bytes]
    current: str
    source: str
    path: Path | None = None  # the key file, None for VOICECHECK_KEY

    @classmethod
    def of(cls, keys: list[bytes], source: str, path: Path | None = None) -> Keyring:
        if not keys:
            raise UsageError(f"{source} holds no key; {INIT_HINT}")
        return cls({key_id(k): k for k in keys}, key_id(keys[0]), source, path)


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/voicecheck/key`` (``~/.config/voicecheck/key`` when XDG_CONFIG_HOME is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "voicecheck" / "key"


def key_path(settings: Any) -> Path:
    """The key file the settings name (``key_file``), or the per-user default."""
    return Path(settings.key_file).expanduser() if settings.key_file else default_key_path()


def refuse_beside_data(path: Path, folder: str | Path, name: str) -> None:
    """Raise UsageError when key file ``path`` lies inside data folder ``folder`` (a key beside the
    data it protects protects nothing: a copy of the folder would carry its own key)."""
    target = path.expanduser().resolve()
    where = Path(folder).expanduser().resolve()
    if target == where or where in target.parents:
        raise UsageError(
            f"key file {path} is inside the {name} folder {where}: a key kept beside the data it protects "
            f"protects nothing; keep it elsewhere (default {default_key_path()}) and set key_file to it"
        )


def parse_key_text(text: str, source: str) -> list[bytes]:
    """Keys from a key file's text (JSON, ``voicecheck-key`` format), current key first.

    Raises:
        UsageError: not a voicecheck key file, or a key that is not 32 bytes of base64.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"{source} is not a voicecheck key file (not JSON); {INIT_HINT}") from None
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT or not isinstance(data.get("keys"), list):
        raise UsageError(f"{source} is not a voicecheck key file (format {KEY_FORMAT!r})")
    keys = []
    for n, entry in enumerate(data["keys"], 1):
        value = entry.get("key") if isinstance(entry, dict) else None
        keys.append(decode_key(value, f"{source}: key {n}"))
    return keys


def decode_key(value: Any, where: str) -> bytes:
    """32 key bytes from base64 text, or UsageError saying what is wrong."""
    if not isinstance(value, str):
        raise UsageError(f"{where} must be base64 text of {KEY_BYTES} bytes")
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{where} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise UsageError(f"{where} decodes to {len(key)} bytes; an AES-256 key is {KEY_BYTES} bytes")
    return key


def key_file_text(keys: list[bytes]) -> str:
    """A key file's content for ``keys`` (the first is the current one)."""
    from datetime import datetime, timezone

    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entries = [{"id": key_id(k), "key": base64.b64encode(k).decode("ascii"), "saved_at": made} for k in keys]
    return json.dumps({"format": KEY_FORMAT, "version": 1, "keys": entries}, indent=1) + "\n"


def read_key_file(path: Path) -> Keyring:
    """The keys in a key file, which must be a regular file readable by its owner only.

    Raises:
        UsageError: missing (with the hint to run ``voicecheck key init``), readable by others, or malformed.
    """
    from .files import read_regular

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(
            f"no encryption key: key file {path} does not exist and VOICECHECK_KEY is unset; {INIT_HINT} "
            "(or set encryption = false to keep biometric data unencrypted, not recommended)"
        ) from None
    except OSError as e:
        raise UsageError(f"key file {path} cannot be read: {e.strerror or e}") from None
    if stat.S_ISREG(mode) and mode & 0o077:
        raise UsageError(
            f"key file {path} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
            f"make it private: chmod 600 {path}"
        )
    data = read_regular(path, MAX_KEY_FILE_BYTES, "key file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"key file {path} is not UTF-8 text; it is not a voicecheck key file") from None
    return Keyring.of(parse_key_text(text, f"key file {path}"), f"key file {path}", path)


def keyring_for(settings: Any) -> Keyring:
    """The key ring the settings and environment give: ``VOICECHECK_KEY``, else the key file.

    Raises:
        UsageError: no key (the message says to run ``voicecheck key init``), a bad key, or a key
            file inside the data folders.
    """
    env = os.environ.get("VOICECHECK_KEY")
    if env:
        return Keyring.of([decode_key(env, "VOICECHECK_KEY")], "VOICECHECK_KEY")
    path = key_path(settings)
    refuse_beside_data(path, settings.store, "store")
    refuse_beside_data(path, settings.embeddings, "embeddings")
    return read_key_file(path)


class Cipher:
    """Seals and opens biometric blobs, or (``keyring`` None: the explicit opt-out) passes them through.

    Args:
        keyring: the keys; None only when encryption is switched off by ``encryption = false``.
    """

    def __init__(self, keyring: Keyring | None) -> None:
        self.keyring = keyring
        self._aead: dict[str, Any] = {}

    @property
    def encrypted(self) -> bool:
        return self.keyring is not None

    @property
    def mode(self) -> str:
        """``aes-256-gcm`` or ``none`` (as recorded in a store's meta table)."""
        return AES_GCM if self.encrypted else PLAINTEXT

    def check_folder(self, folder: str | Path, name: str) -> None:
        """Refuse (UsageError) when this cipher's key file lies inside the data folder ``folder``."""
        if self.keyring is not None and self.keyring.path is not None:
            refuse_beside_data(self.keyring.path, folder, name)

    def describe(self) -> str:
        """For summaries: the mode and the current key id, never the key."""
        if self.keyring is None:
            return "none (UNENCRYPTED: encryption = false)"
        return f"{AES_GCM}, key id {self.keyring.current} from {self.keyring.source}"

    def _gcm(self, kid: str) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        assert self.keyring is not None
        if kid not in self._aead:
            self._aead[kid] = AESGCM(self.keyring.keys[kid])
        return self._aead[kid]

    def seal(self, data: bytes, context: tuple[Any, ...]) -> bytes:
        """``data`` encrypted under the current key, bound to ``context`` (plain bytes when not encrypted)."""
        if self.keyring is None:
            return bytes(data)
        kid = self.keyring.current
        header = MAGIC + bytes.fromhex(kid) + secrets.token_bytes(NONCE_BYTES)
        return header + self._gcm(kid).encrypt(header[-NONCE_BYTES:], bytes(data), _aad(header[:12], context))

    def open(self, blob: bytes, context: tuple[Any, ...], what: str) -> bytes:
        """The plaintext of a blob sealed with ``context``.

        Args:
            what: names the blob in messages ("voiceprint store /x: recording of borrower B1, narrow").

        Raises:
            StoreError: not a sealed blob, a key the ring lacks, or failed authentication (edited,
                or moved from another row).
        """
        if self.keyring is None:
            return bytes(blob)
        from cryptography.exceptions import InvalidTag

        blob = bytes(blob)
        if len(blob) < HEADER_BYTES + TAG_BYTES or blob[:4] != MAGIC:
            raise StoreError(
                f"{what}: not an encrypted blob in a store that must hold only encrypted ones; the store was "
                "altered: restore it from a backup"
            )
        kid = blob[4:12].hex()
        if kid not in self.keyring.keys:
            raise StoreError(
                f"{what}: encrypted under key id {kid}, which {self.keyring.source} does not hold "
                f"(it holds {', '.join(self.keyring.keys)}): wrong key; use the key this store was encrypted with"
            )
        try:
            return self._gcm(kid).decrypt(blob[12:HEADER_BYTES], blob[HEADER_BYTES:], _aad(blob[:12], context))
        except InvalidTag:
            raise StoreError(
                f"{what}: fails authentication (edited, or moved from another row or store): the store is damaged "
                "or was tampered with; restore it from a backup"
            ) from None

    def key_of(self, blob: bytes) -> str | None:
        """The key id a sealed blob names (None for plain bytes)."""
        return blob[4:12].hex() if len(blob) >= HEADER_BYTES and blob[:4] == MAGIC else None

    def mac_key(self, kid: str | None = None) -> tuple[str, bytes] | None:
        """(key id, 32-byte HMAC key for the audit log) derived from key ``kid`` (default: the current
        one) with HKDF-SHA256; None when not encrypted. An unknown ``kid`` raises StoreError."""
        return self.derive(b"voicecheck audit log v1", kid)

    def derive(self, purpose: bytes, kid: str | None = None) -> tuple[str, bytes] | None:
        """(key id, 32-byte key for ``purpose``) derived from key ``kid`` (default: the current one) with
        HKDF-SHA256, so a secret of one use (the audit log's MAC, the replay index's keyed hashes) is
        never the encryption key itself and never stored; None when not encrypted.

        Raises:
            StoreError: ``kid`` is not in the key ring.
        """
        if self.keyring is None:
            return None
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        kid = kid or self.keyring.current
        if kid not in self.keyring.keys:
            raise StoreError(f"key id {kid} is not in {self.keyring.source} (it holds {', '.join(self.keyring.keys)})")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
        return kid, hkdf.derive(self.keyring.keys[kid])


def _aad(header: bytes, context: tuple[Any, ...]) -> bytes:
    return header + json.dumps([str(c) for c in context], ensure_ascii=True, separators=(",", ":")).encode("ascii")


def cipher_for(settings: Any) -> Cipher:
    """The cipher the settings ask for: encrypted with the key (default), or plaintext when
    ``settings.encryption`` is False (each store opened so then logs a warning that it is unencrypted).

    Raises:
        UsageError: encryption on and no usable key (the message says to run ``voicecheck key init``).
    """
    if not settings.encryption:
        return Cipher(None)
    return Cipher(keyring_for(settings))


def default_cipher() -> Cipher:
    """The cipher of the environment alone (``VOICECHECK_KEY``, ``VOICECHECK_KEY_FILE`` or the per-user
    key file), encryption on: what a store opened without an explicit cipher uses."""
    from .config import load_settings

    return cipher_for(load_settings())


def create_key_file(path: Path) -> str:
    """Write a new random key to ``path`` (0600, parents 0700), refusing to overwrite anything.

    Returns:
        The new key's id.

    Raises:
        UsageError: ``path`` exists (a key is never overwritten: data sealed with it would be lost).
    """
    from .files import private_dir

    private_dir(path.parent)
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UsageError(
            f"key file {path} exists; voicecheck never overwrites a key (data encrypted with it would be lost): "
            "use it as it is, or 'voicecheck key rotate' to replace it"
        ) from None
    except OSError as e:
        raise UsageError(f"key file {path} cannot be created: {e.strerror or e}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key_file_text([key]))
        f.flush()
        os.fsync(f.fileno())
    return key_id(key)


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file with ``keys`` (the first current), atomically, 0600."""
    from .files import write_private

    write_private(path, key_file_text(keys))
