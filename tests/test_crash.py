"""Crash safety: a ``voicecheck batch`` killed with SIGKILL at random moments, then re-run to the end,
leaves exactly one valid record per manifest row, the same records an uninterrupted run writes.

Real subprocesses, real silero VAD, the fake embedder slowed to 0.1 s a call so that each kill lands
while the batch is still at work, whatever the machine's speed; ~20-40 s (four process start-ups),
so marked slow.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fakes import REPO, SAMPLES, counted, env_without_workspace, workspace
from voicecheck.batch import run_batch
from voicecheck.config import load_settings
from voicecheck.pipeline import enroll_recordings

N_CALLS = 30
BAD_ROWS = (2, 9, 17, 26)  # missing audio: error records written while phase 1 is still embedding
VOICED = ("C001", "C002", "C003", "C004", "C005", "C006", "C008")  # sample calls with customer speech


def _make_calls(root: Path) -> Path:
    """30 distinct 8 s stereo 8 kHz mu-law calls cut from the sample calls, plus 4 rows with no file."""
    sources = [sf.read(str(SAMPLES / "calls" / f"{c}.wav"), dtype="float32", always_2d=True) for c in VOICED]
    lines = ["call_id,borrower_id,audio,customer_channel"]
    for i in range(1, N_CALLS + 1):
        call_id, borrower = f"K{i:03d}", f"B{i % 5}"
        if i in BAD_ROWS:
            lines.append(f"{call_id},{borrower},calls/{call_id}-gone.wav,1")
            continue
        data, rate = sources[i % len(sources)]
        start = int((i // len(sources)) * 1.5 * rate)  # a different cut of the same call -> different audio
        cut = data[start : start + int(8.0 * rate)]
        path = root / "calls" / f"{call_id}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), cut, rate, subtype="ULAW")
        lines.append(f"{call_id},{borrower},calls/{call_id}.wav,1")
    manifest = root / "calls.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def _batch(manifest: Path, out: Path, embeddings: Path, store: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "tests.fake_cli",
        "batch",
        str(manifest),
        "--out",
        str(out),
        "--model",
        "fake",
        "--embeddings",
        str(embeddings),
        "--store",
        str(store),
        "--threshold",
        "cosine=0.95",
        "--threshold",
        "asnorm=0.95",
        "--quiet",
    ]
    env = {**env_without_workspace(), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(out: Path) -> int:
    p = out / "results.jsonl"
    return p.read_bytes().count(b"\n") if p.exists() else 0


def _records(out: Path) -> list[dict]:
    text = (out / "results.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line valid JSON, no blank lines


@pytest.mark.slow
def test_sigkilled_batch_resumes_without_losing_or_duplicating_records(tmp_path: Path) -> None:
    manifest = _make_calls(tmp_path)
    store = tmp_path / "store"
    settings = load_settings(None, store=str(store), embeddings=str(workspace(tmp_path / "enroll_ws")), model="fake")
    assert (
        enroll_recordings(
            [(f"B{k}", str(SAMPLES / "calls" / f"C00{k}.wav")) for k in (1, 3, 4)], settings, consent="test consent"
        )
        == 0
    )

    # reference: one uninterrupted run (in this process) with its own call-embedding store
    run_batch(
        manifest,
        tmp_path / "ref",
        replace(settings, embeddings=str(workspace(tmp_path / "ref_ws")), thresholds={"cosine": 0.95, "asnorm": 0.95}),
    )
    want = {r["call_id"]: r for r in _records(tmp_path / "ref")}
    assert len(want) == N_CALLS

    counter = tmp_path / "embedded.txt"  # one line per call the subprocesses embed
    out, emb = tmp_path / "out", workspace(tmp_path / "ws", counter=counter, delay_s=0.1)
    rng = random.Random(7)
    kills = 0
    for attempt in range(3):
        embedded = counted(counter)
        proc = _batch(manifest, out, emb, store)
        deadline = time.monotonic() + 60
        if attempt < 2:  # mid-embedding: once this run has embedded 1-12 calls (a task is 8 calls)
            goal = embedded + rng.randint(1, 12)
            while counted(counter) < goal and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
        else:  # mid-scoring, if the kill can catch it: once a record beyond the bad rows' is written
            while _lines(out) <= len(BAD_ROWS) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        if attempt < 2:
            assert kills == attempt + 1, f"run {attempt} finished before it could be killed"
            assert _lines(out) < N_CALLS
    final = _batch(manifest, out, emb, store)
    assert final.wait(timeout=120) == 0, final.stderr.read() if final.stderr else ""

    records = _records(out)
    rows = [r["row"] for r in records]
    assert sorted(rows) == list(range(1, N_CALLS + 1))  # one record per manifest row: none lost, none twice
    got = {r["call_id"]: r for r in records}
    assert got.keys() == want.keys()
    for call_id, w in want.items():
        g = got[call_id]
        assert (g["verdict"], g["reason"], g["row"]) == (w["verdict"], w["reason"], w["row"]), call_id
        if w["score"] is not None:
            assert g["score"] == pytest.approx(w["score"], abs=1e-3), call_id
    verdicts = {r["verdict"] for r in records}
    assert {"error", "inconclusive"} <= verdicts and verdicts & {"match", "mismatch"}
    assert sum(r["verdict"] == "error" for r in records) == len(BAD_ROWS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calls"] == N_CALLS
    assert np.isclose(sum(summary["verdicts"].values()), N_CALLS)
