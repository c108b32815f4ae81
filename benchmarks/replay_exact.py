"""Replay checks made cheaper must find exactly what they found before (issue 15, the cost work).

Loads ``voicecheck/fingerprint.py``, ``replay.py`` and ``replaycheck.py`` as they were at a git
revision (default: the commit before the cost work) beside the working tree's, and compares, on the
recordings of ``--speech`` sent through the telephone simulation (ulaw, alaw, GSM 6.10, Opus in
turn):

* every fingerprint (query and stored): hash values, anchor frames, landmark counts, analysed and
  whole seconds, or the same FingerprintError message -- with the energy detector's speech regions
  and over the whole recording; with the regions also as the product makes them
  (``replaycheck.fingerprint_call``, the query over the regions widened) when the reference has it;
* every replay check of the batch's parent (:class:`voicecheck.replaycheck.Ledger`, keyed and sealed
  indexes): each speaker's first recording enrolled (16 kHz), then a call per recording of theirs
  (live), and a call per recording played through a loudspeaker and a room into the line (a
  replay of the earlier live call), in manifest order; the stored :class:`ReplayOutcome` of every call;
* a lookup of every call over all items (``FingerprintIndex.query(owner=None)``) at the default row
  budget and at a small one.

Any difference is printed and the exit status is 1.

    .venv/bin/python benchmarks/replay_exact.py --rev e1a1749
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.replay import loudspeaker_room, telephone_call  # noqa: E402
from benchmarks.replay_cost import energy_regions  # noqa: E402
from recipes.corpus import DEFAULT_SPEECH, SAMPLE_RATE, load_utterances, read_corpus  # noqa: E402
from recipes.material import rng_for  # noqa: E402

REFERENCE_REV = "e1a1749"
"""main's HEAD before the cost work (the fingerprints and checks the detection tables were made with)."""
CODECS = ("ulaw", "alaw", "gsm", "opus")
_MODULES = ("fingerprint", "replay", "replaycheck")


def reference_modules(rev: str) -> dict[str, types.ModuleType]:
    """The three replay modules as they were at ``rev``, importing each other (not today's)."""
    import voicecheck

    out: dict[str, types.ModuleType] = {}
    for name in _MODULES:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:voicecheck/{name}.py"], capture_output=True, text=True, check=True
        ).stdout
        for other in _MODULES:
            text = text.replace(f"from .{other} import", f"from voicecheck._ref_{other} import")
        full = f"voicecheck._ref_{name}"
        spec = importlib.util.spec_from_loader(full, loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        module.__package__ = "voicecheck"
        sys.modules[full] = module
        exec(compile(text, f"{rev}:voicecheck/{name}.py", "exec"), module.__dict__)  # noqa: S102
        setattr(voicecheck, f"_ref_{name}", module)
        out[name] = module
    return out


def today_modules() -> dict[str, types.ModuleType]:
    from voicecheck import fingerprint, replay, replaycheck

    return {"fingerprint": fingerprint, "replay": replay, "replaycheck": replaycheck}


def describe_fp(mods: dict[str, types.ModuleType], x: np.ndarray, rate: int, regions: Any) -> Any:
    """Both fingerprints as plain values, or the error's message; with speech regions, also the product's
    (``replaycheck.fingerprint_call``: the query over the regions widened) when the reference has it."""
    mod = mods["fingerprint"]

    def plain(q: Any, i: Any) -> tuple:
        return tuple(
            (f.hashes.dtype.str, f.hashes.tobytes(), f.frames.dtype.str, f.frames.tobytes())
            + (f.duration_s, f.analysed_s, f.n_landmarks, f.hash_key)
            for f in (q, i)
        )

    try:
        out: tuple = plain(*mod.fingerprints(x, rate, regions))
    except mod.FingerprintError as e:
        out = ("error", str(e))
    call = getattr(mods["replaycheck"], "fingerprint_call", None)
    if regions is None or call is None:
        return out
    prints = call(x, rate, regions)
    return out, (prints.problem,) if prints.query is None else plain(prints.query, prints.index)


class _Row:
    def __init__(self, row: int, borrower_id: str) -> None:
        self.row, self.borrower_id = row, borrower_id


class _Result:
    def __init__(self, row: int, borrower_id: str, content_hash: str, prints: Any) -> None:
        self.row, self.content_hash, self.channel, self.prints = _Row(row, borrower_id), content_hash, 1, prints


class _CallStore:
    """What the ledger writes into the call store: the outcome text per (audio, channel, borrower)."""

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, int, str], str] = {}

    def put_replay(self, content_hash: str, channel: int, borrower_id: str, outcome: str) -> None:
        self.outcomes[(content_hash, channel, borrower_id)] = outcome

    def put_replays(self, entries: list[tuple[str, int, str, str]]) -> None:
        for e in entries:
            self.put_replay(*e)


def open_ledger(
    mods: dict[str, types.ModuleType], folder: Path, enrolls: list, n_calls: int, all_items: bool
) -> tuple[Any, Any, _CallStore]:
    """One code's batch ledger in ``folder`` (keyed, sealed indexes as the batch opens them; the calls
    index with the all-items table when ``all_items``), ``enrolls`` stored, ``n_calls`` rows expected:
    (ledger, indexes, the call store its outcomes go to). A code that compiles its loops does it here."""
    from voicecheck.crypto import Cipher, Keyring

    cipher = Cipher(Keyring.of([b"k" * 32], "benchmark key"))
    replay, rc = mods["replay"], mods["replaycheck"]
    indexes = rc.Indexes(
        replay.FingerprintIndex(folder / "e.sqlite", cipher=cipher, all_items=False),
        replay.FingerprintIndex(folder / "c.sqlite", cipher=cipher, all_items=all_items),
    )
    for borrower, content, fp in enrolls:
        indexes.enrollments.add(rc.enrollment_item(borrower, content), fp, "enrollment", owner=borrower)
    store = _CallStore()
    ledger = rc.Ledger(indexes, store)
    for n in range(n_calls):
        ledger.expect(n)
    return ledger, indexes, store


def ledger_run(mods: dict[str, types.ModuleType], folder: Path, enrolls: list, calls: list) -> tuple[dict, list]:
    """The parent's checks of ``calls`` in order, after ``enrolls``: the outcomes stored, and each
    call's lookups over all items (default row budget, then 2,000 rows)."""
    replay, rc = mods["replay"], mods["replaycheck"]
    ledger, indexes, store = open_ledger(mods, folder, enrolls, len(calls), all_items=True)
    for n, (borrower, content, prints) in reversed(list(enumerate(calls))):  # arrivals out of order
        ledger.arrive(_Result(n, borrower, content, rc.Prints(*prints)))
    ledger.finish()
    wide = []
    for _, content, prints in calls:
        if prints[0] is None:
            continue
        for max_rows in (replay.DEFAULT_MAX_ROWS, 2000):
            found = indexes.calls.query(prints[0], exclude=(rc.call_item(content),), max_rows=max_rows)
            wide.append(repr(found))
    indexes.close()
    return store.outcomes, wide


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    p.add_argument("--rev", default=REFERENCE_REV, help="git revision of the reference implementation")
    p.add_argument("--speakers", type=int, default=0, help="first N speakers only (0: all)")
    a = p.parse_args(argv)
    old, new = reference_modules(a.rev), today_modules()
    speakers = read_corpus(a.speech)[: a.speakers or None]
    t0 = time.perf_counter()
    differ = compared = 0
    times = {"old": 0.0, "new": 0.0}
    enrolls: dict[str, list] = {"old": [], "new": []}
    calls: dict[str, list] = {"old": [], "new": []}
    for s, spk in enumerate(speakers):
        borrower = f"b{s}"
        for u, x in enumerate(load_utterances(spk)):
            codec = CODECS[(s + u) % len(CODECS)]
            live = telephone_call(x, SAMPLE_RATE, codec, rng_for("exact-live", s, u))
            room = loudspeaker_room(x, SAMPLE_RATE, rng_for("exact-room", s, u))
            played = telephone_call(room, SAMPLE_RATE, codec, rng_for("exact", s, u))
            inputs = [(x, SAMPLE_RATE, None, f"{spk.key}#{u} 16 kHz whole")]
            for name, y in (("live", live), ("played", played)):
                inputs += [(y, 8000, energy_regions(y, 8000), f"{spk.key}#{u} {codec} {name} regions")]
                inputs += [(y, 8000, None, f"{spk.key}#{u} {codec} {name} whole")]
            for y, rate, regions, label in inputs:
                got = {}
                for tag, mods in (("old", old), ("new", new)):
                    t = time.process_time()
                    got[tag] = describe_fp(mods, y, rate, regions)
                    times[tag] += time.process_time() - t
                compared += 1
                if got["old"] != got["new"]:
                    differ += 1
                    print(f"fingerprints differ: {label}")
            for tag, mods in (("old", old), ("new", new)):
                fpm = mods["fingerprint"]
                if u == 0:
                    try:
                        fp = fpm.fingerprint(x, SAMPLE_RATE, None)
                        enrolls[tag].append((borrower, f"{s:032x}{u:032x}", fp))
                    except fpm.FingerprintError:
                        pass
                for k, y in enumerate((live, played)):
                    try:
                        prints: tuple = fpm.fingerprints(y, 8000, energy_regions(y, 8000))
                    except fpm.FingerprintError as e:
                        prints = (None, None, str(e))
                    calls[tag].append((borrower, f"{s:032x}{u:030x}{k:02x}", prints))
    cpu = f"CPU s: old {times['old']:.1f}, new {times['new']:.1f}"
    print(f"{compared} fingerprint pairs compared, {differ} differ ({cpu})")
    results = {}
    for tag, mods in (("old", old), ("new", new)):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.process_time()
            results[tag] = ledger_run(mods, Path(tmp), enrolls[tag], calls[tag])
            print(f"{tag}: ledger and lookups over all items, CPU {time.process_time() - t:.1f} s", flush=True)
    outcome_diff = [k for k in results["old"][0] if results["old"][0][k] != results["new"][0].get(k)]
    outcome_diff += [k for k in results["new"][0] if k not in results["old"][0]]
    wide_diff = sum(o != n for o, n in zip(results["old"][1], results["new"][1], strict=True))
    replays = sum('"candidates":[]' not in v for v in results["new"][0].values())
    print(
        f"{len(results['old'][0])} stored replay checks compared ({replays} with candidate spans), "
        f"{len(outcome_diff)} differ; {len(results['old'][1])} lookups over all items, {wide_diff} differ "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    for k in outcome_diff[:10]:
        print(f"outcome differs: {k}\n old {results['old'][0].get(k)}\n new {results['new'][0].get(k)}")
    return 1 if differ or outcome_diff or wide_diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
