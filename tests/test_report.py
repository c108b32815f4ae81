"""voicecheck.report: the durable results file, summaries, JSON/CSV writers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from voicecheck.errors import UsageError
from voicecheck.report import ResultsFile, read_jsonl, summarise, write_csv, write_json


def _rec(row: int, verdict: str, reason: str | None = None, duration: float | None = 10.0) -> dict:
    return {
        "row": row,
        "call_id": f"C{row}",
        "verdict": verdict,
        "reason": reason,
        "duration_s": duration,
        "speech_seconds": 4.0,
    }


def test_append_and_read_back(tmp_path: Path) -> None:
    f = ResultsFile(tmp_path / "out" / "results.jsonl")
    f.append(_rec(1, "match"))
    f.append({"row": 2, "call_id": "Ç2 ünïcode", "verdict": "error"})
    f.close()
    got = list(ResultsFile(tmp_path / "out" / "results.jsonl").records())
    assert [r["row"] for r in got] == [1, 2] and got[1]["call_id"] == "Ç2 ünïcode"


def test_torn_last_line_is_cut_off_on_open(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_rec(1, "match")) + "\n" + json.dumps(_rec(2, "mismatch"))[:17])
    f = ResultsFile(path)
    assert [r["row"] for r in f.records()] == [1]
    f.append(_rec(2, "mismatch"))
    f.close()
    assert [r["row"] for r in read_jsonl(path)] == [1, 2]
    assert path.read_text().endswith("}\n")


def test_intact_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    text = json.dumps(_rec(1, "match")) + "\n"
    path.write_text(text)
    ResultsFile(path).close()
    assert path.read_text() == text


def test_damaged_middle_line_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"row": 1}\n{oops\n{"row": 3}\n')
    with pytest.raises(UsageError, match="line 2"):
        list(read_jsonl(path))
    assert list(read_jsonl(tmp_path / "absent.jsonl")) == []


def test_summarise(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    f = ResultsFile(path)
    for r in [
        _rec(1, "match"),
        _rec(2, "mismatch", "voice_mismatch"),
        _rec(3, "inconclusive", "not_enrolled"),
        _rec(4, "error", "unreadable_audio: x.wav: empty file", None),
    ]:
        f.append(r)
    f.close()
    s = summarise(path, wall_seconds=1.5)
    assert s["calls"] == 4
    assert s["verdicts"] == {"match": 1, "mismatch": 1, "inconclusive": 1, "error": 1}
    assert s["reasons"] == {"voice_mismatch": 1, "not_enrolled": 1, "unreadable_audio": 1}
    assert s["audio_seconds"] == pytest.approx(30.0) and s["speech_seconds"] == pytest.approx(16.0)
    assert s["wall_seconds"] == 1.5


def test_write_json_is_atomic_and_write_csv(tmp_path: Path) -> None:
    write_json(tmp_path / "summary.json", {"calls": 2, "név": "ü"})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"calls": 2, "név": "ü"}
    assert not list(tmp_path.glob("*.tmp"))
    write_csv(tmp_path / "r.csv", [_rec(1, "match"), _rec(2, "error", "x")], ["call_id", "verdict", "reason"])
    with (tmp_path / "r.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"call_id": "C1", "verdict": "match", "reason": ""},
        {"call_id": "C2", "verdict": "error", "reason": "x"},
    ]
