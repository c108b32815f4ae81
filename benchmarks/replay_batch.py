"""What replay checks add to the nightly batch's time per call (issue 15 target: <= 10%).

The throughput benchmark's calls (:func:`benchmarks.throughput.build_calls`: stereo 8 kHz G.711,
20-60 s, customer on channel 1, every customer enrolled from two wideband recordings, which are
fingerprinted into the enrollment index) go through ``voicecheck.batch.run_batch`` with one worker
(in-process, models loaded and warmed before the clock, as throughput.py does) with ``replay`` off
and on, alternately, each run in its own child process from an empty call store. Per run it records
wall and CPU seconds of ``run_batch``, and (replay on) the seconds spent fingerprinting in the
worker and looking up / storing in the parent (timed from inside the run: the worker's
``fingerprint_call``, the ledger's ``_check`` and ``finish``, which commits the last calls and syncs).

Compare ratios within one run of this script: the machine is shared and its speed drifts.

    .venv/bin/python benchmarks/replay_batch.py --calls 60 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.throughput import audio_seconds, prepare, use_work_key, warm_up_audio  # noqa: E402
from recipes.corpus import DEFAULT_SPEECH  # noqa: E402


def _cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def child(work: Path, replay: bool, tag: str) -> dict[str, Any]:
    """One batch run in this process (one worker, in-process); replay's own parts timed from inside."""
    from voicecheck import replaycheck, workers
    from voicecheck.batch import run_batch
    from voicecheck.config import load_settings
    from voicecheck.pipeline import Engine

    spent = {"fingerprint_s": 0.0, "lookup_store_s": 0.0, "fingerprint_cpu_s": 0.0, "lookup_store_cpu_s": 0.0}

    depth = {"fingerprint": 0, "lookup_store": 0}

    def timed(fn: Any, key: str) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            if depth[key]:  # called from inside a timed call: counted there
                return fn(*a, **k)
            depth[key] += 1
            t, c = time.perf_counter(), _cpu_s()
            try:
                return fn(*a, **k)
            finally:
                depth[key] -= 1
                spent[f"{key}_s"] += time.perf_counter() - t
                spent[f"{key}_cpu_s"] += _cpu_s() - c

        return wrapper

    workers.fingerprint_call = timed(workers.fingerprint_call, "fingerprint")  # type: ignore[assignment]
    replaycheck.Ledger._check = timed(replaycheck.Ledger._check, "lookup_store")  # type: ignore[method-assign]
    replaycheck.Ledger.finish = timed(replaycheck.Ledger.finish, "lookup_store")  # type: ignore[method-assign]
    emb = work / f"embeddings-{tag}"
    shutil.rmtree(emb, ignore_errors=True)
    emb.mkdir()
    out = work / f"out-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    settings = load_settings(None, store=str(work / "store"), embeddings=str(emb), workers=1, replay=replay)
    Engine(settings).embed_call(warm_up_audio(work), None)  # models loaded and warm before the clock
    if replay:  # ... and the compiled loops: the fingerprint's, as a worker does at start-up, and the
        # look-up's, as the parent's ledger does when it is made (each once per process)
        from voicecheck import fingerprint
        from voicecheck import replay as replay_module

        fingerprint.compile_loops()
        replay_module.compile_loops()
    t, c = time.perf_counter(), _cpu_s()
    summary = run_batch(work / "calls.csv", out, settings)
    return {
        "replay": replay,
        "wall_s": time.perf_counter() - t,
        "cpu_s": _cpu_s() - c,
        "calls": summary["calls"],
        "verdicts": summary["verdicts"],
        "reasons": _reasons(out),
        **spent,
    }


def _reasons(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        reason = json.loads(line).get("reason") or "match"
        counts[reason.split(":")[0]] = counts.get(reason.split(":")[0], 0) + 1
    return counts


def run_child(work: Path, replay: bool, tag: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_child", str(work), "1" if replay else "0", tag]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child run failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    p.add_argument("--calls", type=int, default=60)
    p.add_argument("--repeats", type=int, default=2, help="off/on pairs, alternating")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    p.add_argument("--pad", type=float, default=None, help="the query's region pad (s) (default: REGION_PAD_S)")
    p.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--bridge", type=float, default=None, help="region bridge (s) (default: REGION_BRIDGE_S)")
    p.add_argument(
        "--hop",
        type=int,
        default=None,
        help="fingerprint time grid (samples at 8 kHz): the 10 ms parameters rescaled to it "
        "(benchmarks/replay_params.py coarser(); 80 = the 10 ms grid; default: the shipped INDEX/QUERY_PARAMS)",
    )
    p.add_argument("--refined", action="store_true", help="with --hop: landmark times refined to the 10 ms grid")
    a = p.parse_args(argv)
    if a.pad is not None:  # this process (enrollments) and every child run (calls) fingerprint with it
        os.environ["VC_BENCH_REGION_PAD_S"] = str(a.pad)
    if a.bridge is not None:
        os.environ["VC_BENCH_REGION_BRIDGE_S"] = str(a.bridge)
    if a.hop is not None:
        os.environ["VC_BENCH_HOP"] = f"{a.hop}{'r' if a.refined else ''}"
    _set_pad()
    if a._child:
        use_work_key(Path(a._child[0]))
        print(json.dumps(child(Path(a._child[0]), a._child[1] == "1", a._child[2])))
        return
    from recipes.machine import cpu_features

    work = a.out or Path(tempfile.mkdtemp(prefix="vc-replay-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    use_work_key(work)
    hours = prepare(a.speech, a.calls, work)
    audio_s = audio_seconds(work / "calls.csv")
    runs = []
    for n in range(a.repeats):
        for replay in (False, True):
            runs.append(run_child(work, replay, f"{'on' if replay else 'off'}{n}"))
            print(json.dumps(runs[-1]), flush=True)
    print(render(runs, a.calls, audio_s, hours, os.getloadavg(), cpu_features()))


def _pad() -> str:
    import voicecheck.fingerprint as fp

    hop_ms = 1000 * fp.INDEX_PARAMS.hop / fp.FINGERPRINT_SAMPLE_RATE
    return (
        f"{fp.REGION_PAD_S:g} s, gaps <= {fp.REGION_BRIDGE_S:g} s closed; fingerprint frames every "
        f"{hop_ms:g} ms (times in {1000 * fp.INDEX_PARAMS.frame_s:g} ms)"
    )


def _set_pad() -> None:
    """The region pad and fingerprint grid named by ``--pad``, ``--bridge`` and ``--hop`` (through the
    environment, so child runs see them too)."""
    import voicecheck.fingerprint

    if "VC_BENCH_REGION_PAD_S" in os.environ:
        voicecheck.fingerprint.REGION_PAD_S = float(os.environ["VC_BENCH_REGION_PAD_S"])
    if "VC_BENCH_REGION_BRIDGE_S" in os.environ:
        voicecheck.fingerprint.REGION_BRIDGE_S = float(os.environ["VC_BENCH_REGION_BRIDGE_S"])
    if "VC_BENCH_HOP" in os.environ:  # the product reads both at call time (replaycheck)
        from benchmarks.replay_params import TEN_MS_INDEX, TEN_MS_QUERY, coarser

        text = os.environ["VC_BENCH_HOP"]
        hop, refined = int(text.rstrip("r")), text.endswith("r")
        voicecheck.fingerprint.INDEX_PARAMS = TEN_MS_INDEX if hop == 80 else coarser(TEN_MS_INDEX, hop, refined)
        voicecheck.fingerprint.QUERY_PARAMS = TEN_MS_QUERY if hop == 80 else coarser(TEN_MS_QUERY, hop, refined)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def render(runs: list[dict[str, Any]], n: int, audio_s: float, hours: float, load: tuple, cpu: str) -> str:
    def mean(key: str, replay: bool) -> float:
        values = [r[key] for r in runs if r["replay"] == replay]
        return sum(values) / len(values)

    off_cpu, on_cpu = mean("cpu_s", False), mean("cpu_s", True)
    off_wall, on_wall = mean("wall_s", False), mean("wall_s", True)
    fp, look = mean("fingerprint_cpu_s", True), mean("lookup_store_cpu_s", True)
    offs, ons = [r for r in runs if not r["replay"]], [r for r in runs if r["replay"]]
    pairs = [100 * (on["cpu_s"] / off["cpu_s"] - 1) for off, on in zip(offs, ons, strict=False)]
    fps = [100 * on["fingerprint_cpu_s"] / off["cpu_s"] for off, on in zip(offs, ons, strict=False)]
    looks = [100 * on["lookup_store_cpu_s"] / off["cpu_s"] for off, on in zip(offs, ons, strict=False)]
    parts = [f + x for f, x in zip(fps, looks, strict=True)]
    lines = [
        f"{n} calls ({hours * 60:.1f} min of audio, {audio_s / n:.0f} s per call), one worker in-process, GE2E, "
        f"silero VAD; query regions widened by {_pad()}; CPU: {cpu}; load average after: {load[0]:.1f}. "
        f"Mean of {len(runs) // 2} run(s) each.",
        "",
        "| replay | wall s | CPU s | CPU ms per call | ms per audio s |",
        "|---|---:|---:|---:|---:|",
        f"| off | {off_wall:.1f} | {off_cpu:.1f} | {1000 * off_cpu / n:.0f} | {1000 * off_cpu / audio_s:.2f} |",
        f"| on | {on_wall:.1f} | {on_cpu:.1f} | {1000 * on_cpu / n:.0f} | {1000 * on_cpu / audio_s:.2f} |",
        "",
        f"- replay checks add **{100 * (on_cpu / off_cpu - 1):.1f}%** CPU ({100 * (on_wall / off_wall - 1):.1f}% "
        "wall) to the batch's time per call;",
        f"- of which fingerprinting (worker) {1000 * fp / n:.1f} ms CPU per call = {100 * fp / off_cpu:.1f}% of the "
        f"batch without replay, looking up + storing (parent) {1000 * look / n:.1f} ms = {100 * look / off_cpu:.1f}%;",
        f"- verdict reasons with replay on: {runs[-1]['reasons']} (off: {runs[-2]['reasons']}).",
        f"- per pair (CPU, on vs off): median {_median(pairs):+.1f}% (range {min(pairs):+.1f} to {max(pairs):+.1f}%: "
        + ", ".join(f"{p:+.1f}" for p in pairs)
        + f"); timed from inside, per pair: median {_median(parts):.1f}% (fingerprinting {_median(fps):.1f}%, "
        f"looking up + storing {_median(looks):.1f}%; range {min(parts):.1f} to {max(parts):.1f}%).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
