"""The review desk: flagged calls as a queue for a QA agent.

The morning report (:func:`voicecheck.report.write_html`) lists flagged calls grouped by reason
(:data:`REASONS`), strongest evidence first within a group (:data:`EVIDENCE`), each with a short
excerpt of the customer channel (:func:`write_excerpt`: an 8 kHz WAV beside the report), the
similarity timeline, the borrower's other calls and the command that records a decision. ``check``
prints the same evidence for one call (:func:`low_stretch`).

A new reason (e.g. ``replay`` from the replay detector) gets its group by appending to
:data:`REASONS` — records whose ``reason`` is that code land there — and its ordering by an entry in
:data:`EVIDENCE`; until then such records are ordered by :func:`generic_evidence`.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import VoicecheckError

log = logging.getLogger(__name__)

REASONS = ("voice_mismatch", "speaker_change", "watchlist_hit", "synthetic_voice", "ring", "replay")
"""The queue's groups in page order: reason codes of mismatch records, plus ``ring`` (calls of a voice
that speaks for several borrowers, found across the call store). Other codes go to ``other``."""
OTHER = "other"
EXCERPT_S = 12.0
"""Length of a call excerpt (seconds of recording)."""
EXCERPT_LEAD_S = 4.0
"""Seconds of recording an excerpt starts before the evidence (the voice change, the low stretch)."""
EXCERPT_RATE = 8000
"""Sample rate of excerpts: telephone audio, plays in any browser."""
EXCERPTS = "excerpts"
"""The folder of excerpts under a run's --out (0700; files 0600: they are the customer's voice)."""


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def low_stretch(timeline: list[dict[str, float]] | None, threshold: float | None) -> dict[str, float] | None:
    """Where a call's similarity timeline is lowest: the longest run of consecutive spans below the
    threshold, or (none below) the lowest span.

    Args:
        timeline: [{"start_s", "end_s", "score"}] in time order (see analysis.similarity_timeline).
        threshold: the call's decision threshold (None: only the lowest span).

    Returns:
        {"start_s", "end_s", "min_score", "min_at_s", "below": 1.0 if the stretch is under the
        threshold else 0.0}, times in seconds of recording; None without a timeline.
    """
    points = [p for p in timeline or [] if _num(p.get("score")) is not None]
    if not points:
        return None
    runs: list[list[dict[str, float]]] = []
    before = False
    for p in points:
        below = threshold is not None and p["score"] < threshold
        if below and before:
            runs[-1].append(p)
        elif below:
            runs.append([p])
        before = below
    best = max(runs, key=lambda r: (r[-1]["end_s"] - r[0]["start_s"], -min(q["score"] for q in r))) if runs else None
    span = best or [min(points, key=lambda q: q["score"])]
    low = min(span, key=lambda q: q["score"])
    return {
        "start_s": float(span[0]["start_s"]),
        "end_s": float(span[-1]["end_s"]),
        "min_score": float(low["score"]),
        "min_at_s": round((low["start_s"] + low["end_s"]) / 2, 2),
        "below": 1.0 if best else 0.0,
    }


def evidence_lines(r: dict[str, Any], plot: str | Path | None = None) -> list[str]:
    """Where the evidence of a checked call is, for ``check``: the low stretch, the change, the plot."""
    lines = []
    low = low_stretch(r.get("timeline"), _num(r.get("threshold")))
    if low is not None:
        where = "below the threshold" if low["below"] else "lowest (never below the threshold)"
        lines.append(
            f"evidence   similarity {where} from {low['start_s']:.1f} to {low['end_s']:.1f} s "
            f"(lowest {low['min_score']:.3f} around {low['min_at_s']:.1f} s): listen there"
        )
    if r.get("speaker_change_s") is not None:
        lines.append(f"evidence   the voice changes at {r['speaker_change_s']:.1f} s")
    if plot is not None and r.get("timeline"):
        lines.append(f"evidence   timeline drawn to {plot}")
    return lines


# -- ordering by evidence ----------------------------------------------------------------------------


def _margin(r: dict[str, Any]) -> tuple[float, str]:
    score, threshold, llr = _num(r.get("score")), _num(r.get("threshold")), _num(r.get("llr"))
    if score is None or threshold is None:
        return 0.0, "no score"
    text = f"score {score:.3f} < threshold {threshold:.3f} ({r.get('scoring') or 'score'})"
    if llr is not None:
        return -llr, f"{text}, llr {llr:+.2f}"
    return threshold - score, text


def _change(r: dict[str, Any]) -> tuple[float, str]:
    threshold = _num(r.get("threshold"))
    low = low_stretch(r.get("timeline"), threshold)
    text = f"voice changes at {float(r.get('speaker_change_s') or 0):.1f} s"
    if low is None or threshold is None:
        return _margin(r)[0], text
    return threshold - low["min_score"], f"{text}; lowest {low['min_score']:.3f} around {low['min_at_s']:.1f} s"


def _watch(r: dict[str, Any]) -> tuple[float, str]:
    hits = [h for h in r.get("watchlist_hits") or [] if isinstance(h, dict) and _num(h.get("score")) is not None]
    if not hits:
        return 0.0, "watchlist hit"
    best = max(hits, key=lambda h: h["score"])
    limit = _num(best.get("threshold"))
    margin = best["score"] - (limit if limit is not None else 0.0)
    return margin, f"sounds like {best.get('label')} (score {best['score']:.3f}, source {best.get('source')})"


def _ring(r: dict[str, Any]) -> tuple[float, str]:
    ring = r.get("_ring") or {}
    cohesion = _num(ring.get("cohesion")) or 0.0
    return cohesion, (
        f"one voice for {ring.get('borrowers', '?')} borrowers over {ring.get('calls', '?')} calls "
        f"(ring {ring.get('id', '?')}, cohesion {cohesion:.3f})"
    )


def _synthetic(r: dict[str, Any]) -> tuple[float, str]:
    spoof = _num(r.get("spoof_score"))
    if spoof is None:
        return generic_evidence(r)
    return spoof, f"spoof score {spoof:+.2f} (log-likelihood ratio, synthetic vs live speech)"


def generic_evidence(r: dict[str, Any]) -> tuple[float, str]:
    """For a reason without an entry in :data:`EVIDENCE`: a record's own ``evidence`` number (higher =
    stronger) if it has one, else its score margin; the reason text as given."""
    own = _num(r.get("evidence"))
    reason = str(r.get("reason") or "")
    return (own if own is not None else _margin(r)[0]), reason


def replayed(r: dict[str, Any]) -> dict[str, Any]:
    """The record's strongest replay match (the first of ``replay_of``: item, spans, matched_s), or {}."""
    found = r.get("replay_of")
    return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else {}


def _replay(r: dict[str, Any]) -> tuple[float, str]:
    replay = replayed(r)
    matched = _num(replay.get("matched_s"))
    if matched is None:
        return generic_evidence(r)
    start, end = _num(replay.get("call_start_s")), _num(replay.get("call_end_s"))
    where = f" (call {start:.1f}-{end:.1f} s)" if start is not None and end is not None else ""
    return matched, f"{matched:.1f} s recur in {replay.get('item', 'another recording')}{where}"


EVIDENCE: dict[str, Callable[[dict[str, Any]], tuple[float, str]]] = {
    "voice_mismatch": _margin,
    "speaker_change": _change,
    "watchlist_hit": _watch,
    "synthetic_voice": _synthetic,
    "ring": _ring,
    "replay": _replay,
}
"""Per group: (strength, text) of a record's evidence; higher strength is listed first."""


def evidence(r: dict[str, Any], group: str) -> tuple[float, str]:
    """How strong a flagged record's evidence is in ``group`` (higher first) and in words."""
    strength, text = EVIDENCE.get(group, generic_evidence)(r)
    return (strength if math.isfinite(strength) else 0.0), text


def group_of(r: dict[str, Any]) -> str:
    """The queue group of a mismatch record: its reason code when the queue has one, else ``other``."""
    code = str(r.get("reason") or "").split(":")[0]
    return code if code in REASONS else OTHER


# -- the queue ---------------------------------------------------------------------------------------


class Queue:
    """Flagged calls by group, the ``limit`` strongest of each kept while results stream past.

    Args:
        limit: most calls kept per group (the page says how many more there were).
        rings: ring call id -> {"id", "borrowers", "calls", "cohesion"}: those calls join group ``ring``.
    """

    def __init__(self, limit: int, rings: dict[str, dict[str, Any]] | None = None) -> None:
        self.limit = limit
        self.rings = rings or {}
        self.heaps: dict[str, list[tuple[float, int, str]]] = {}
        self.totals: dict[str, int] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self._n = 0

    def add(self, r: dict[str, Any]) -> None:
        """Consider one result record (matches join only through a ring)."""
        call_id = str(r.get("call_id"))
        groups = [group_of(r)] if r.get("verdict") == "mismatch" else []
        if call_id in self.rings:
            r = {**r, "_ring": self.rings[call_id]}
            groups.append("ring")
        for group in groups:
            self._n += 1
            self.totals[group] = self.totals.get(group, 0) + 1
            strength, text = evidence(r, group)
            item = (strength, -self._n, call_id)
            heap = self.heaps.setdefault(group, [])
            if len(heap) < self.limit:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                self._drop(heapq.heapreplace(heap, item)[2], group)
            else:
                continue
            entry = self.items.setdefault(call_id, {"record": r, "evidence": {}})
            entry["evidence"][group] = [round(strength, 4), text]

    def _drop(self, call_id: str, group: str) -> None:
        """Forget a call pushed out of ``group`` (and its record, when no other group keeps it)."""
        entry = self.items.get(call_id)
        if entry is not None:
            entry["evidence"].pop(group, None)
            if not entry["evidence"]:
                del self.items[call_id]

    def order(self) -> dict[str, list[str]]:
        """Per group (page order), the call ids kept, strongest evidence first."""
        order = [*REASONS, OTHER]
        return {
            g: [c for _s, _n, c in sorted(self.heaps[g], reverse=True)]
            for g in sorted(self.heaps, key=lambda g: order.index(g) if g in order else len(order))
        }

    def borrowers(self) -> set[str]:
        """Borrowers of the calls kept (whose other calls the page lists)."""
        return {str(e["record"].get("borrower_id")) for e in self.items.values()}


def other_calls(records: Iterable[dict[str, Any]], borrowers: set[str], per_borrower: int = 20) -> dict[str, list]:
    """For each of ``borrowers``: up to ``per_borrower`` of their calls in the results, as
    [call_id, verdict, reason code] (the page shows a call's siblings; memory bounded by the queue)."""
    found: dict[str, list] = {b: [] for b in borrowers}
    for r in records:
        calls = found.get(str(r.get("borrower_id")))
        if calls is not None and len(calls) < per_borrower:
            calls.append([r.get("call_id"), r.get("verdict"), str(r.get("reason") or "").split(":")[0] or None])
    return found


def review_command(call_id: str, settings: Any | None) -> tuple[str, str]:
    """The start and end of the command that records a decision about ``call_id``: the page puts
    ``--label L`` (and ``--note``) between them. The run's store and embeddings folders are given as
    absolute paths, so the command reaches the same store from any folder."""
    head = f"voicecheck review {shlex.quote(call_id)}"
    if settings is None:
        return head, ""
    folders = (("--store", settings.store), ("--embeddings", settings.embeddings))
    tail = "".join(f" {flag} {shlex.quote(str(Path(path).resolve()))}" for flag, path in folders)
    return head, tail


# -- excerpts ----------------------------------------------------------------------------------------


def excerpt_span(r: dict[str, Any], length_s: float = EXCERPT_S) -> tuple[float, float]:
    """The stretch of the recording (start_s, end_s) an excerpt plays: around the voice change, the
    low stretch of the timeline, the replayed span, or from the first speech."""
    start = 0.0
    replay = replayed(r)
    low = low_stretch(r.get("timeline"), _num(r.get("threshold")))
    if _num(r.get("speaker_change_s")) is not None:
        start = float(r["speaker_change_s"]) - EXCERPT_LEAD_S
    elif _num(replay.get("call_start_s")) is not None:
        start = float(replay["call_start_s"]) - 1.0
    elif low is not None:
        start = low["min_at_s"] - length_s / 2
    elif r.get("speech_regions"):
        start = float(r["speech_regions"][0][0]) - 0.5
    duration = _num(r.get("duration_s"))
    if duration is not None:
        start = min(start, duration - length_s)
    start = max(0.0, start)
    return round(start, 2), round(start + length_s if duration is None else min(duration, start + length_s), 2)


def excerpt_name(r: dict[str, Any], span: tuple[float, float]) -> str:
    """A file name for an excerpt, from the audio's content and the span (no call id in it: ids may hold
    any character); the same audio and span always give the same name."""
    key = f"{r.get('content_hash') or r.get('audio')}|{r.get('channel')}|{span[0]:.2f}|{span[1]:.2f}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + ".wav"


def write_excerpt(r: dict[str, Any], folder: Path, settings: Any | None = None) -> dict[str, Any]:
    """Cut the excerpt of a flagged call's customer channel and write it as 8 kHz 16-bit WAV (0600) in
    ``folder`` (0700), unless an excerpt of the same audio and span is there already.

    The audio is read again and must still be the audio that was judged (its sha256): otherwise no
    excerpt, and the reason says why.

    Returns:
        {"src": "excerpts/<name>.wav", "start_s", "end_s"} or {"error": why there is none}.
    """
    import io

    import numpy as np
    import soundfile as sf

    from .audio import MAX_AUDIO_BYTES, MAX_AUDIO_S, load, resample
    from .files import private_dir, write_private

    span = excerpt_span(r)
    name = excerpt_name(r, span)
    path = private_dir(folder) / name
    if path.is_file() and not path.is_symlink():
        return {"src": f"{folder.name}/{name}", "start_s": span[0], "end_s": span[1]}
    try:
        audio = load(
            str(r.get("audio")),
            r.get("channel"),
            getattr(settings, "max_audio_bytes", MAX_AUDIO_BYTES),
            getattr(settings, "max_audio_s", MAX_AUDIO_S),
        )
    except VoicecheckError as e:
        return {"error": f"{e.code}: {e}"}
    if r.get("content_hash") and audio.content_hash != r["content_hash"]:
        return {"error": "the audio file changed since it was checked (another sha256): no excerpt"}
    a, b = (int(t * audio.sample_rate) for t in span)
    part = resample(audio.samples[a:b], audio.sample_rate, EXCERPT_RATE)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(part, -1.0, 1.0), EXCERPT_RATE, format="WAV", subtype="PCM_16")
    write_private(path, buffer.getvalue())
    return {"src": f"{folder.name}/{name}", "start_s": span[0], "end_s": span[1]}
