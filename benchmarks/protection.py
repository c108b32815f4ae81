"""What encryption at rest costs the stores: put, cohort read and full scan of the call store, and the
audit log's appends, with encryption on (AES-256-GCM) and off.

    .venv/bin/python benchmarks/protection.py [--calls 5000] [--windows 60] [--dimension 256]

Synthetic embeddings (GE2E's shape: 256-d, a window every 0.8 s, so 60 windows ~ 50 s of speech);
prints a markdown table. Timings are wall-clock on a shared machine: compare the two rows, not the
absolute figures with another machine's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicecheck.audit import AuditLog, Trail  # noqa: E402
from voicecheck.callstore import CallStore  # noqa: E402
from voicecheck.crypto import Cipher, Keyring, new_key  # noqa: E402
from voicecheck.types import CallEmbedding, SpeechRegion  # noqa: E402


def embedding(rng: np.random.Generator, n: int, dimension: int, windows: int) -> CallEmbedding:
    w = rng.standard_normal((windows, dimension)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    v = w.mean(axis=0)
    return CallEmbedding(
        content_hash=f"{n:064x}",
        model="bench",
        band="narrow",
        channel=1,
        vector=v / np.linalg.norm(v),
        windows=w,
        window_times_s=np.stack([np.arange(windows) * 0.8, np.arange(windows) * 0.8 + 1.6], axis=1),
        speech_seconds=windows * 0.8,
        duration_s=windows * 1.5,
        regions=tuple(SpeechRegion(i * 2.0, i * 2.0 + 1.5) for i in range(windows // 2)),
        channels=2,
    )


def run(cipher: Cipher, folder: Path, calls: int, windows: int, dimension: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    items = [embedding(rng, n, dimension, windows) for n in range(calls)]
    store = CallStore(folder, cipher)
    t = time.perf_counter()
    for n, e in enumerate(items):
        store.put(e, content_hash=e.content_hash, channel=1, model="bench")
        store.link(f"C{n}", f"B{n % 997}", f"c{n}.wav", e.content_hash, 1, "bench")
    store.sync()
    put_s = time.perf_counter() - t
    t = time.perf_counter()
    vectors, _, _ = store.cohort("bench", "narrow", calls)
    cohort_s = time.perf_counter() - t
    t = time.perf_counter()
    scanned = sum(1 for _ in store.calls("bench"))
    scan_s = time.perf_counter() - t
    store.close()
    assert len(vectors) == scanned == calls
    trail = Trail(AuditLog(folder / "audit.log", cipher))
    t = time.perf_counter()
    for n in range(calls):
        trail.add("batch.call", call_id=f"C{n}", borrower_id=f"B{n % 997}", verdict="match", content_hash=f"{n:064x}")
    trail.flush()
    audit_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("calls.sqlite"))
    return {"put": put_s, "cohort": cohort_s, "scan": scan_s, "audit": audit_s, "mb": size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--dimension", type=int, default=256)
    a = ap.parse_args()
    info = Path("/proc/cpuinfo")
    flags = set(info.read_text().split()) if info.exists() else set()
    cpu = ", ".join(f for f in ("aes", "vaes", "pclmulqdq", "avx2", "avx512f") if f in flags) or "unknown"
    print(f"{a.calls} calls, {a.windows} windows of {a.dimension}-d each; CPU features: {cpu}")
    print("| encryption | put + link s | per call ms | cohort read s | full scan s | audit lines s | calls.sqlite MB |")
    print("|---|---|---|---|---|---|---|")
    for name, cipher in (("none", Cipher(None)), ("aes-256-gcm", Cipher(Keyring.of([new_key()], "bench")))):
        with tempfile.TemporaryDirectory() as d:
            r = run(cipher, Path(d) / "emb", a.calls, a.windows, a.dimension)
        print(
            f"| {name} | {r['put']:.2f} | {1000 * r['put'] / a.calls:.2f} | {r['cohort']:.2f} | {r['scan']:.2f} "
            f"| {r['audit']:.2f} | {r['mb']:.1f} |"
        )


if __name__ == "__main__":
    main()
