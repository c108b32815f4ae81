"""Result writers: a durable JSONL results file, summary.json, CSV."""

from __future__ import annotations

import csv
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
    "speech_seconds",
    "duration_s",
    "audio",
    "row",
]


def flagged_rows(results_path: str | Path) -> Iterator[dict[str, Any]]:
    """Every record that is not a match, flattened for a spreadsheet (watchlist labels joined)."""
    for r in read_jsonl(results_path):
        if r["verdict"] != "match":
            yield {**r, "watchlist": "; ".join(h["label"] for h in r.get("watchlist_hits") or [])}


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
) -> Path:
    """Write ``out_dir/report.html``: one static page, no server, no external assets.

    Counts per verdict, time per stage, a score histogram split by verdict with the threshold
    marked (inline SVG), the mismatches, and the error/inconclusive calls. The results file is
    streamed: scores are counted into fixed buckets as they are read and only flagged calls are
    kept (at most ``max_rows`` per table: the lowest-scoring mismatches, the first others).

    Args:
        out_dir: folder of the batch run; the report is written there.
        summary: the batch summary (``summary.json``): calls, verdicts, timings_s, wall_seconds...
        results_path: the ``results.jsonl`` to read.
        rings: optional voice rings (objects or dicts with calls, borrowers, cohesion), shown as a table.
        sections: extra (title, html) sections added at the marked place (takeovers, watchlist hits,
            ...). Their html is inserted as given: build it with :func:`html_table` or escape it.
        max_rows: most rows per flagged-call table.
        bins: histogram bars.

    Returns:
        The path of the report.
    """
    import heapq
    import html
    import math

    esc = html.escape
    verdicts: Counter[str] = Counter({v: 0 for v in VERDICTS})
    buckets: dict[str, Counter[int]] = {v: Counter() for v in VERDICTS}
    thresholds: Counter[float] = Counter()
    mismatches: list[tuple[float, int, dict[str, Any]]] = []  # max-heap on score via negation
    others: list[dict[str, Any]] = []
    n_mismatch = n_other = 0
    for n, r in enumerate(read_jsonl(results_path)):
        verdict = str(r.get("verdict"))
        verdicts[verdict] += 1
        score = r.get("score")
        if isinstance(score, (int, float)):
            buckets.setdefault(verdict, Counter())[math.floor(score / _BUCKET)] += 1
        if isinstance(r.get("threshold"), (int, float)):
            thresholds[round(float(r["threshold"]), 4)] += 1
        if verdict == "mismatch":
            n_mismatch += 1
            key = -float(score) if isinstance(score, (int, float)) else float("-inf")
            item = (key, n, _flagged(r))
            if len(mismatches) < max_rows:
                heapq.heappush(mismatches, item)
            elif item > mismatches[0]:
                heapq.heapreplace(mismatches, item)
        elif verdict in ("error", "inconclusive"):
            n_other += 1
            if len(others) < max_rows:
                others.append(_flagged(r))
    flagged = [m[2] for m in sorted(mismatches, key=lambda m: (-m[0], m[1]))]

    total = sum(verdicts.values())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>voicecheck report: {esc(str(Path(out_dir).name))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>voicecheck batch report</h1><p class=meta>{esc(_meta(summary))}</p>",
        "<h2>Verdicts</h2>",
        html_table(
            [
                {"verdict": v, "calls": c, "share": f"{(c / total * 100 if total else 0):.1f}%"}
                for v, c in verdicts.items()
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
        _histogram_svg(buckets, thresholds, bins),
        f"<h2>Mismatches ({n_mismatch})</h2>",
        _flag_note(n_mismatch, len(flagged), "lowest scores first"),
        html_table(flagged, FLAG_COLUMNS, link="audio"),
        f"<h2>Errors and inconclusive calls ({n_other})</h2>",
        _flag_note(n_other, len(others), "in results order"),
        html_table(others, FLAG_COLUMNS, link="audio"),
        "<!-- extra sections: takeovers, rings, watchlist hits -->",
    ]
    if rings is not None:
        parts += [
            f"<h2>Voice rings ({len(rings)})</h2>",
            html_table([_ring_row(x) for x in rings], ["ring", "borrowers", "calls", "cohesion"]),
        ]
    for title, body in sections or []:
        parts += [f'<section class="extra"><h2>{esc(title)}</h2>', body, "</section>"]
    parts += ["<!-- end of extra sections -->", "</body></html>"]
    out = private_dir(out_dir) / REPORT_HTML
    write_private(out, "\n".join(parts) + "\n")
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


def _histogram_svg(buckets: dict[str, Counter[int]], thresholds: Counter[float], bins: int) -> str:
    """Stacked bars per verdict over the score range, the threshold(s) as dashed lines (inline SVG)."""
    import numpy as np

    keys = [k for c in buckets.values() for k in c]
    if not keys:
        return "<p class=none>no scores</p>"
    lo, hi = min(keys) * _BUCKET, (max(keys) + 1) * _BUCKET
    for t in thresholds:
        lo, hi = min(lo, t), max(hi, t)
    span = max(hi - lo, _BUCKET)
    counts = {v: np.zeros(bins) for v in buckets}
    for v, c in buckets.items():
        for k, n in c.items():
            counts[v][min(bins - 1, int((k * _BUCKET + _BUCKET / 2 - lo) / span * bins))] += n
    stacked = sum(counts.values())
    top = max(1.0, float(np.max(stacked)))
    width, height, left, bottom = 720, 240, 50, 30
    plot_w, plot_h = width - left - 10, height - bottom - 10
    bar_w = plot_w / bins
    x_of = lambda s: left + (s - lo) / span * plot_w  # noqa: E731
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" role="img" '
        f'aria-label="score histogram by verdict">',
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" y2="{10 + plot_h}" stroke="#444"/>',
    ]
    base = np.zeros(bins)
    for v in VERDICTS:
        if v not in counts:
            continue
        for i, count in enumerate(counts[v]):
            if count:
                bar_h = count / top * plot_h
                y = 10 + plot_h - (base[i] + count) / top * plot_h
                svg.append(
                    f'<rect x="{left + i * bar_w:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{bar_h:.1f}" fill="{VERDICT_COLOURS[v]}"><title>{v}: {int(count)}</title></rect>'
                )
        base += counts[v]
    for t, n in thresholds.most_common(3):
        x = x_of(t)
        svg.append(
            f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{10 + plot_h}" stroke="#000" '
            f'stroke-dasharray="5,3"><title>threshold {t} ({n} calls)</title></line>'
        )
        svg.append(f'<text x="{x + 3:.1f}" y="22" font-size="11">threshold {t:g}</text>')
    for s in np.linspace(lo, hi, 5):
        svg.append(f'<text x="{x_of(s):.1f}" y="{height - 8}" font-size="11" text-anchor="middle">{s:.2f}</text>')
    svg.append(f'<text x="{left - 5}" y="18" font-size="11" text-anchor="end">{int(top)}</text>')
    svg.append(f'<text x="{left - 5}" y="{10 + plot_h}" font-size="11" text-anchor="end">0</text>')
    legend_x = left
    for v in VERDICTS:
        if buckets.get(v):
            svg.append(
                f'<rect x="{legend_x}" y="{height + 6}" width="10" height="10" fill="{VERDICT_COLOURS[v]}"/>'
                f'<text x="{legend_x + 14}" y="{height + 15}" font-size="11">{v}</text>'
            )
            legend_x += 110
    svg.append("</svg>")
    return "".join(svg)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}"
    ".meta,.note,.none{color:#555}table{border-collapse:collapse;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "td a{word-break:break-all}"
)
