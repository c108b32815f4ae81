"""Result writers: a durable JSONL results file, summary.json, CSV."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import UsageError
from .types import VERDICTS

RESULTS = "results.jsonl"
SUMMARY = "summary.json"


class ResultsFile:
    """``results.jsonl``: one JSON object per line, each fsync'ed as it is written.

    A run killed mid-write leaves at most one torn last line; opening the file cuts it off, so a
    re-run rewrites that record and the file never holds a duplicate or a broken line.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._f: IO[str] = self.path.open("a", encoding="utf-8")

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good = data.rfind(b"\n") + 1
        if good < len(data):  # a torn last line from a killed run
            with self.path.open("r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())

    def records(self) -> Iterator[dict[str, Any]]:
        """Stream the records already written."""
        yield from read_jsonl(self.path)

    def append(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file, streamed."""
    p = Path(path)
    if not p.exists():
        return
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise UsageError(f"{p}: line {n} is not JSON; the results file was edited or damaged") from None


def summarise(path: str | Path, **extra: Any) -> dict[str, Any]:
    """Counts per verdict and reason, audio and speech seconds, from a results file (streamed)."""
    verdicts: Counter[str] = Counter({v: 0 for v in VERDICTS})
    reasons: Counter[str] = Counter()
    audio_s = speech_s = 0.0
    total = 0
    for r in read_jsonl(path):
        total += 1
        verdicts[r["verdict"]] += 1
        if r.get("reason"):
            reasons[str(r["reason"]).split(":")[0]] += 1
        audio_s += r.get("duration_s") or 0.0
        speech_s += r.get("speech_seconds") or 0.0
    return {
        "calls": total,
        "verdicts": dict(verdicts),
        "reasons": dict(reasons),
        "audio_seconds": round(audio_s, 1),
        "speech_seconds": round(speech_s, 1),
        **extra,
    }


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename)."""
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def write_csv(path: str | Path, records: list[dict[str, Any]], columns: list[str]) -> None:
    """Selected columns of records as CSV."""
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
