"""Replay detection benchmark (issue 15): replays caught, honest calls falsely marked, lookup time.

Every recording of ``--speech`` (conversations left out, as in the other benchmarks) becomes one
stored item: a speaker's 1st, 3rd, ... recordings are *enrollments* (stored as recorded, mostly
wideband), the 2nd, 4th, ... are *earlier calls* (stored as they came through a simulated telephone
channel, 8 kHz G.711 mu-law). Then:

* **replays**: each item is played back -- a level change, a loudspeaker (2nd-order band-pass with
  a random tilt), a room (exponentially decaying noise tail, RT60 0.2-0.7 s, direct-to-reverberant
  ratio -3..10 dB) -- cut to 3-20 s (as much as the recording has), put between live speech of
  another speaker (0-4 s before and after; "partial" replays are those of 3-6 s inside live speech),
  and sent down a telephone channel: 300-3400 Hz, 8 kHz, pink noise at 10-30 dB SNR and a real codec
  written and read back by soundfile (G.711 mu-law, A-law, GSM 6.10, Opus at 8 kHz), in turn;
* **honest calls**: each recording again, through its own telephone channel and codec, looked up
  against every OTHER item (same speaker and other speakers): all (call, item) pairs one can form.
  The live filler of a replay is excluded the same way (it is new speech, not stored).

Speakers are split as in the other benchmarks (fold 0): the match rule is chosen on the non-EVAL
speakers (TRAIN + TUNE) and judged on the EVAL speakers; per-source tables show each corpus.

Run: ``.venv/bin/python benchmarks/replay.py [--speech ../shared/speech] [--scale 1000,10000,100000]``
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.corpus import DEFAULT_SPEECH, SAMPLE_RATE, load_utterances, read_corpus, split_speakers  # noqa: E402
from recipes.machine import cpu_features  # noqa: E402
from recipes.material import rng_for  # noqa: E402
from voicecheck.fingerprint import QUERY_PARAMS, Fingerprint, FingerprintError, fingerprint, fingerprints  # noqa: E402
from voicecheck.replay import DEFAULT_MAX_ROWS, FingerprintIndex, MatchRule  # noqa: E402

log = logging.getLogger("benchmarks.replay")

CODECS = ("ulaw", "alaw", "gsm", "opus")
LENGTHS_S = (3.0, 5.0, 8.0, 12.0, 20.0)
REPLAYS_PER_ITEM = 2
BUDGETS = (100_000, 1_000_000, 10**9)
"""Row budgets of the lookups over all items in the scale table (10**9: none)."""
DURATION_BINS = ((0.0, 5.0), (5.0, 8.0), (8.0, 12.0), (12.0, 99.0))
EXPLORE = MatchRule(min_hits=1, min_matched_s=0.0)
"""Looks up every candidate (the rule is applied afterwards, for every rule of the grid)."""


@dataclass
class Item:
    name: str
    speaker: str
    source: str
    kind: str
    audio: np.ndarray  # as stored (16 kHz original for enrollments, 8 kHz telephone for calls)
    rate: int
    fp_query: Fingerprint | None = None  # the honest call's query fingerprint


@dataclass
class Outcome:
    """One looked-up call: its truth and the candidates found (item name -> (hits, matched_s, span))."""

    speaker: str
    source: str
    truth: str  # replayed item, "" for an honest call
    codec: str
    replayed_s: float
    partial: bool
    found: dict[str, tuple[int, float, tuple[float, float, float, float]]] = field(default_factory=dict)
    true_span_s: tuple[float, float] = (0.0, 0.0)  # replayed part in the call's time axis
    item: str = ""  # the recording the call was made from (replayed, or the honest call's own)
    audio: np.ndarray | None = None  # the call at 8 kHz (kept for the embedding figures)


# --- channel simulation ---------------------------------------------------------------------------


def codec_roundtrip(x8k: np.ndarray, codec: str) -> np.ndarray:
    """8 kHz audio written with a real codec by soundfile and read back."""
    import soundfile as sf

    fmt, subtype = {
        "ulaw": ("WAV", "ULAW"),
        "alaw": ("WAV", "ALAW"),
        "gsm": ("WAV", "GSM610"),
        "opus": ("OGG", "OPUS"),
    }[codec]
    buf = io.BytesIO()
    sf.write(buf, np.clip(x8k, -1, 1), 8000, format=fmt, subtype=subtype)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return y[: x8k.size] if y.size >= x8k.size else np.pad(y, (0, x8k.size - y.size))


def telephone_call(x: np.ndarray, rate: int, codec: str, rng: np.random.Generator) -> np.ndarray:
    """300-3400 Hz at 8 kHz, pink noise at 10-30 dB SNR, then ``codec``."""
    from recipes.simulate import simulate_call_side

    return codec_roundtrip(simulate_call_side(x, rate, rng, codec="none"), codec)


def loudspeaker_room(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A phone or laptop loudspeaker in a room, heard by another phone's microphone."""
    from scipy.signal import butter, fftconvolve, sosfilt

    low, high = rng.uniform(150, 400), rng.uniform(3500, min(7000, rate / 2 - 100))
    y = sosfilt(butter(2, [low, high], btype="bandpass", fs=rate, output="sos"), x)
    tilt = butter(1, 1500, btype="high", fs=rate, output="sos")  # +- a few dB per octave above 1.5 kHz
    y = y + rng.uniform(-0.5, 0.5) * sosfilt(tilt, y)
    rt60, drr_db = rng.uniform(0.2, 0.7), rng.uniform(-3.0, 10.0)
    t = np.arange(int(rt60 * rate)) / rate
    tail = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * rate)] = 0.0  # the first reflection arrives after ~2 ms
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-12))
    tail[0] = 1.0
    y = fftconvolve(y, tail)[: x.size]
    gain_db = rng.uniform(-12.0, 6.0)
    peak = max(float(np.abs(y).max()), 1e-9)
    return np.asarray(y / peak * min(0.9, 0.5 * 10 ** (gain_db / 20)), dtype=np.float32)


def _at(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    from voicecheck.audio import resample

    return resample(x, rate, target)


# --- material -------------------------------------------------------------------------------------


def build_items(speakers: list) -> list[Item]:
    items = []
    for spk in speakers:
        source = spk.key.split("/")[0]
        for n, (path, x) in enumerate(zip(spk.files, load_utterances(spk), strict=True)):
            name = f"{spk.key}/{Path(path).stem}"
            if n % 2 == 0:
                items.append(Item(name, spk.key, source, "enrollment", x, SAMPLE_RATE))
            else:
                tel = telephone_call(x, SAMPLE_RATE, "ulaw", rng_for("stored", name))
                items.append(Item(name, spk.key, source, "call", tel, 8000))
    return items


def replay_call(item: Item, filler: Item, n: int) -> tuple[np.ndarray, str, float, bool, tuple[float, float]]:
    """A call in which ``item`` is replayed: (8 kHz audio, codec, replayed s, partial, span in the call)."""
    rng = rng_for("replay", item.name, n)
    codec = CODECS[n % len(CODECS)]
    x = _at(item.audio, item.rate, SAMPLE_RATE)
    length = LENGTHS_S[n % len(LENGTHS_S)]
    if length > x.size / SAMPLE_RATE:
        length = x.size / SAMPLE_RATE
    start = int(rng.uniform(0, x.size - length * SAMPLE_RATE + 1))
    part = loudspeaker_room(x[start : start + int(length * SAMPLE_RATE)], SAMPLE_RATE, rng)
    live = _at(filler.audio, filler.rate, SAMPLE_RATE)
    before = int(rng.uniform(0.0, 4.0) * SAMPLE_RATE)
    after = int(rng.uniform(0.0, 4.0) * SAMPLE_RATE)
    live = np.resize(live, before + after) * rng.uniform(0.3, 1.0) / max(float(np.abs(live).max()), 1e-9)
    call = np.concatenate([live[:before], part, live[before:]]).astype(np.float32)
    partial = before + after > 0 and length <= 6.0
    span = (before / SAMPLE_RATE, before / SAMPLE_RATE + length)
    return telephone_call(call, SAMPLE_RATE, codec, rng), codec, length, partial, span


# --- lookups --------------------------------------------------------------------------------------


def _candidates(index: FingerprintIndex, fp: Fingerprint, exclude: list[str]) -> dict:
    check = index.query(fp, exclude=exclude, rule=EXPLORE)
    found = {}
    for m in (*check.matches,):
        found[m.item] = (m.hits, m.matched_s, (m.call_start_s, m.call_end_s, m.item_start_s, m.item_end_s))
    return found


def run_lookups(items: list[Item], index: FingerprintIndex) -> tuple[list[Outcome], list[Outcome], float, float]:
    """Replays and honest calls looked up; returns them and the mean fingerprint / lookup seconds per call."""
    replays, honest = [], []
    fp_time = lookup_time = 0.0
    n_calls = 0
    by_speaker: dict[str, list[Item]] = {}
    for it in items:
        by_speaker.setdefault(it.speaker, []).append(it)
    others = sorted(by_speaker)
    for n, item in enumerate(items):
        for k in range(REPLAYS_PER_ITEM):
            m = n + k * len(items)  # a different length, codec and room each time
            filler_spk = others[(others.index(item.speaker) + 1 + m) % len(others)]
            if filler_spk == item.speaker:
                filler_spk = others[(others.index(item.speaker) + 1) % len(others)]
            filler = by_speaker[filler_spk][m % len(by_speaker[filler_spk])]
            audio, codec, length, partial, span = replay_call(item, filler, m)
            t0 = time.perf_counter()
            fp, _ = fingerprints(audio, 8000)
            t1 = time.perf_counter()
            found = _candidates(index, fp, [filler.name])
            t2 = time.perf_counter()
            fp_time, lookup_time, n_calls = fp_time + t1 - t0, lookup_time + t2 - t1, n_calls + 1
            replays.append(
                Outcome(item.speaker, item.source, item.name, codec, length, partial, found, span, item.name, audio)
            )
        honest_codec = CODECS[(n + 1) % len(CODECS)]
        call = telephone_call(_at(item.audio, item.rate, SAMPLE_RATE), SAMPLE_RATE, honest_codec, rng_for("h", n))
        try:
            hfp = fingerprint(call, 8000, params=QUERY_PARAMS)
        except FingerprintError as exc:  # reported, never counted as "no replay"
            log.warning("honest call of %s not fingerprinted: %s", item.name, exc)
            continue
        found = _candidates(index, hfp, [item.name])
        honest.append(Outcome(item.speaker, item.source, "", honest_codec, 0.0, False, found, (0, 0), item.name, call))
        if n % 50 == 0:
            log.info("%d/%d looked up", n + 1, len(items))
    return replays, honest, fp_time / max(n_calls, 1), lookup_time / max(n_calls, 1)


# --- rule and scoring -----------------------------------------------------------------------------


def passes(entry: tuple[int, float, tuple], rule: MatchRule) -> bool:
    return entry[0] >= rule.min_hits and entry[1] >= rule.min_matched_s


def caught(o: Outcome, rule: MatchRule) -> bool:
    return o.truth in o.found and passes(o.found[o.truth], rule)


def false_items(o: Outcome, rule: MatchRule) -> list[str]:
    return [name for name, e in o.found.items() if name != o.truth and passes(e, rule)]


def rule_grid(replays: list[Outcome], honest: list[Outcome], margin: float) -> list[MatchRule]:
    """Per min_matched_s of the grid: the least min_hits above ``margin`` x the most hits any false
    item (an item other than the replayed one) had in a span at least that long."""
    rules = []
    for min_s in (1.0, 1.5, 2.0, 2.5, 3.0):
        worst = max(
            [e[0] for o in (*honest, *replays) for name, e in o.found.items() if name != o.truth and e[1] >= min_s]
            or [0]
        )
        rules.append(MatchRule(min_hits=max(5, int(np.ceil(margin * worst)) + 1), min_matched_s=min_s))
    return rules


def choose_rule(replays: list[Outcome], honest: list[Outcome], margin: float) -> tuple[MatchRule, list[str]]:
    """Of :func:`rule_grid`'s rules, the one catching most replays, the longer span when within one
    point of the best (the safer rule at almost no cost); and the grid as text."""
    grid = rule_grid(replays, honest, margin)
    rates = [float(np.mean([caught(o, rule) for o in replays])) for rule in grid]
    best = max(i for i, r in enumerate(rates) if r >= max(rates) - 0.01)
    text = [
        f"{r.min_matched_s:g} s: min_hits {r.min_hits} ({100 * rate:.1f}% caught)"
        for r, rate in zip(grid, rates, strict=True)
    ]
    return grid[best], text


def grid_table(replays: list[Outcome], grid: list[MatchRule]) -> list[str]:
    """Replays of the EVAL speakers caught by each rule of the grid (>= 5 s, partial, all)."""
    out = ["| rule (EVAL replays caught) | >= 5 s | partial 3-6 s | all |", "|---|---|---|---|"]
    for rule in grid:
        cells = [
            [o for o in replays if o.replayed_s >= 5.0],
            [o for o in replays if o.partial],
            replays,
        ]
        text = " | ".join(_pct(sum(caught(o, rule) for o in c), len(c)) for c in cells)
        out.append(f"| {rule.min_hits} hits over >= {rule.min_matched_s:g} s | {text} |")
    return out + [""]


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.1f}%)" if n else "-"


def tables(replays: list[Outcome], honest: list[Outcome], n_items: int, rule: MatchRule, title: str) -> list[str]:
    out = [f"### {title}", ""]
    out += ["| replayed part | " + " | ".join(CODECS) + " | all |", "|---" * (len(CODECS) + 2) + "|"]
    for lo, hi in DURATION_BINS:
        row = [o for o in replays if lo <= o.replayed_s < hi]
        cells = [
            _pct(sum(caught(o, rule) for o in row if o.codec == c), sum(o.codec == c for o in row)) for c in CODECS
        ]
        out.append(
            f"| {lo:g}-{hi:g} s | " + " | ".join(cells) + f" | {_pct(sum(caught(o, rule) for o in row), len(row))} |"
        )
    ge5 = [o for o in replays if o.replayed_s >= 5.0]
    part = [o for o in replays if o.partial]
    out.append(f"| **>= 5 s** | | | | | **{_pct(sum(caught(o, rule) for o in ge5), len(ge5))}** |")
    out.append(f"| partial (3-6 s in live speech) | | | | | {_pct(sum(caught(o, rule) for o in part), len(part))} |")
    wrong = [o for o in replays if false_items(o, rule)]
    fh = [o for o in honest if false_items(o, rule)]
    pairs = sum(len(false_items(o, rule)) for o in honest)
    same = sum(1 for o in honest for name in false_items(o, rule) if name.startswith(o.speaker + "/"))
    out += [
        "",
        f"- honest calls marked replay: **{_pct(len(fh), len(honest))}**; false (call, item) pairs: "
        f"{pairs} of {len(honest) * (n_items - 1)} ({same} of them the same speaker)",
        f"- replay calls that also named a wrong item: {_pct(len(wrong), len(replays))}",
    ]
    errs = [
        max(abs(o.found[o.truth][2][0] - o.true_span_s[0]), abs(o.found[o.truth][2][1] - o.true_span_s[1]))
        for o in replays
        if caught(o, rule)
    ]
    if errs:
        out.append(
            f"- span in the call vs the true replayed part (max of start/end error): median {np.median(errs):.2f} s, "
            f"90th pct {np.percentile(errs, 90):.2f} s"
        )
    for o in fh[:10]:
        out.append(f"  - false: honest call of `{o.speaker}` matched {false_items(o, rule)}")
    return out + [""]


# --- the product's path ---------------------------------------------------------------------------


def product_table(items: list[Item], replays: list[Outcome], honest: list[Outcome], eval_keys: set[str]) -> list[str]:
    """Every call checked as the product checks it, at the shipped settings: silero's speech regions
    of each recording, :func:`voicecheck.replaycheck.fingerprint_call`, the borrower's items only
    (:func:`voicecheck.replaycheck.look_up` in an enrollment index and a call index, keyed and sealed),
    and the rule of :class:`voicecheck.config.Settings` (replay_min_hits, replay_min_matched_s)."""
    from voicecheck.config import Settings
    from voicecheck.crypto import Cipher, Keyring, new_key
    from voicecheck.replaycheck import Indexes, fingerprint_call, look_up, rule_of
    from voicecheck.replaycheck import replays as passing
    from voicecheck.vad import SileroVad

    settings = Settings()
    rule = rule_of(settings)
    vad = SileroVad(
        threshold=settings.vad_threshold, min_silence_s=settings.vad_min_silence_s, pad_s=settings.vad_pad_s
    )
    cipher = Cipher(Keyring.of([new_key()], "benchmark key"))
    with tempfile.TemporaryDirectory() as tmp:
        indexes = Indexes(
            FingerprintIndex(Path(tmp) / "enrollments.sqlite", cipher=cipher, all_items=False),
            FingerprintIndex(Path(tmp) / "calls.sqlite", cipher=cipher, all_items=False),
        )
        unstored = []
        for it in items:
            prints = fingerprint_call(it.audio, it.rate, vad.regions(it.audio, it.rate))
            if prints.index is None:
                unstored.append(it.name)
            elif it.kind == "enrollment":
                indexes.enrollments.add(f"enrollment:{it.speaker}:{it.name}", prints.index, "enrollment", it.speaker)
            else:
                indexes.calls.add(f"call:{it.name}", prints.index, "call", it.speaker)
        rows: list[tuple[Outcome, bool, bool, bool]] = []  # (call, checked, caught, any false item)
        for n, o in enumerate((*replays, *honest)):
            assert o.audio is not None
            prints = fingerprint_call(o.audio, 8000, vad.regions(o.audio, 8000))
            own = o.item if not o.truth else f"replay-{n}"  # an honest call is its own recording, never its replay
            outcome = look_up(indexes, prints, o.speaker, own)
            found = passing(outcome, rule)
            true = any(m.item.endswith(f":{o.truth}") for m in found) if o.truth else False
            rows.append(
                (o, outcome.checked, true, any(not m.item.endswith(f":{o.truth}") or not o.truth for m in found))
            )
        indexes.close()
    out = [
        f"Rule: {rule.min_hits} hits over >= {rule.min_matched_s:g} s (the shipped settings); speech regions from "
        f"silero (threshold {settings.vad_threshold}); {len(items) - len(unstored)} items stored "
        f"(not fingerprinted: {', '.join(unstored) or 'none'}); every call looked up among its speaker's items only.",
        "",
        "| speakers | replays >= 5 s caught | "
        + " | ".join(f"{c} >= 5 s" for c in CODECS)
        + " | partial 3-6 s | honest calls marked replay | calls not checked |",
        "|---" * (5 + len(CODECS)) + "|",
    ]
    for label, want in (("EVAL", True), ("non-EVAL", False)):
        mine = [r for r in rows if (r[0].speaker in eval_keys) == want]
        rep = [r for r in mine if r[0].truth]
        ge5 = [r for r in rep if r[0].replayed_s >= 5.0]
        cells = [_pct(sum(r[2] for r in ge5 if r[0].codec == c), sum(r[0].codec == c for r in ge5)) for c in CODECS]
        part = [r for r in rep if r[0].partial]
        hon = [r for r in mine if not r[0].truth]
        out.append(
            f"| {label} | **{_pct(sum(r[2] for r in ge5), len(ge5))}** | "
            + " | ".join(cells)
            + f" | {_pct(sum(r[2] for r in part), len(part))} | **{_pct(sum(r[3] for r in hon), len(hon))}** "
            f"| {sum(not r[1] for r in mine)} of {len(mine)} |"
        )
    return out + [""]


# --- scale ----------------------------------------------------------------------------------------


def _synthetic(pool: np.ndarray, n_rows: int, item_s: float, hash_key: str, rng: np.random.Generator) -> Fingerprint:
    frames = np.sort(rng.integers(0, int(item_s * 100), n_rows)).astype(np.int32)
    return Fingerprint(pool[rng.integers(0, pool.size, n_rows)], frames, item_s, item_s, n_rows, hash_key)


def scale_table(
    items: list[Item], index_fps: list[Fingerprint], sizes: list[int], workdir: Path, rule: MatchRule
) -> list[str]:
    """Lookups against the corpus's items plus N synthetic items (hash values drawn from the corpus's
    own distribution, times at random): time, rows read, replays still caught, false hits."""
    pool = np.concatenate([fp.hashes for fp in index_fps])
    per_s = len(pool) / sum(fp.analysed_s for fp in index_fps)
    item_s, batch = 10.0, 2000
    n_rows = int(item_s * per_s)
    rng = np.random.default_rng(0)
    picked = [it for it in items if it.audio.size / it.rate >= 8.0][:40]  # replays of >= 5 s (lengths 5-20 s)
    queries = []
    for n, item in enumerate(picked):
        filler = items[(items.index(item) + 7) % len(items)]
        audio, _, length, _, _ = replay_call(item, filler, 1 + 5 * n + n % 4)  # lengths 5, 8, 12, 20 s in turn
        queries.append((item, filler.name, length, fingerprint(audio, 8000, params=QUERY_PARAMS)))
    out = [
        f"The corpus's {len(items)} items plus N synthetic items of {item_s:g} s ({n_rows} rows each: the corpus's "
        f"{per_s:.0f} stored hashes per second of speech, hash values drawn from the corpus's own hash "
        f"distribution, times at random). {len(queries)} replay calls of corpus items (replayed part "
        f"{min(q[2] for q in queries):.0f}-{max(q[2] for q in queries):.0f} s, query fingerprints of "
        f"{np.mean([len(q[3]) for q in queries]):.0f} hashes) looked up two ways: over all items with the "
        f"default row budget ({DEFAULT_MAX_ROWS:,} rows, rarest hash values first), and over the replayed "
        f"borrower's items only. Rule: {rule.min_hits} hits over >= {rule.min_matched_s:g} s. "
        f"CPU: {cpu_features()}; one thread.",
        "",
        "| synthetic items | keyed | index rows | file MB | build s | all items: ms per call (median / 90th) "
        "| rows read | values skipped | caught | most hits of a false item | borrower only: ms | caught |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sweep: list[str] = []
    for size in sizes:
        for keyed in (False, True) if size <= 10_000 else (False,):
            path = workdir / f"scale-{size}-{int(keyed)}.sqlite"
            path.unlink(missing_ok=True)
            index = FingerprintIndex(path, key=b"benchmark-key-0123456789abcdef" if keyed else None)
            t0 = time.perf_counter()
            index.add_many((it.name, fp, it.kind, it.speaker) for it, fp in zip(items, index_fps, strict=True))  # type: ignore[misc]
            hash_key = index_fps[0].hash_key
            for b0 in range(0, size, batch):
                index.add_many(
                    (f"synthetic/{i}", _synthetic(pool, n_rows, item_s, hash_key, rng), "call", f"b{i}")
                    for i in range(b0, min(size, b0 + batch))
                )
            build = time.perf_counter() - t0
            t_all, t_own, rows, skipped, caught_all, caught_own, false_hits = [], [], [], [], 0, 0, []
            for item, filler, _, q in queries:
                t = time.perf_counter()
                check = index.query(q, exclude=[filler], rule=rule)
                t_all.append(time.perf_counter() - t)
                t = time.perf_counter()
                own = index.query(q, exclude=[filler], rule=rule, owner=item.speaker)
                t_own.append(time.perf_counter() - t)
                rows.append(check.rows)
                skipped.append(check.skipped_values / max(1, len(np.unique(q.hashes))))
                caught_all += any(m.item == item.name for m in check.matches)
                caught_own += any(m.item == item.name for m in own.matches)
                wide = index.query(q, exclude=[filler, item.name], rule=EXPLORE)
                false_hits.append(wide.best.hits if wide.best else 0)
            mb = path.stat().st_size / 1e6
            out.append(
                f"| {size:,} | {'yes' if keyed else 'no'} | {size * n_rows + sum(map(len, index_fps)):,} | {mb:,.0f} | "
                f"{build:.0f} | {1000 * np.median(t_all):.0f} / {1000 * np.percentile(t_all, 90):.0f} | "
                f"{np.median(rows):,.0f} | {100 * np.median(skipped):.0f}% | {_pct(caught_all, len(queries))} | "
                f"{max(false_hits)} | {1000 * np.median(t_own):.0f} | {_pct(caught_own, len(queries))} |"
            )
            log.info(out[-1])
            if not keyed:
                sweep += _budget_rows(index, queries, size)
            index.close()
            path.unlink()
    head = [
        "",
        "Lookups over all items at other row budgets (same indexes, unkeyed): the work and the replays caught.",
        "",
        "| synthetic items | row budget | ms per call (median / 90th) | rows read | caught |",
        "|---|---|---|---|---|",
    ]
    return out + head + sweep + [""]


def _budget_rows(index: FingerprintIndex, queries: list, size: int) -> list[str]:
    rows_out = []
    for budget in BUDGETS:
        times, rows, caught = [], [], 0
        for item, filler, _, q in queries:
            t = time.perf_counter()
            check = index.query(q, exclude=[filler], max_rows=budget)
            times.append(time.perf_counter() - t)
            rows.append(check.rows)
            caught += any(m.item == item.name for m in check.matches)
        label = "none" if budget >= 10**9 else f"{budget:,}"
        rows_out.append(
            f"| {size:,} | {label} | {1000 * np.median(times):.0f} / {1000 * np.percentile(times, 90):.0f} | "
            f"{np.median(rows):,.0f} | {_pct(caught, len(queries))} |"
        )
        log.info(rows_out[-1])
    return rows_out


def identical_table(items: list[Item], replays: list[Outcome], honest: list[Outcome], eval_keys: set[str]) -> list[str]:
    """Item 2: cosine of a call to its closest single enrollment recording (GE2E, the product's Engine)."""
    from recipes.corpus import ROOT
    from recipes.embed_cache import Embeddings
    from voicecheck.errors import InsufficientSpeechError
    from voicecheck.types import Audio

    engine = Embeddings(ROOT / "benchmarks" / ".cache" / "replay").engine

    def embed(x: np.ndarray, rate: int, narrow: bool) -> np.ndarray | None:
        audio = Audio(samples=x, sample_rate=rate, subtype="PCM_16" if rate > 8000 else "ULAW")
        try:
            emb = engine.embed_audio(audio)
        except InsufficientSpeechError:
            return None
        return emb.narrow_vector if narrow else emb.vector

    enrolled = {
        it.name: embed(it.audio, it.rate, narrow=True) for it in items if it.kind == "enrollment" and it.rate > 8000
    }
    by_speaker: dict[str, list[str]] = {}
    for name, vec in enrolled.items():
        if vec is not None:
            by_speaker.setdefault(name.rsplit("/", 1)[0], []).append(name)
    rows: dict[str, list[tuple[bool, float]]] = {"genuine": [], "direct": [], "replay": [], "partial replay": []}
    for o in honest:
        names = by_speaker.get(o.speaker, [])
        if not names or o.audio is None:
            continue
        vec = embed(o.audio, 8000, narrow=False)
        if vec is None:
            continue
        for name in names:  # the same recording down a line is a "direct" replay; the others are genuine
            rows["direct" if name == o.item else "genuine"].append(
                (o.speaker in eval_keys, float(vec @ enrolled[name]))
            )
    for o in replays:
        if o.item not in enrolled or enrolled[o.item] is None or o.audio is None:
            continue
        vec = embed(o.audio, 8000, narrow=False)
        if vec is not None:
            kind = "partial replay" if o.partial else "replay"
            rows[kind].append((o.speaker in eval_keys, float(vec @ enrolled[o.item])))
    tune_genuine = [c for is_eval, c in rows["genuine"] if not is_eval]
    threshold = round(max(tune_genuine) + 0.01, 2) if tune_genuine else float("nan")
    out = [
        f"GE2E (`{engine.model}`), call vs each single enrollment recording embedded through the call's channel "
        f"(the pipeline's narrow_vector). Threshold = the highest genuine cosine of the non-EVAL speakers + 0.01 "
        f"= **{threshold:.2f}**, judged on the EVAL speakers.",
        "",
        "| pairs | speakers | n | median | 99th pct | max | at or above threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, values in rows.items():
        for label, want in (("non-EVAL", False), ("EVAL", True)):
            v = np.array([c for is_eval, c in values if is_eval == want])
            if v.size:
                out.append(
                    f"| {kind} | {label} | {v.size} | {np.median(v):.3f} | {np.percentile(v, 99):.3f} "
                    f"| {v.max():.3f} | "
                    f"{_pct(int(np.sum(v >= threshold)), v.size)} |"
                )
    return out + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", default=str(DEFAULT_SPEECH))
    parser.add_argument("--scale", default="1000,10000,100000", help="index sizes for the lookup-time table ('' skips)")
    parser.add_argument("--margin", type=float, default=1.5, help="min_hits = margin x the most hits of a false item")
    parser.add_argument("--workdir", default=None, help="folder for the index files (default: a temporary one)")
    parser.add_argument("--no-embed", action="store_true", help="skip the GE2E too-identical figures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    speakers = read_corpus(args.speech)
    split = split_speakers(speakers)
    eval_keys = {s.key for s in split["eval"]}
    items = build_items(speakers)
    log.info("%d speakers, %d items (%d EVAL speakers)", len(speakers), len(items), len(eval_keys))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "replay-index.sqlite"
        path.unlink(missing_ok=True)
        index = FingerprintIndex(path)
        t0 = time.perf_counter()
        index_fps, kept, skipped = [], [], []
        for it in items:
            try:
                index_fps.append(fingerprint(it.audio, it.rate))
                kept.append(it)
            except FingerprintError as exc:  # e.g. the Asterisk "silence" prompts: nothing to store
                skipped.append(f"`{it.name}` ({exc})")
        items = kept
        index.add_many((it.name, fp, it.kind, it.speaker) for it, fp in zip(items, index_fps, strict=True))  # type: ignore[misc]
        log.info("indexed in %.1f s", time.perf_counter() - t0)
        replays, honest, fp_s, lookup_s = run_lookups(items, index)
        index.close()
        choose = [o for o in replays if o.speaker not in eval_keys], [o for o in honest if o.speaker not in eval_keys]
        rule, grid = choose_rule(*choose, margin=args.margin)
        held = [o for o in replays if o.speaker in eval_keys], [o for o in honest if o.speaker in eval_keys]
        audio_s = float(np.mean([o.replayed_s for o in replays]))
        lines = [
            f"{len(items)} items stored; not fingerprinted (so neither stored nor replayed): "
            f"{', '.join(skipped) or 'none'}.",
            "",
            f"Rule chosen on the non-EVAL speakers ({len(choose[0])} replays, {len(choose[1])} honest calls): "
            f"**min_hits {rule.min_hits}, min_matched_s {rule.min_matched_s:g}** (margin {args.margin}).",
            "",
            f"Grid (min_matched_s: least min_hits above {args.margin} x the most hits of a false item): "
            + "; ".join(grid)
            + ".",
            "",
            *grid_table(held[0], rule_grid(*choose, margin=args.margin)),
            *tables(*held, len(items), rule, "EVAL speakers (held apart from the choice)"),
            *tables(*choose, len(items), rule, "non-EVAL speakers (the rule was chosen here)"),
        ]
        for source in sorted({o.source for o in replays}):
            sub = [o for o in replays if o.source == source], [o for o in honest if o.source == source]
            lines += tables(*sub, len(items), rule, f"source {source} (all its speakers)")
        lines.append(
            f"Per call ({len(replays)} replay calls, mean {audio_s:.1f} s replayed + live filler): fingerprinting "
            f"(query + index fingerprints) {1000 * fp_s:.1f} ms, lookup in the {len(items)}-item index "
            f"{1000 * lookup_s:.1f} ms."
        )
        lines.append("")
        lines += [
            "## The product's path (shipped settings, borrower-scoped)",
            "",
            *product_table(items, replays, honest, eval_keys),
        ]
        if not args.no_embed:
            lines += ["## A voice too identical to be live", "", *identical_table(items, replays, honest, eval_keys)]
        sizes = [int(s) for s in args.scale.split(",") if s.strip()]
        if sizes:
            lines += scale_table(items, index_fps, sizes, workdir, rule)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
