"""Replay detection as the product runs it (issue 15, item 1): where the index lives, what a call's
check stores, and how it turns a verdict.

* A batch worker fingerprints each call's customer speech (:func:`fingerprint_call`, the VAD's
  regions of the decoded channel); the parent process, the index's single writer, looks each call up
  in manifest order among its borrower's own items -- their enrollment recordings and earlier calls
  -- and then stores the call (:class:`Ledger`), so of two calls sharing audio the later one is the replay.
* What a lookup found is kept per (audio, channel, borrower) in the call store as a
  :class:`ReplayOutcome`: every time-consistent span with at least :data:`CANDIDATE_MIN_HITS` hits,
  so the match rule (settings ``replay_min_hits``, ``replay_min_matched_s``) is applied when the call
  is judged and ``rescore`` can apply another without audio.
* :func:`judge_replay` makes a replayed call ``mismatch`` (reason ``replay``, ``replay_of`` naming each
  recording and span); a call that could not be checked is never a ``match`` (``inconclusive``,
  reason ``replay_not_checked``).

Two index files (:data:`INDEX_FILE`): enrollment recordings beside the voiceprints, calls beside the
call store; hash values keyed with a key derived from the store key, raw rows sealed
(:class:`voicecheck.replay.FingerprintIndex` with the store's cipher).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import fingerprint as fingerprint_module
from .crypto import Cipher
from .errors import InsufficientSpeechError
from .fingerprint import Fingerprint, FingerprintError, fingerprints, padded_regions
from .replay import FingerprintIndex, MatchRule, ReplayMatch, compile_loops
from .types import CallResult, SpeechRegion

if TYPE_CHECKING:
    from .callstore import CallStore

log = logging.getLogger(__name__)

INDEX_FILE = "replay.sqlite"
"""The replay index's file name: ``<store>/replay.sqlite`` holds the enrollment recordings (beside the
voiceprints they belong to, so every embeddings workspace sees them), ``<embeddings>/replay.sqlite``
the calls (beside the call store)."""
CANDIDATE_MIN_HITS = 5
"""Spans with at least this many hits are kept with a call's check (the least ``replay_min_hits``)."""
MAX_CANDIDATES = 5
"""Most spans kept per call (most hits first)."""
LEDGER_CHUNK = 50
"""Calls the batch's ledger stores per commit (one commit per call cost ~0.3 ms of CPU each)."""
NOT_CHECKED = "replay_not_checked"
_MATCH_FIELDS = tuple(f.name for f in fields(ReplayMatch))
REPLAY = "replay"


def index_paths(settings: Any) -> dict[str, Path]:
    """The two index files by the kind of item they hold: "enrollment" and "call"."""
    return {"enrollment": Path(settings.store) / INDEX_FILE, "call": Path(settings.embeddings) / INDEX_FILE}


def open_index(settings: Any, cipher: Cipher, kind: str) -> FingerprintIndex:
    """One of the workspace's replay indexes (created when missing), keyed and sealed with ``cipher``.

    Lookups are per borrower, so the index keeps no table for searches over all items: storing a
    call then costs the same at any index size (``benchmarks/replay_cost.py``: looking a call up and
    storing it ~1.2-1.5 ms of CPU with 10^4 calls stored as with none, ~65 ms with that table, whose
    B-tree grows with every call).

    Args:
        kind: "enrollment" (in the voiceprint store's folder) or "call" (in the embeddings folder).

    Raises:
        StoreError: the file is damaged, of another version, or made with another key or encryption mode.
    """
    path = index_paths(settings)[kind]
    cipher.check_folder(path.parent, "store" if kind == "enrollment" else "embeddings")
    return FingerprintIndex(path, cipher=cipher, all_items=False, params=fingerprint_module.INDEX_PARAMS)


@dataclass
class Indexes:
    """Both replay indexes, open: what a call is looked up in."""

    enrollments: FingerprintIndex
    calls: FingerprintIndex

    @classmethod
    def open(cls, settings: Any, cipher: Cipher) -> Indexes:
        enrollments = open_index(settings, cipher, "enrollment")
        try:
            return cls(enrollments, open_index(settings, cipher, "call"))
        except BaseException:
            enrollments.close()
            raise

    def close(self) -> None:
        self.enrollments.close()
        self.calls.close()


def rule_of(settings: Any) -> MatchRule:
    """The settings' match rule (``replay_min_hits`` time-consistent hits over ``replay_min_matched_s``)."""
    return MatchRule(min_hits=settings.replay_min_hits, min_matched_s=settings.replay_min_matched_s)


def call_item(content_hash: str) -> str:
    """The index name of a call's audio."""
    return f"call:{content_hash}"


def enrollment_item(borrower_id: str, content_hash: str) -> str:
    """The index name of one of a borrower's enrollment recordings."""
    return f"enrollment:{borrower_id}:{content_hash}"


@dataclass(frozen=True)
class Prints:
    """A call's fingerprints as a worker hands them to the parent, or why there are none.

    Attributes:
        query: the denser fingerprint it is looked up with (None when it could not be made).
        index: the fingerprint it is stored with.
        problem: the :class:`~voicecheck.fingerprint.FingerprintError` message ("" when made).
    """

    query: Fingerprint | None
    index: Fingerprint | None
    problem: str = ""


def _duration_s(samples: np.ndarray, sample_rate: int) -> float:
    """Length (s) of mono ``samples``; infinite when it cannot be told (:func:`fingerprints` then refuses them)."""
    shape = np.shape(samples)
    if len(shape) != 1 or isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        return float("inf")
    return shape[0] / float(sample_rate) if sample_rate > 0 else float("inf")


def fingerprint_call(
    samples: np.ndarray,
    sample_rate: int,
    regions: Iterable[SpeechRegion],
    pad_s: float | None = None,
    bridge_s: float | None = None,
) -> Prints:
    """Both fingerprints of a call's or enrollment recording's speech: the stored one over the VAD's
    regions of the decoded channel as they are, the query over those regions widened by ``pad_s``
    either side with the gaps of at most ``bridge_s`` left between them closed
    (:func:`voicecheck.fingerprint.padded_regions`; None: the shipped
    :data:`~voicecheck.fingerprint.REGION_PAD_S` and :data:`~voicecheck.fingerprint.REGION_BRIDGE_S`).

    Only the query is widened: a replayed passage silero half-missed is looked up whole, while audio
    outside the speech regions (a sound that recurs from call to call) is never stored to be found
    again (benchmarks/results/replay_recurring.md). Every product path fingerprints through here (batch
    worker, ``check``, enrollment, a stored call fingerprinted again), so stored items and queries
    agree. Never raises for audio that cannot be fingerprinted: :class:`Prints` then says why, and the
    call is judged as not checked (never ``match``).
    """
    pad_s = fingerprint_module.REGION_PAD_S if pad_s is None else pad_s
    bridge_s = fingerprint_module.REGION_BRIDGE_S if bridge_s is None else bridge_s
    try:
        spans = list(regions)
        wider = None
        if pad_s != 0 or bridge_s != 0:
            wider = padded_regions(spans, pad_s, _duration_s(samples, sample_rate), bridge_s)
        query, stored = fingerprints(
            samples, sample_rate, spans, fingerprint_module.QUERY_PARAMS, fingerprint_module.INDEX_PARAMS, wider
        )
    except FingerprintError as e:
        return Prints(None, None, str(e))
    return Prints(query, stored)


@dataclass(frozen=True)
class ReplayOutcome:
    """What one lookup of a call found, as the call store keeps it.

    Attributes:
        checked: the call was looked up (False: it could not be fingerprinted; ``problem`` says why).
        problem: why it was not checked.
        candidates: time-consistent spans with at least :data:`CANDIDATE_MIN_HITS` hits, most first
            (at most :data:`MAX_CANDIDATES`); a rule decides which are replays (:func:`replays`).
        items: the borrower's items that were searched.
    """

    checked: bool
    problem: str = ""
    candidates: tuple[ReplayMatch, ...] = ()
    items: int = 0

    def to_json(self) -> str:
        """``json.dumps(asdict(self))`` (compact), without asdict's deep copies."""
        candidates = [{f: getattr(m, f) for f in _MATCH_FIELDS} for m in self.candidates]
        data = {"checked": self.checked, "problem": self.problem, "candidates": candidates, "items": self.items}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReplayOutcome:
        data = json.loads(text)
        found = tuple(ReplayMatch(**m) for m in data.get("candidates", ()))
        return cls(bool(data["checked"]), str(data.get("problem", "")), found, int(data.get("items", 0)))


def look_up(indexes: Indexes, prints: Prints, borrower_id: str, content_hash: str) -> ReplayOutcome:
    """Look a call up among its borrower's items stored before it: their enrollment recordings and
    earlier calls (its own audio, and an enrollment of the very same file, are not replays of it)."""
    return _look_up(indexes, prints, borrower_id, content_hash, indexes.calls.added_at(call_item(content_hash)))


def _look_up(
    indexes: Indexes, prints: Prints, borrower_id: str, content_hash: str, stored_at: str | None
) -> ReplayOutcome:
    """:func:`look_up`, told when the call's own audio was stored in the calls index (None: it is not,
    and then it limits nothing: every item stored is stored before it)."""
    if prints.query is None:
        return ReplayOutcome(False, prints.problem or "no fingerprint")
    own = call_item(content_hash)
    loose = MatchRule(min_hits=CANDIDATE_MIN_HITS, min_matched_s=0.0)
    before = None if stored_at is None else own
    calls, n_calls = indexes.calls.matches(prints.query, borrower_id, loose, exclude=(own,), before=before)
    enrolled, n_enrolled = indexes.enrollments.matches(
        prints.query,
        borrower_id,
        loose,
        exclude=(enrollment_item(borrower_id, content_hash),),
        added_before=stored_at,
    )
    found = sorted((*calls, *enrolled), key=lambda m: (-m.hits, m.item))
    return ReplayOutcome(True, "", tuple(found[:MAX_CANDIDATES]), n_calls + n_enrolled)


def check_and_store(
    indexes: Indexes, prints: Prints, borrower_id: str, content_hash: str, commit: bool = True
) -> ReplayOutcome:
    """:func:`look_up`, then store the call under its borrower (unless this audio is stored already);
    ``commit`` False leaves it in the calls index's open transaction (:meth:`FingerprintIndex.add`)."""
    own = call_item(content_hash)
    stored_at = indexes.calls.added_at(own)  # None: not stored (one read serves the look-up and the store)
    outcome = _look_up(indexes, prints, borrower_id, content_hash, stored_at)
    if prints.index is not None and content_hash and stored_at is None:
        indexes.calls.add(own, prints.index, "call", owner=borrower_id, commit=commit)
    return outcome


def replays(outcome: ReplayOutcome, rule: MatchRule) -> list[ReplayMatch]:
    """The candidates that pass ``rule``, most hits first."""
    return [m for m in outcome.candidates if m.hits >= rule.min_hits and m.matched_s >= rule.min_matched_s]


def match_record(m: ReplayMatch) -> dict[str, Any]:
    """One ``replay_of`` entry of a record: the recording or call that recurs and where (seconds)."""
    return {
        "item": m.item,
        "kind": m.kind,
        "owner": m.owner,
        "call_start_s": round(m.call_start_s, 2),
        "call_end_s": round(m.call_end_s, 2),
        "item_start_s": round(m.item_start_s, 2),
        "item_end_s": round(m.item_end_s, 2),
        "matched_s": round(m.matched_s, 2),
        "hits": int(m.hits),
    }


def judge_replay(result: CallResult, outcome: ReplayOutcome | None, rule: MatchRule) -> None:
    """Carry a judged call's replay check into its record and turn its verdict.

    A replay makes any verdict ``mismatch`` with reason ``replay`` (the evidence that a recording was
    played is stronger than the voice score it fooled; the scores stay in the record). A call that
    was not checked keeps a mismatch or inconclusive verdict but is never ``match``: it becomes
    ``inconclusive`` with reason ``replay_not_checked``. Calls with too little speech, and errors,
    are left alone.
    """
    if result.verdict == "error" or result.reason == InsufficientSpeechError.code:
        return
    if outcome is None:
        outcome = ReplayOutcome(
            False,
            "no replay check is stored for this call's audio and borrower (processed before replay checks were on?): "
            "run the batch on it again",
        )
    result.replay_checked = outcome.checked
    if not outcome.checked:
        result.replay_problem = outcome.problem
        if result.verdict == "match":
            result.verdict, result.reason = "inconclusive", NOT_CHECKED
        return
    found = replays(outcome, rule)
    result.replay_of = [match_record(m) for m in found]
    if found:
        result.verdict, result.reason = "mismatch", REPLAY


class Ledger:
    """The batch's replay step in the parent process: calls are looked up and stored in manifest order.

    Phase 1's results arrive in completion order; :meth:`expect` is told the rows in the order they
    are handed to the workers and :meth:`arrive` holds a result until every earlier row has been
    dealt with, so the lookups (and what they find) do not depend on which worker finished first.

    Calls are stored ``chunk`` at a time: the calls index commits them in one transaction, then the
    call store keeps their outcomes in one. So a check in the call store always has its call in the
    index, and a batch stopped in between is resumed without a difference: a call whose outcome was
    not kept is fingerprinted and looked up again among the items stored before it -- the same items
    whether or not the call itself reached the index -- and stored unless it is there already.

    Args:
        indexes: the replay indexes (this process is their only writer).
        calls: the call store that keeps each call's :class:`ReplayOutcome`.
        chunk: calls per commit (>= 1).
    """

    def __init__(self, indexes: Indexes, calls: CallStore, chunk: int = LEDGER_CHUNK) -> None:
        compile_loops()  # the look-up's compiled loops, before the first call
        self.indexes = indexes
        self.calls = calls
        self.chunk = max(1, int(chunk))
        self._order: deque[int] = deque()
        self._held: dict[int, Any] = {}
        self._pending: list[tuple[str, int, str, str]] = []
        self.checked = 0

    def expect(self, row: int) -> None:
        """Row ``row`` was handed to the workers (in manifest order)."""
        self._order.append(row)

    def arrive(self, res: Any) -> None:
        """A phase-1 result (:class:`voicecheck.workers.Embedded`); checked once the rows before it are."""
        self._held[res.row.row] = res
        while self._order and self._order[0] in self._held:
            self._check(self._held.pop(self._order.popleft()))

    def finish(self) -> None:
        """Check whatever is still held (a row that never came back is skipped)."""
        for row in sorted(self._held, key=lambda r: (r not in self._order, r)):
            self._check(self._held.pop(row))
        self._order.clear()
        self._flush()
        self.indexes.calls.sync()

    def _check(self, res: Any) -> None:
        prints: Prints | None = getattr(res, "prints", None)
        if prints is None or not res.row.borrower_id or not res.content_hash:
            return
        outcome = check_and_store(self.indexes, prints, res.row.borrower_id, res.content_hash, commit=False)
        self._pending.append((res.content_hash, res.channel, res.row.borrower_id, outcome.to_json()))
        self.checked += 1
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        """The pending calls into the index (committed first), then their outcomes into the call store."""
        if not self._pending:
            return
        self.indexes.calls.commit()
        self.calls.put_replays(self._pending)
        self._pending.clear()


def stored_outcome(calls: CallStore, content_hash: str, channel: int, borrower_id: str) -> ReplayOutcome | None:
    """The replay check the call store keeps for this audio and borrower, or None."""
    text = calls.replay_outcome(content_hash, channel, borrower_id)
    return None if text is None else ReplayOutcome.from_json(text)


def migrate(settings: Any, cipher: Cipher) -> list[str]:
    """Key the indexes made without encryption (``store migrate`` after switching encryption on): each
    is rebuilt keyed and sealed with ``cipher``. Returns one line per index file.

    Raises:
        StoreError: a keyed index the key does not open, or damage.
    """
    from .errors import StoreError

    lines = []
    for kind, path in index_paths(settings).items():
        if not path.exists():
            continue
        try:
            plain = open_index(settings, Cipher(None), kind)
        except StoreError:  # keyed: it must open with the key as it is
            open_index(settings, cipher, kind).close()
            lines.append(f"replay index {path}: up to date")
            continue
        try:
            done = "up to date (unencrypted)"
            if cipher.encrypted:
                done = f"{plain.reseal(cipher)} item(s) keyed and sealed"
        finally:
            plain.close()
        lines.append(f"replay index {path}: {done}")
    return lines
