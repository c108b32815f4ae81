"""Phase 1 of a batch, the part every engine (local processes, Ray actors) runs: embed a few calls.

A :class:`Worker` holds one loaded model and a connection to the call store; :meth:`Worker.embed`
takes a few manifest rows and returns one :class:`Embedded` per row. It never raises for a bad call:
the call's result says ``error``. :func:`map_local` maps it over a process pool; the Ray engine
(:mod:`voicecheck.distributed`) over actors. Neither this module nor the engines import the batch.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from . import fingerprint
from .antispoof import SpoofScore
from .callstore import CallStore
from .config import Settings
from .crypto import cipher_for
from .enrollment import VoiceprintStore
from .errors import InsufficientSpeechError, UsageError, VoicecheckError
from .manifest import Row
from .pipeline import Engine, RefineRule, decode
from .refine import Refiner
from .replaycheck import Prints, fingerprint_call
from .types import Audio, CallEmbedding

log = logging.getLogger(__name__)

Status = Literal["ok", "cached", "insufficient_speech", "error"]


class InternalError(VoicecheckError):
    """An unexpected failure on one call (a bug or a library error), turned into that call's record."""

    code = "internal_error"


@dataclass(frozen=True)
class Embedded:
    """What phase 1 found for one manifest row.

    Attributes:
        row: the manifest row.
        status: "ok" (``embedding`` set), "cached" (this audio is already in the call store: a call
            is known by its content, never by its id), "insufficient_speech" or "error" (``error``).
        content_hash, channel, duration_s: the decoded audio's identity and length ("" / 0 before decoding).
        speech_seconds: net speech, for "insufficient_speech".
        seconds: the call's share of its task's time.
        refined: why the call got the in-between windows ("takeover", "mono", "ring";
            :mod:`voicecheck.refine`), "" when its coarse timeline sufficed.
        spoof: the liveness detector's score of the call's speech ("ok" rows, when one is configured).
        prints: the call's fingerprints for the replay check (:mod:`voicecheck.replaycheck`; rows with
            speech and a borrower, when ``replay`` is on), also on a row whose audio came earlier in its task.
    """

    row: Row
    status: Status
    embedding: CallEmbedding | None = None
    error: VoicecheckError | None = None
    content_hash: str = ""
    channel: int = 0
    duration_s: float = 0.0
    speech_seconds: float = 0.0
    seconds: float = 0.0
    refined: str = ""
    spoof: SpoofScore | None = None
    prints: Prints | None = None


class Worker:
    """One process's model and call-store connection (see :func:`configure` for the thread limits),
    and the rule that gives a call the in-between windows (:class:`voicecheck.refine.Refiner`, built
    from the stores on the first task that needs it)."""

    def __init__(self, settings: Settings, plugins: dict[str, str] | None = None) -> None:
        configure(settings, plugins)
        self.engine = Engine(settings)
        if settings.replay:
            fingerprint.compile_loops()
        self.cipher = cipher_for(settings)
        self.calls = CallStore(settings.embeddings, self.cipher)
        self._voiceprints: VoiceprintStore | None = None
        self._refiner: Refiner | None = None

    def embed(self, rows: list[Row]) -> list[Embedded]:
        """Embed a few calls' customer sides (one VAD pass over them together), or find them stored.

        Returns:
            One :class:`Embedded` per row, in order; a row that fails has status "error".
        """
        start = time.perf_counter()
        found: list[Embedded] = []
        pending: list[tuple[int, Audio]] = []  # (index into found, decoded audio) still to embed
        keys: set[tuple[str, int]] = set()  # (content hash, channel) of the audio in ``pending``
        for row in rows:
            item = self._decoded(row, keys)
            if isinstance(item, Embedded):
                found.append(item)
            else:
                found.append(Embedded(row, "ok", content_hash=item.content_hash, channel=item.channel))
                pending.append((len(found) - 1, item))
                keys.add((item.content_hash, item.channel))
        refined: dict[int, str] = {}
        rules = [self._rule(found[i].row.borrower_id, i, refined) for i, _ in pending]
        for (i, audio), emb in zip(pending, self._embed_many([a for _, a in pending], rules), strict=True):
            found[i] = self._fingerprinted(
                self._spoofed(replace(_outcome(found[i], audio, emb), refined=refined.get(i, "")), audio), audio
            )
        _share_prints(found)
        share = (time.perf_counter() - start) / max(1, len(found))
        return [replace(e, seconds=share) for e in found]

    def _rule(self, borrower_id: str, i: int, refined: dict[int, str]) -> RefineRule | None:
        """The refine rule of one call, recording its reason in ``refined[i]``; None when the model's
        windows have no finer timeline."""
        if not self.engine.refines:
            return None
        refiner = self.refiner()

        def rule(emb: CallEmbedding) -> str | None:
            reason = refiner.reason(emb, borrower_id)
            if reason:
                refined[i] = reason
            return reason

        return rule

    def refiner(self) -> Refiner:
        """The worker's :class:`voicecheck.refine.Refiner`: the product's scorer over the stores as
        they are now (a store that cannot be read leaves the side tests alone, never an error)."""
        if self._refiner is None:
            from .embedders import model_spec

            settings = self.engine.settings
            try:
                self._voiceprints = VoiceprintStore(settings.store, self.cipher)
                spec = model_spec(settings.model, settings.embeddings)
                self._refiner = Refiner.open(settings, spec.name, spec.key, self.calls, self._voiceprints)
            except VoicecheckError as e:
                log.warning("refining calls by the side tests alone: the scorer cannot be built (%s)", e)
                self._refiner = Refiner(settings)
        return self._refiner

    def _decoded(self, row: Row, keys: set[tuple[str, int]]) -> Embedded | Audio:
        """The row's decoded audio when it needs embedding, else its final result."""
        try:
            if row.problem:
                raise UsageError(row.problem)
            audio = decode(row.audio, row.channel, self.engine.settings)
        except Exception as e:  # noqa: BLE001 - one bad call must not stop the batch
            return Embedded(row, "error", error=as_error(e, row.call_id))
        key = (audio.content_hash, audio.channel)
        if key in keys or self._stored(*key):  # stored, or earlier in this task
            cached = Embedded(row, "cached", content_hash=key[0], channel=key[1], duration_s=audio.duration_s)
            return cached if key in keys else self._fingerprinted_again(cached, audio)
        return audio

    def _stored(self, content_hash: str, channel: int) -> bool:
        """This audio is in the call store, with its spoof score when a liveness detector is configured."""
        model, detector = self.engine.model, self.engine.liveness
        if not self.calls.has(content_hash, channel, model):
            return False
        return detector is None or not self.calls.spoof_missing(content_hash, channel, model, detector.name)

    def _fingerprinted_again(self, item: Embedded, audio: Audio) -> Embedded:
        """A stored audio without a replay check for this row's borrower (another borrower's call of the
        same file, or stored before replay checks were on): fingerprinted over its stored speech
        regions, not embedded again."""
        model, row = self.engine.model, item.row
        if not (self.engine.settings.replay and row.borrower_id):
            return item
        if not self.calls.replay_missing(item.content_hash, item.channel, model, row.borrower_id):
            return item
        try:
            stored = self.calls.lookup(item.content_hash, item.channel, model)
        except Exception as e:  # noqa: BLE001 - a damaged stored row is this call's error
            return replace(item, status="error", error=as_error(e, row.call_id))
        if stored is None or stored.embedding is None:
            return item
        return replace(item, prints=fingerprint_call(audio.samples, audio.sample_rate, stored.embedding.regions))

    def _fingerprinted(self, item: Embedded, audio: Audio) -> Embedded:
        """``item`` with its fingerprints for the replay check (rows with speech and a borrower, when
        ``replay`` is on); audio that cannot be fingerprinted carries the reason instead."""
        if not self.engine.settings.replay or item.status != "ok" or item.embedding is None:
            return item
        if not item.row.borrower_id:  # cohort rows: nobody to check them for
            return item
        return replace(item, prints=fingerprint_call(audio.samples, audio.sample_rate, item.embedding.regions))

    def _spoofed(self, item: Embedded, audio: Audio) -> Embedded:
        """``item`` with the liveness detector's score of its speech; a detector that fails makes the
        call an error (fail closed: never a call judged without its configured check)."""
        if item.status != "ok" or item.embedding is None or self.engine.liveness is None:
            return item
        try:
            return replace(item, spoof=self.engine.spoof_score(audio, list(item.embedding.regions)))
        except Exception as e:  # noqa: BLE001 - returned as this call's error
            return replace(item, status="error", embedding=None, error=as_error(e, item.row.call_id))

    def _embed_many(self, audios: list[Audio], rules: list[RefineRule | None]) -> list[CallEmbedding | VoicecheckError]:
        if not audios:
            return []
        try:
            return list(self.engine.embed_many(audios, rules))
        except Exception:  # noqa: BLE001 - one call broke the task's pass: embed each alone to find which
            return [self._embed_alone(a, rule) for a, rule in zip(audios, rules, strict=True)]

    def _embed_alone(self, audio: Audio, rule: RefineRule | None) -> CallEmbedding | VoicecheckError:
        try:
            return self.engine.embed_audio(audio, refine=rule)
        except Exception as e:  # noqa: BLE001 - returned as this call's error
            return as_error(e, None)

    def close(self) -> None:
        self.calls.close()
        if self._voiceprints is not None:
            self._voiceprints.close()


def _share_prints(found: list[Embedded]) -> None:
    """A row whose audio came earlier in its task (status "cached") gets that row's fingerprints: it is
    checked for its own borrower too."""
    prints = {(e.content_hash, e.channel): e.prints for e in found if e.prints is not None}
    for i, e in enumerate(found):
        if e.status == "cached" and e.prints is None and (e.content_hash, e.channel) in prints:
            found[i] = replace(e, prints=prints[(e.content_hash, e.channel)])


def _outcome(item: Embedded, audio: Audio, emb: CallEmbedding | VoicecheckError) -> Embedded:
    if isinstance(emb, InsufficientSpeechError):
        return replace(
            item, status="insufficient_speech", speech_seconds=emb.speech_seconds, duration_s=audio.duration_s
        )
    if isinstance(emb, VoicecheckError):
        return replace(item, status="error", error=emb)
    return replace(item, embedding=emb, duration_s=audio.duration_s)


def as_error(e: Exception, call_id: str | None) -> VoicecheckError:
    """``e`` itself if it is a VoicecheckError, else an :class:`InternalError` that says what happened."""
    if isinstance(e, VoicecheckError):
        return e
    where = f"call {call_id}" if call_id else "a call"
    log.debug("unexpected error on %s", where, exc_info=True)
    return InternalError(f"unexpected {type(e).__name__} while processing {where}: {str(e)[:300]}")


def configure(settings: Settings, plugins: dict[str, str] | None = None) -> None:
    """Set up a worker process: the parent's registered backends (a spawned process starts without
    them), ``settings.torch_threads`` torch threads, and numpy's BLAS capped at the same number (by
    default it starts a thread per core, and with one worker per core those threads only compete)."""
    import torch
    from threadpoolctl import threadpool_limits

    from .embedders import register_backend

    for name, target in (plugins or {}).items():
        register_backend(name, target)
    torch.set_num_threads(settings.torch_threads)
    threadpool_limits(settings.torch_threads)
    keep_freed_memory()


KEPT_FREED_BYTES = 256 << 20
"""Freed memory a batch process keeps for reuse (:func:`keep_freed_memory`)."""
_MMAP_LARGER_THAN = 32 << 20
"""Allocations larger than this still get their own mapping (glibc's largest threshold on 64-bit)."""


def keep_freed_memory() -> None:
    """Let this process reuse the memory it frees instead of handing it back to the system per call
    (glibc's malloc; elsewhere nothing changes).

    By default glibc maps each allocation of a few MB afresh and trims freed memory at once, so every
    call's arrays of 0.1-2 MB (the fingerprint's spectrogram and its maxima, numpy temporaries) cost a
    page fault per 4 kB: ~650-870 faults and 1-2 ms of system time per 45 s call in a process
    fingerprinting the replay benchmark's calls (benchmarks/results/replay.md). Kept, the process
    stays at its peak size, up to :data:`KEPT_FREED_BYTES` more than it uses. Called by each batch
    process (workers and the parent)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (Windows: no process library handle)
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    if not (mallopt(m_mmap_threshold, _MMAP_LARGER_THAN) and mallopt(m_trim_threshold, KEPT_FREED_BYTES)):
        log.debug("malloc kept its defaults (mallopt refused): freed memory goes back to the system")


def groups(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """``rows`` in lists of ``size`` (the last may be shorter), streamed."""
    group: list[Row] = []
    for row in rows:
        group.append(row)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


_WORKER: Worker | None = None
"""The worker of a pool process (a process pool's initializer can only leave it here)."""


def _init_pool_worker(settings: Settings, plugins: dict[str, str]) -> None:
    global _WORKER
    _WORKER = Worker(settings, plugins)


def _pool_embed(rows: list[Row]) -> list[Embedded]:
    if _WORKER is None:
        raise RuntimeError("a pool worker embeds only after _init_pool_worker")
    return _WORKER.embed(rows)


def map_local(settings: Settings, rows: Iterable[Row]) -> Iterator[Embedded]:
    """Embed ``rows`` on ``settings.workers`` processes (or in this one), ``calls_per_task`` at a time.

    Results stream in completion order, one per row.
    """
    from .embedders import registered

    grouped = groups(rows, settings.calls_per_task)
    if settings.workers <= 1:
        worker = Worker(settings)
        try:
            for group in grouped:
                yield from worker.embed(group)
        finally:
            worker.close()
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(settings.workers, initializer=_init_pool_worker, initargs=(settings, registered())) as pool:
        for found in pool.imap_unordered(_pool_embed, grouped, chunksize=1):
            yield from found
