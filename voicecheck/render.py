"""Text the ``voicecheck`` command prints: results, summaries and listings as lines (no I/O here).

Each function takes the data a library call returned and gives the lines to print, so that
:mod:`voicecheck.cli` reads as parse, call, render.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

NOUN = {"borrower": "borrower", "agent": "collector"}
FLAG_ORDER = ("mismatch", "error", "inconclusive")
"""Flagged verdicts in the order a summary lists them."""


def why(r: dict[str, Any]) -> str:
    """A flagged record's reason in a few words."""
    reason = r.get("reason") or ""
    if reason == "voice_mismatch":
        return f"{reason} (score {r['score']:.3f} < {r['threshold']:.3f})"
    if reason == "speaker_change":
        return f"{reason} at {r['speaker_change_s']:.1f} s"
    if reason == "synthetic_voice":
        return f"{reason} (spoof score {r['spoof_score']:+.2f})"
    if reason == "replay" and r.get("replay_of"):
        m = r["replay_of"][0]
        return f"{reason} ({m['matched_s']:.1f} s of {m['item']})"
    if r.get("watchlist_hits"):
        hit = r["watchlist_hits"][0]
        return f"{reason} ({hit['label']}, score {hit['score']:.3f})"
    return reason


def result_text(r: dict[str, Any]) -> str:
    """A checked call as the lines ``voicecheck check`` prints."""
    verdict = r["verdict"].upper() + (f" ({r['reason']})" if r.get("reason") else "")
    lines = [
        f"call       {r['audio']}" + ("" if r.get("channel") is None else f" (channel {r['channel']})"),
        f"borrower   {r['borrower_id']}",
        f"verdict    {verdict}",
    ]
    if r.get("score") is not None:
        lines.append(
            f"score      {r['score']:.3f}  (threshold {r['threshold']:.3f}; higher = more alike; "
            f"scoring {r.get('scoring')})"
        )
        if r.get("llr") is not None:
            lines.append(f"llr        {r['llr']:+.2f}  (log-likelihood ratio, same speaker vs not)")
    if r.get("speech_seconds") is not None:
        total = f" of {r['duration_s']:.1f} s recorded" if r.get("duration_s") else ""
        lines.append(f"speech     {r['speech_seconds']:.1f} s net speech{total}")
    if r.get("speaker_change_s") is not None:
        lines.append(f"takeover   voice changes at {r['speaker_change_s']:.1f} s")
    for hit in r.get("watchlist_hits") or []:
        lines.append(f"watchlist  {hit['label']} (score {hit['score']:.3f}, source {hit.get('source')})")
    if r.get("spoof_score") is not None:
        lines.append(f"liveness   spoof score {r['spoof_score']:+.2f}  (log-likelihood ratio, synthetic vs live)")
    lines += replay_lines(r)
    lines.append(f"model      {r.get('model')}")
    return "\n".join(lines)


def replay_lines(r: dict[str, Any]) -> list[str]:
    """What the replay check found (each recording that recurs, and where), and the too-identical warning."""
    lines = []
    for m in r.get("replay_of") or []:
        lines.append(
            f"replay     {m['matched_s']:.1f} s of {m['kind']} {m['item']} recur at {m['call_start_s']:.1f}-"
            f"{m['call_end_s']:.1f} s (its {m['item_start_s']:.1f}-{m['item_end_s']:.1f} s; {m['hits']} hits)"
        )
    if r.get("replay_checked") is False:
        lines.append(f"replay     NOT CHECKED: {r.get('replay_problem')}")
    near = r.get("too_identical")
    if near and near.get("warn"):
        lines.append(
            f"warning    voice too identical to enrollment recording {str(near['recording'])[:12]} (cosine "
            f"{near['max_cosine']:.3f} >= {near['threshold']:.2f}): a replay the fingerprint missed? "
            "(a warning: no verdict rests on it)"
        )
    return lines


def check_text(r: dict[str, Any], plot: Path | None = None) -> str:
    """``check``'s text: the result, where the evidence is (for the QA agent), and its review."""
    from .desk import evidence_lines

    lines = [result_text(r), *evidence_lines(r, plot)]
    review = r.get("review")
    if review:
        lines.append(f"review     {review['label']} by {review['reviewer']} at {review['reviewed_at']}")
    return "\n".join(lines)


def review_lines(rows: list[dict[str, Any]], with_verdicts: bool) -> Iterator[str]:
    """Reviews (``review list``), or a run's flagged calls with their reviews (``--results``)."""
    if not rows:
        yield "no flagged call matches" if with_verdicts else "no review recorded"
        return
    yield f"{'call':<14} {'borrower':<12} {'reason':<16} {'label':<9} {'reviewer':<12} {'reviewed at':<26} note"
    for r in rows:
        note = " ".join(str(r.get("note") or "").split())
        yield (
            f"{r['call_id']!s:<14} {r['borrower_id']!s:<12} {r['reason'] or '-':<16} {r['label'] or '-':<9} "
            f"{r['reviewer'] or '-':<12} {r['reviewed_at'] or '-':<26} {note[:60]}"
        )


def summary_lines(
    summary: dict[str, Any], out: Path, records: Iterable[dict[str, Any]], shown: int = 50
) -> Iterator[str]:
    """One line of counts, the unencrypted warning, then the flagged calls (mismatches first).

    Args:
        summary: a batch or rescore summary.
        out: the run's folder (named in the text).
        records: the run's results (streamed; only the flagged ones are kept).
        shown: most flagged calls listed.
    """
    v = summary["verdicts"]
    yield (
        f"{summary['calls']} calls: {v['match']} match, {v['mismatch']} mismatch, {v['inconclusive']} inconclusive, "
        f"{v['error']} error; {summary['audio_seconds'] / 3600:.2f} h audio in {summary['wall_seconds']:.1f} s -> {out}"
    )
    if str(summary.get("encryption", "")).startswith("none"):
        yield "WARNING: biometric data is stored UNENCRYPTED (encryption = false)"
    yield from operating_lines(summary.get("operating_point") or {})
    trained = summary.get("backend_training")
    if trained:
        yield f"in-domain back-end: {trained.get('file') or trained.get('reason')} ({trained['status']})"
    flagged = [r for r in records if r["verdict"] != "match"]
    flagged.sort(key=lambda r: FLAG_ORDER.index(r["verdict"]))
    if flagged:
        yield "flagged calls:"
    for r in flagged[:shown]:
        yield f"  {r['call_id']:<12} {r['borrower_id']:<12} {r['verdict']:<12} {why(r)}"
    if len(flagged) > shown:
        yield f"  ... and {len(flagged) - shown} more in {out / 'results.jsonl'}"


def operating_lines(bands: dict[str, Any]) -> list[str]:
    """The thresholds a run used, per band, and tonight's estimated share of honest borrowers flagged."""
    lines = []
    for band, p in bands.items():
        estimate = ""
        if p.get("estimated_false_flag_rate") is not None:
            estimate = (
                f"; estimated honest borrowers flagged {100 * p['estimated_false_flag_rate']:.1f}% "
                f"(all calls flagged {100 * p['flagged_share']:.1f}%)"
            )
        lines.append(f"{band} band, {p.get('mode')}: threshold {p.get('threshold')} from {p.get('source')}{estimate}")
        if p.get("warning"):
            lines.append(f"WARNING: {p['warning']}")
    return lines


def voiceprint_lines(kind: str, rows: list[dict[str, Any]], store: str) -> Iterator[str]:
    """The voiceprints of one kind (borrower or agent) as a table: counts and times, never vectors."""
    if not rows:
        yield f"no collectors enrolled in {store}" if kind == "agent" else f"no voiceprints in {store}"
        return
    yield f"{NOUN[kind]:<16} {'model':<26} {'recordings':>10} {'speech s':>9}  updated"
    for r in rows:
        yield f"{r['id']!s:<16} {r['model']!s:<26} {r['recordings']:>10} {r['speech_seconds']:>9.1f}  {r['updated_at']}"


def voiceprint_detail(
    borrower_id: str, summary: list[dict[str, Any]], recordings: list[dict[str, Any]]
) -> Iterator[str]:
    """One borrower's voiceprint and its recordings (``store show``)."""
    for s in summary:
        yield (
            f"{borrower_id}: model {s['model']} ({s['dimension']}-d), {s['recordings']} recording(s), "
            f"{s['speech_seconds']:.1f} s speech, created {s['created_at']}, updated {s['updated_at']}"
        )
    for r in recordings:
        forced = f"  FORCED: {r['forced']}" if r.get("forced") else ""
        yield (
            f"  {r['audio']}  {r['band']}band  {r['speech_seconds']:.1f} s  sha256 {str(r['content_hash'])[:12]}"
            f"  consent {r['consent']}{forced}"
        )


def erase_lines(borrower_id: str, c: dict[str, Any]) -> Iterator[str]:
    """What ``erase`` removed."""
    labels = f" ({', '.join(c['watchlist_labels'])})" if c["watchlist_labels"] else ""
    reviews = f", {c['reviews']} review(s)" if c.get("reviews") else ""
    prints = f", {c['replay_items']} fingerprint(s) in the replay index" if c.get("replay_items") else ""
    yield (
        f"erased {borrower_id}: {c['recordings']} enrollment recording(s), {c['calls']} call(s), "
        f"{c['embeddings']} call embedding(s), {c['watchlist_entries']} watchlist entr(y/ies){labels}{reviews}{prints}"
    )
    if c["shared_calls"]:
        yield (
            f"note: {c['shared_calls']} other borrower(s)' call(s) had the same audio; their embedding is gone and "
            "the next batch embeds them again"
        )


def key_lines(d: dict[str, Any]) -> Iterator[str]:
    """Where the key comes from and its id (``key show``)."""
    if d["source"] is None:
        yield f"encryption: {d['encryption']}"
        return
    yield f"encryption: {d['encryption']}; key {d['current']} from {d['source']}"
    retired = [k for k in d["keys"] if k != d["current"]]
    if retired:
        yield f"older keys kept for decryption only: {', '.join(retired)}"


def rotation_line(r: dict[str, Any]) -> str:
    """What ``key rotate`` did."""
    return (
        f"key rotated: {r['blobs']} blob(s) re-encrypted and {r['audit_lines']} audit line(s) re-signed under key "
        f"{r['new']}; old key(s) {', '.join(r['old'])} " + ("dropped" if r["dropped_old"] else "kept for decryption")
    )


AUDIT_HIDDEN = {"seq", "time", "user", "host", "pid", "program", "event", "prev", "hash", "alg", "kid", "borrower_id"}
"""Audit entry fields ``audit show`` does not repeat after the event."""


def audit_lines(found: list[dict[str, Any]], borrower: str) -> Iterator[str]:
    """One borrower's audited events (``audit show``)."""
    if not found:
        yield f"no audited event concerns {borrower}"
    for e in found:
        rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in AUDIT_HIDDEN)
        yield f"{e.get('time')}  {e.get('event'):<16} by {e.get('user')}@{e.get('host')}  {rest}"


def eval_lines(m: dict[str, Any], out: Path) -> Iterator[str]:
    """Accuracy figures of ``eval`` (and of the back-end it was compared with)."""
    yield from _figure_lines(m)
    if m.get("compare"):
        yield from _figure_lines(m["compare"], "compared with ")
    yield f"wrote {out / 'metrics.json'}, {out / 'scores.csv'}, {out / 'det.png'}"


def _figure_lines(m: dict[str, Any], lead: str = "") -> Iterator[str]:
    backend = f", back-end {m['backend'] or 'none'}" if "backend" in m else ""
    yield (
        f"{lead}{m['n_target']} target, {m['n_nontarget']} non-target trials ({m['errors']} skipped); "
        f"model {m['model']}, scoring {m['mode']}{backend}"
    )
    yield f"EER {100 * m['eer']:.2f}%   minDCF(0.01) {m['min_dcf_0.01']:.3f}   minDCF(0.05) {m['min_dcf_0.05']:.3f}"
    if m.get("cllr") is not None:
        yield f"Cllr {m['cllr']:.3f} bits (min {m['min_cllr']:.3f})"
    yield (
        f"impostors flagged: {100 * m['detect_at_1pct_ff']:.1f}% at 1% false flags, "
        f"{100 * m['detect_at_5pct_ff']:.1f}% at 5%"
    )


def trained_lines(done: Any) -> Iterator[str]:
    """What ``backend train`` wrote (a :class:`voicecheck.adapt.Trained`)."""
    w = done.backend.info.get("weights", {})
    yield (
        f"in-domain back-end {done.path}: {len(done.labels.calls)} calls of {len(done.labels.per_borrower)} "
        f"borrowers ({done.labels.borrowers_with_two} with two or more; {done.counted} with two or more vectors "
        "counting the voiceprint), interpolation weights within "
        f"{w.get('within', 0):.2f} between {w.get('between', 0):.2f}"
    )
    yield 'select it with backend_file = "adapted" (the newest) or --backend FILE; compare with voicecheck eval'


def backend_lines(rows: list[dict[str, Any]], active: str, setting: str) -> Iterator[str]:
    """``backend list``: the in-domain back-ends and the one the settings select."""
    if not rows:
        yield "no in-domain back-end in this workspace (voicecheck backend train makes one)"
    for r in rows:
        yield (
            f"{r['file']}  {r['calls']} calls, {r['borrowers_with_two_calls']} borrowers with two or more "
            f"({r.get('borrowers_counted', '?')} counting the voiceprint), "
            f"margin {r['adapt_max_false_accept']}"
        )
    yield f"backend_file = {setting!r}: {active or 'no back-end'}"


def calibration_lines(
    c: dict[str, Any], max_false_flag: float, at_llr: float | None, takeover_min_segment_s: float
) -> Iterator[str]:
    """What ``calibrate`` fitted (threshold, score -> llr, the takeover limit) and where it saved it."""
    rule = f"llr {at_llr:+.2f}" if at_llr is not None else f"<= {100 * max_false_flag:.1f}% genuine flagged"
    yield (
        f"scoring mode {c['mode']}: threshold {c['threshold']:.4f} ({rule}; on these {c['n_target']} genuine and "
        f"{c['n_nontarget']} impostor trials it flags {100 * c['genuine_flagged']:.1f}% and "
        f"{100 * c['impostors_flagged']:.1f}%), llr = {c['calibration']['a']:.3f} * score + "
        f"{c['calibration']['b']:.3f}; saved to {c['path']}"
    )
    t = c.get("takeover")
    if t is not None:
        yield (
            f"takeover limit: max side cosine {t['max_side_cosine']:.4f} ({100 * t['genuine_share_below']:.0f}% of "
            f"{t['n_calls']} genuine calls' halves are less alike)"
        )
    else:
        yield (
            "takeover limit: not fitted (fewer than 20 genuine test calls with two sides of "
            f"{takeover_min_segment_s:g} s of speech); the model's profile keeps its own, if any"
        )


def consistency_lines(found: list[dict[str, Any]]) -> Iterator[str]:
    """Borrowers whose calls hold several voices."""
    if not found:
        yield "no borrower's stored calls hold more than one voice"
    for b in found:
        yield f"{b['borrower_id']}: {len(b['voices'])} voices in {b['calls']} calls"
        for v in b["voices"]:
            yield f"  voice {v['voice']}: {', '.join(v['calls'])}"


def rings_lines(found: list[dict[str, Any]], min_borrowers: int) -> Iterator[str]:
    """Voices speaking for several borrowers."""
    if not found:
        yield f"no voice speaks for {min_borrowers} or more borrowers"
    for r in found:
        yield (
            f"voice {r['voice']}: {len(r['borrowers'])} borrowers, {len(r['calls'])} calls, "
            f"cohesion {r['cohesion']:.3f}"
        )
        yield f"  borrowers: {', '.join(r['borrowers'])}"
        yield f"  calls:     {', '.join(r['calls'])}"


def watchlist_lines(rows: list[dict[str, Any]], model: str) -> Iterator[str]:
    """Watchlist voices (label, date, source)."""
    if not rows:
        yield f"the watchlist for {model} is empty"
    for r in rows:
        yield f"{r['label']:<20} {r['added_on']:<12} {r['source']}"
