"""QA reviews: what a person decided about a flagged call, kept with the other per-call data.

A review says whether the customer on a call really was the borrower (``genuine``), someone else
(``impostor``) or could not be told (``unsure``), with an optional note. It is stored in the
call-embedding store (``calls.sqlite``, table ``reviews``; one review per call id, the latest wins)
bound to the call's audio (its content hash): label and note are sealed with the store's cipher like
the embeddings, erasure removes a borrower's reviews (:data:`voicecheck.erasure.STEPS`), and every
decision lands in the audit log with the OS user who made it. A later result of the same call (same
id, same audio) carries its review (``review`` in the record). Reviewed calls with their stored
embeddings are labelled data for calibration (:func:`reviewed_calls`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .callstore import CallStore, Review
from .config import Settings
from .errors import UsageError
from .types import CallEmbedding, check_id

LABELS = ("genuine", "impostor", "unsure")
"""What a reviewer can decide: the borrower spoke, someone else spoke, cannot tell."""
MAX_NOTE = 2000
"""Longest note kept (characters)."""
CSV_COLUMNS = ["call_id", "borrower_id", "label", "note", "reason", "content_hash", "reviewer", "reviewed_at"]
"""The columns ``review export`` writes; ``review import`` needs call_id and label, and reads the others
it finds (the report page downloads call_id, borrower_id, label, note, reason, content_hash)."""
MAX_IMPORT_BYTES = 64 * 1024 * 1024


def check_label(label: str) -> str:
    """A review label as stored (lower case), or UsageError naming the labels."""
    clean = (label or "").strip().lower()
    if clean not in LABELS:
        raise UsageError(f"review label {label!r} is not one of {', '.join(LABELS)}")
    return clean


def check_note(note: str) -> str:
    """A note as stored: stripped, at most MAX_NOTE characters, no control characters but newlines."""
    clean = (note or "").strip()
    if len(clean) > MAX_NOTE:
        raise UsageError(f"the review note has {len(clean)} characters; keep it under {MAX_NOTE}")
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in clean):
        raise UsageError("the review note holds control characters; give plain text")
    return clean


def _user() -> str:
    from .audit import _user as os_user

    return os_user()


def _now() -> str:
    from .enrollment import now

    return now()


def _target(calls: CallStore, call_id: str, borrower_id: str, content_hash: str) -> tuple[str, str]:
    """(borrower, content hash) a review of ``call_id`` is bound to: what the call store links the id
    to (given values must agree with it), else the given values, else an earlier review's.

    Raises:
        UsageError: the call is unknown, or the given borrower or audio differ from the stored link.
    """
    link = calls.link_of(call_id)
    if link is not None:
        if borrower_id and borrower_id != link[0]:
            raise UsageError(f"call {call_id!r} belongs to borrower {link[0]!r} in the call store, not {borrower_id!r}")
        if content_hash and content_hash != link[1]:
            raise UsageError(
                f"call {call_id!r} is now audio {link[1][:12]} in the call store, not {content_hash[:12]} (the call id "
                "was reused for other audio since): a decision about other audio is not recorded; review it again"
            )
        return link
    if borrower_id and content_hash:
        return borrower_id, content_hash
    earlier = calls.review(call_id)
    if earlier is not None:
        return earlier.borrower_id, earlier.content_hash
    raise UsageError(
        f"call {call_id!r} is not in the call store {calls.directory}; reviews are of calls that 'voicecheck batch' "
        "or 'voicecheck check --review' has processed (check the call id, --embeddings and --store)"
    )


def make_review(
    calls: CallStore,
    call_id: str,
    label: str,
    note: str = "",
    reason: str = "",
    borrower_id: str = "",
    content_hash: str = "",
) -> Review:
    """A validated review of one call, bound to its borrower and audio (see :func:`record`)."""
    call_id = check_id(call_id, "call id")
    borrower, digest = _target(calls, call_id, borrower_id.strip(), content_hash.strip())
    return Review(
        call_id=call_id,
        borrower_id=borrower,
        content_hash=digest,
        label=check_label(label),
        note=check_note(note),
        reason=(reason or "").split(":")[0].strip()[:64],
        reviewer=_user(),
        reviewed_at=_now(),
    )


def record(
    settings: Settings,
    call_id: str,
    label: str,
    note: str = "",
    reason: str = "",
    borrower_id: str = "",
    content_hash: str = "",
    source: str = "review",
) -> Review:
    """Record a reviewer's decision about one call (replacing an earlier one) and audit it.

    Args:
        call_id: the call; it must be linked in the call store, unless ``borrower_id`` and
            ``content_hash`` say what it is (a call checked with ``voicecheck check``).
        label: genuine, impostor or unsure.
        note: free text (sealed at rest; never in the audit log or results).
        reason: the flag's reason code the reviewer looked at (voice_mismatch, speaker_change, ...).
        source: what recorded it (``review``, ``check``), in the audit entry.

    Raises:
        UsageError: a bad label, note or call id, an unknown call, or a call id now linked to other audio.
    """
    from .audit import audit_log
    from .crypto import cipher_for

    cipher = cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    try:
        review = make_review(calls, call_id, label, note, reason, borrower_id, content_hash)
        calls.put_reviews([review])
    finally:
        calls.close()
    audit_log(settings, cipher).write([_audit_entry(review, source)])
    return review


def _audit_entry(review: Review, source: str) -> dict[str, Any]:
    """The audit entry of one decision: ids, label, reason code, whether a note was given (not the note)."""
    return {
        "event": "review",
        "call_id": review.call_id,
        "borrower_id": review.borrower_id,
        "content_hash": review.content_hash,
        "label": review.label,
        "reason": review.reason or None,
        "note": bool(review.note),
        "source": source,
    }


def stored(settings: Settings, borrower_id: str | None = None) -> list[Review]:
    """Every stored review (or one borrower's), in call-id order."""
    from .crypto import cipher_for

    calls = CallStore(settings.embeddings, cipher_for(settings))
    try:
        return list(calls.reviews(borrower_id))
    finally:
        calls.close()


def listing(
    settings: Settings, results: Path | None = None, unreviewed: bool = False, reason: str | None = None
) -> list[dict[str, Any]]:
    """Rows for ``review list``: the stored reviews, or (``results``) a run's flagged calls with theirs.

    Args:
        results: a batch output folder or its results.jsonl: list that run's mismatches, each with
            its review (a review counts only when it is of the same audio).
        unreviewed: only flagged calls without a review (needs ``results``).
        reason: only calls flagged (or reviewed) for this reason code.

    Raises:
        UsageError: ``unreviewed`` without ``results``, or an unreadable results file.
    """
    from .audit import audit_log
    from .crypto import cipher_for

    if unreviewed and results is None:
        raise UsageError(
            "--unreviewed lists a run's flagged calls that have no review yet: give --results DIR (the batch's --out)"
        )
    reviews = {r.call_id: r for r in stored(settings)}
    rows = list(_run_rows(results, reviews)) if results is not None else [_row(r) for r in reviews.values()]
    if unreviewed:
        rows = [r for r in rows if not r["label"]]
    if reason:
        rows = [r for r in rows if r["reason"] == reason]
    audit_log(settings, cipher_for(settings)).record(
        "review.list",
        results=None if results is None else str(results),
        calls=len(rows),
        borrower_ids=sorted({str(r["borrower_id"]) for r in rows}) or None,
    )
    return rows


def _row(review: Review | None, record: dict[str, Any] | None = None) -> dict[str, Any]:
    base = {"call_id": "", "borrower_id": "", "verdict": None, "reason": "", "content_hash": ""}
    if record is not None:
        base.update({k: record.get(k) for k in base})
        base["reason"] = str(record.get("reason") or "").split(":")[0]
    elif review is not None:
        base.update(call_id=review.call_id, borrower_id=review.borrower_id, reason=review.reason)
        base["content_hash"] = review.content_hash
    fields = ("label", "note", "reviewer", "reviewed_at")
    return {**base, **{k: (getattr(review, k) if review is not None else "") for k in fields}}


def _run_rows(results: Path, reviews: dict[str, Review]) -> Iterator[dict[str, Any]]:
    from .report import RESULTS, read_jsonl

    path = results / RESULTS if results.is_dir() else results
    if not path.is_file():
        raise UsageError(f"{path} does not exist; give the --out folder of a batch (it holds {RESULTS})")
    for record in read_jsonl(path):
        if record.get("verdict") == "mismatch":
            yield _row(of_audio(reviews.get(str(record.get("call_id"))), record.get("content_hash")), record)


def of_audio(review: Review | None, content_hash: str | None) -> Review | None:
    """``review`` when it is of this audio (or the audio is unknown), else None: a decision about a call
    id that now names other audio does not carry over."""
    if review is None or (content_hash and review.content_hash != content_hash):
        return None
    return review


def in_record(review: Review | None) -> dict[str, Any] | None:
    """What a result record carries of its call's review (``review`` field): never the note."""
    if review is None:
        return None
    return {
        "label": review.label,
        "reason": review.reason or None,
        "reviewer": review.reviewer,
        "reviewed_at": review.reviewed_at,
        "note": bool(review.note),
    }


# -- CSV: export and import --------------------------------------------------------------------------


def export_csv(settings: Settings, path: str | Path) -> int:
    """Write every stored review as CSV (0600, formula cells escaped); audited. Returns the rows written."""
    from .audit import audit_log
    from .crypto import cipher_for
    from .report import write_csv

    rows = [_row(r) for r in stored(settings)]
    write_csv(path, rows, CSV_COLUMNS)
    audit_log(settings, cipher_for(settings)).record(
        "review.export", file=str(path), calls=len(rows), borrower_ids=sorted({r["borrower_id"] for r in rows}) or None
    )
    return len(rows)


def unescape(cell: str) -> str:
    """Undo :func:`voicecheck.report.safe_cell`: a leading apostrophe before a formula character."""
    from .report import FORMULA_START

    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def read_csv(path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of a review CSV (line number, cells unescaped and stripped).

    Raises:
        UsageError: not a readable CSV, or no call_id or label column.
    """
    from .files import read_regular

    data = read_regular(Path(path), MAX_IMPORT_BYTES, "review file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text; export it again as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in ("call_id", "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise UsageError(f"{path}: no {' or '.join(missing)} column; a review CSV has columns {', '.join(CSV_COLUMNS)}")
    try:
        return [
            (n, {k: unescape((v or "").strip()) for k, v in row.items() if isinstance(k, str) and isinstance(v, str)})
            for n, row in enumerate(reader, 2)
        ]
    except csv.Error as e:
        raise UsageError(f"{path}: not a readable CSV ({e})") from None


def import_csv(settings: Settings, path: str | Path) -> int:
    """Record the decisions of a review CSV (``review export`` or the report page's download).

    Every row is checked first (label, note, call id, that the call is known and still the same
    audio); one bad row stops the import with nothing recorded. Rows of the same call: the last wins.
    Each decision is audited with the OS user running the import.

    Returns:
        The number of calls whose review was recorded.

    Raises:
        UsageError: an unreadable file or any bad row (the message lists up to five).
    """
    from .audit import audit_log
    from .crypto import cipher_for

    rows = read_csv(path)
    cipher = cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    try:
        made, problems = _validate(calls, rows)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise UsageError(f"{path}: {len(problems)} row(s) cannot be imported, nothing was recorded: {shown}")
        calls.put_reviews(list(made.values()))
    finally:
        calls.close()
    audit_log(settings, cipher).write([_audit_entry(r, f"import {path}") for r in made.values()])
    return len(made)


def _validate(calls: CallStore, rows: Iterable[tuple[int, dict[str, str]]]) -> tuple[dict[str, Review], list[str]]:
    made: dict[str, Review] = {}
    problems: list[str] = []
    for n, f in rows:
        try:
            review = make_review(
                calls,
                f.get("call_id", ""),
                f.get("label", ""),
                f.get("note", ""),
                f.get("reason", ""),
                f.get("borrower_id", ""),
                f.get("content_hash", ""),
            )
        except UsageError as e:
            problems.append(f"line {n}: {e}")
            continue
        made[review.call_id] = review
    return made, problems


# -- for calibration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewedCall:
    """A reviewed call with its stored embedding: a labelled trial against its borrower's voiceprint.

    Attributes:
        genuine: True when the reviewer heard the borrower, False for an impostor.
        embedding: the call's stored embedding (the same audio the reviewer heard).
    """

    call_id: str
    borrower_id: str
    genuine: bool
    embedding: CallEmbedding
    review: Review


def reviewed_calls(settings: Settings, model: str | None = None) -> list[ReviewedCall]:
    """Calls reviewed genuine or impostor that have a stored embedding of the reviewed audio.

    For calibration on the deployment's own calls (issue 11): each is a trial of the call against its
    borrower's voiceprint with a label from a person. Unsure reviews, calls with too little speech
    and calls whose id now names other audio are left out. The read is audited.

    Args:
        model: embedder name (e.g. "ge2e-resemblyzer-0.1.4"); None takes the settings' model.
    """
    from .audit import audit_log
    from .crypto import cipher_for
    from .embedders import model_spec

    name = model or model_spec(settings.model, settings.embeddings).name
    cipher = cipher_for(settings)
    calls = CallStore(settings.embeddings, cipher)
    out: list[ReviewedCall] = []
    try:
        for review in calls.reviews():
            if review.label == "unsure":
                continue
            link = calls.linked(review.call_id, name)
            if link is None or link.embedding is None or link.content_hash != review.content_hash:
                continue
            genuine = review.label == "genuine"
            out.append(ReviewedCall(review.call_id, review.borrower_id, genuine, link.embedding, review))
    finally:
        calls.close()
    audit_log(settings, cipher).record(
        "review.read",
        purpose="calibration",
        model=name,
        calls=len(out),
        borrower_ids=sorted({c.borrower_id for c in out}) or None,
    )
    return out
