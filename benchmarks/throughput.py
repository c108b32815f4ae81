"""Batch throughput on real speech: voicecheck's batch vs a naive Resemblyzer loop.

Builds N simulated two-party phone calls (stereo 8 kHz G.711 mu-law, customer on channel 1, 20-60 s)
from the real-speech corpus with :func:`recipes.simulate.make_call`, enrolls each customer
(two wideband recordings), then times

* ``voicecheck.batch.run_batch`` with 1..W worker processes (GE2E, silero VAD, cohort scoring), each
  with a fresh call-embedding store so nothing is cached, and
* a naive loop: per file, read the customer channel, ``resemblyzer.preprocess_wav`` +
  ``VoiceEncoder.embed_utterance``, one process, torch 1 thread (embedding only: no scoring);

each in its own child process so peak RSS (``getrusage``) is that run's alone. It also profiles
where a worker's time goes (decode / VAD / resample+collect / embed) on a sample of the calls.

Prints audio-hours per wall-hour and per core-hour, peak RSS per worker, the ratio to the naive loop
and 1 -> W scaling, and writes the markdown to ``benchmarks/results/throughput.md``.

    .venv/bin/python benchmarks/throughput.py --calls 40 --workers 1,2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
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

import numpy as np  # noqa: E402

from recipes.corpus import DEFAULT_SPEECH, load_utterances, read_corpus  # noqa: E402
from recipes.machine import add_precision_option, cpu_features  # noqa: E402

RESULTS_MD = ROOT / "benchmarks" / "results" / "throughput.md"
NOTES_MARK = "<!-- notes: everything from this line on is kept when benchmarks/throughput.py rewrites the file -->"
CALL_MIN_S, CALL_MAX_S = 20.0, 60.0
CUSTOMER_SHARE = (0.45, 0.7)
"""Fraction of a call's speech that is the customer's."""
CONSENT = "public corpus recording (shared/speech MANIFEST.csv licences), benchmarks/throughput.py"
"""Consent reference of the benchmark's enrollments: every voice comes from a public corpus."""


# -- building the calls -------------------------------------------------------------------------------


def build_calls(speech: Path, n_calls: int, work: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``n_calls`` calls and their manifests; returns (calls.csv, enroll.csv). Reused if present."""
    calls_csv, enroll_csv = work / "calls.csv", work / "enroll.csv"
    if calls_csv.exists() and enroll_csv.exists() and sum(1 for _ in calls_csv.open()) == n_calls + 1:
        return calls_csv, enroll_csv
    from recipes.simulate import make_call, write_call

    rng = np.random.default_rng(seed)
    speakers = [s for s in read_corpus(speech) if s.wideband and len(s.files) >= 3 and s.seconds >= 15]
    if len(speakers) < 2:
        raise SystemExit(f"{speech}: need at least 2 wideband speakers with 3+ recordings")
    audio = {s.key: load_utterances(s) for s in speakers}
    rows, enroll = [], []
    for s in speakers:
        borrower = s.key.replace("/", "_")
        # absolute: the manifest resolves a relative path against its own folder, not the --speech one
        enroll += [(borrower, str(p.resolve()), CONSENT) for p in s.files[:2]]
    for i in range(n_calls):
        spk = speakers[i % len(speakers)]
        agent = speakers[(i + 1 + int(rng.integers(len(speakers) - 1))) % len(speakers)]
        total_s = rng.uniform(CALL_MIN_S, CALL_MAX_S)
        cust_s = total_s * rng.uniform(*CUSTOMER_SHARE)
        customer = _speech_of(audio[spk.key][2:], cust_s, rng)
        collector = _speech_of(audio[agent.key], total_s - cust_s, rng)
        stereo = make_call(customer, collector, 16000, rng)
        call_id = f"T{i:04d}"
        write_call(work / "calls" / f"{call_id}.wav", stereo)
        rows.append((call_id, spk.key.replace("/", "_"), f"calls/{call_id}.wav", 1))
    with calls_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["call_id", "borrower_id", "audio", "customer_channel"])
        w.writerows(rows)
    with enroll_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["borrower_id", "audio", "consent"])
        w.writerows(enroll)
    return calls_csv, enroll_csv


def _speech_of(utts: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """About ``seconds`` of one speaker: utterances in random order (repeating if needed), 0.3 s gaps."""
    gap = np.zeros(int(0.3 * 16000), dtype=np.float32)
    parts, have = [], 0.0
    while have < seconds:
        for j in rng.permutation(len(utts)):
            parts += [utts[j], gap]
            have += len(utts[j]) / 16000 + 0.3
            if have >= seconds:
                break
    x = np.concatenate(parts)
    return x[: int(seconds * 16000)].astype(np.float32)


def audio_seconds(calls_csv: Path) -> float:
    import soundfile as sf

    with calls_csv.open() as f:
        return sum(sf.info(str(calls_csv.parent / r["audio"])).duration for r in csv.DictReader(f))


# -- child runs (each in its own process) -------------------------------------------------------------


def _rusage() -> dict[str, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "rss_self_mb": me.ru_maxrss / 1024,
        "rss_children_mb": kids.ru_maxrss / 1024,
    }


def fresh_workspace(path: Path, hop: str) -> Path:
    """An empty embeddings folder; with ``hop`` (seconds, "" = the model's default) a models.toml
    that sets GE2E's window hop."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if hop:
        (path / "models.toml").write_text(f"[ge2e]\nhop_s = {float(hop)}\n", encoding="utf-8")
    return path


def child_batch(work: Path, workers: int, hop: str, precision: str, replay: bool = True) -> dict[str, Any]:
    from voicecheck.batch import run_batch
    from voicecheck.config import load_settings

    emb = fresh_workspace(work / f"embeddings-w{workers}-hop{hop or 'default'}", hop)
    out = work / f"out-w{workers}-hop{hop or 'default'}"
    shutil.rmtree(out, ignore_errors=True)
    settings = load_settings(
        None, store=str(work / "store"), embeddings=str(emb), workers=workers, precision=precision, replay=replay
    )
    if workers == 1:  # in-process: import and warm up first, as the naive loop does before its clock
        from voicecheck.pipeline import Engine

        Engine(settings).embed_call(warm_up_audio(work), None)
    arrived: list[tuple[float, int]] = []  # (time, calls embedded so far), from the batch's progress ticks
    used: list[tuple[float, int]] = []  # (this process's CPU time, calls embedded so far): 1 worker only
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        arrived.append((time.perf_counter(), done))
        used.append((time.process_time(), done))

    t0 = time.perf_counter()
    summary = run_batch(work / "calls.csv", out, settings, progress=tick)
    wall = time.perf_counter() - t0
    skip = 2 * workers * settings.calls_per_task
    return {
        "wall_s": wall,
        "steady": steady_rate(arrived, skip),
        "steady_cpu": steady_rate(used, skip) if workers == 1 else None,
        "summary": {k: summary.get(k) for k in ("calls", "verdicts", "timings_s", "audio_seconds", "refined")},
        **_rusage(),
    }


def steady_rate(arrived: list[tuple[float, int]], skip: int) -> dict[str, float]:
    """Calls per second once every worker is past its first tasks: from the moment ``skip`` calls
    are embedded to the last one (the pool's start-up and each worker's warm-up left out, as a
    nightly batch of thousands of calls amortises them; the scoring phase after it is left out too).
    """
    past = [a for a in arrived if a[1] >= skip]
    if not past:  # fewer calls than the warm-up takes (a smoke run such as --calls 4): no steady state
        return {"calls_per_s": float("nan"), "calls": 0, "seconds": 0.0}
    (t_a, n_a), (t_b, n_b) = past[0], arrived[-1]
    return {"calls_per_s": (n_b - n_a) / max(t_b - t_a, 1e-9), "calls": n_b - n_a, "seconds": t_b - t_a}


def child_naive(work: Path) -> dict[str, Any]:
    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    from resemblyzer import VoiceEncoder, preprocess_wav

    t_load = time.perf_counter()
    encoder = VoiceEncoder("cpu", verbose=False)
    load_s = time.perf_counter() - t_load
    x, rate = sf.read(str(warm_up_audio(work)), dtype="float32", always_2d=True)
    encoder.embed_utterance(preprocess_wav(x[:, 0], source_sr=rate))
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    with (work / "calls.csv").open() as f:
        for r in csv.DictReader(f):
            x, rate = sf.read(str(work / r["audio"]), dtype="float32", always_2d=True)
            wav = preprocess_wav(x[:, int(r["customer_channel"])], source_sr=rate)
            encoder.embed_utterance(wav)
            n += 1
    return {
        "wall_s": time.perf_counter() - t0,
        "loop_cpu_s": time.process_time() - c0,
        "model_load_s": load_s,
        "calls": n,
        **_rusage(),
    }


def child_profile(work: Path, n: int, hop: str, precision: str, replay: bool = True) -> dict[str, Any]:
    """Time each stage of the batch's per-task work (:meth:`voicecheck.pipeline.Engine.embed_many`) on
    ``n`` calls (after one warm-up call): decode, VAD (a task's calls together, as the batch runs it),
    resampling the speech, embedding split into mel spectrograms and the network, the refinement:
    the worker's decision (:class:`voicecheck.refine.Refiner` over the enrolled store, as a batch
    worker builds it) and the in-between windows of the calls it refines, and (``replay``) the
    worker's replay fingerprints (:func:`voicecheck.replaycheck.fingerprint_call`; the parent's
    look-ups are not in the profile). Times are this process's CPU time (``time.process_time``), so
    other jobs on the machine do not count."""
    from voicecheck.audio import load
    from voicecheck.callstore import CallStore
    from voicecheck.config import load_settings
    from voicecheck.crypto import cipher_for
    from voicecheck.embedders import embed_windows, model_spec
    from voicecheck.embedders.base import window_starts
    from voicecheck.enrollment import VoiceprintStore
    from voicecheck.pipeline import Engine
    from voicecheck.refine import Refiner
    from voicecheck.replaycheck import fingerprint_call
    from voicecheck.scoring import unit
    from voicecheck.types import CallEmbedding
    from voicecheck.vad import regions_of
    from voicecheck.workers import groups

    emb_dir = fresh_workspace(work / "embeddings-profile", hop)
    settings = load_settings(None, store=str(work / "store"), embeddings=str(emb_dir), precision=precision)
    engine = Engine(settings)
    import torch

    torch.set_num_threads(1)
    e = engine.embedder
    spec = model_spec(settings.model, settings.embeddings)
    voiceprints = VoiceprintStore(settings.store, cipher_for(settings))
    refiner = Refiner.open(
        settings, spec.name, spec.key, CallStore(settings.embeddings, cipher_for(settings)), voiceprints
    )
    split = hasattr(e, "_speech_mels") and hasattr(e, "_network")  # GE2E: the mel front end timed apart
    stages = dict.fromkeys(
        ("decode", "vad", "resample+collect", "mel", "network", "refine: decide", "refine: windows", "replay prints"),
        0.0,
    )
    if not replay:
        del stages["replay prints"]
    audio_s = speech_s = 0.0
    refined = 0
    with (work / "calls.csv").open() as f:
        rows = list(csv.DictReader(f))[: n + 1]
    warm = rows.pop(0)  # first call untimed: lazy imports (librosa, soxr) and silero's first run
    engine.embed_call(work / warm["audio"], int(warm["customer_channel"]))
    if replay:  # ... and the fingerprint's compiled loops, which a batch worker loads at start-up
        from voicecheck.fingerprint import compile_loops

        compile_loops()
    for group in groups(rows, settings.calls_per_task):
        t = time.process_time()
        audios = [load(work / r["audio"], int(r["customer_channel"])) for r in group]
        t1 = time.process_time()
        found = regions_of(engine.vad, [(a.samples, a.sample_rate) for a in audios])
        t2 = time.process_time()
        stages["decode"] += t1 - t
        stages["vad"] += t2 - t1
        for row, a, regions in zip(group, audios, found, strict=True):
            t2 = time.process_time()
            speech, _, seconds = engine.speech(a, regions)
            t3 = time.process_time()
            stages["resample+collect"] += t3 - t2
            audio_s += a.duration_s
            speech_s += len(speech) / e.sample_rate
            if len(speech) < e.min_speech_s * e.sample_rate:
                continue
            if split:
                mels = e._speech_mels(speech)
                t4 = time.process_time()
                windows = e._network(mels)
                stages["mel"] += t4 - t3
                stages["network"] += time.process_time() - t4
            else:
                windows = embed_windows(e, speech)
                stages["network"] += time.process_time() - t3
            t5 = time.process_time()
            starts = window_starts(len(speech), e.sample_rate, e.window_s, e.hop_s)
            emb = CallEmbedding(
                a.content_hash, engine.model, a.band, a.channel, unit(windows.mean(axis=0)), windows,
                engine._times(starts, len(speech), regions), seconds, a.duration_s, tuple(regions), None, a.channels,
            )  # fmt: skip
            reason = refiner.reason(emb, row["borrower_id"]) if engine.refines else None
            t6 = time.process_time()
            stages["refine: decide"] += t6 - t5
            if reason:
                engine.refined(emb, speech, starts)
                stages["refine: windows"] += time.process_time() - t6
                refined += 1
            if replay:
                t7 = time.process_time()
                fingerprint_call(a.samples, a.sample_rate, regions)
                stages["replay prints"] += time.process_time() - t7
    voiceprints.close()
    return {
        "stages_s": stages,
        "calls": len(rows),
        "refined": refined,
        "audio_s": audio_s,
        "speech_s": speech_s,
        "precision": getattr(e, "precision", "fp32"),
        "hop_s": e.hop_s,
    }


def warm_up_audio(work: Path) -> Path:
    """A recording that is not one of the timed calls (the first enrollment) to warm a pipeline up."""
    with (work / "enroll.csv").open() as f:
        return work / next(csv.DictReader(f))["audio"]


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this script as a child with ``args``; its last stdout line is JSON, plus ``process_s``:
    the child's whole life (interpreter start, imports, model loading and the work)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_s": process_s}


# -- report -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    p.add_argument("--calls", type=int, default=40)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--out", type=Path, default=None, help="work folder (calls, stores); default a temp folder")
    p.add_argument("--profile-calls", type=int, default=12)
    p.add_argument("--hop", default="", help="GE2E window hop in seconds for the batch (default: the model's)")
    p.add_argument(
        "--compare-hop",
        default="0.8",
        help="also time a 1-worker batch at this hop in the same run ('' to skip): the default before issue 16",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="after the runs, this many more 1-worker batch / naive loop pairs back to back (a shared "
        "machine's load drifts between runs: the pairs' median ratio is steadier)",
    )
    p.add_argument(
        "--analysis",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "analysis.json",
        help="benchmarks/analysis.py's compared figures, shown beside the speed figures",
    )
    add_precision_option(p)
    p.add_argument(
        "--replay",
        default="on",
        choices=("on", "off"),
        help="the batch's replay check (Settings.replay, on by default since issue 15); the naive loop has none",
    )
    p.add_argument("--results", type=Path, default=RESULTS_MD)
    p.add_argument("--_child", nargs="*", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a._child:
        print(json.dumps(child(a._child)))
        return
    work = a.out or Path(tempfile.mkdtemp(prefix="vc-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    workers = [int(w) for w in a.workers.split(",")]
    load_before = os.getloadavg()
    use_work_key(work)
    hours = prepare(a.speech, a.calls, work)
    runs, loads = time_runs(work, workers, a.hop, a.precision, a.compare_hop, a.replay)
    for i in range(a.pairs):
        print(f"pair {i + 1} of {a.pairs} ...", flush=True)
        runs[f"pair{i}-batch"] = run_child(["--_child", "batch", str(work), "1", a.hop, a.precision, a.replay])
        runs[f"pair{i}-naive"] = run_child(["--_child", "naive", str(work)])
        loads[f"pair{i}"] = os.getloadavg()
    print("profile ...", flush=True)
    prof = run_child(["--_child", "profile", str(work), str(a.profile_calls), a.hop, a.precision, a.replay])
    (work / "runs.json").write_text(json.dumps({"runs": runs, "loads": loads, "profile": prof}, default=str))
    md = render(a, hours, workers, runs, loads, load_before, prof)
    print(md)
    write_results(a.results, md)


def child(argv: list[str]) -> dict[str, Any]:
    """One child run: ``batch WORK WORKERS HOP PRECISION REPLAY``, ``naive WORK`` or
    ``profile WORK N HOP PRECISION REPLAY`` (REPLAY "on" or "off")."""
    kind, work = argv[0], Path(argv[1])
    if kind == "batch":
        return child_batch(work, int(argv[2]), argv[3], argv[4], argv[5] == "on")
    if kind == "naive":
        return child_naive(work)
    return child_profile(work, int(argv[2]), argv[3], argv[4], argv[5] == "on")


def use_work_key(work: Path) -> None:
    """A throwaway encryption key for the benchmark's stores (``work/keys/key``, made once), named in
    ``VOICECHECK_KEY_FILE`` so this process and every child run seal and open with it."""
    from voicecheck.crypto import create_key_file

    path = work / "keys" / "key"
    if not path.exists():
        create_key_file(path)
    os.environ["VOICECHECK_KEY_FILE"] = str(path)


def prepare(speech: Path, n_calls: int, work: Path) -> float:
    """The calls and their manifests in ``work``, every customer enrolled; returns the hours of audio."""
    t = time.perf_counter()
    calls_csv, enroll_csv = build_calls(speech, n_calls, work)
    hours = audio_seconds(calls_csv) / 3600
    print(f"{n_calls} calls, {hours * 60:.1f} min of audio, in {work} (built in {time.perf_counter() - t:.0f} s)")
    if not (work / "store").exists():
        from voicecheck.config import load_settings
        from voicecheck.manifest import read_rows
        from voicecheck.pipeline import enroll_recordings

        items = [
            (f["borrower_id"], f["audio"], f.get("consent", ""))
            for _, f in read_rows(enroll_csv, ("borrower_id", "audio"))
        ]
        s = load_settings(None, store=str(work / "store"), embeddings=str(work / "embeddings-enroll"))
        enroll_recordings(items, s, consent=CONSENT)  # work folders from before the consent column
    return hours


def time_runs(
    work: Path, workers: list[int], hop: str, precision: str, compare_hop: str = "", replay: str = "on"
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[float, float, float]]]:
    """The batch with each worker count (and with 1 worker at ``compare_hop``), then the naive loop,
    each in its own child process.

    Returns:
        (each run's figures by "batch-<w>" / "batch-1-hop<h>" / "naive", the load average after each run).
    """
    runs: dict[str, dict[str, Any]] = {}
    loads: dict[str, tuple[float, float, float]] = {}
    for w in workers:
        print(f"batch, {w} worker(s) ...", flush=True)
        runs[f"batch-{w}"] = run_child(["--_child", "batch", str(work), str(w), hop, precision, replay])
        loads[f"batch-{w}"] = os.getloadavg()
    if compare_hop:
        print(f"batch, 1 worker, hop {compare_hop} ...", flush=True)
        runs[f"batch-1-hop{compare_hop}"] = run_child(
            ["--_child", "batch", str(work), "1", compare_hop, precision, replay]
        )
        loads[f"batch-1-hop{compare_hop}"] = os.getloadavg()
    print("naive loop ...", flush=True)
    runs["naive"] = run_child(["--_child", "naive", str(work)])
    loads["naive"] = os.getloadavg()
    return runs, loads


def write_results(path: Path, md: str) -> None:
    """Write ``md`` to ``path``, keeping the hand-written notes below :data:`NOTES_MARK` of the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if NOTES_MARK in old:  # hand-written notes below the mark survive a re-run
        md += "\n" + old[old.index(NOTES_MARK) :]
    path.write_text(md, encoding="utf-8")
    print(f"written {path}")


def render(
    a: argparse.Namespace,
    hours: float,
    workers: list[int],
    runs: dict[str, dict[str, Any]],
    loads: dict[str, tuple[float, float, float]],
    load_before: tuple[float, float, float],
    prof: dict[str, Any],
) -> str:
    """results/throughput.md: set-up, the runs table, scaling notes, and where a worker's time goes."""
    lines = render_setup(a, hours, prof["precision"])
    lines += render_busy(loads, load_before)
    main_runs = {k: v for k, v in runs.items() if not k.startswith("pair")}
    table, steady = render_runs(a.calls, hours, main_runs, loads)
    lines += table
    lines += render_pairs(a.calls, hours, runs, loads)
    lines += render_notes(workers, runs, steady)
    lines += render_profile(prof, runs["naive"], hours)
    lines += render_analysis(a.analysis)
    return "\n".join(lines) + "\n"


def render_setup(a: argparse.Namespace, hours: float, precision: str) -> list[str]:
    """The command, machine and how the calls and runs were made."""
    return [
        "# Batch throughput",
        "",
        f"`benchmarks/throughput.py --calls {a.calls} --workers {a.workers}{f' --hop {a.hop}' if a.hop else ''}"
        f"{f' --precision {a.precision}' if a.precision != 'auto' else ''}"
        f"{f' --pairs {a.pairs}' if a.pairs else ''}{' --replay off' if a.replay == 'off' else ''}"
        f"{f' --compare-hop {a.compare_hop!r}' if a.compare_hop != '0.8' else ''}` on "
        f"{platform.machine()}, "
        f"{os.cpu_count() or 1} cores, Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"CPU: {cpu_features()}.",
        "",
        f"{a.calls} simulated calls (stereo 8 kHz G.711 mu-law, customer on channel 1, 20-60 s each, "
        f"{hours * 60:.1f} min of audio in all) built from the real-speech corpus with "
        "`recipes.simulate.make_call`; every customer enrolled from two wideband recordings. GE2E "
        f"(network in {precision}), silero VAD, torch 1 thread per worker; each batch run starts "
        "from an empty call-embedding store; "
        + (
            "the replay check on (the product's default since issue 15: each call's customer speech "
            "fingerprinted by the worker, looked up and stored by the parent). "
            if a.replay == "on"
            else "the replay check off (`replay = false`; the product's default is on). "
        )
        + "The naive loop is `preprocess_wav` + "
        "`VoiceEncoder.embed_utterance` on the customer channel, file by file, one process, torch 1 "
        "thread (embedding only: no VAD of its own beyond "
        "Resemblyzer's webrtcvad trim, no scoring).",
        "",
    ]


def render_busy(loads: dict[str, tuple[float, float, float]], load_before: tuple[float, float, float]) -> list[str]:
    """A warning when other jobs loaded the machine during the runs (empty otherwise)."""
    cores = os.cpu_count() or 1
    busy = max(max(v) for v in [*loads.values(), load_before])
    if busy <= 0.75 * cores:
        return []
    return [
        f"**The machine was busy**: load average up to {busy:.1f} on {cores} cores (before: "
        f"{load_before[0]:.1f}) — other jobs shared the CPUs, so wall-clock figures are pessimistic "
        "and scaling across workers is understated. CPU-hour figures are less affected.",
        "",
    ]


def render_runs(
    n_calls: int, hours: float, runs: dict[str, dict[str, Any]], loads: dict[str, tuple[float, float, float]]
) -> tuple[list[str], dict[str, float]]:
    """The runs table; also returns each run's steady-state audio hours per core hour."""
    lines = [
        "*Warm*: the clock starts once the process has imported its libraries, loaded its model and run "
        "it on one short warm-up signal (the naive loop and the 1-worker batch, which runs in-process); a "
        "2+ worker batch cannot be warmed, so its warm figure includes spawning the workers, their model "
        "loading and their first calls. *Steady state*: the batch's rate of embedded calls once every "
        "worker is past its first two tasks, until the last call is embedded (times the mean audio per "
        "call; the scoring phase, ~2% of the run, is left out): what a nightly batch of thousands of calls "
        "runs at. *Cold*: the child process's whole life, interpreter start-up included, for every run.",
        "",
        "*Steady state, CPU time* (1 worker, load-robust): the same rate per second of this process's CPU "
        "time (`time.process_time`) against the naive loop's CPU time over its calls: what the run would "
        "give on a core of its own; other jobs on the machine still slow both through shared caches.",
        "",
        "| run | wall s (warm) | audio h / wall h | audio h / core h (wall x workers) "
        "| x naive per core, warm | x naive per core, steady state | x naive, steady state, CPU time "
        "| process s (cold) | x naive per core, cold | audio h / CPU h (used) | peak RSS per worker MB "
        "| load avg after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    naive = runs["naive"]
    naive_core, naive_cold = hours / (naive["wall_s"] / 3600), hours / (naive["process_s"] / 3600)
    per_call_s = hours * 3600 / n_calls
    steady: dict[str, float] = {}  # audio h per core h once running
    for key, r in runs.items():
        w = int(key.split("-")[1]) if key.startswith("batch") else 1
        wall, cpu, cold = r["wall_s"], r["cpu_s"], r["process_s"]
        steady[key] = r["steady"]["calls_per_s"] * per_call_s / w if "steady" in r else naive_core
        rss = r["rss_children_mb"] if w > 1 else r["rss_self_mb"]
        label = f"voicecheck batch, {w} worker{'s' if w > 1 else ''}" if key.startswith("batch") else "naive loop"
        if "-hop" in key:
            label += f", hop {key.split('-hop')[1]} s (before issue 16)"
        elif key.startswith("batch"):
            label += ", default hop (+ refinement)"
        per_core, per_core_cold = hours / (wall * w / 3600), hours / (cold * w / 3600)
        cpu_x = "–"
        if key == "naive":
            cpu_x = "1.00"
        elif r.get("steady_cpu") and "loop_cpu_s" in naive:  # audio s per CPU s, batch vs naive
            cpu_x = f"{r['steady_cpu']['calls_per_s'] * per_call_s / (hours * 3600 / naive['loop_cpu_s']):.2f}"
        lines.append(
            f"| {label} | {wall:.1f} | {hours / (wall / 3600):.0f} | {per_core:.0f} "
            f"| {per_core / naive_core:.2f} | {steady[key] / naive_core:.2f} | {cpu_x} | {cold:.1f} "
            f"| {per_core_cold / naive_cold:.2f} | {hours / (cpu / 3600):.0f} | {rss:.0f} | {loads[key][0]:.1f} |"
        )
    return lines + [""], steady


def render_pairs(
    n_calls: int, hours: float, runs: dict[str, dict[str, Any]], loads: dict[str, tuple[float, float, float]]
) -> list[str]:
    """The 1-worker batch against the naive loop in pairs run back to back: each pair's steady-state
    ratios (wall clock and CPU time) and their medians with the main run's pair."""
    keys = sorted(k[: -len("-batch")] for k in runs if k.startswith("pair") and k.endswith("-batch"))
    if not keys:
        return []
    per_call_s = hours * 3600 / n_calls

    def ratios(batch: dict[str, Any], naive: dict[str, Any]) -> tuple[float, float]:
        wall = batch["steady"]["calls_per_s"] * per_call_s / (hours * 3600 / naive["wall_s"])
        cpu = batch["steady_cpu"]["calls_per_s"] * per_call_s / (hours * 3600 / naive["loop_cpu_s"])
        return wall, cpu

    pairs = [("main run", *ratios(runs["batch-1"], runs["naive"]), loads["naive"][0])]
    pairs += [(k, *ratios(runs[k + "-batch"], runs[k + "-naive"]), loads[k][0]) for k in keys]
    lines = [
        "Pairs back to back (1-worker batch at the default hop, then the naive loop), steady state:",
        "",
        "| pair | x naive, wall clock | x naive, CPU time | load avg after |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {w:.2f} | {c:.2f} | {ld:.1f} |" for name, w, c, ld in pairs]
    med_w, med_c = np.median([x[1] for x in pairs]), np.median([x[2] for x in pairs])
    lines += [f"| **median of {len(pairs)}** | **{med_w:.2f}** | **{med_c:.2f}** | |", ""]
    return lines


def render_notes(workers: list[int], runs: dict[str, dict[str, Any]], steady: dict[str, float]) -> list[str]:
    """Scaling from the first worker count to the others, the batch phases, what the runs include."""
    lines = []
    base = workers[0]
    for w in workers[1:]:
        warm = runs[f"batch-{base}"]["wall_s"] / runs[f"batch-{w}"]["wall_s"]
        run_x = steady[f"batch-{w}"] * w / (steady[f"batch-{base}"] * base)
        lines.append(
            f"- scaling {base} -> {w} workers: {run_x:.2f}x in the steady state "
            f"({run_x / (w / base) * 100:.0f}% efficiency); {warm:.2f}x warm, start-up included."
        )
    for key in (k for k in runs if k.startswith("batch")):
        sm = runs[key]["summary"]
        refined = sm.get("refined") or {}
        total = sum(refined.values())
        share = f"{1 - refined.get('coarse', 0) / total:.1%} refined {refined}" if total else "none refined"
        lines.append(f"- {key}: phases {sm['timings_s']}; verdicts {sm['verdicts']}; calls embedded: {share}.")
    lines.append(
        f"- naive loop: model load {runs['naive']['model_load_s']:.1f} s (not in its warm time); "
        "the batch's time includes the VAD, the cohort and scoring, and the durable results file; the "
        "1-worker batch's includes loading its models once more (run_batch starts its own worker)."
    )
    lines.append(
        "- peak RSS: the worker process for 1 worker (the batch runs in-process), the largest "
        "pool worker for 2+ (`getrusage(RUSAGE_CHILDREN)`)."
    )
    return lines


def render_profile(prof: dict[str, Any], naive: dict[str, Any], hours: float) -> list[str]:
    """Per-stage time of one worker, and the bound the embedding stage puts on the batch."""
    st = prof["stages_s"]
    total = sum(st.values())
    lines = [
        "",
        f"## Where a worker's time goes ({prof['calls']} calls, {prof['audio_s']:.0f} s audio, "
        f"{prof['speech_s']:.0f} s customer speech, one process, torch 1 thread, GE2E in {prof['precision']}, "
        f"hop {prof.get('hop_s', 0):g} s, {prof.get('refined', 0)} calls refined)",
        "",
        "| stage | s | share | ms per audio s |",
        "|---|---:|---:|---:|",
    ]
    for k, v in st.items():
        lines.append(f"| {k} | {v:.2f} | {v / total * 100:.0f}% | {v / prof['audio_s'] * 1000:.3f} |")
    lines.append(f"| total | {total:.2f} | 100% | {total / prof['audio_s'] * 1000:.3f} |")
    embed = st["mel"] + st["network"] + st.get("refine: windows", 0.0)
    naive_per_audio_s = naive.get("loop_cpu_s", naive["wall_s"]) / (hours * 3600)  # CPU time, as the stages
    embed_per_audio_s = embed / prof["audio_s"]
    lines += [
        "",
        f"VAD (a task's calls together, as the batch runs it) is {st['vad'] / total * 100:.0f}% of per-call "
        f"time, embedding {embed / total * 100:.0f}% (mel {st['mel'] / total * 100:.0f}%, network "
        f"{st['network'] / total * 100:.0f}%). The naive loop spends {naive_per_audio_s * 1000:.2f} ms of CPU "
        f"per second of audio (warm); the embedding stage alone (with the in-between windows of the refined calls), "
        f"{embed_per_audio_s * 1000:.2f} ms, bounds the "
        f"batch at **{naive_per_audio_s / embed_per_audio_s:.2f}x** the naive loop per core at this window hop "
        "and precision, even if decoding, VAD and scoring cost nothing. All the stages together, "
        f"{total / prof['audio_s'] * 1000:.2f} ms, give **{naive_per_audio_s / (total / prof['audio_s']):.2f}x** "
        "(the batch adds the call store, the results file and its own bookkeeping).",
    ]
    return lines


def render_analysis(path: Path) -> list[str]:
    """benchmarks/analysis.py's compared figures (hop 0.8 vs the product), when it has written them."""
    import json

    if not path.is_file():
        return ["", f"(No analysis figures: run benchmarks/analysis.py to write {path.name}.)"]
    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "",
        f"## What the speed costs: benchmarks/analysis.py, EVAL, hop 0.8 vs hop 1.6 + refinement ({data['date']})",
        "",
        "The window-level analyses and the 1:1 check on the same EVAL calls, every call on windows every 0.8 s "
        "with the back-end trained there (before issue 16) and as the product runs now (results/analysis.md "
        "says how, and why each figure moved).",
        "",
        "| EVAL figure | hop 0.8 | hop 1.6 + refine |",
        "|---|---:|---:|",
    ]
    for key in data["keys"]:
        a, b = data["hop0.8"].get(key), data["product"].get(key)
        if a is None or b is None:
            continue
        share = not (
            key.endswith(": P") or key.endswith(": R") or "purity" in key or "coverage" in key or "link" in key
        )
        show = (lambda x: f"{100 * x:.1f}%") if share else (lambda x: f"{x:.2f}")
        lines.append(f"| {key} | {show(a)} | {show(b)} |")
    return lines


if __name__ == "__main__":
    main()
