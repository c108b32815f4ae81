"""Private files, no writes through links, bounded reads, and the one-writer folder lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from voicecheck.errors import AudioError, UsageError
from voicecheck.files import (
    LOCK_NAME,
    FolderLock,
    ensure_private_file,
    open_private,
    private_dir,
    read_regular,
    write_private,
)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_created_files_and_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        folder = private_dir(tmp_path / "a" / "b")
        with open_private(folder / "x.txt", "w") as f:
            f.write("hello")
        write_private(folder / "y.json", "{}")
        ensure_private_file(folder / "z.sqlite")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a") == 0o700 and mode(folder) == 0o700
    for name in ("x.txt", "y.json", "z.sqlite"):
        assert mode(folder / name) == 0o600
    assert (folder / "x.txt").read_text() == "hello"


def test_no_write_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("keep")
    link = tmp_path / "results.jsonl"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="symbolic link"):
        open_private(link, "a")
    with pytest.raises(UsageError, match="symbolic link"):
        write_private(link, "x")
    folder_link = tmp_path / "out"
    folder_link.symlink_to(tmp_path)
    with pytest.raises(UsageError, match="symbolic link"):
        private_dir(folder_link)
    assert target.read_text() == "keep"


def test_a_file_where_a_folder_is_wanted(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        private_dir(tmp_path / "out")


def test_read_regular_refuses_devices_fifos_and_big_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not a regular file"):
        read_regular("/dev/zero", 1000, "audio file", AudioError)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="not a regular file"):  # answers at once, never hangs
        read_regular(fifo, 1000, "audio file", AudioError)
    big = tmp_path / "big.wav"
    big.write_bytes(b"0" * 2001)
    with pytest.raises(UsageError, match="2001 bytes, more than the 2000-byte limit"):
        read_regular(big, 2000, "manifest")
    assert read_regular(big, 2001, "manifest") == b"0" * 2001
    with pytest.raises(UsageError, match="no such file"):
        read_regular(tmp_path / "missing", 10, "manifest")
    with pytest.raises(UsageError, match="is a folder"):
        read_regular(tmp_path, 10, "manifest")


def test_folder_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    with FolderLock(tmp_path / "run", "batch"):
        with pytest.raises(UsageError, match=r"in use by another voicecheck run \(batch by process \d+"):
            FolderLock(tmp_path / "run", "batch").__enter__()
        # another process is refused too (flock is per open file description)
        code = (
            "import sys; from voicecheck.files import FolderLock; from voicecheck.errors import UsageError\n"
            f"try:\n    FolderLock({str(tmp_path / 'run')!r}, 'x').__enter__()\n"
            "except UsageError as e:\n    print(e); sys.exit(3)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 3, done.stderr
        assert "in use by another voicecheck run" in done.stdout
    with FolderLock(tmp_path / "run", "batch"):  # released on exit
        pass
    assert (tmp_path / "run" / LOCK_NAME).exists()
