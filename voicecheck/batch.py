"""The nightly batch: embed every call's customer side, then score each against its borrower.

Phase 1 maps :func:`embed_tasks` (a few calls at a time) over worker processes (each loads the model
once and uses one torch thread) and stores every embedding in the call-embedding store as it arrives;
phase 2 builds the in-domain cohort from that store (earlier nights plus tonight) and writes one
verdict per manifest row.
Both phases are resumable: embeddings are keyed by audio content, results by manifest row.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audio import load
from .callstore import CallStore
from .config import Settings
from .crypto import cipher_for
from .embedders import model_spec
from .enrollment import VoiceprintStore
from .errors import AudioError, InsufficientSpeechError, UsageError, VoicecheckError
from .pipeline import Engine, Judge, error_result
from .report import RESULTS, SUMMARY, ResultsFile, summarise, write_json
from .types import CallResult

log = logging.getLogger(__name__)

CALL_COLUMNS = ("call_id", "borrower_id", "audio")


@dataclass(frozen=True)
class Row:
    """One manifest row; ``problem`` says why it cannot be processed."""

    row: int
    call_id: str
    borrower_id: str
    audio: str
    channel: int | None
    problem: str | None = None


def read_rows(path: str | Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Stream a CSV manifest as (row number, cleaned fields); ``audio`` resolved against the CSV's folder.

    Raises:
        UsageError: missing or unreadable file, or a header without the required columns.
    """
    p = Path(path)
    try:
        f = p.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise UsageError(f"manifest {p} cannot be opened: {e.strerror or e}") from None
    with f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise UsageError(f"manifest {p} lacks column(s) {', '.join(missing)}; it needs {', '.join(required)}")
        reader.fieldnames = header
        for n, raw in enumerate(reader, 1):
            fields = {k: (v or "").strip() for k, v in raw.items() if k is not None}
            if fields.get("audio"):
                a = Path(fields["audio"])
                fields["audio"] = str(a if a.is_absolute() else p.parent / a)
            yield n, fields


def customer_channel(fields: dict[str, str], default: int) -> tuple[int, str | None]:
    """The row's ``customer_channel`` (``default`` when the column is empty), and the problem if it is bad."""
    value = fields.get("customer_channel", "")
    if not value:
        return default, None
    try:
        channel = int(value)
    except ValueError:
        channel = -1
    if channel < 0:
        return default, f"customer_channel must be a channel number >= 0, got {value!r}"
    return channel, None


def call_rows(path: str | Path, default_channel: int) -> Iterator[Row]:
    """The rows of a call manifest, with per-row problems (empty fields, bad channel, repeated call id)."""
    seen: set[str] = set()
    for n, f in read_rows(path, CALL_COLUMNS):
        missing = [c for c in CALL_COLUMNS if not f.get(c)]
        channel, problem = customer_channel(f, default_channel)
        if missing:
            problem = f"row {n} has empty {', '.join(missing)}"
        elif f["call_id"] in seen:
            problem = f"call_id {f['call_id']!r} appears more than once in the manifest"
        seen.add(f.get("call_id", ""))
        yield Row(n, f.get("call_id", ""), f.get("borrower_id", ""), f.get("audio", ""), channel, problem)


# -- phase 1: the per-call function every engine maps -----------------------------------------------

_engine: Engine | None = None
_calls: CallStore | None = None


def init_worker(settings: Settings) -> None:
    """Load the model once per worker process, with the configured number of torch threads.

    numpy's BLAS gets the same limit: by default it starts a thread per core, and with one worker
    per core those threads only compete with the other workers (the mel spectrogram's einsum used
    twice its CPU for the same wall time).
    """
    global _engine, _calls
    import torch
    from threadpoolctl import threadpool_limits

    _engine = Engine(settings)
    torch.set_num_threads(settings.torch_threads)
    threadpool_limits(settings.torch_threads)
    _calls = CallStore(settings.embeddings, cipher_for(settings))


Task = Row


def embed_tasks(tasks: list[Task]) -> list[dict[str, Any]]:
    """Embed a few calls' customer sides, or find them already stored. Never raises for a bad call.

    The calls are decoded one by one and embedded (:meth:`voicecheck.pipeline.Engine.embed_many`),
    each call's windows in one batched pass; a task of several calls spreads the per-task overhead.

    Args:
        tasks: manifest rows (``Settings.calls_per_task`` of them from the batch).

    Returns:
        One dict per row, in order: ``{"task": row, "status": ...}`` with status "ok" (+ "embedding"),
        "cached" (this call id or this audio is already in the call store), "insufficient_speech"
        (+ "speech_seconds") or "error" (+ "error", a VoicecheckError); plus content_hash, channel
        and duration_s once decoded, and "seconds" (the call's share of the group's time).
    """
    if _engine is None or _calls is None:
        raise RuntimeError("init_worker must run in this process before embed_tasks")
    start = time.perf_counter()
    outs: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], Any]] = []  # (output, decoded audio) still to embed
    keys: set[tuple[str, int]] = set()  # (content hash, channel) of the audio in ``pending``
    for task in tasks:
        out: dict[str, Any] = {"task": task, "row": task.row}
        outs.append(out)
        try:
            if task.problem:
                raise UsageError(task.problem)
            if task.call_id and _calls.linked(task.call_id, _engine.model) is not None:
                out["status"] = "cached"
                continue
            decoded = load(task.audio, task.channel)
            out.update(content_hash=decoded.content_hash, channel=decoded.channel, duration_s=decoded.duration_s)
            key = (decoded.content_hash, decoded.channel)
            if key in keys or _calls.has(*key, _engine.model):
                out["status"] = "cached"  # stored, or embedded earlier in this group (its result comes first)
            else:
                keys.add(key)
                pending.append((out, decoded))
        except VoicecheckError as e:
            out.update(status="error", error=e)
    if pending:
        try:
            embedded = _engine.embed_many([audio for _, audio in pending])
        except VoicecheckError:  # one call broke the group's pass: embed each alone to find which
            embedded = [_embed_alone(audio) for _, audio in pending]
        for (out, _), emb in zip(pending, embedded, strict=True):
            if isinstance(emb, InsufficientSpeechError):
                out.update(status="insufficient_speech", speech_seconds=emb.speech_seconds)
            elif isinstance(emb, VoicecheckError):
                out.update(status="error", error=emb)
            else:
                out.update(status="ok", embedding=emb)
    share = (time.perf_counter() - start) / max(1, len(outs))
    for out in outs:
        out["seconds"] = share
    return outs


def _embed_alone(audio: Any) -> Any:
    """One call's embedding, or the VoicecheckError it raises (returned, not raised)."""
    assert _engine is not None
    try:
        return _engine.embed_audio(audio)
    except VoicecheckError as e:
        return e


def groups(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    """``tasks`` in lists of ``size`` (the last may be shorter), streamed."""
    group: list[Task] = []
    for task in tasks:
        group.append(task)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def _map_local(settings: Settings, tasks: Iterable[Task]) -> Iterator[dict[str, Any]]:
    grouped = groups(tasks, max(1, settings.calls_per_task))
    if settings.workers <= 1:
        init_worker(settings)
        for outs in map(embed_tasks, grouped):
            yield from outs
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(settings.workers, initializer=init_worker, initargs=(settings,)) as pool:
        for outs in pool.imap_unordered(embed_tasks, grouped, chunksize=1):
            yield from outs


# -- the batch ----------------------------------------------------------------------------------------


def run_batch(
    manifest: str | Path,
    out_dir: str | Path,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Check every call of ``manifest``; write ``out_dir/results.jsonl`` and ``out_dir/summary.json``.

    A re-run with the same ``out_dir`` skips rows already in results.jsonl, and audio already in the
    call-embedding store is not embedded again.

    Args:
        progress: called with the number of rows just embedded (for a progress bar over all rows).
        engine: "local" (process pool) or "ray".

    Returns:
        The summary written to summary.json.
    """
    from .audit import Trail, audit_log
    from .erasure import apply_retention
    from .pipeline import audit_reason

    started = time.perf_counter()
    out = Path(out_dir)
    spec = model_spec(settings.model, settings.embeddings)
    cipher = cipher_for(settings)
    purged = apply_retention(settings, cipher)
    results = ResultsFile(out / RESULTS)
    done = {r.get("row") for r in results.records()}
    tick = progress or (lambda n: None)
    tick(len(done))
    calls = CallStore(settings.embeddings, cipher)
    voiceprints = VoiceprintStore(settings.store, cipher)
    trail = Trail(audit_log(settings, cipher))
    timings = {"embed_seconds": 0.0, "score_seconds": 0.0}

    def write(r: Row, result: CallResult) -> None:
        result.row = r.row
        results.append(result.to_dict())
        trail.add(
            "batch.call",
            call_id=r.call_id,
            borrower_id=r.borrower_id,
            content_hash=result.content_hash,
            verdict=result.verdict,
            reason=audit_reason(result.reason),
        )

    try:
        model = spec.name
        failed: set[int] = set()  # rows that got an error record in phase 1 (ints: memory stays small)
        todo = (r for r in call_rows(manifest, settings.channel) if r.row not in done)
        t0 = time.perf_counter()
        mapper = _map_ray(settings, todo, address) if engine == "ray" else _map_local(settings, todo)
        for res in mapper:
            r, status = res["task"], res["status"]
            tick(1)  # the bar follows the embedding phase; scoring afterwards takes milliseconds per call
            if status == "error":
                write(r, error_result(r.call_id, r.borrower_id, r.audio, res["error"], model))
                failed.add(r.row)
                continue
            if status == "cached" and "content_hash" not in res:
                continue  # this call id was linked by an earlier run
            key = (res["content_hash"], res["channel"], model)
            if status == "ok":
                calls.put(res["embedding"], content_hash=key[0], channel=key[1], model=model)
            elif status == "insufficient_speech":
                calls.put(
                    None,
                    content_hash=key[0],
                    channel=key[1],
                    model=model,
                    speech_seconds=res["speech_seconds"],
                    duration_s=res["duration_s"],
                )
            calls.link(r.call_id, r.borrower_id, r.audio, key[0], key[1], model)
        calls.sync()  # every embedding on disk before any verdict that rests on it is written
        timings["embed_seconds"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        judge = Judge.open(settings, voiceprints, calls)
        for r in call_rows(manifest, settings.channel):
            if r.row not in done and r.row not in failed:
                write(r, score_stored(r, calls, judge))
        timings["score_seconds"] = time.perf_counter() - t0
    finally:
        results.close()
        calls.close()
        voiceprints.close()
        trail.flush()
    summary = summarise(
        out / RESULTS,
        wall_seconds=round(time.perf_counter() - started, 2),
        model=model,
        engine=engine,
        workers=settings.workers,
        timings_s={k: round(v, 2) for k, v in timings.items()},
        settings=settings.to_dict(),
        encryption=cipher.describe(),
        retention_purged=purged,
    )
    write_json(out / SUMMARY, summary)
    trail.log.record(
        "batch", manifest=str(manifest), out=str(out), calls=summary["calls"], verdicts=summary["verdicts"]
    )
    return summary


def score_stored(r: Row, calls: CallStore, judge: Judge) -> CallResult:
    """Judge a call from its stored embedding (no audio decoded)."""
    link = calls.linked(r.call_id, judge.scorer.model)
    if link is None:
        return error_result(
            r.call_id, r.borrower_id, r.audio, AudioError("no stored embedding; re-run the batch"), judge.scorer.model
        )
    _status, emb, speech_s = link
    result = judge(r.call_id, r.borrower_id, r.audio, emb, speech_s, r.channel)
    if result.duration_s is None:  # too little speech: no embedding, but its audio still counts
        duration = calls.duration_s(r.call_id, judge.scorer.model)
        result.duration_s = None if duration is None else round(duration, 2)
    return result


def _map_ray(settings: Settings, tasks: Iterable[Task], address: str | None) -> Iterator[dict[str, Any]]:
    from .distributed import map_ray

    return map_ray(settings, tasks, address)


def rescore(out_dir: str | Path, settings: Settings, manifest: str | Path | None = None) -> dict[str, Any]:
    """Score stored call embeddings again (new threshold, calibration or cohort) without decoding audio.

    Args:
        out_dir: receives a fresh results.jsonl and summary.json (an existing results file is replaced).
        manifest: calls to rescore; None rescores every call in the call-embedding store.
    """
    from .audit import Trail, audit_log
    from .pipeline import audit_reason

    started = time.perf_counter()
    out = Path(out_dir)
    spec = model_spec(settings.model, settings.embeddings)
    cipher = cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    voiceprints = VoiceprintStore(settings.store, cipher)
    trail = Trail(audit_log(settings, cipher))
    tmp = out / (RESULTS + ".partial")
    tmp.unlink(missing_ok=True)
    results = ResultsFile(tmp)
    try:
        judge = Judge.open(settings, voiceprints, calls)
        if manifest is not None:
            rows: Iterable[Row] = call_rows(manifest, settings.channel)
        else:
            rows = (Row(0, c.call_id, c.borrower_id, c.audio, None) for c in calls.calls(spec.name))
        for r in rows:
            result = (
                error_result(r.call_id, r.borrower_id, r.audio, UsageError(r.problem), spec.name)
                if r.problem
                else score_stored(r, calls, judge)
            )
            result.row = r.row or None
            results.append(result.to_dict())
            trail.add(
                "rescore.call",
                call_id=r.call_id,
                borrower_id=r.borrower_id,
                content_hash=result.content_hash,
                verdict=result.verdict,
                reason=audit_reason(result.reason),
            )
    finally:
        results.close()
        calls.close()
        voiceprints.close()
        trail.flush()
    tmp.replace(out / RESULTS)
    summary = summarise(
        out / RESULTS,
        wall_seconds=round(time.perf_counter() - started, 2),
        model=spec.name,
        engine="rescore",
        settings=settings.to_dict(),
        encryption=cipher.describe(),
    )
    write_json(out / SUMMARY, summary)
    trail.log.record("rescore", out=str(out), calls=summary["calls"], verdicts=summary["verdicts"])
    return summary


def build_cohort(manifest: str | Path, settings: Settings, report: Callable[[str], None]) -> tuple[int, int, int]:
    """Embed unlabelled calls (column ``audio``) into the call store; returns (added, skipped, stored)."""
    spec = model_spec(settings.model, settings.embeddings)
    tasks = (
        Row(n, "", "", f["audio"], *customer_channel(f, settings.channel))
        if f.get("audio")
        else Row(n, "", "", "", settings.channel, f"row {n} has an empty audio")
        for n, f in read_rows(manifest, ("audio",))
    )
    calls = CallStore(settings.embeddings, cipher_for(settings))
    added = failed = 0
    try:
        for res in _map_local(settings, tasks):
            if res["status"] == "ok":
                calls.put(res["embedding"], content_hash=res["content_hash"], channel=res["channel"], model=spec.name)
                added += 1
            elif res["status"] != "cached":
                failed += 1
                report(f"row {res['row']}: skipped: {res.get('error') or res['status']}")
        calls.sync()
        return added, failed, calls.count(spec.name)
    finally:
        calls.close()


def write_report(
    out_dir: str | Path, settings: Settings, summary: dict[str, Any], rings: bool = True, max_rows: int = 2000
) -> Path:
    """``out_dir/report.html``: counts, timing, score histogram, flagged calls, takeovers, watchlist hits
    and (``rings``) the voices speaking for several borrowers across the whole call store; and
    ``out_dir/flagged.csv``: every call that is not a match, for a spreadsheet."""
    from .crosscall import rings as find_rings
    from .report import FLAGGED, FLAGGED_CSV_COLUMNS, flagged_rows, html_table, read_jsonl, write_csv, write_html

    out = Path(out_dir)
    write_csv(out / FLAGGED, flagged_rows(out / RESULTS), FLAGGED_CSV_COLUMNS)
    takeovers: list[dict[str, Any]] = []
    hits: list[dict[str, Any]] = []
    for r in read_jsonl(out / RESULTS):
        if r.get("speaker_change_s") is not None and len(takeovers) < max_rows:
            takeovers.append(r)
        for h in r.get("watchlist_hits") or []:
            if len(hits) < max_rows:
                hits.append(
                    {
                        "call_id": r["call_id"],
                        "borrower_id": r["borrower_id"],
                        "label": h["label"],
                        "score": h["score"],
                        "source": h.get("source"),
                        "audio": r["audio"],
                    }
                )
    sections = [
        (
            "Takeovers inside a call",
            html_table(
                takeovers,
                ["call_id", "borrower_id", "speaker_change_s", "score", "threshold", "verdict", "audio"],
                link="audio",
            ),
        ),
        (
            "Watchlist hits",
            html_table(hits, ["call_id", "borrower_id", "label", "score", "source", "audio"], link="audio"),
        ),
    ]
    found = find_rings(settings, settings.ring_min_borrowers) if rings else None
    return write_html(out, summary, out / RESULTS, rings=found, sections=sections, max_rows=max_rows)
