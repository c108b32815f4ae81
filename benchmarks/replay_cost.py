"""Cost of replay checking per call: fingerprinting and a borrower-scoped lookup, per audio second.

Customer sides of calls are built from the corpus (8 kHz G.711 mu-law, as a call arrives) at 10, 30,
60 and 120 s: turns of 2-6 s of speech with 2-6 s of line noise between them (the collector speaks on
the other channel), so about half of the side is speech. The fingerprint is computed over the speech
regions a VAD would give (here found by an energy threshold, so no model is loaded). Compare with
the batch's time per audio second in ``benchmarks/results/throughput.md``; ``replay_batch.py`` measures
the share in the batch itself. A second table times the batch parent's per-call lookup and store at
growing index sizes (``--scale``).

Run: ``.venv/bin/python benchmarks/replay_cost.py [--speech ../shared/speech] [--scale 0,10000,100000]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.replay import telephone_call  # noqa: E402
from recipes.corpus import DEFAULT_SPEECH, SAMPLE_RATE, load_utterances, read_corpus  # noqa: E402
from recipes.machine import cpu_features  # noqa: E402
from recipes.material import rng_for  # noqa: E402
from voicecheck.fingerprint import fingerprints  # noqa: E402
from voicecheck.replay import FingerprintIndex  # noqa: E402
from voicecheck.replaycheck import fingerprint_call  # noqa: E402
from voicecheck.types import SpeechRegion  # noqa: E402


def energy_regions(x: np.ndarray, rate: int) -> list[SpeechRegion]:
    """Frames of 30 ms within 35 dB of the loudest, merged: a stand-in for the VAD's regions."""
    hop = int(0.03 * rate)
    n = x.size // hop
    power = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    active = power >= power.max() * 10 ** (-3.5)
    regions, start = [], None
    for i, a in enumerate(np.append(active, False)):
        if a and start is None:
            start = i
        elif not a and start is not None:
            regions.append(SpeechRegion(start * hop / rate, i * hop / rate))
            start = None
    return regions


def customer_side(audio: np.ndarray, seconds: int, rng: np.random.Generator) -> np.ndarray:
    """``seconds`` of turns: 2-6 s of speech from the end of ``audio``, then 2-6 s of silence."""
    out, used, total = [], 0, seconds * SAMPLE_RATE
    while sum(map(len, out)) < total:
        n = int(rng.uniform(2, 6) * SAMPLE_RATE)
        used += n
        out.append(audio[audio.size - used : audio.size - used + n])
        out.append(np.zeros(int(rng.uniform(2, 6) * SAMPLE_RATE), np.float32))
    return np.concatenate(out)[:total]


def parent_table(audio: np.ndarray, sizes: list[int], n_calls: int = 30) -> list[str]:
    """The batch parent's work per call -- look the call up among its borrower's 4 items (both
    indexes, as :func:`voicecheck.replaycheck.check_and_store` does), then store it (one commit) --
    in a call index already holding N other calls, with and without the table that searches over
    all items need. Other calls are synthetic (the corpus's hash values, times at random, as many
    hashes per second of 10 s as the real sides' stored fingerprints have); the looked-up calls are
    real 30 s customer sides; keyed and sealed."""
    from benchmarks.replay import _synthetic
    from voicecheck.crypto import Cipher, Keyring, new_key
    from voicecheck.replaycheck import Indexes, check_and_store

    cipher = Cipher(Keyring.of([new_key()], "benchmark key"))
    calls = []
    for n in range(n_calls):
        side = customer_side(audio[: audio.size - n * 7 * SAMPLE_RATE], 30, rng_for("parent", n))
        x = telephone_call(side, SAMPLE_RATE, "ulaw", rng_for("parent-line", n))
        calls.append(fingerprint_call(x, 8000, energy_regions(x, 8000)))  # the product's widened regions
    pool = np.concatenate([c.index.hashes for c in calls if c.index is not None])
    key = calls[0].index.hash_key if calls[0].index is not None else ""
    stored = [c.index for c in calls if c.index is not None]
    rows = int(round(10.0 * sum(len(f) for f in stored) / sum(f.analysed_s for f in stored)))  # per 10 s item
    rng = np.random.default_rng(0)
    lines = [
        f"Other calls: synthetic items of 10 s with {rows} stored hashes each.",
        "",
        "| calls in the index | all-items table | build s | file MB | look up + store, CPU ms per call (median, p90) |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        for all_items in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                indexes = Indexes(
                    FingerprintIndex(Path(tmp) / "e.sqlite", cipher=cipher, all_items=all_items),
                    FingerprintIndex(Path(tmp) / "c.sqlite", cipher=cipher, all_items=all_items),
                )
                t0 = time.perf_counter()
                for b0 in range(0, size, 2000):
                    indexes.calls.add_many(
                        (f"other-{i}", _synthetic(pool, rows, 10.0, key, rng), "call", f"o{i}")
                        for i in range(b0, min(size, b0 + 2000))
                    )
                for n in range(n_calls):  # each looked-up call's borrower: 2 enrollments, 2 earlier calls
                    for k in range(2):
                        indexes.enrollments.add(
                            f"e{n}-{k}", _synthetic(pool, rows, 10.0, key, rng), "enrollment", f"b{n}"
                        )
                        indexes.calls.add(f"c{n}-{k}", _synthetic(pool, rows, 10.0, key, rng), "call", f"b{n}")
                build = time.perf_counter() - t0
                cpu = []
                for n, prints in enumerate(calls):
                    t = time.process_time()
                    check_and_store(indexes, prints, f"b{n}", f"{n:064x}")
                    cpu.append(time.process_time() - t)
                mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6
                indexes.close()
            lines.append(
                f"| {size:,} | {'yes' if all_items else 'no'} | {build:.0f} | {mb:,.0f} | "
                f"{1000 * np.median(cpu):.1f} / {1000 * np.percentile(cpu, 90):.1f} |"
            )
            print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", default=str(DEFAULT_SPEECH))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", default="0,10000", help="calls already in the index, for the parent's table")
    args = parser.parse_args(argv)
    speakers = [s for s in read_corpus(args.speech) if s.key.startswith("librispeech")][:20]
    audio = np.concatenate([u for s in speakers for u in load_utterances(s)])
    lines = [
        f"CPU: {cpu_features()}; one thread. Median of {args.repeats} runs.",
        "",
        "| call | speech | fingerprints (query + index), CPU ms | CPU ms per audio s "
        "| borrower lookup, CPU ms (4 items) |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        index = FingerprintIndex(Path(tmp) / "cost.sqlite")
        for n in range(4):  # the borrower's stored items: two enrollments, two earlier calls
            part = audio[n * 10 * SAMPLE_RATE : (n + 1) * 10 * SAMPLE_RATE]
            index.add(f"item-{n}", fingerprints(part, SAMPLE_RATE)[1], "call", owner="borrower")
        for seconds in (10, 30, 60, 120):
            x = telephone_call(
                customer_side(audio, seconds, rng_for("side", seconds)), SAMPLE_RATE, "ulaw", rng_for(seconds)
            )
            regions = energy_regions(x, 8000)
            speech = sum(r.duration_s for r in regions)
            fp_t, look_t = [], []
            for _ in range(args.repeats):
                t = time.process_time()  # CPU time: the machine is shared, wall time drifts with its load
                query = fingerprint_call(x, 8000, regions).query  # both fingerprints, regions widened
                assert query is not None, "the benchmark's call has landmarks"
                fp_t.append(time.process_time() - t)
                t = time.process_time()
                index.query(query, owner="borrower")
                look_t.append(time.process_time() - t)
            ms, look_ms = 1000 * float(np.median(fp_t)), 1000 * float(np.median(look_t))
            lines.append(f"| {seconds} s | {speech:.0f} s | {ms:.1f} | {ms / seconds:.2f} | {look_ms:.1f} |")
        index.close()
    sizes = [int(v) for v in args.scale.split(",") if v.strip()]
    if sizes:
        lines += ["", "The batch parent's work per call (the index's single writer):", ""]
        lines += parent_table(audio, sizes)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
