"""The batch parent's replay look-up + store per call, a git revision's code against the working tree's,
in one process (issue 15, target c: compare ratios within one run; the machine's speed drifts).

Calls as ``replay_batch.py`` makes them, without the models: every wideband speaker of ``--speech`` with
3+ recordings is a borrower enrolled from their first two recordings; each call's customer side is 20-60 s
of their other recordings in random order (so later calls share audio with earlier ones, as the batch's
do) with 1-4 s pauses, through the telephone simulation (mu-law), fingerprinted once
(``replaycheck.fingerprint_call`` over energy-detector regions). Each code's
:class:`voicecheck.replaycheck.Ledger` then checks and stores the same calls in manifest order (keyed and
sealed indexes, borrower-scoped, as the batch opens them) in a fresh folder, the two codes alternating;
the CPU time of the ledger's ``arrive`` and ``finish`` is divided by the calls. The stored outcomes must
be equal.

    .venv/bin/python benchmarks/replay_parent.py --rev 2cb1faf --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.replay import telephone_call  # noqa: E402
from benchmarks.replay_cost import energy_regions  # noqa: E402
from benchmarks.replay_exact import _Result, open_ledger, reference_modules, today_modules  # noqa: E402
from recipes.corpus import DEFAULT_SPEECH, load_utterances, read_corpus  # noqa: E402
from recipes.machine import cpu_features  # noqa: E402


def make_calls(speech: Path, n_calls: int) -> tuple[list, list]:
    """(borrower, content hash, stored fingerprint) enrollments and (borrower, content hash, prints) calls."""
    from voicecheck.replaycheck import fingerprint_call

    rng = np.random.default_rng(0)
    speakers = [s for s in read_corpus(speech) if s.wideband and len(s.files) >= 3 and s.seconds >= 15]
    audio = {s.key: load_utterances(s) for s in speakers}
    enrolls = []
    for b, s in enumerate(speakers):
        for k, x in enumerate(audio[s.key][:2]):
            prints = fingerprint_call(x, 16000, energy_regions(x, 16000))
            if prints.index is not None:
                enrolls.append((f"b{b}", f"{b:032x}{k:032x}", prints.index))
    calls = []
    for i in range(n_calls):
        b = i % len(speakers)
        utts, parts, have = audio[speakers[b].key][2:], [], 0.0
        wanted = rng.uniform(20, 60) * 0.5  # the customer's share of a 20-60 s call
        while have < wanted:
            for j in rng.permutation(len(utts)):
                parts += [utts[j], np.zeros(int(rng.uniform(1, 4) * 16000), np.float32)]
                have += utts[j].size / 16000 + 2
                if have >= wanted:
                    break
        y = telephone_call(np.concatenate(parts), 16000, "ulaw", np.random.default_rng(i))
        prints = fingerprint_call(y, 8000, energy_regions(y, 8000))
        calls.append((f"b{b}", f"{i:064x}", (prints.query, prints.index, prints.problem)))
    return enrolls, calls


def ledger_cpu(mods: dict[str, types.ModuleType], folder: Path, enrolls: list, calls: list) -> tuple[float, dict]:
    """CPU seconds of one code's ledger over ``calls`` (after ``enrolls``), and the outcomes it stored."""
    rc = mods["replaycheck"]
    ledger, indexes, store = open_ledger(mods, folder, enrolls, len(calls), all_items=False)  # loops compiled here
    t = time.process_time()
    for n, (borrower, content, prints) in enumerate(calls):
        ledger.arrive(_Result(n, borrower, content, rc.Prints(*prints)))
    ledger.finish()
    cpu = time.process_time() - t
    indexes.close()
    return cpu, store.outcomes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    p.add_argument("--rev", default="2cb1faf", help="git revision of the code to compare with")
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5, help="runs of each code, alternating (after one untimed)")
    a = p.parse_args(argv)
    codes = {a.rev: reference_modules(a.rev), "working tree": today_modules()}
    enrolls, calls = make_calls(a.speech, a.calls)
    ms: dict[str, list[float]] = {tag: [] for tag in codes}
    outcomes: dict[str, Any] = {}
    for r in range(a.repeats + 1):
        for tag in list(codes) if r % 2 == 0 else list(codes)[::-1]:
            with tempfile.TemporaryDirectory() as tmp:
                cpu, outcomes[tag] = ledger_cpu(codes[tag], Path(tmp), enrolls, calls)
            if r:  # the first run of each warms caches and compiles
                ms[tag].append(1000 * cpu / len(calls))
    same = outcomes[a.rev] == outcomes["working tree"]
    print(f"CPU: {cpu_features()}; one thread. {len(calls)} calls, {len(enrolls)} enrollments; outcomes equal: {same}")
    print("\n| code | look-up + store, CPU ms per call (median) | runs |\n|---|---:|---|")
    for tag, values in ms.items():
        print(f"| {tag} | {np.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    print(f"\nworking tree / {a.rev}: {np.median(ms['working tree']) / np.median(ms[a.rev]):.3f}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
