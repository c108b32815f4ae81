"""Frozen dataclasses passed between pipeline stages.

Times are in seconds (``_s``); vectors are float32 numpy arrays, unit-norm unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import UsageError

Verdict = Literal["match", "mismatch", "inconclusive", "error"]
VERDICTS: tuple[str, ...] = ("match", "mismatch", "inconclusive", "error")

Band = Literal["narrow", "wide"]
"""``narrow``: telephone band (content up to ~4 kHz, e.g. 8 kHz G.711); ``wide``: anything richer."""


@dataclass(frozen=True)
class Audio:
    """One decoded channel.

    Attributes:
        samples: mono float32 samples in [-1, 1], shape (n,).
        sample_rate: samples per second of ``samples``.
        path: where it was read from ("" for generated audio).
        channel: index of the channel taken from the file (0 for mono files).
        channels: number of channels in the file.
        file_sample_rate: sample rate stored in the file.
        subtype: soundfile subtype, e.g. "ULAW", "PCM_16".
        content_hash: sha256 of the file's bytes (hex), "" for generated audio.
    """

    samples: np.ndarray
    sample_rate: int
    path: str = ""
    channel: int = 0
    channels: int = 1
    file_sample_rate: int = 0
    subtype: str = ""
    content_hash: str = ""

    @property
    def duration_s(self) -> float:
        return float(len(self.samples)) / float(self.sample_rate)

    @property
    def band(self) -> Band:
        """Narrow when the file itself cannot carry content above 4 kHz."""
        rate = self.file_sample_rate or self.sample_rate
        return "narrow" if rate <= 8000 or self.subtype in ("ULAW", "ALAW") else "wide"


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech in the original recording's time axis."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class CallEmbedding:
    """What the model saw of one call's customer side.

    Attributes:
        content_hash: sha256 of the audio file's bytes (hex).
        model: embedder name.
        band: band the audio was embedded in.
        vector: unit-norm call embedding, shape (dimension,).
        windows: unit-norm window embeddings, shape (n_windows, dimension).
        window_times_s: start/end of each window in the recording's time axis, shape (n_windows, 2).
        speech_seconds: net speech found by the VAD.
        duration_s: length of the recording.
        regions: speech regions found by the VAD.
        narrow_vector: for a wideband call, its embedding through the telephone band (channel matching).
        channels: channels in the file; 1 means collector and customer may share the recording.
    """

    content_hash: str
    model: str
    band: Band
    channel: int
    vector: np.ndarray
    windows: np.ndarray
    window_times_s: np.ndarray
    speech_seconds: float
    duration_s: float
    regions: tuple[SpeechRegion, ...] = ()
    narrow_vector: np.ndarray | None = None
    channels: int = 1


@dataclass(frozen=True)
class Voiceprint:
    """A borrower's (or collector's) enrolled voice for one model.

    ``vectors`` maps a band ("wide"/"narrow") to the unit-norm mean embedding of the enrollment
    audio in that band; a narrowband enrollment has only "narrow".
    """

    owner_id: str
    model: str
    dimension: int
    vectors: dict[str, np.ndarray]
    recording_count: int
    speech_seconds: float
    created_at: str
    updated_at: str
    kind: str = "borrower"

    def for_band(self, band: str) -> np.ndarray | None:
        return self.vectors.get(band)


@dataclass
class CallResult:
    """One line of results.jsonl and the object ``check --json`` prints.

    ``spoof_score`` is the liveness detector's log-likelihood ratio (spoof against bona fide speech),
    None when no detector is configured (:mod:`voicecheck.antispoof`).

    Replay check (:mod:`voicecheck.replaycheck`): ``replay_checked`` is True when the call was looked
    up, False when it could not be (``replay_problem`` says why; the verdict is then never ``match``),
    None when replay checks are off or the call had too little speech to judge. ``replay_of`` lists
    each recording or call whose audio recurs in this one: item, kind ("enrollment" or "call"), owner,
    call_start_s/call_end_s (the span in this call), item_start_s/item_end_s (in the item), matched_s
    and hits. ``too_identical`` (a warning, no verdict rests on it; :mod:`voicecheck.liveness`): the
    call's cosine to its closest single enrollment recording (``max_cosine``, ``recording`` its content
    hash), the model's measured ``threshold`` and ``warn`` when at or above it; None when the model has
    no measured threshold or the borrower no voiceprint.
    """

    call_id: str
    borrower_id: str
    verdict: Verdict
    score: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    mismatch_below: float | None = None
    speech_seconds: float | None = None
    reason: str | None = None
    model: str | None = None
    audio: str = ""
    channel: int | None = None
    duration_s: float | None = None
    llr: float | None = None
    band: str | None = None
    raw_cosine: float | None = None
    scoring: str | None = None
    speaker_change_s: float | None = None
    spoof_score: float | None = None
    replay_checked: bool | None = None
    replay_problem: str | None = None
    replay_of: list[dict[str, Any]] = field(default_factory=list)
    too_identical: dict[str, Any] | None = None
    timeline: list[dict[str, float]] | None = None
    speech_regions: list[list[float]] | None = None
    watchlist_hits: list[dict[str, Any]] = field(default_factory=list)
    content_hash: str | None = None
    row: int | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    review: dict[str, Any] | None = None
    """A QA reviewer's decision about this call (same id and audio), if one was recorded: label,
    reason, reviewer, reviewed_at, whether there is a note (see voicecheck.reviews)."""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def check_id(value: str, what: str = "id") -> str:
    """An id as stored: surrounding spaces removed; empty, over-long or control-character ids refused.

    The same function cleans ids from the command line, manifests and shared files, so " B1" and
    "B1" are one borrower wherever they come from.

    Raises:
        UsageError: naming ``what`` and the value.
    """
    clean = value.strip()
    if not clean:
        raise UsageError(f"{what} must not be empty")
    if len(clean) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in clean):
        raise UsageError(f"{what} {clean[:40]!r} must be at most 200 printable characters")
    return clean
