"""Files voicecheck writes and reads at its edges: private, never through a symlink, never unbounded.

Everything voicecheck creates (stores, call embeddings, results, reports, exports, the audit log)
concerns people, so files are created 0600 and folders 0700 whatever the umask, and no write follows
a symbolic link (a planted link could send results or vectors anywhere). Inputs (audio, manifests,
watchlist files) are read only when they are regular files within a size limit: a FIFO, a device
(``/dev/zero``) or a 7 GB file is an error, never a hang or an out-of-memory kill.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import UsageError, VoicecheckError

FILE_MODE = 0o600
DIR_MODE = 0o700
LOCK_NAME = ".voicecheck.lock"


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 folders; an existing folder is left as it is.

    Raises:
        UsageError: ``path`` exists and is not a folder, is a symbolic link, or cannot be created.
    """
    p = Path(path)
    if p.is_symlink():
        raise UsageError(f"{p} is a symbolic link; voicecheck does not write through links: give the real folder")
    if p.exists() and not p.is_dir():
        raise UsageError(f"{p} is a file, not a folder; give a folder path")
    missing = [q for q in (p, *p.parents) if not q.exists()]
    try:
        for q in reversed(missing):
            q.mkdir(mode=DIR_MODE)
            os.chmod(q, DIR_MODE)  # mkdir's mode is masked by the umask
    except FileExistsError:
        pass
    except OSError as e:
        raise UsageError(f"folder {p} cannot be created: {e.strerror or e}") from None
    return p


def _open_flags(mode: str) -> int:
    flags = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}
    if mode.rstrip("b") not in flags:
        raise ValueError(f"mode must be w, a, wb or ab, got {mode!r}")
    return flags[mode.rstrip("b")] | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_private(path: str | Path, mode: str = "w", encoding: str = "utf-8") -> IO[Any]:
    """Open ``path`` for writing ("w", "a", "wb", "ab") as a 0600 file, refusing a symbolic link.

    Raises:
        UsageError: ``path`` is a symbolic link, a folder, or cannot be opened.
    """
    p = Path(path)
    try:
        fd = os.open(p, _open_flags(mode), FILE_MODE)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{p} is a symbolic link; voicecheck does not write through links") from None
        raise UsageError(f"{p} cannot be written: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{p} is not a regular file; give a file path to write")
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (a 0600 temporary file, fsync, rename over it).

    Raises:
        UsageError: ``path`` is a symbolic link or a folder, or the folder cannot be written.
    """
    p = Path(path)
    if p.is_symlink():
        raise UsageError(f"{p} is a symbolic link; voicecheck does not write through links")
    if p.is_dir():
        raise UsageError(f"{p} is a folder; give a file path to write")
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with open_private(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        raise UsageError(f"{p} cannot be written: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def check_writable(path: str | Path) -> Path:
    """Check, before any work, that a file can be written at ``path`` (its folder exists and is
    writable; the path is no folder and no symbolic link).

    Raises:
        UsageError: saying which of these fails.
    """
    p = Path(path)
    if p.is_symlink():
        raise UsageError(f"{p} is a symbolic link; voicecheck does not write through links")
    if p.is_dir():
        raise UsageError(f"{p} is a folder; give a file path")
    folder = p.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {p}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {p}: folder {folder} is not writable")
    return p


def ensure_private_file(path: str | Path) -> Path:
    """Create ``path`` empty as a 0600 file if it does not exist (e.g. before SQLite opens it, so the
    database and the journal files SQLite derives from it are private); never follows a link."""
    p = Path(path)
    with open_private(p, "ab"):
        pass
    return p


def read_regular(path: str | Path, max_bytes: int, what: str, error: type[VoicecheckError] = UsageError) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else raises ``error``.

    The file is opened non-blocking, so a FIFO answers at once instead of hanging, and checked with
    fstat before a byte is read, so ``/dev/zero`` or a huge file never reaches memory.

    Args:
        what: what the file is, for messages ("audio file", "manifest").
        error: the VoicecheckError subclass to raise (AudioError for audio).
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{p}: no such file") from None
    except IsADirectoryError:
        raise error(f"{p}: is a folder, not a {what}") from None
    except OSError as e:
        raise error(f"{p}: cannot be read ({e.strerror or e})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{p}: is a folder, not a {what}")
        raise error(f"{p}: is not a regular file (a pipe, device or socket); give a {what} on disk")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > max_bytes:
            raise error(
                f"{p}: {info.st_size} bytes, more than the {max_bytes}-byte limit for a {what}; "
                "raise the limit in the settings if the file is genuine"
            )
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise error(f"{p}: cannot be read ({e.strerror or e})") from None
    if len(data) > max_bytes:  # grew while being read
        raise error(f"{p}: more than the {max_bytes}-byte limit for a {what}")
    return data


class FolderLock:
    """An exclusive lock on a folder, held by one process (``flock`` on ``<folder>/.voicecheck.lock``).

    The lock file names its holder (process id, user, host, command, start time), so a second run
    is refused with a message that says who holds it. The kernel releases the lock when the holder
    dies, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, folder: str | Path, purpose: str) -> None:
        self.path = private_dir(folder) / LOCK_NAME
        self.purpose = purpose
        self._f: IO[Any] | None = None

    def __enter__(self) -> FolderLock:
        import fcntl
        from datetime import datetime, timezone

        f = open_private(self.path, "ab")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise UsageError(
                f"{self.path.parent} is in use by another voicecheck run ({self._holder()}); wait for it to end, "
                "or use another folder"
            ) from None
        f.truncate(0)
        holder = {
            "pid": os.getpid(),
            "user": _user(),
            "host": socket.gethostname(),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
            "purpose": self.purpose,
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        f.write(json.dumps(holder).encode("utf-8"))
        f.flush()
        self._f = f
        return self

    def _holder(self) -> str:
        try:
            h = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return "holder unknown"
        return (
            f"{h.get('purpose', '?')} by process {h.get('pid', '?')} of {h.get('user', '?')} on "
            f"{h.get('host', '?')} since {h.get('since', '?')}"
        )

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()  # closing the descriptor releases the lock
            self._f = None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@contextlib.contextmanager
def locked(folder: str | Path, purpose: str) -> Iterator[FolderLock]:
    """``with locked(out, "batch"):`` — :class:`FolderLock` as a context manager."""
    with FolderLock(folder, purpose) as lock:
        yield lock
