"""The nightly batch: embed every call's customer side, then score each against its borrower.

Phase 1 maps :meth:`voicecheck.workers.Worker.embed` (a few calls at a time) over worker processes
or Ray actors (each loads the model once and uses one torch thread) and stores every embedding in
the call-embedding store as it arrives; phase 2 builds the in-domain cohort from that store (earlier
nights plus tonight) and writes one verdict per manifest row.

Both phases are resumable: embeddings are keyed by audio content, results by the manifest's
identity (its sha256, kept in ``<out>/run.json``) and row. One run at a time writes an ``--out``
folder (a lock names the holder), and a folder holding another manifest's results is refused.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from .antispoof import describe, read_liveness
from .callstore import CallStore
from .config import Settings
from .crypto import cipher_for
from .embedders import model_spec
from .enrollment import VoiceprintStore
from .errors import AudioError, UsageError
from .files import locked
from .manifest import Row, call_rows, customer_channel, read_rows
from .operating import OperatingPoint
from .pipeline import Judge, error_result
from .replaycheck import Indexes, Ledger, stored_outcome
from .report import RESULTS, SUMMARY, ResultsFile, read_jsonl, summarise, write_json
from .reviews import in_record, of_audio
from .scorer import Scorer
from .types import CallResult
from .workers import Embedded, as_error, keep_freed_memory, map_local

log = logging.getLogger(__name__)

# -- the batch ----------------------------------------------------------------------------------------


RUN = "run.json"
"""In an --out folder: which manifest (path, sha256) the results there belong to."""


def run_batch(
    manifest: str | Path,
    out_dir: str | Path,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Check every call of ``manifest``; write ``out_dir/results.jsonl`` and ``out_dir/summary.json``.

    A re-run of the same manifest into the same ``out_dir`` skips rows already in results.jsonl, and
    audio already in the call-embedding store is not embedded again. A second run into a folder in
    use, or another manifest into a folder holding results, is refused.

    Args:
        progress: called with the number of rows just embedded (for a progress bar over all rows).
        engine: "local" (process pool) or "ray".

    Returns:
        The summary written to summary.json.

    Raises:
        UsageError: the folder is in use, holds another manifest's results, or cannot be written.
    """
    from .audit import Trail, audit_log
    from .erasure import apply_retention

    started = time.perf_counter()
    keep_freed_memory()  # the parent's look-ups and stores too (workers: workers.configure)
    out = Path(out_dir)
    spec = model_spec(settings.model, settings.embeddings)
    cipher = cipher_for(settings)
    with locked(out, "batch"):
        claim(out, manifest)
        purged = apply_retention(settings, cipher)
        trail = Trail(audit_log(settings, cipher))
        results = AuditedResults(out / RESULTS, trail, "batch.call")
        done = {r.get("row") for r in results.records()}
        (progress or (lambda n: None))(len(done))
        calls = CallStore(settings.embeddings, cipher)
        voiceprints = VoiceprintStore(settings.store, cipher)
        ledger = Ledger(Indexes.open(settings, cipher), calls) if settings.replay else None
        judge: Judge | None = None
        try:
            t0 = time.perf_counter()
            todo = expected((r for r in call_rows(manifest, settings.channel) if r.row not in done), ledger)
            mapped = map_ray(settings, todo, address) if engine == "ray" else map_local(settings, todo)
            refined: Counter[str] = Counter()
            failed = store_embeddings(mapped, calls, results, spec.name, progress, refined=refined, ledger=ledger)
            timings = {"embed_seconds": time.perf_counter() - t0}
            t0 = time.perf_counter()
            judge = Judge.open(settings, voiceprints, calls, timeline=True)
            for r in call_rows(manifest, settings.channel):
                if r.row not in done and r.row not in failed:
                    write_result(results, r, score_stored(r, calls, judge))
            timings["score_seconds"] = time.perf_counter() - t0
        finally:
            results.close()
            calls.close()
            voiceprints.close()
            if ledger is not None:
                ledger.indexes.close()
        training = scheduled_training(settings)
        summary = summarise(
            out / RESULTS,
            wall_seconds=round(time.perf_counter() - started, 2),
            model=spec.name,
            engine=engine,
            workers=settings.workers,
            timings_s={k: round(v, 2) for k, v in timings.items()},
            refined=dict(sorted(refined.items())),
            settings=settings.to_dict(),
            encryption=cipher.describe(),
            retention_purged=purged,
            liveness=describe(read_liveness(settings.embeddings)),
            operating_point=None if judge is None else decision_report(judge.scorer, out / RESULTS),
            backend=None if judge is None else backend_report(judge.scorer),
            backend_training=training,
        )
        write_json(out / SUMMARY, summary)
        trail.log.record(
            "batch", manifest=str(manifest), out=str(out), calls=summary["calls"], verdicts=summary["verdicts"]
        )
    return summary


class AuditedResults(ResultsFile):
    """A results file whose every record also lands in the audit log (ids, verdict, reason code; no
    score), buffered by ``trail`` and flushed in chunks and on close."""

    def __init__(self, path: str | Path, trail: Any, event: str) -> None:
        super().__init__(path)
        self.trail = trail
        self.event = event

    def append(self, record: dict[str, Any]) -> None:
        from .pipeline import audit_reason

        super().append(record)
        self.trail.add(
            self.event,
            call_id=record.get("call_id"),
            borrower_id=record.get("borrower_id"),
            content_hash=record.get("content_hash"),
            verdict=record.get("verdict"),
            reason=audit_reason(record.get("reason")),
        )

    def close(self) -> None:
        super().close()
        self.trail.flush()


def decision_report(scorer: Scorer, results_path: Path) -> dict[str, Any]:
    """Per band: the threshold's source and, for an operating point, tonight's estimated share of
    honest borrowers flagged (:meth:`voicecheck.operating.OperatingPoint.report`) from the run's
    claimed-identity scores in that band and mode."""
    claimed: dict[str, list[float]] = {}
    for r in read_jsonl(results_path):
        if r.get("score") is not None and r.get("scoring") == scorer.mode(str(r.get("band"))):
            claimed.setdefault(str(r["band"]), []).append(float(r["score"]))
    out: dict[str, Any] = {}
    for band in sorted(set(claimed) | set(scorer.operating)):
        point = scorer.operating.get(band)
        try:
            used = scorer.threshold(band)
        except UsageError as e:
            out[band] = {"mode": scorer.mode(band), "source": str(e)}
            continue
        if isinstance(point, OperatingPoint):
            out[band] = point.report(claimed.get(band, []), scorer.settings.false_flag_alarm, used)
        else:
            out[band] = {"mode": scorer.mode(band), "threshold": round(used.value, 4), "source": used.source}
    return out


def backend_report(scorer: Scorer) -> dict[str, Any] | None:
    """Which back-end scored the run: its digest, kind (shipped/out-of-domain or in-domain) and source."""
    b = scorer.backend
    if b is None:
        return None
    return {"digest": b.digest[:16], "kind": b.info.get("kind", "out-of-domain"), "source": b.source[:300]}


def scheduled_training(settings: Settings) -> dict[str, Any] | None:
    """The in-domain back-end retrain the settings schedule (``adapt_every_days``), when it is due;
    what happened, or None. A refusal (too few borrowers yet) is reported, never an error."""
    from .adapt import scheduled

    return scheduled(settings)


def claim(out: Path, manifest: str | Path) -> None:
    """Tie ``out`` to ``manifest`` (path and sha256 in ``out/run.json``), or refuse a folder whose
    results came from another manifest (resuming keys on rows, which would then be another file's)."""
    import json

    from .manifest import sha256_of

    digest = sha256_of(manifest)
    mine = {"manifest": str(Path(manifest).resolve()), "manifest_sha256": digest}
    run_file = out / RUN
    if run_file.is_file():
        try:
            theirs = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            theirs = {}
        if theirs.get("manifest_sha256") != digest:
            raise UsageError(
                f"{out} holds the results of another manifest ({theirs.get('manifest', 'unknown')}, sha256 "
                f"{str(theirs.get('manifest_sha256', '?'))[:12]}); this one ({manifest}) has sha256 {digest[:12]}: "
                "use a new --out folder (a manifest edited since its run counts as another manifest)"
            )
        return
    if (out / RESULTS).is_symlink():
        raise UsageError(f"{out / RESULTS} is a symbolic link; voicecheck does not write through links")
    if (out / RESULTS).exists() and (out / RESULTS).stat().st_size:
        raise UsageError(
            f"{out} holds results that no run.json ties to a manifest; use a new --out folder for {manifest}"
        )
    write_json(run_file, mine)


def expected(rows: Iterable[Row], ledger: Ledger | None) -> Iterator[Row]:
    """``rows`` as they are handed to the workers, each announced to the replay ledger (its order)."""
    for r in rows:
        if ledger is not None:
            ledger.expect(r.row)
        yield r


def store_embeddings(
    mapped: Iterable[Embedded],
    calls: CallStore,
    results: ResultsFile,
    model: str,
    progress: Callable[[int], None] | None = None,
    refined: Counter[str] | None = None,
    ledger: Ledger | None = None,
) -> set[int]:
    """Phase 1's results into the call store (embeddings, links); an error becomes the row's record.
    With a replay ``ledger`` every call with fingerprints is looked up and stored in the replay index,
    in manifest order (:class:`voicecheck.replaycheck.Ledger`).

    Args:
        refined: counts the calls embedded tonight by why they got the in-between windows
            (:mod:`voicecheck.refine`), and those that did not ("coarse").

    Returns:
        The rows that got an error record (ints: memory stays small).
    """
    failed: set[int] = set()
    for res in mapped:
        r = res.row
        if progress:
            progress(1)  # the bar follows the embedding phase; scoring afterwards takes milliseconds per call
        if ledger is not None:
            ledger.arrive(res)
        if res.status == "error":
            assert res.error is not None
            write_result(results, r, error_result(r.call_id, r.borrower_id, r.audio, res.error, model))
            failed.add(r.row)
            continue
        key = (res.content_hash, res.channel)
        if res.status == "ok":
            calls.put(res.embedding, content_hash=key[0], channel=key[1], model=model)
            if refined is not None:
                refined[res.refined or "coarse"] += 1
            if res.spoof is not None:
                calls.put_spoof(key[0], key[1], res.spoof)
        elif res.status == "insufficient_speech":
            calls.put(
                None,
                content_hash=key[0],
                channel=key[1],
                model=model,
                speech_seconds=res.speech_seconds,
                duration_s=res.duration_s,
            )
        relinked = calls.link(r.call_id, r.borrower_id, r.audio, key[0], key[1], model)
        if relinked:
            log.warning("call %s: new audio under this call id (was %s, now %s)", r.call_id, relinked, key[0][:12])
    if ledger is not None:
        ledger.finish()
    calls.sync()  # every embedding on disk before any verdict that rests on it is written
    return failed


def write_result(results: ResultsFile, r: Row, result: CallResult) -> None:
    result.row = r.row
    results.append(record_of(result))


def record_of(result: CallResult) -> dict[str, Any]:
    """A result as results.jsonl keeps it: the similarity timeline and speech regions only for calls
    that are not a match (the report's review queue draws them; matches would only make the file big).
    A match's are dropped before the record is made: ``to_dict`` deep-copies them (a window timeline
    per call: ~2% of a batch's CPU when copied only to be thrown away)."""
    if result.verdict == "match":
        return replace(result, timeline=None, speech_regions=None).to_dict()
    return result.to_dict()


def score_stored(r: Row, calls: CallStore, judge: Judge) -> CallResult:
    """Judge a call from its stored embedding (no audio decoded); never raises for one bad call."""
    try:
        link = calls.linked(r.call_id, judge.scorer.model)
        if link is None:
            raise AudioError("no stored embedding; re-run the batch")
        emb = link.embedding
        spoof = replayed = None
        if judge.liveness is not None and emb is not None:
            spoof = calls.spoof_score(emb.content_hash, emb.channel, judge.liveness.name)
        if judge.replay is not None and emb is not None:
            replayed = stored_outcome(calls, emb.content_hash, emb.channel, r.borrower_id)
        result = judge(r.call_id, r.borrower_id, r.audio, emb, link.speech_seconds, r.channel, spoof, replayed)
        if result.duration_s is None:  # too little speech: no embedding, but its audio still counts
            result.duration_s = round(link.duration_s, 2)
        result.content_hash = result.content_hash or link.content_hash
        result.review = in_record(of_audio(calls.review(r.call_id), link.content_hash))
    except Exception as e:  # noqa: BLE001 - one bad call becomes its error record, the run goes on
        return error_result(r.call_id, r.borrower_id, r.audio, as_error(e, r.call_id), judge.scorer.model)
    return result


def map_ray(settings: Settings, rows: Iterable[Row], address: str | None) -> Iterator[Embedded]:
    from .distributed import map_ray as on_ray

    return on_ray(settings, rows, address)


def rescore(out_dir: str | Path, settings: Settings, manifest: str | Path | None = None) -> dict[str, Any]:
    """Score stored call embeddings again (new threshold, calibration or cohort) without decoding audio.

    Args:
        out_dir: receives a fresh results.jsonl and summary.json (an existing results file is replaced).
        manifest: calls to rescore; None rescores every call in the call-embedding store.
    """
    from .audit import Trail, audit_log

    started = time.perf_counter()
    keep_freed_memory()  # the parent's look-ups and stores too (workers: workers.configure)
    out = Path(out_dir)
    spec = model_spec(settings.model, settings.embeddings)
    cipher = cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    voiceprints = VoiceprintStore(settings.store, cipher)
    trail = Trail(audit_log(settings, cipher))
    tmp = out / (RESULTS + ".partial")
    tmp.unlink(missing_ok=True)
    results = AuditedResults(tmp, trail, "rescore.call")
    try:
        judge = Judge.open(settings, voiceprints, calls, timeline=True)
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
            results.append(record_of(result))
    finally:
        results.close()
        calls.close()
        voiceprints.close()
    tmp.replace(out / RESULTS)
    summary = summarise(
        out / RESULTS,
        wall_seconds=round(time.perf_counter() - started, 2),
        model=spec.name,
        engine="rescore",
        settings=settings.to_dict(),
        encryption=cipher.describe(),
        backend=backend_report(judge.scorer),
        liveness=describe(read_liveness(settings.embeddings)),
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
        for res in map_local(settings, tasks):
            if res.status == "ok":
                calls.put(res.embedding, content_hash=res.content_hash, channel=res.channel, model=spec.name)
                if res.spoof is not None:
                    calls.put_spoof(res.content_hash, res.channel, res.spoof)
                added += 1
            elif res.status != "cached":
                failed += 1
                report(f"row {res.row.row}: skipped: {res.error or res.status}")
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
    return write_html(out, summary, out / RESULTS, found, sections, max_rows, settings=settings)
