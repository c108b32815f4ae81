"""Check one call, enroll recordings, and the per-call work a batch maps over workers.

The :class:`Engine` composes the front end (decode, customer channel, resample, VAD) with the model;
it is built once per worker process. Scoring lives in :mod:`voicecheck.scorer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import channel as telephone
from .antispoof import LivenessSpec, SpoofDetector, SpoofScore, judge_liveness, load_detector, read_liveness
from .audio import load, resample, resample_spans
from .config import Settings
from .crypto import Cipher
from .embedders import Embedder, embed_speech, embed_windows, load_embedder, unit
from .embedders.base import between_starts, embed_windows_many, refines, window_starts
from .enrollment import VoiceprintStore
from .errors import InsufficientSpeechError, NotEnrolledError, StoreError, UsageError, VoicecheckError
from .liveness import TOO_IDENTICAL_COSINE, too_identical
from .replay import FingerprintIndex, MatchRule
from .replaycheck import Prints, ReplayOutcome, enrollment_item, fingerprint_call, judge_replay, open_index, rule_of
from .scorer import CallVector, Scorer
from .types import Audio, CallEmbedding, CallResult, Voiceprint
from .vad import SileroVad, Vad, recording_time, regions_of, speech_seconds

log = logging.getLogger(__name__)

RefineRule = Callable[[CallEmbedding], "str | None"]
"""Given a call's embedding on the coarse timeline (windows back to back), why its window-level
analyses need the in-between windows too ("takeover", "mono": :class:`voicecheck.refine.Refiner`),
or None."""


@dataclass(frozen=True)
class Enrolled:
    """One enrollment recording's embeddings by band, ready for the voiceprint store."""

    vectors: dict[str, np.ndarray]
    speech_seconds: float
    content_hash: str
    band: str
    prints: Prints | None = None


def decode(path: str | Path, channel: int | None, settings: Settings) -> Audio:
    """:func:`voicecheck.audio.load` within the settings' size and duration limits."""
    return load(path, channel, settings.max_audio_bytes, settings.max_audio_s)


def to_narrow(speech: np.ndarray, sample_rate: int) -> np.ndarray:
    """Pass wideband speech through a G.711 telephone channel and back to ``sample_rate``.

    Channel matching: a wideband enrollment compared with a narrowband call is embedded as if it
    had been recorded on the call's channel (300-3400 Hz, 8 kHz, mu-law).
    """
    narrow = telephone.mu_law(telephone.telephone_band(speech, sample_rate, out_rate=8000))
    return resample(narrow, 8000, sample_rate)


class Engine:
    """Front end plus model: audio path in, embeddings out. One per worker process.

    Args:
        liveness: the synthetic-speech detector; None loads the one models.toml declares, if any
            (:func:`voicecheck.antispoof.load_detector`).
    """

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        vad: Vad | None = None,
        liveness: SpoofDetector | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or load_embedder(
            settings.model, settings.embeddings, settings.device, settings.precision
        )
        self.vad: Vad = vad or SileroVad(
            threshold=settings.vad_threshold, min_silence_s=settings.vad_min_silence_s, pad_s=settings.vad_pad_s
        )
        self.liveness = liveness or load_detector(settings.embeddings, settings.device)

    @property
    def model(self) -> str:
        return self.embedder.name

    def speech(
        self, audio: Audio, regions: list | None = None, sample_rate: int | None = None
    ) -> tuple[np.ndarray, list, float]:
        """Customer speech at the model's rate (or ``sample_rate``): (speech samples, regions, net speech seconds).

        ``regions`` are the VAD's regions of ``audio`` when already found (see :meth:`embed_many`).
        Only the regions are resampled (:func:`voicecheck.audio.resample_spans`: the same samples as
        resampling the whole recording, for the speech's share of the work).
        """
        if regions is None:
            regions = self.vad.regions(audio.samples, audio.sample_rate)
        rate = sample_rate or self.embedder.sample_rate
        parts = resample_spans(audio.samples, audio.sample_rate, rate, [(r.start_s, r.end_s) for r in regions])
        parts = [part for part in parts if len(part)]
        speech = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)
        return speech, regions, speech_seconds(regions)

    def _require(self, seconds: float, path: str) -> None:
        if seconds < self.embedder.min_speech_s:
            raise InsufficientSpeechError(
                f"{path}: {int(seconds * 100) / 100:.2f} s of speech found; {self.model} needs at least "
                f"{self.embedder.min_speech_s:g} s",
                seconds,
            )

    def embed_many(
        self, audios: list[Audio], refine: list[RefineRule | None] | None = None
    ) -> list[CallEmbedding | InsufficientSpeechError]:
        """Embed several decoded calls (a batch task); their speech is found in one VAD pass
        (:func:`voicecheck.vad.regions_of`: silero's LSTM runs over all of them together) and their
        windows go through the network together (:func:`voicecheck.embedders.base.embed_windows_many`:
        GE2E's LSTM runs faster on batches of a few dozen windows than on one call's dozen).

        Args:
            refine: one rule per call (or None) deciding from its coarse timeline whether it gets
                the in-between windows (see :meth:`embed_audio`).

        Returns:
            One item per call, in order: its embedding, or the InsufficientSpeechError it raised.
        """
        found = regions_of(self.vad, [(a.samples, a.sample_rate) for a in audios])
        rules = refine or [None] * len(audios)
        staged: list[tuple[np.ndarray, list, float] | InsufficientSpeechError] = []
        for audio, regions in zip(audios, found, strict=True):
            try:
                speech, regions, seconds = self.speech(audio, regions)
                self._require(seconds, audio.path)
                staged.append((speech, regions, seconds))
            except InsufficientSpeechError as e:
                staged.append(e)
        windows = iter(embed_windows_many(self.embedder, [s[0] for s in staged if not isinstance(s, Exception)]))
        out: list[CallEmbedding | InsufficientSpeechError] = []
        for audio, item, rule in zip(audios, staged, rules, strict=True):
            out.append(
                item if isinstance(item, InsufficientSpeechError) else self._finish(audio, *item, next(windows), rule)
            )
        return out

    @property
    def refines(self) -> bool:
        """Whether this model's windows have a finer timeline to refine to (back to back: GE2E's default)."""
        return refines(self.embedder.window_s, self.embedder.hop_s)

    def embed_audio(self, audio: Audio, regions: list | None = None, refine: RefineRule | None = None) -> CallEmbedding:
        """Embed the customer side of a decoded call: window embeddings in one batched pass.

        The call vector is the mean of the windows at the model's hop (back to back for GE2E: the
        1:1 score and the back-end rest on it). When ``refine`` says the call's window-level
        analyses need more (a takeover or a two-voice split close to its decision), the in-between
        windows (offset ``hop_s / 2``) are embedded from the speech still in memory and merged in:
        ``windows`` is then the timeline at ``hop_s / 2``, the vector unchanged.

        Args:
            regions: the VAD's speech regions of ``audio`` if already found; None runs the VAD.
            refine: decides from the coarse embedding (None: never refine).

        Raises:
            InsufficientSpeechError: less net speech than the model's minimum.
        """
        speech, regions, seconds = self.speech(audio, regions)
        self._require(seconds, audio.path)
        return self._finish(audio, speech, regions, seconds, embed_windows(self.embedder, speech), refine)

    def _finish(
        self,
        audio: Audio,
        speech: np.ndarray,
        regions: list,
        seconds: float,
        windows: np.ndarray,
        refine: RefineRule | None,
    ) -> CallEmbedding:
        """The call's embedding from its coarse windows: times, vector, the channel-matched vector of
        a wideband call, and the in-between windows when ``refine`` asks for them."""
        rate, e = self.embedder.sample_rate, self.embedder
        starts = window_starts(len(speech), rate, e.window_s, e.hop_s)
        narrow = None
        if audio.band == "wide" and self.settings.channel_matching:
            narrow = embed_speech(e, to_narrow(speech, rate))
        emb = CallEmbedding(
            content_hash=audio.content_hash,
            model=self.model,
            band=audio.band,
            channel=audio.channel,
            vector=unit(windows.mean(axis=0)),
            windows=windows,
            window_times_s=self._times(starts, len(speech), regions),
            speech_seconds=seconds,
            duration_s=audio.duration_s,
            regions=tuple(regions),
            narrow_vector=narrow,
            channels=audio.channels,
        )
        if refine is None or not self.refines:
            return emb
        reason = refine(emb)
        if not reason:
            return emb
        log.debug("%s: in-between windows computed (%s)", audio.path or audio.content_hash[:12], reason)
        return self.refined(emb, speech, starts)

    def refined(self, emb: CallEmbedding, speech: np.ndarray, starts: np.ndarray) -> CallEmbedding:
        """``emb`` with its in-between windows added (:func:`voicecheck.embedders.base.between_starts`),
        in time order: the windows of the timeline at ``hop_s / 2``. The call vector stays the coarse one.

        Args:
            speech: the call's speech at the model's rate, as embedded for ``emb``.
            starts: the coarse windows' start offsets in samples.
        """
        from dataclasses import replace

        e, rate = self.embedder, self.embedder.sample_rate
        extra = between_starts(len(speech), rate, e.window_s, e.hop_s)
        if not len(extra):
            return emb
        all_starts = np.concatenate([starts, extra])
        order = np.argsort(all_starts, kind="stable")
        windows = np.concatenate([emb.windows, embed_windows(e, speech, extra)])[order]
        return replace(emb, windows=windows, window_times_s=self._times(all_starts[order], len(speech), emb.regions))

    def _times(self, starts: np.ndarray, n_samples: int, regions: Any) -> np.ndarray:
        """(start, end) in recording time of windows starting at ``starts`` (samples) of the speech."""
        rate, e = self.embedder.sample_rate, self.embedder
        begin = np.asarray(starts, dtype=np.float64) / rate
        end = np.minimum(begin + e.window_s, n_samples / rate)
        return np.stack([recording_time(begin, list(regions)), recording_time(end - 1e-6, list(regions))], axis=1)

    def spoof_score(self, audio: Audio, regions: list | None = None) -> SpoofScore | None:
        """The liveness detector's score of the customer's speech (resampled from the recording to the
        detector's rate), or None when no detector is configured.

        Raises:
            VoicecheckError: the detector cannot score it (the caller records the call as an error).
        """
        if self.liveness is None:
            return None
        rate = self.liveness.sample_rate
        speech, _, _ = self.speech(audio, regions, rate)
        return SpoofScore(self.liveness.name, self.liveness.score(speech, rate))

    def embed_call(self, path: str | Path, channel: int | None, refine: RefineRule | None = None) -> CallEmbedding:
        """Decode ``path``, take ``channel`` and embed it (see :meth:`embed_audio`)."""
        return self.embed_audio(decode(path, channel, self.settings), refine=refine)

    def embed_enrollment(self, path: str | Path, channel: int | None) -> Enrolled:
        """Embed an enrollment recording in its own band and, if wideband, in the telephone band too."""
        audio = decode(path, channel, self.settings)
        speech, regions, seconds = self.speech(audio)
        self._require(seconds, audio.path)
        prints = fingerprint_call(audio.samples, audio.sample_rate, regions) if self.settings.replay else None
        own = embed_speech(self.embedder, speech)
        if audio.band == "narrow":
            vectors = {"narrow": own}
        else:
            matched = self.settings.channel_matching
            narrow = embed_speech(self.embedder, to_narrow(speech, self.embedder.sample_rate)) if matched else own
            vectors = {"wide": own, "narrow": narrow}
        return Enrolled(vectors, seconds, audio.content_hash, audio.band, prints)


class Judge:
    """Turns a call's stored embedding into a verdict: 1:1 against the borrower's voiceprint, and 1:N
    against the watchlist of known proxy-agent voices.

    Args:
        voiceprints: the store (borrowers, collectors, watchlist).
        scorer: the model's scorer (back-end, cohort, thresholds).
        liveness: the configured synthetic-speech detector's manifest entry (its name and threshold):
            every judged call must then come with its spoof score. None: no liveness check.
        replay: the replay match rule (:func:`voicecheck.replaycheck.rule_of`): every judged call must
            then come with its replay check, and one that has none is never ``match``. None: replay
            checks are off.
    """

    def __init__(
        self,
        voiceprints: VoiceprintStore,
        scorer: Scorer,
        min_speech_s: float = 3.0,
        timeline: bool = False,
        liveness: LivenessSpec | None = None,
        replay: MatchRule | None = None,
    ) -> None:
        self.voiceprints = voiceprints
        self.scorer = scorer
        self.min_speech_s = min_speech_s
        self.timeline = timeline
        self.liveness = liveness
        self.replay = replay
        self.takeover_limit = scorer.takeover_max_side_cosine().value
        agents = voiceprints.all(scorer.model, "agent")
        self.agent_vectors = np.stack([a.vectors["narrow"] for a in agents]) if agents else None
        watch = voiceprints.watch_list(scorer.model)
        self.watch_labels = [(w.label, w.source) for w in watch]
        if len({len(w.vector) for w in watch}) > 1:
            raise StoreError(
                f"the watchlist for {scorer.model} holds vectors of different sizes; remove the damaged entries "
                "(voicecheck watchlist list / remove)"
            )
        self.watch_vectors = np.stack([w.vector for w in watch]) if watch else None

    def __call__(
        self,
        call_id: str,
        borrower_id: str,
        audio: str,
        emb: CallEmbedding | None,
        speech_s: float,
        channel: int | None = None,
        spoof: SpoofScore | None = None,
        replay: ReplayOutcome | None = None,
    ) -> CallResult:
        """The record for one call; ``emb`` None means too little speech; ``spoof`` is the liveness
        detector's score of the call (needed when one is configured), ``replay`` its replay check
        (needed when replay checks are on). Never raises a VoicecheckError: a call that cannot be
        judged gets verdict ``error`` with the reason."""
        result = CallResult(
            call_id=call_id,
            borrower_id=borrower_id,
            verdict="inconclusive",
            speech_seconds=round(speech_s, 2),
            model=self.scorer.model,
            audio=audio,
            channel=channel,
        )
        try:
            self._decide(result, emb)
            if self.liveness is not None:  # issue 15.3: after the voice checks, may turn a verdict to mismatch
                judge_liveness(result, spoof, self.liveness)
            if self.replay is not None:  # issue 15.1: last, a replay is the strongest evidence
                judge_replay(result, replay, self.replay)
        except VoicecheckError as e:
            result.verdict, result.reason = "error", f"{e.code}: {e}"
        return result

    def _decide(self, result: CallResult, emb: CallEmbedding | None) -> None:
        if emb is not None and emb.channels == 1 and self.scorer.settings.mono_split:
            emb = self.customer_side(emb)
            result.speech_seconds = round(emb.speech_seconds, 2) if emb is not None else 0.0
        if emb is None or emb.speech_seconds < self.min_speech_s:
            result.reason = InsufficientSpeechError.code
            return
        result.duration_s, result.band, result.content_hash = round(emb.duration_s, 2), emb.band, emb.content_hash
        result.watchlist_hits = self.watchlist_hits(emb)
        try:
            voiceprint = self.voiceprints.get(result.borrower_id, self.scorer.model)
        except NotEnrolledError:
            result.verdict, result.reason = (
                ("mismatch", "watchlist_hit") if result.watchlist_hits else ("inconclusive", NotEnrolledError.code)
            )
            return
        s = self.scorer.score(voiceprint, emb)
        result.too_identical = self.identical(result.borrower_id, emb)
        result.score, result.threshold = round(s.score, 4), round(s.threshold, 4)
        result.threshold_source = s.threshold_source
        result.mismatch_below = None if s.mismatch_below is None else round(s.mismatch_below, 4)
        result.raw_cosine = round(s.raw_cosine, 4)
        result.llr = None if s.llr is None else round(s.llr, 3)
        result.band, result.scoring = s.band, s.mode
        if s.band == emb.band:  # window embeddings are in the call's own band
            self.within_call(result, voiceprint, emb, s.band, s.threshold)
        if s.weak:
            result.verdict, result.reason = "inconclusive", "weak_evidence"
        elif not s.accepted:
            result.verdict, result.reason = "mismatch", "voice_mismatch"
        elif result.speaker_change_s is not None:
            result.verdict, result.reason = "mismatch", "speaker_change"
        elif result.watchlist_hits:
            result.verdict, result.reason = "mismatch", "watchlist_hit"
        else:
            result.verdict = "match"

    def identical(self, borrower_id: str, emb: CallEmbedding) -> dict[str, Any] | None:
        """The too-identical warning (issue 15.2): the call's telephone-band vector against each of the
        borrower's enrollment recordings in the telephone band (channel-matched); None when the model
        has no measured threshold (:data:`voicecheck.liveness.TOO_IDENTICAL_COSINE`) or there is no
        telephone-band vector. A warning only: no verdict rests on it (it was measured, not chosen, to
        catch replays: see benchmarks/results/replay.md)."""
        if self.scorer.model not in TOO_IDENTICAL_COSINE:
            return None
        vector = emb.vector if emb.band == "narrow" else emb.narrow_vector
        if vector is None:
            return None
        hashes, recordings = self.voiceprints.recording_vectors(borrower_id, self.scorer.model, "narrow")
        if not hashes:
            return None
        found = too_identical(vector, recordings, self.scorer.model)
        return {
            "warn": found.too_identical,
            "max_cosine": round(found.max_cosine, 4),
            "threshold": found.threshold,
            "recording": hashes[found.recording],
        }

    def within_call(
        self, result: CallResult, voiceprint: Voiceprint, emb: CallEmbedding, band: str, threshold: float
    ) -> None:
        """Look for a takeover inside the call (and draw the similarity timeline if asked)."""
        from .analysis import detect_speaker_change, similarity_timeline

        enroll = voiceprint.vectors[band]

        def score_fn(rows: np.ndarray) -> np.ndarray:
            return self.scorer.scores(enroll, rows, band, emb.content_hash, voiceprint.owner_id)[0]

        settings = self.scorer.settings
        change = detect_speaker_change(
            emb.windows,
            emb.window_times_s,
            enroll,
            score_fn,
            threshold,
            min_segment_s=settings.takeover_min_segment_s,
            max_side_cosine=self.takeover_limit,
        )
        if change is not None:
            result.speaker_change_s = round(change.change_s, 2)
        if self.timeline:
            result.speech_regions = [[round(r.start_s, 2), round(r.end_s, 2)] for r in emb.regions]
            result.timeline = [
                {k: round(v, 4) for k, v in point.items()}
                for point in similarity_timeline(
                    emb.windows, emb.window_times_s, enroll, score_fn, span_s=settings.takeover_window_s
                )
            ]

    def customer_side(self, emb: CallEmbedding) -> CallEmbedding | None:
        """For a mono recording, keep only the customer's windows (collectors' voices removed).

        Returns None when nothing of the customer is left.
        """
        from dataclasses import replace

        from .analysis import customer_windows

        band = "narrow" if emb.band == "narrow" else "wide"
        agents = self.agent_vectors if band == "narrow" else None
        mask = customer_windows(
            emb.windows,
            emb.window_times_s,
            agents,
            lambda a, rows: self.scorer.scores(a, rows, band)[0],
            self.scorer.threshold(band).value,
        )
        if mask.all():
            return emb
        if not mask.any():
            return None
        kept = emb.windows[mask]
        return replace(
            emb,
            vector=unit(kept.mean(axis=0)),
            windows=kept,
            window_times_s=emb.window_times_s[mask],
            speech_seconds=emb.speech_seconds * float(mask.mean()),
            narrow_vector=None,
        )

    @classmethod
    def open(cls, settings: Settings, voiceprints: VoiceprintStore, calls: Any, timeline: bool = False) -> Judge:
        """The judge for the settings' model: the cohort from the call store ``calls`` and each band's
        operating point from the stores (:meth:`voicecheck.scorer.Scorer.measure_operating_points`)."""
        from .embedders import model_spec

        spec = model_spec(settings.model, settings.embeddings)
        scorer = Scorer.build(settings, spec.name, spec.key, calls, voiceprints)
        rule = rule_of(settings) if settings.replay else None
        return cls(voiceprints, scorer, spec.min_speech_s, timeline, read_liveness(settings.embeddings), rule)

    def watchlist_hits(self, emb: CallEmbedding) -> list[dict[str, Any]]:
        """Watchlist voices scoring at or above the watchlist threshold, best first (narrow band)."""
        if self.watch_vectors is None:
            return []
        vector = emb.vector if emb.band == "narrow" else emb.narrow_vector
        if vector is None:
            return []
        if self.watch_vectors.shape[1] != len(vector):
            raise StoreError(
                f"watchlist vectors have {self.watch_vectors.shape[1]} values, {emb.model} embeddings {len(vector)}: "
                "the watchlist is damaged; remove its entries and import them again"
            )
        scores, _ = self.scorer.scores(vector, self.watch_vectors, "narrow", emb.content_hash)
        limit = self.scorer.watchlist_threshold().value
        hits = [
            {"label": label, "source": source, "score": round(float(sc), 4), "threshold": round(limit, 4)}
            for (label, source), sc in zip(self.watch_labels, scores, strict=True)
            if sc >= limit
        ]
        return sorted(hits, key=lambda h: -h["score"])


def error_result(call_id: str, borrower_id: str, audio: str, error: VoicecheckError, model: str | None) -> CallResult:
    """The record of a call that could not be processed."""
    return CallResult(
        call_id=call_id,
        borrower_id=borrower_id,
        verdict="error",
        reason=f"{error.code}: {error}",
        model=model,
        audio=audio,
    )


def enroll_recordings(
    items: list[tuple[str, str]] | list[tuple[str, str, str]],
    settings: Settings,
    replace: bool = False,
    report: Callable[[str], None] = log.info,
    kind: str = "borrower",
    consent: str = "",
    force: bool = False,
) -> int:
    """Embed and store enrollment recordings; a bad or refused recording is reported and the rest go on.

    Each recording records its source (the path given) and a consent reference. A recording is refused
    (unless ``force``) when its voice does not match the owner's existing voiceprint — the product's
    accept decision (:class:`voicecheck.scorer.Scorer`, narrow band, the match threshold) — or when the
    same audio is already enrolled for someone else; when that decision cannot be made (no calibrated
    threshold) it is refused too. Every recording, and every forced one, lands in the audit log.

    Args:
        items: (owner id, audio path) or (owner id, audio path, consent reference) tuples.
        replace: start each owner's voiceprint over with the first recording of this call.
        report: receives one line per recording.
        consent: the consent reference of items that carry none (required: no consent, no enrollment).
        force: add recordings the checks refuse (recorded in the store and the audit log).

    Returns:
        The number of recordings that were not enrolled.
    """
    from .audit import audit_log
    from .crypto import cipher_for

    cipher = cipher_for(settings)
    engine = Engine(settings)
    store = VoiceprintStore(settings.store, cipher)
    trail = audit_log(settings, cipher)
    gate = _VoiceGate(settings, cipher)
    index = open_index(settings, cipher, "enrollment") if settings.replay and kind == "borrower" else None
    failures = 0
    started: set[str] = set()
    try:
        for item in items:
            owner, path = str(item[0]).strip(), str(item[1])
            ref = (str(item[2]) if len(item) > 2 else "").strip() or consent.strip()
            event = {"kind": kind, "borrower_id": owner, "source": path, "consent": ref or None}
            refusal = _refuse_early(owner, path, ref)
            where = f"{owner or '?'}: {path or '?'}"
            got = None
            if refusal is None:
                try:
                    got = engine.embed_enrollment(path, settings.channel)
                except VoicecheckError as e:
                    refusal, where = str(e), owner  # the message names the file
            fresh = replace and owner not in started
            forced = ""
            if got is not None and refusal is None:
                forced, refusal = _admit(store, gate, owner, kind, got, fresh, force)
            if refusal is not None or got is None:
                report(f"{where}: refused: {refusal}")
                trail.record("enroll", **event, outcome="refused", reason=refusal)
                failures += 1
                continue
            outcome = _store_recording(store, engine.model, owner, path, got, fresh, kind, ref, forced)
            started.add(owner)
            prints = None if index is None else _index_recording(index, owner, got, fresh)
            trail.record(
                "enroll", **event, content_hash=got.content_hash, outcome=outcome, forced=forced or None, replace=fresh
            )
            note = (f"; forced past: {forced}" if forced else "") + (prints or "")
            report(f"{owner}: {path}: {outcome} ({got.speech_seconds:.1f} s speech, {got.band}band){note}")
    finally:
        store.close()
        if index is not None:
            index.close()
    return failures


def _index_recording(index: FingerprintIndex, owner: str, got: Enrolled, fresh: bool) -> str:
    """Store an enrolled recording's fingerprint under its borrower (after ``fresh``, their earlier
    recordings' are removed first); "" when done, else what to tell the user."""
    if fresh:
        index.remove_owner(owner, kind="enrollment")
    name = enrollment_item(owner, got.content_hash)
    if got.prints is None or got.prints.index is None:
        problem = got.prints.problem if got.prints is not None else "no fingerprint"
        return f"; NOT fingerprinted, a replay of it cannot be caught: {problem}"
    if name not in index:
        index.add(name, got.prints.index, "enrollment", owner=owner)
    return ""


def _store_recording(
    store: VoiceprintStore,
    model: str,
    owner: str,
    path: str,
    got: Enrolled,
    fresh: bool,
    kind: str,
    consent: str,
    forced: str,
) -> str:
    """Add one admitted recording to the owner's voiceprint; "added" or "already enrolled, skipped"."""
    added = store.add_recording(
        owner,
        model,
        path,
        got.content_hash,
        got.band,
        got.speech_seconds,
        got.vectors,
        fresh,
        kind,
        consent=consent,
        forced=forced,
    )
    return "added" if added else "already enrolled, skipped"


def _refuse_early(owner: str, path: str, consent: str) -> str | None:
    """Why a recording is refused before it is decoded (empty id or path, no consent), else None."""
    if not owner or not path:
        return "empty id or audio path"
    if not consent:
        return (
            "no consent reference: voiceprints are biometric data and are enrolled only with the person's "
            "consent; pass --consent REF (or a consent column in the manifest)"
        )
    return None


def _admit(
    store: VoiceprintStore, gate: _VoiceGate, owner: str, kind: str, got: Enrolled, fresh: bool, force: bool
) -> tuple[str, str | None]:
    """(what was forced, why refused) for an embedded recording: the same audio under someone else,
    or a voice that does not match the owner's existing voiceprint. Forced problems are returned in
    the first item and let through; without ``force`` the first problem is the refusal."""
    problems = []
    others = [f"{k} {o}" for k, o in store.owners_of(got.content_hash) if (k, o) != (kind, owner)]
    if others:
        problems.append(f"the same recording is already enrolled for {', '.join(others)}")
    if not fresh:
        mismatch = gate.mismatch(store, owner, kind, got)
        if mismatch:
            problems.append(mismatch)
    if not problems:
        return "", None
    if force:
        return "; ".join(problems), None
    return "", f"{problems[0]}; if this is right, pass --force (the override is audited)"


class _VoiceGate:
    """The accept decision at enrollment: does a new recording's voice match the owner's voiceprint?

    Built on first use (the scorer needs the call store's cohort): the product's Scorer in the narrow
    band, cohort without the owner's own calls, the match threshold, as the batch would judge a call.
    """

    def __init__(self, settings: Settings, cipher: Cipher) -> None:
        self.settings = settings
        self.cipher = cipher
        self._scorer: Scorer | None = None

    def mismatch(self, store: VoiceprintStore, owner: str, kind: str, got: Enrolled) -> str:
        """'' when the voice matches or the owner has no voiceprint yet; else why it is refused."""
        from .errors import ModelMismatchError

        scorer = self._scorer or self._build(store)
        try:
            voiceprint = store.get(owner, scorer.model, kind)
        except NotEnrolledError:
            return ""
        except ModelMismatchError:
            return ""  # add_recording refuses another model with its own message
        if voiceprint.for_band("narrow") is None:
            return ""
        probe = CallVector(got.content_hash, scorer.model, "narrow", got.vectors["narrow"], None)
        try:
            s = scorer.score(voiceprint, probe)
        except UsageError as e:
            return f"cannot check that this is {owner}'s voice ({e})"
        if s.accepted:
            return ""
        return (
            f"the voice does not match {owner}'s voiceprint (score {s.score:.3f} < threshold {s.threshold:.3f}, "
            f"{s.mode})"
        )

    def _build(self, store: VoiceprintStore) -> Scorer:
        from .callstore import CallStore
        from .embedders import model_spec

        spec = model_spec(self.settings.model, self.settings.embeddings)
        calls = CallStore(self.settings.embeddings, self.cipher)
        try:
            self._scorer = Scorer.build(self.settings, spec.name, spec.key, calls, store)
        finally:
            calls.close()
        return self._scorer


def check_one(
    audio: str | Path, borrower_id: str, settings: Settings, engine: Engine | None = None, timeline: bool = False
) -> CallResult:
    """Check one call against a borrower's voiceprint, with the workspace's stored cohort.

    Unreadable audio and a missing channel give an ``error`` record (never an exception) so the
    caller can print it; a store that cannot be opened raises. The call's embedding is reused from
    the call store when this audio was processed before.
    """
    from .audit import audit_log
    from .callstore import CallStore
    from .crypto import cipher_for
    from .reviews import in_record, of_audio

    cipher = cipher_for(settings)
    voiceprints = VoiceprintStore(settings.store, cipher)
    calls = CallStore(settings.embeddings, cipher)
    try:
        judge = Judge.open(settings, voiceprints, calls, timeline)
        model = judge.scorer.model
        call_id = Path(audio).stem
        try:
            decoded = decode(audio, settings.channel, settings)
            stored = calls.lookup(decoded.content_hash, decoded.channel, model)
            if stored is not None and stored.embedding is not None:
                emb, speech_s = stored.embedding, stored.speech_seconds
            else:
                from .refine import Refiner

                engine = engine or Engine(settings)
                emb = engine.embed_audio(decoded, refine=Refiner(settings, judge.scorer, voiceprints).rule(borrower_id))
                speech_s = emb.speech_seconds
            spoof = None
            if judge.liveness is not None:  # the stored score of this audio, else scored now
                spoof = calls.spoof_score(decoded.content_hash, decoded.channel, judge.liveness.name)
                if spoof is None:
                    spoof = (engine or Engine(settings)).spoof_score(decoded, list(emb.regions))
            replayed = check_replay(settings, cipher, decoded, emb.regions, borrower_id) if judge.replay else None
        except InsufficientSpeechError as e:
            emb, speech_s, spoof, replayed = None, e.speech_seconds, None, None
        except VoicecheckError as e:
            return audited_check(audit_log(settings, cipher), error_result(call_id, borrower_id, str(audio), e, model))
        result = judge(call_id, borrower_id, str(audio), emb, speech_s, decoded.channel, spoof, replayed)
        result.duration_s = round(decoded.duration_s, 2)
        result.content_hash = result.content_hash or decoded.content_hash
        result.review = in_record(of_audio(calls.review(call_id), decoded.content_hash))
        return audited_check(audit_log(settings, cipher), result)
    finally:
        voiceprints.close()
        calls.close()


def check_replay(settings: Settings, cipher: Cipher, audio: Audio, regions: Any, borrower_id: str) -> ReplayOutcome:
    """One call's replay check for ``check``: fingerprinted now and looked up among the borrower's items
    (those stored before this audio, when it is stored itself); nothing is added to the index (the
    batch does that). Audio that cannot be fingerprinted gives an outcome that says why (not checked).

    Raises:
        StoreError: the index cannot be opened (wrong key, damaged).
    """
    from .replaycheck import Indexes, fingerprint_call, look_up

    prints = fingerprint_call(audio.samples, audio.sample_rate, regions)
    indexes = Indexes.open(settings, cipher)
    try:
        return look_up(indexes, prints, borrower_id, audio.content_hash)
    finally:
        indexes.close()


def audited_check(trail: Any, result: CallResult) -> CallResult:
    """Record a one-call check in the audit log (ids, verdict, reason code; no score) and return it."""
    trail.record(
        "check",
        borrower_id=result.borrower_id,
        call_id=result.call_id,
        audio=result.audio,
        content_hash=result.content_hash,
        verdict=result.verdict,
        reason=audit_reason(result.reason),
    )
    return result


def audit_reason(reason: str | None) -> str | None:
    """A result's reason as the audit log keeps it: the code before the first colon (no file paths)."""
    return None if not reason else reason.split(":")[0]


def watch_from(label: str, audio: list[str], call_ids: list[str], source: str, settings: Settings) -> int:
    """Add a watchlist voice: the mean telephone-band embedding of recordings and/or stored calls.

    The entry records where it came from (each call's id, borrower and content hash; each
    recording's path and hash), so erasing a borrower also removes voices made from their calls.

    Returns:
        How many recordings and calls went into it.

    Raises:
        VoicecheckError: unreadable audio, too little speech, or a call id with no stored embedding.
    """
    from .audit import audit_log
    from .callstore import CallStore
    from .crypto import cipher_for
    from .embedders import model_spec
    from .enrollment import WatchSource

    cipher = cipher_for(settings)
    model = model_spec(settings.model, settings.embeddings).name
    vectors: list[np.ndarray] = []
    provenance: list[WatchSource] = []
    if audio:
        engine = Engine(settings)
        for a in audio:
            got = engine.embed_enrollment(a, settings.channel)
            vectors.append(got.vectors["narrow"])
            provenance.append(WatchSource(content_hash=got.content_hash, audio=str(a)))
    calls = CallStore(settings.embeddings, cipher)
    try:
        for call_id in call_ids:
            link = calls.linked(call_id, model)
            emb = None if link is None else link.embedding
            if emb is None:
                raise UsageError(f"call {call_id!r} has no stored {model} embedding with speech; run the batch first")
            vector = emb.vector if emb.band == "narrow" else emb.narrow_vector
            if vector is None:
                raise UsageError(f"call {call_id!r} is wideband and was stored without a telephone-band vector")
            vectors.append(vector)
            assert link is not None
            provenance.append(WatchSource(call_id=call_id, borrower_id=link.borrower_id, content_hash=emb.content_hash))
    finally:
        calls.close()
    store = VoiceprintStore(settings.store, cipher)
    try:
        store.watch_add(label, source, unit(np.mean(vectors, axis=0)), model, provenance=provenance)
    finally:
        store.close()
    audit_log(settings, cipher).record(
        "watchlist.add",
        label=label,
        source=source,
        call_ids=list(call_ids) or None,
        borrower_ids=sorted({p.borrower_id for p in provenance if p.borrower_id}) or None,
        recordings=len(audio),
    )
    return len(vectors)
