"""CSV manifests (calls, enrollments, trials): strict decoding, clean ids, one problem per bad row.

A manifest is UTF-8 CSV with a header. Paths in the ``audio`` column are taken relative to the
manifest's folder. A file that is not a regular file, not UTF-8 or not CSV is a UsageError naming
the line; a row with a problem (empty field, bad channel, repeated call id, a bad id) is yielded
with its ``problem`` so a batch writes an ``error`` record for it and goes on.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .types import check_id

CALL_COLUMNS = ("call_id", "borrower_id", "audio")
ID_COLUMNS = ("call_id", "borrower_id")


@dataclass(frozen=True)
class Row:
    """One manifest row; ``problem`` says why it cannot be processed."""

    row: int
    call_id: str
    borrower_id: str
    audio: str
    channel: int | None
    problem: str | None = None


def _open_text(p: Path):  # noqa: ANN202 - a text file object
    """The manifest opened as UTF-8 text (BOM allowed), refusing pipes and devices at once."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise UsageError(f"manifest {p} cannot be opened: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"manifest {p} is not a regular file; give a CSV file on disk")
    return os.fdopen(fd, "r", newline="", encoding="utf-8-sig", errors="strict")


def read_rows(path: str | Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Stream a CSV manifest as (row number, cleaned fields); ``audio`` resolved against the CSV's folder.

    Raises:
        UsageError: missing or unreadable file, not UTF-8, not CSV, or a header without the required
            columns.
    """
    p = Path(path)
    with _open_text(p) as f:
        n = 0
        try:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise UsageError(f"manifest {p} lacks column(s) {', '.join(missing)}; it needs {', '.join(required)}")
            reader.fieldnames = header
            for n, raw in enumerate(reader, 1):
                fields = {k: (v or "").strip() for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
                if fields.get("audio"):
                    a = Path(fields["audio"])
                    fields["audio"] = str(a if a.is_absolute() else p.parent / a)
                yield n, fields
        except UnicodeDecodeError as e:
            raise UsageError(
                f"manifest {p} is not UTF-8 text (after row {n}, byte {e.start} of a block); save it as UTF-8 CSV"
            ) from None
        except csv.Error as e:
            raise UsageError(f"manifest {p} is not valid CSV after row {n}: {e}") from None


def sha256_of(path: str | Path) -> str:
    """sha256 of a file's bytes (hex), read in blocks: the identity of a manifest."""
    h = hashlib.sha256()
    with _open_text(Path(path)) as f, open(f.fileno(), "rb", closefd=False) as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def customer_channel(fields: dict[str, str], default: int) -> tuple[int, str | None]:
    """The row's ``customer_channel`` (``default`` when the column is empty), and the problem if it is bad."""
    value = fields.get("customer_channel", "")
    if not value:
        return default, None
    try:
        channel = int(value)
    except ValueError:
        channel = -1
    if not 0 <= channel <= 63:
        return default, f"customer_channel must be a channel number 0-63, got {value!r}"
    return channel, None


def call_rows(path: str | Path, default_channel: int) -> Iterator[Row]:
    """The rows of a call manifest, with per-row problems (empty fields, bad id or channel, repeated call id)."""
    seen: set[str] = set()
    for n, f in read_rows(path, CALL_COLUMNS):
        missing = [c for c in CALL_COLUMNS if not f.get(c)]
        channel, problem = customer_channel(f, default_channel)
        if missing:
            problem = f"row {n} has empty {', '.join(missing)}"
        else:
            try:
                for column in ID_COLUMNS:
                    check_id(f[column], column)
            except UsageError as e:
                problem = f"row {n}: {e}"
        if not problem and f["call_id"] in seen:
            problem = f"call_id {f['call_id']!r} appears more than once in the manifest"
        seen.add(f.get("call_id", ""))
        yield Row(n, f.get("call_id", ""), f.get("borrower_id", ""), f.get("audio", ""), channel, problem)
