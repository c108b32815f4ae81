"""Result writers: a durable JSONL results file, summary.json, CSV."""

from __future__ import annotations

import csv
import html
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import UsageError
from .files import open_private, private_dir, write_private
from .types import VERDICTS

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
FLAGGED = "flagged.csv"
FLAGGED_CSV_COLUMNS = [
    "call_id",
    "borrower_id",
    "verdict",
    "reason",
    "score",
    "threshold",
    "llr",
    "speaker_change_s",
    "spoof_score",
    "watchlist",
    "replay_of",
    "too_identical",
    "speech_seconds",
    "duration_s",
    "audio",
    "row",
]


def flagged_rows(results_path: str | Path) -> Iterator[dict[str, Any]]:
    """Every record that is not a match, flattened for a spreadsheet (watchlist labels joined)."""
    for r in read_jsonl(results_path):
        if r["verdict"] != "match":
            replays = "; ".join(
                f"{m['item']} {m['matched_s']:.1f} s at {m['call_start_s']:.1f} s" for m in r.get("replay_of") or []
            )
            near = r.get("too_identical") or {}
            yield {
                **r,
                "watchlist": "; ".join(h["label"] for h in r.get("watchlist_hits") or []),
                "replay_of": replays,
                "too_identical": near.get("max_cosine") if near.get("warn") else "",
            }


class ResultsFile:
    """``results.jsonl``: one JSON object per line, each fsync'ed as it is written.

    A run killed mid-write leaves at most one torn last line; opening the file cuts it off, so a
    re-run rewrites that record and the file never holds a duplicate or a broken line.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        self._f: IO[str] = open_private(self.path, "a")  # 0600, refuses a symbolic link
        self._repair()

    def _repair(self) -> None:
        data = self.path.read_bytes()
        good = data.rfind(b"\n") + 1
        if good < len(data):  # a torn last line from a killed run
            with self.path.open("r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())

    def records(self) -> Iterator[dict[str, Any]]:
        """Stream the records already written."""
        yield from read_jsonl(self.path)

    def append(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file, streamed."""
    p = Path(path)
    if not p.exists():
        return
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise UsageError(f"{p}: line {n} is not JSON; the results file was edited or damaged") from None


def summarise(path: str | Path, **extra: Any) -> dict[str, Any]:
    """Counts per verdict and reason, audio and speech seconds, from a results file (streamed)."""
    verdicts: Counter[str] = Counter({v: 0 for v in VERDICTS})
    reasons: Counter[str] = Counter()
    audio_s = speech_s = 0.0
    total = 0
    for r in read_jsonl(path):
        total += 1
        verdicts[r["verdict"]] += 1
        if r.get("reason"):
            reasons[str(r["reason"]).split(":")[0]] += 1
        audio_s += r.get("duration_s") or 0.0
        speech_s += r.get("speech_seconds") or 0.0
    return {
        "calls": total,
        "verdicts": dict(verdicts),
        "reasons": dict(reasons),
        "audio_seconds": round(audio_s, 1),
        "speech_seconds": round(speech_s, 1),
        **extra,
    }


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a 0600 temp file + rename; never through a link)."""
    write_private(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a cell starting with one of these as a formula (CSV injection)."""


def safe_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, made inert with a leading apostrophe
    (OWASP's advice); numbers and other values are kept as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_csv(path: str | Path, records: Iterable[dict[str, Any]], columns: list[str]) -> None:
    """Selected columns of records as CSV (records are streamed; a 0600 file, never through a link)."""
    import io

    with io.TextIOWrapper(open_private(path, "wb"), encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: safe_cell(r.get(k)) for k in columns} for r in records)


def plot_timeline(record: dict[str, Any], path: str | Path) -> None:
    """Draw a checked call's similarity timeline: score per span of speech, the threshold, the speech
    regions and the detected change (PNG, matplotlib Agg)."""
    from matplotlib.figure import Figure

    points = record.get("timeline") or []
    if not points:
        raise UsageError(
            f"call {record.get('call_id')} has no similarity timeline to plot (verdict "
            f"{record.get('verdict')}, reason {record.get('reason')})"
        )
    fig = Figure(figsize=(9, 3.2), dpi=110)
    ax = fig.add_subplot()
    for start, end in record.get("speech_regions") or []:
        ax.axvspan(start, end, color="#d9ead3", lw=0)
    mids = [(p["start_s"] + p["end_s"]) / 2 for p in points]
    ax.plot(mids, [p["score"] for p in points], "o-", color="#1f4e79", label="similarity to voiceprint")
    ax.axhline(record["threshold"], color="#c00000", ls="--", label=f"threshold {record['threshold']:.3f}")
    if record.get("speaker_change_s") is not None:
        ax.axvline(
            record["speaker_change_s"],
            color="#7f6000",
            ls=":",
            label=f"voice change {record['speaker_change_s']:.1f} s",
        )
    ax.set_xlabel("time in call (s); green = customer speech")
    ax.set_ylabel(f"score ({record.get('scoring')})")
    ax.set_title(f"{record['call_id']} vs {record['borrower_id']}: {record['verdict']}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Any, path: str | Path, **options: Any) -> None:
    """Render a matplotlib figure to PNG bytes and write them as a 0600 file (never through a link)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **options)
    write_private(path, buffer.getvalue())


# -- HTML report --------------------------------------------------------------------------------------

REPORT_HTML = "report.html"
VERDICT_COLOURS = {"match": "#2e7d32", "mismatch": "#c62828", "inconclusive": "#9e9e9e", "error": "#6d4c41"}
_BUCKET = 0.01
"""Width of the score buckets counted while streaming (display bins are merged from these)."""


def write_html(
    out_dir: str | Path,
    summary: dict[str, Any],
    results_path: str | Path,
    rings: Any = None,
    sections: list[tuple[str, str]] | None = None,
    max_rows: int = 2000,
    bins: int = 40,
    settings: Any = None,
    excerpts: int = 2000,
) -> Path:
    """Write ``out_dir/report.html``: one static page, no server, no external assets.

    Counts per verdict, time per stage, a score histogram split by verdict with the threshold
    marked (matplotlib, inline SVG), the review queue (flagged calls grouped by reason, strongest
    evidence first, each with an excerpt of the customer channel, its similarity timeline, the
    borrower's other calls and the command that records a decision; a script in the page filters,
    searches, takes decisions and downloads them as the CSV ``voicecheck review import`` reads), the
    error/inconclusive calls, rings and extra sections. Memory is bounded by ``max_rows``: the
    results file is streamed (once for the counts and the queue, once more for the queued
    borrowers' other calls).

    Args:
        out_dir: folder of the batch run; the report (and its ``excerpts/`` folder) is written there.
        summary: the batch summary (``summary.json``): calls, verdicts, timings_s, wall_seconds...
        results_path: the ``results.jsonl`` to read.
        rings: optional voice rings (objects or dicts with calls, borrowers, cohesion): a table, and
            their calls in this run join the queue's ``ring`` group.
        sections: extra (title, html) sections added at the marked place (takeovers, watchlist hits,
            ...). Their html is inserted as given: build it with :func:`html_table` or escape it.
        max_rows: most calls per queue group and per table (the strongest evidence, the first others).
        bins: histogram bars.
        settings: the run's settings (the review command names its store and embeddings folders; the
            audio limits apply when excerpts are cut); None gives a command without folders.
        excerpts: most audio excerpts written (the first calls of the queue); 0 writes none.

    Returns:
        The path of the report.
    """
    from .desk import Queue, other_calls

    scan = Scan(max_rows)
    queue = Queue(max_rows, _ring_map(rings))
    for r in read_jsonl(results_path):
        scan.add(r)
        queue.add(r)
    siblings = other_calls(read_jsonl(results_path), queue.borrowers()) if queue.items else {}
    data = queue_data(queue, siblings, Path(out_dir), settings, excerpts)
    parts = _head(out_dir, summary, scan, bins, data["nonce"]) + [
        queue_html(data, scan.n_mismatch),
        f"<h2>Errors and inconclusive calls ({scan.n_other})</h2>",
        _flag_note(scan.n_other, len(scan.others), "in results order"),
        html_table(scan.others, FLAG_COLUMNS, link="audio"),
        "<!-- extra sections: takeovers, rings, watchlist hits -->",
    ]
    if rings is not None:
        parts += [
            f"<h2>Voice rings ({len(rings)})</h2>",
            html_table([_ring_row(x) for x in rings], ["ring", "borrowers", "calls", "cohesion"]),
        ]
    for title, body in sections or []:
        parts += [f'<section class="extra"><h2>{html.escape(title)}</h2>', body, "</section>"]
    parts += [
        "<!-- end of extra sections -->",
        f'<script nonce="{data["nonce"]}">{_script()}</script>',
        "</body></html>",
    ]
    out = private_dir(out_dir) / REPORT_HTML
    write_private(out, "\n".join(parts) + "\n")
    return out


def _head(out_dir: str | Path, summary: dict[str, Any], scan: Scan, bins: int, nonce: str) -> list[str]:
    """The page up to the queue: title, policy, counts, time per stage, the histogram."""
    esc = html.escape
    total = sum(scan.verdicts.values())
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP.format(nonce=nonce)}">',
        f"<title>voicecheck report: {esc(str(Path(out_dir).name))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>voicecheck batch report</h1><p class=meta>{esc(_meta(summary))}</p>",
        "<h2>Verdicts</h2>",
        html_table(
            [
                {"verdict": v, "calls": c, "share": f"{(c / total * 100 if total else 0):.1f}%"}
                for v, c in scan.verdicts.items()
            ],
            ["verdict", "calls", "share"],
        ),
        "<h2>Time per stage</h2>",
        html_table(
            [{"stage": k, "seconds": v} for k, v in (summary.get("timings_s") or {}).items()]
            + [{"stage": "wall (whole run)", "seconds": summary.get("wall_seconds")}],
            ["stage", "seconds"],
        ),
        "<h2>Scores</h2>",
        histogram_svg(*histogram_counts(scan.buckets, scan.thresholds, bins), scan.thresholds),
    ]


class Scan:
    """What the report keeps of a results file read once: counts per verdict, scores counted into
    fixed buckets per verdict, the thresholds seen, the number of mismatches, and the first
    ``max_rows`` error/inconclusive calls."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.verdicts: Counter[str] = Counter({v: 0 for v in VERDICTS})
        self.buckets: dict[str, Counter[int]] = {v: Counter() for v in VERDICTS}
        self.thresholds: Counter[float] = Counter()
        self.others: list[dict[str, Any]] = []
        self.n_mismatch = self.n_other = 0

    def add(self, r: dict[str, Any]) -> None:
        """Count one record."""
        import math

        verdict = str(r.get("verdict"))
        self.verdicts[verdict] += 1
        score = r.get("score")
        if isinstance(score, (int, float)):
            self.buckets.setdefault(verdict, Counter())[math.floor(score / _BUCKET)] += 1
        if isinstance(r.get("threshold"), (int, float)):
            self.thresholds[round(float(r["threshold"]), 4)] += 1
        if verdict == "mismatch":
            self.n_mismatch += 1
        elif verdict in ("error", "inconclusive"):
            self.n_other += 1
            if len(self.others) < self.max_rows:
                self.others.append(_flagged(r))


# -- the review queue ---------------------------------------------------------------------------------

GROUP_TITLES = {
    "voice_mismatch": "Voice mismatch",
    "speaker_change": "Speaker change",
    "watchlist_hit": "Watchlist",
    "synthetic_voice": "Synthetic voice",
    "ring": "Ring",
    "replay": "Replay",
    "other": "Other",
}
TIMELINE_POINTS = 80
"""Most timeline points per call in the page (the lowest of each stretch is kept)."""


def queue_data(queue: Any, siblings: dict[str, list], out_dir: Path, settings: Any, excerpts: int) -> dict[str, Any]:
    """The page's data for the queue: items in page order, the groups as lists of item indices, the
    excerpts written for the first ``excerpts`` items (in ``out_dir/excerpts``)."""
    import hashlib
    import secrets

    from .desk import EXCERPTS, review_command, write_excerpt

    items: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    order = queue.order()
    for ids in order.values():
        for call_id in ids:
            if call_id in index:
                continue
            index[call_id] = len(items)
            entry = queue.items[call_id]
            r = entry["record"]
            item = _item(r, {g: entry["evidence"][g] for g in order if g in entry["evidence"]})
            item["o"] = siblings.get(str(r.get("borrower_id")), [])
            item["cmd"] = list(review_command(call_id, settings))
            fits = len(items) < excerpts
            item["ex"] = (
                write_excerpt(r, out_dir / EXCERPTS, settings)
                if fits
                else {"error": f"only the first {excerpts} calls of the queue get one"}
            )
            items.append(item)
    where = str(out_dir.resolve())
    return {
        "run": out_dir.resolve().name,
        "key": hashlib.sha256(where.encode("utf-8")).hexdigest()[:16],
        "groups": {g: [index[c] for c in ids] for g, ids in order.items()},
        "totals": queue.totals,
        "labels": GROUP_TITLES,
        "items": items,
        "nonce": secrets.token_urlsafe(16),
    }


def _item(r: dict[str, Any], evidence: dict[str, list]) -> dict[str, Any]:
    """The fields of a queued record the page shows (compact keys; see voicecheck/data/review.js)."""
    return {
        "id": str(r.get("call_id")),
        "b": str(r.get("borrower_id")),
        "v": r.get("verdict"),
        "r": str(r.get("reason") or "").split(":")[0] or None,
        "h": r.get("content_hash"),
        "ev": evidence,
        "s": r.get("score"),
        "t": r.get("threshold"),
        "chg": r.get("speaker_change_s"),
        "w": [
            [h.get("label"), h.get("score"), h.get("source")]
            for h in r.get("watchlist_hits") or []
            if isinstance(h, dict)
        ],
        "dur": r.get("duration_s"),
        "tl": _compact_timeline(r.get("timeline") or []),
        "sr": (r.get("speech_regions") or [])[:200],
        "a": _file_uri(str(r.get("audio"))) if r.get("audio") else None,
        "rv": r.get("review"),
    }


def _compact_timeline(points: list[dict[str, Any]]) -> list[list[float]]:
    """[start_s, end_s, score] per point; over TIMELINE_POINTS, the lowest point of each stretch."""
    rows = [[p["start_s"], p["end_s"], round(float(p["score"]), 3)] for p in points if isinstance(p, dict)]
    if len(rows) <= TIMELINE_POINTS:
        return rows
    step = len(rows) / TIMELINE_POINTS
    return [
        min(rows[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)], key=lambda q: q[2])
        for i in range(TIMELINE_POINTS)
    ]


def queue_html(data: dict[str, Any], n_mismatch: int) -> str:
    """The queue's section: controls, an empty list the script fills, the data as inert JSON."""
    esc = html.escape
    total = sum(len(v) for v in data["groups"].values())
    options = "".join(
        f'<option value="{esc(g)}">{esc(GROUP_TITLES.get(g, g))} ({data["totals"].get(g, 0)})</option>'
        for g in data["groups"]
    )
    payload = (
        json.dumps({k: v for k, v in data.items() if k != "nonce"}, ensure_ascii=False, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    kept = len(data["items"])
    note = (
        f" The {kept} calls with the strongest evidence per reason are here; all are in flagged.csv."
        if total < sum(data["totals"].values())
        else ""
    )
    return "".join(
        [
            f'<section id="queue"><h2>Review queue ({n_mismatch} mismatches)</h2>',
            "<p class=note>Listen to the excerpt, look at the evidence, decide. Decisions stay in this browser until "
            "you download them and run <code>voicecheck review import FILE</code>; or copy a call's command."
            f"{esc(note)}</p>",
            '<div class="controls"><label>Reason <select id="f-reason"><option value="">all</option>',
            options,
            '</select></label> <label>Call id <input id="f-search" type="search" placeholder="search by call id">'
            '</label> <label>Show <select id="f-state"><option value="">all</option><option value="undecided">'
            'undecided</option><option value="decided">decided</option></select></label> '
            '<button type="button" id="download">Download decisions (CSV)</button> '
            '<button type="button" id="clear">Forget decisions</button> <span id="decided-count"></span></div>',
            '<p id="shown" class="note"></p><div id="cards"></div>',
            '<p id="pager"><button type="button" id="prev">previous</button> <span id="page"></span> '
            '<button type="button" id="next">next</button></p>',
            "<noscript><p>The review queue needs JavaScript; every flagged call is in flagged.csv.</p></noscript>",
            f'<script type="application/json" id="queue-data">{payload}</script></section>',
        ]
    )


def _script() -> str:
    return (Path(__file__).parent / "data" / "review.js").read_text(encoding="utf-8")


def _ring_map(rings: Any) -> dict[str, dict[str, Any]]:
    """Ring call id -> what the queue shows of its ring (id, borrowers, calls, cohesion)."""
    from dataclasses import asdict, is_dataclass

    out: dict[str, dict[str, Any]] = {}
    for n, ring in enumerate(rings or [], 1):
        d = asdict(ring) if is_dataclass(ring) and not isinstance(ring, type) else dict(ring)
        info = {
            "id": d.get("voice", d.get("id", n)),
            "borrowers": len(d.get("borrowers") or []),
            "calls": len(d.get("calls") or []),
            "cohesion": d.get("cohesion"),
        }
        for call_id in d.get("calls") or []:
            out.setdefault(str(call_id), info)
    return out


FLAG_COLUMNS = [
    "call_id",
    "borrower_id",
    "verdict",
    "score",
    "threshold",
    "reason",
    "speaker_change_s",
    "spoof_score",
    "watchlist_hits",
    "audio",
]


def html_table(rows: list[dict[str, Any]], columns: list[str], link: str | None = None) -> str:
    """An HTML table of ``columns`` from ``rows``, every value escaped; column ``link`` as a file:// link."""
    import html

    if not rows:
        return "<p class=none>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            text = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
            if c == link and text:
                cells.append(f'<td><a href="{html.escape(_file_uri(text), quote=True)}">{html.escape(text)}</a></td>')
            else:
                num = isinstance(v, (int, float)) and not isinstance(v, bool)
                cells.append(f"<td{' class=num' if num else ''}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _file_uri(path: str) -> str:
    p = Path(path)
    try:
        return (p if p.is_absolute() else Path.cwd() / p).as_uri()
    except ValueError:
        return ""


def _flagged(r: dict[str, Any]) -> dict[str, Any]:
    """The fields of a flagged record the report shows (drops timelines and other bulk)."""
    out = {c: r.get(c) for c in FLAG_COLUMNS}
    hits = r.get("watchlist_hits") or []
    out["watchlist_hits"] = (
        "; ".join(
            f"{h.get('label', '?')} ({h['score']:.3f})"
            if isinstance(h.get("score"), (int, float))
            else str(h.get("label"))
            for h in hits
            if isinstance(h, dict)
        )
        or None
    )
    return out


def _ring_row(ring: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    d = asdict(ring) if is_dataclass(ring) and not isinstance(ring, type) else dict(ring)
    calls, borrowers = list(d.get("calls") or []), list(d.get("borrowers") or [])
    cut = lambda xs: ", ".join(map(str, xs[:12])) + (f" ... (+{len(xs) - 12})" if len(xs) > 12 else "")  # noqa: E731
    return {
        "ring": d.get("id", ""),
        "borrowers": f"{len(borrowers)}: {cut(borrowers)}",
        "calls": f"{len(calls)}: {cut(calls)}",
        "cohesion": d.get("cohesion"),
    }


def _flag_note(total: int, shown: int, order: str) -> str:
    if total > shown:
        return f"<p class=note>{shown} of {total} shown ({order}); all are in results.jsonl.</p>"
    return ""


def _meta(summary: dict[str, Any]) -> str:
    bits = [f"{summary.get('calls', 0)} calls"]
    if summary.get("audio_seconds") is not None:
        bits.append(f"{summary['audio_seconds'] / 3600:.2f} h audio")
    for key in ("model", "engine", "workers", "wall_seconds"):
        if summary.get(key) is not None:
            bits.append(f"{key.replace('_', ' ')} {summary[key]}")
    for band, p in (summary.get("operating_point") or {}).items():
        bits.append(f"{band} band threshold {p.get('threshold')} ({p.get('source')})")
        if p.get("estimated_false_flag_rate") is not None:
            bits.append(f"estimated honest borrowers flagged {100 * p['estimated_false_flag_rate']:.1f}%")
        if p.get("warning"):
            bits.append(f"WARNING: {p['warning']}")
    return " · ".join(bits)


def histogram_counts(
    buckets: dict[str, Counter[int]], thresholds: Counter[float], bins: int
) -> tuple[Any, dict[str, Any]]:
    """Merge the streamed score buckets into ``bins`` bars over the range of the scores and thresholds.

    Returns:
        The bar edges (``bins + 1`` scores, ascending) and, per verdict with scores, the calls per bar.
    """
    import numpy as np

    keys = [k for c in buckets.values() for k in c]
    if not keys:
        return np.zeros(0), {}
    lo, hi = min(keys) * _BUCKET, (max(keys) + 1) * _BUCKET
    for t in thresholds:
        lo, hi = min(lo, t), max(hi, t)
    span = max(hi - lo, _BUCKET)
    counts = {v: np.zeros(bins) for v, c in buckets.items() if c}
    for v in counts:
        for k, n in buckets[v].items():
            counts[v][min(bins - 1, int((k * _BUCKET + _BUCKET / 2 - lo) / span * bins))] += n
    return np.linspace(lo, lo + span, bins + 1), counts


def histogram_svg(edges: Any, counts: dict[str, Any], thresholds: Counter[float]) -> str:
    """Stacked bars of calls per score by verdict, the (three most common) thresholds as dashed lines:
    a matplotlib figure as inline SVG (text kept as text, no external reference)."""
    import io

    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not counts:
        return "<p class=none>no scores</p>"
    fig = Figure(figsize=(7.5, 2.8), dpi=96)
    ax = fig.add_subplot()
    base = np.zeros(len(edges) - 1)
    for v in [v for v in VERDICTS if v in counts] + [v for v in counts if v not in VERDICTS]:
        n = counts[v]
        label = f"{v} ({int(n.sum())})"
        colour = VERDICT_COLOURS.get(v, "#555555")
        ax.bar(edges[:-1], n, width=np.diff(edges), bottom=base, align="edge", color=colour, label=label, lw=0)
        base = base + n
    for t, n in thresholds.most_common(3):
        ax.axvline(t, color="#000000", ls="--", lw=1, label=f"threshold {t:g} ({n} calls)")
    ax.set_xlabel("score (higher = more alike)")
    ax.set_ylabel("calls")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "voicecheck-histogram"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :].replace("<svg ", '<svg role="img" aria-label="score histogram by verdict" ', 1)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}"
    ".meta,.note,.none{color:#555}table{border-collapse:collapse;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "td a{word-break:break-all}"
    ".controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}"
    ".controls label{margin-right:1em}.card{border:1px solid #ccc;border-radius:4px;padding:.6em 1em;margin:.8em 0}"
    ".card h3{font-size:1em;margin:.2em 0}.card .group{color:#555}.verdict.mismatch{color:#c62828}"
    ".evidence{margin:.3em 0;padding-left:1.2em}.media{display:flex;gap:1em;align-items:center;flex-wrap:wrap}"
    "svg.timeline{width:520px;max-width:100%;height:auto;display:block;margin:.3em 0}"
    ".decide button{margin-right:.3em}.decide button[aria-pressed=true]{background:#1f4e79;color:#fff}"
    "input.note{width:24em}.command code{background:#f6f6f6;padding:2px 4px;word-break:break-all}"
    ".group-head{margin-top:1.2em;border-bottom:1px solid #eee}"
)
_CSP = "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; media-src file: blob:"
