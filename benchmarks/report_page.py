"""How fast the morning report's review queue opens in a browser, with 10,000 results.

    .venv/bin/python benchmarks/report_page.py [--calls 10000] [--flagged 0.05,1.0] [--repeat 3]

For each flagged share, writes a synthetic results.jsonl (GE2E-like scores; flagged calls with a
similarity timeline of a 3-minute call, some takeovers, watchlist hits), 40 real stereo call files
for the excerpts, and the report (``voicecheck.report.write_html``, every flagged call queued:
``max_rows`` = the number of calls); then opens report.html from a file:// URL in headless Chromium
(Debian's, driven by Playwright) ``--repeat`` times, each in a fresh browser context, and prints:
the page's size, the time to write it, and the time from navigation start to the page's load event
and to the first page of cards rendered by its script (the page usable), median over the repeats.
No test asserts these figures; the target (issue 17) is < 3 s to open 10,000 calls.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import CHROMIUM_FLAGS, chromium_path  # noqa: E402
from tests.fakes import chord, silence, stereo, write  # noqa: E402
from voicecheck.report import write_html  # noqa: E402

THRESHOLD = 0.52
CALL_S = 180.0


def audio_files(folder: Path, n: int) -> list[tuple[str, str]]:
    """``n`` stereo 8 kHz call files (a tone voice on channel 1): (path, sha256)."""
    out = []
    for i in range(n):
        x = np.concatenate(
            [silence(1.0, 8000), chord((200.0 + 7 * i, 650.0, 1400.0), CALL_S - 2.0, 8000), silence(1.0, 8000)]
        )
        path = write(folder / f"call{i:03d}.wav", stereo(0.05 * chord((300.0, 900.0), len(x) / 8000, 8000), x), 8000)
        out.append((str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
    return out


def records(calls: int, flagged: float, files: list[tuple[str, str]], seed: int = 0):
    """Synthetic results: matches score ~N(0.72, 0.06); flagged calls score low or change voice."""
    rng = np.random.default_rng(seed)
    for n in range(calls):
        call_id, borrower = f"C{n:06d}", f"B{n // 3:06d}"
        if rng.random() >= flagged:
            score = float(np.clip(rng.normal(0.72, 0.06), THRESHOLD + 0.001, 1.0))
            yield {
                "call_id": call_id,
                "borrower_id": borrower,
                "verdict": "match",
                "score": round(score, 4),
                "threshold": THRESHOLD,
                "reason": None,
                "audio": files[n % len(files)][0],
                "duration_s": CALL_S,
            }
            continue
        audio, digest = files[n % len(files)]
        kind = rng.choice(["voice_mismatch", "speaker_change", "watchlist_hit"], p=[0.7, 0.2, 0.1])
        base = float(rng.normal(0.35, 0.1)) if kind != "speaker_change" else float(rng.normal(0.6, 0.04))
        points = np.clip(base + 0.05 * rng.standard_normal(88), -1, 1)
        change = None
        if kind == "speaker_change":
            change = float(rng.uniform(40, 140))
            points[int(change / 2) :] -= 0.35
        timeline = [
            {"start_s": 2.0 * i, "end_s": 2.0 * i + 4.0, "score": round(float(s), 4)} for i, s in enumerate(points)
        ]
        hits = (
            [{"label": "AGENT-7", "source": "case 12", "score": 0.81, "threshold": 0.6}]
            if kind == "watchlist_hit"
            else []
        )
        yield {
            "call_id": call_id,
            "borrower_id": borrower,
            "verdict": "mismatch",
            "reason": str(kind),
            "score": round(min(base, THRESHOLD - 0.001) if kind != "speaker_change" else base, 4),
            "threshold": THRESHOLD,
            "scoring": "lda+asnorm",
            "audio": audio,
            "channel": 1,
            "content_hash": digest,
            "duration_s": CALL_S,
            "speaker_change_s": change,
            "watchlist_hits": hits,
            "timeline": timeline,
            "speech_regions": [[1.0, CALL_S - 1.0]],
        }


def open_times(report: Path, repeat: int) -> dict[str, float]:
    """Median ms from navigation start to the load event and to the queue's first page rendered."""
    from playwright.sync_api import sync_playwright

    load, ready = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        for _ in range(repeat):
            context = browser.new_context()
            page = context.new_page()
            page.goto(report.as_uri(), wait_until="load", timeout=60000)
            page.wait_for_function("() => window.voicecheckQueue !== undefined", timeout=60000)
            t = page.evaluate(
                "() => ({load: performance.getEntriesByType('navigation')[0].loadEventEnd,"
                " ready: window.voicecheckReadyMs})"
            )
            load.append(t["load"])
            ready.append(t["ready"])
            context.close()
        browser.close()
    return {"load_ms": statistics.median(load), "ready_ms": statistics.median(ready)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--flagged", default="0.05,1.0", help="flagged shares to run, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--excerpts", type=int, default=2000, help="most excerpts written (write_html's default)")
    args = ap.parse_args()
    if chromium_path() is None:
        sys.exit("no Chromium: apt-get install -y chromium (or set VOICECHECK_CHROMIUM)")
    work = Path(tempfile.mkdtemp(prefix="vc-report-bench-"))
    try:
        files = audio_files(work / "audio", 40)
        print("| calls | flagged | queued | page MB | excerpts | write s | load event ms | queue ready ms |")
        print("|---|---|---|---|---|---|---|---|")
        for share in (float(s) for s in args.flagged.split(",")):
            out = work / f"run-{share}"
            out.mkdir()
            rows = list(records(args.calls, share, files))
            (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            t = time.perf_counter()
            report = write_html(
                out, {"calls": args.calls}, out / "results.jsonl", max_rows=args.calls, excerpts=args.excerpts
            )
            write_s = time.perf_counter() - t
            queued = sum(1 for r in rows if r["verdict"] == "mismatch")
            excerpts = len(list((out / "excerpts").glob("*.wav"))) if (out / "excerpts").exists() else 0
            times = open_times(report, args.repeat)
            print(
                f"| {args.calls} | {share:.0%} | {queued} | {report.stat().st_size / 1e6:.1f} | {excerpts} | "
                f"{write_s:.1f} | {times['load_ms']:.0f} | {times['ready_ms']:.0f} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
