"""Fingerprint settings tried against the weak codec (GSM 6.10), on the non-EVAL speakers only.

The replays and honest calls of ``benchmarks/replay.py`` (same simulation, same seeds) are looked up
with each variant of the fingerprint parameters; for each, the match rule is chosen as replay.py
chooses it (1.5 x the most hits of a wrong item, over all items) and the replays of >= 5 s caught
are counted, per codec. Variants change the current defaults (``voicecheck.fingerprint``'s
INDEX_PARAMS and QUERY_PARAMS) in what their names say. Only the non-EVAL speakers are looked at:
the variant kept is then judged on the EVAL speakers by replay.py itself
(``benchmarks/results/replay.md``).

    .venv/bin/python benchmarks/replay_params.py > benchmarks/results/replay_params.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.replay import (  # noqa: E402
    CODECS,
    EXPLORE,
    REPLAYS_PER_ITEM,
    SAMPLE_RATE,
    Item,
    _at,
    build_items,
    caught,
    choose_rule,
    replay_call,
    telephone_call,
)
from recipes.corpus import DEFAULT_SPEECH, read_corpus, split_speakers  # noqa: E402
from recipes.machine import cpu_features  # noqa: E402
from recipes.material import rng_for  # noqa: E402
from voicecheck.fingerprint import (  # noqa: E402
    INDEX_PARAMS,
    QUERY_PARAMS,
    FingerprintError,
    FingerprintParams,
    fingerprint,
    fingerprints,
)
from voicecheck.replay import FingerprintIndex  # noqa: E402

log = logging.getLogger("benchmarks.replay_params")


@dataclass(frozen=True)
class Variant:
    name: str
    query: FingerprintParams
    index: FingerprintParams
    tolerance_frames: int = 2


VARIANTS = (
    Variant("shipped (query prominence 6 dB, fan-out 8; stored fan-out 3)", QUERY_PARAMS, INDEX_PARAMS),
    Variant("query prominence 4 dB", replace(QUERY_PARAMS, min_prominence_db=4.0), INDEX_PARAMS),
    Variant("query fan-out 12", replace(QUERY_PARAMS, fan_out=12), INDEX_PARAMS),
    Variant(
        "query prominence 4 dB, 6 dB above floor, fan-out 12",
        replace(QUERY_PARAMS, min_prominence_db=4.0, min_above_floor_db=6.0, fan_out=12),
        INDEX_PARAMS,
    ),
    Variant("stored fan-out 2 (shipped until 2026-12-01)", QUERY_PARAMS, replace(INDEX_PARAMS, fan_out=2)),
    Variant("stored prominence 7 dB", QUERY_PARAMS, replace(INDEX_PARAMS, min_prominence_db=7.0)),
    Variant(
        "time steps of 3 frames (both)",
        replace(QUERY_PARAMS, dt_step_frames=3),
        replace(INDEX_PARAMS, dt_step_frames=3),
    ),
    Variant("match tolerance +-3 frames", QUERY_PARAMS, INDEX_PARAMS, tolerance_frames=3),
    Variant(
        "triplets (31-bit hashes; stored fan-out 3)",
        replace(QUERY_PARAMS, targets_per_hash=2),
        replace(INDEX_PARAMS, targets_per_hash=2, fan_out=3),
    ),
    Variant(
        "triplets, query prominence 4 dB, fan-out 10",
        replace(QUERY_PARAMS, targets_per_hash=2, min_prominence_db=4.0, fan_out=10),
        replace(INDEX_PARAMS, targets_per_hash=2, fan_out=3),
    ),
    Variant(
        "query peaks in +-5 frames x +-2 bins",
        replace(QUERY_PARAMS, peak_time_frames=5, peak_freq_bins=2),
        INDEX_PARAMS,
    ),
    Variant(
        "stored fan-out 3, query peaks in +-5 frames x +-2 bins",
        replace(QUERY_PARAMS, peak_time_frames=5, peak_freq_bins=2),
        replace(INDEX_PARAMS, fan_out=3),
    ),
    Variant("stored fan-out 4", QUERY_PARAMS, replace(INDEX_PARAMS, fan_out=4)),
    Variant("stored fan-out 3, prominence 7 dB", QUERY_PARAMS, replace(INDEX_PARAMS, fan_out=3, min_prominence_db=7.0)),
)


TEN_MS_INDEX = FingerprintParams(
    peak_time_frames=8,
    peak_freq_bins=3,
    min_prominence_db=9.0,
    min_above_floor_db=10.0,
    context_frames=15,
    context_bins=6,
    fan_out=3,
    min_speech_s=1.0,
    max_dt_frames=50,
    max_df_bins=30,
    min_df_bins=2,
    dt_step_frames=2,
    targets_per_hash=1,
    hop=80,
)
"""The stored fingerprint on the 10 ms grid (INDEX_PARAMS until 2026-12-01), every field spelled out."""
TEN_MS_QUERY = replace(TEN_MS_INDEX, min_prominence_db=6.0, fan_out=8)
"""The query fingerprint on the 10 ms grid (QUERY_PARAMS until 2026-12-01)."""


def coarser(params: FingerprintParams, hop: int, refined: bool = False) -> FingerprintParams:
    """``params`` on a grid of ``hop`` samples (8 kHz), every neighbourhood and the target zone kept in
    seconds: frame counts scaled by 80 / hop and rounded (peaks +-80 ms, prominence +-150 ms,
    targets within 500 ms, time differences hashed in steps of 20 ms). ``refined``: landmark times
    refined to the 10 ms grid (``time_step`` 80), so the target zone, the hashed time steps and the
    match stay in 10 ms units as shipped; only the peak and prominence neighbourhoods are rescaled."""
    if params.hop != 80:
        raise ValueError(f"coarser() rescales a 10 ms grid (hop 80), got hop {params.hop}")
    scale = 80 / hop

    def frames(n: int) -> int:
        return max(1, int(np.floor(n * scale + 0.5)))

    if refined:
        return replace(
            params,
            hop=hop,
            time_step=80,
            peak_time_frames=frames(params.peak_time_frames),
            context_frames=frames(params.context_frames),
        )
    return replace(
        params,
        hop=hop,
        peak_time_frames=frames(params.peak_time_frames),
        context_frames=frames(params.context_frames),
        max_dt_frames=frames(params.max_dt_frames),
        dt_step_frames=frames(params.dt_step_frames),
    )


VARIANTS += (
    Variant("hop 20 ms (time grid 2x coarser, same seconds)", coarser(QUERY_PARAMS, 160), coarser(INDEX_PARAMS, 160)),
    Variant("hop 16 ms (time grid 1.6x coarser, same seconds)", coarser(QUERY_PARAMS, 128), coarser(INDEX_PARAMS, 128)),
    Variant(
        "hop 20 ms, landmark times refined to 10 ms",
        coarser(QUERY_PARAMS, 160, refined=True),
        coarser(INDEX_PARAMS, 160, refined=True),
    ),
    Variant(
        "hop 30 ms, landmark times refined to 10 ms",
        coarser(QUERY_PARAMS, 240, refined=True),
        coarser(INDEX_PARAMS, 240, refined=True),
    ),
)


@dataclass
class Call:
    speaker: str
    truth: str  # replayed item, "" for an honest call
    codec: str
    replayed_s: float
    partial: bool
    audio: np.ndarray
    exclude: str  # the filler's item (replays) or the call's own item (honest calls)


def simulate(items: list[Item]) -> list[Call]:
    """replay.py's replays and honest calls (same seeds), as audio."""
    by_speaker: dict[str, list[Item]] = {}
    for it in items:
        by_speaker.setdefault(it.speaker, []).append(it)
    others = sorted(by_speaker)
    calls = []
    for n, item in enumerate(items):
        for k in range(REPLAYS_PER_ITEM):
            m = n + k * len(items)
            filler_spk = others[(others.index(item.speaker) + 1 + m) % len(others)]
            if filler_spk == item.speaker:
                filler_spk = others[(others.index(item.speaker) + 1) % len(others)]
            filler = by_speaker[filler_spk][m % len(by_speaker[filler_spk])]
            audio, codec, length, partial, _ = replay_call(item, filler, m)
            calls.append(Call(item.speaker, item.name, codec, length, partial, audio, filler.name))
        codec = CODECS[(n + 1) % len(CODECS)]
        honest = telephone_call(_at(item.audio, item.rate, SAMPLE_RATE), SAMPLE_RATE, codec, rng_for("h", n))
        calls.append(Call(item.speaker, "", codec, 0.0, False, honest, item.name))
    return calls


@dataclass
class Found:
    """replay.py's Outcome, as its rule-choosing functions read it."""

    truth: str
    codec: str
    replayed_s: float
    partial: bool
    found: dict


def evaluate(v: Variant, items: list[Item], calls: list[Call], workdir: Path) -> list[str]:
    path = workdir / "variant.sqlite"
    path.unlink(missing_ok=True)
    index = FingerprintIndex(path, params=v.index)
    stored = []
    for it in items:
        try:
            stored.append((it.name, fingerprint(it.audio, it.rate, params=v.index), it.kind, it.speaker))
        except FingerprintError:
            continue
    index.add_many(stored)  # type: ignore[arg-type]
    per_s = sum(len(s[1]) for s in stored) / sum(s[1].analysed_s for s in stored)
    explore = replace(EXPLORE, tolerance_frames=v.tolerance_frames)
    outcomes, q_hashes, q_seconds, fp_cpu = [], 0, 0.0, 0.0
    for c in calls:
        t = time.process_time()
        try:
            q, _ = fingerprints(c.audio, 8000, query_params=v.query, index_params=v.index)
        except FingerprintError:
            continue
        fp_cpu += time.process_time() - t
        q_hashes, q_seconds = q_hashes + len(q), q_seconds + q.analysed_s
        check = index.query(q, exclude=[c.exclude], rule=explore)
        found = {m.item: (m.hits, m.matched_s, ()) for m in check.matches}
        outcomes.append(Found(c.truth, c.codec, c.replayed_s, c.partial, found))
    index.close()
    replays = [o for o in outcomes if o.truth]
    honest = [o for o in outcomes if not o.truth]
    rule, _ = choose_rule(replays, honest, margin=1.5)  # type: ignore[arg-type]
    rule = replace(rule, tolerance_frames=v.tolerance_frames)
    ge5 = [o for o in replays if o.replayed_s >= 5.0]
    cells = []
    for codec in CODECS:
        sub = [o for o in ge5 if o.codec == codec]
        cells.append(f"{sum(caught(o, rule) for o in sub)}/{len(sub)}")  # type: ignore[arg-type]
    part = [o for o in replays if o.partial]
    false = sum(1 for o in honest if any(k != o.truth and e[0] >= rule.min_hits for k, e in o.found.items()))
    return [
        f"| {v.name} | {per_s:.0f} | {q_hashes / max(q_seconds, 1e-9):.0f} | {1000 * fp_cpu / len(calls):.1f} "
        f"| {rule.min_hits} | {_pct(sum(caught(o, rule) for o in ge5), len(ge5))} | "  # type: ignore[arg-type]
        + " | ".join(cells)
        + f" | {_pct(sum(caught(o, rule) for o in part), len(part))} | {false}/{len(honest)} |"  # type: ignore[arg-type]
    ]


@dataclass(frozen=True)
class Path_:
    """A product-path variant: the region pad (s; None: whole recordings) and the fingerprint parameters."""

    name: str
    pad_s: float | None
    bridge_s: float = 0.0
    query: FingerprintParams = QUERY_PARAMS
    index: FingerprintParams = INDEX_PARAMS
    min_hits: tuple[int, ...] = ()  # one row per rule; () the shipped replay_min_hits
    query_only: bool = False  # the pad and bridge widen the calls looked up only; stored items keep the regions


def speech_regions(items: list[Item], calls: list[Call]) -> tuple[list, list]:
    """Silero's regions of every item and call, as the product finds them (the shipped VAD settings)."""
    from voicecheck.config import Settings
    from voicecheck.vad import SileroVad

    st = Settings()
    vad = SileroVad(threshold=st.vad_threshold, min_silence_s=st.vad_min_silence_s, pad_s=st.vad_pad_s)
    item_regions = [vad.regions(it.audio, it.rate) for it in items]
    log.info("VAD: %d items", len(items))
    return item_regions, [vad.regions(c.audio, 8000) for c in calls]


def _prints(audio: np.ndarray, rate: int, regions: list, v: Path_) -> Any:
    """A call's or item's fingerprints as ``fingerprint_call`` makes them, with ``v``'s pad and parameters."""
    from voicecheck.fingerprint import padded_regions
    from voicecheck.replaycheck import Prints
    from voicecheck.types import SpeechRegion

    spans = (
        [SpeechRegion(0.0, audio.size / rate)]
        if v.pad_s is None
        else padded_regions(regions, v.pad_s, audio.size / rate, v.bridge_s)
    )
    try:
        return Prints(*fingerprints(audio, rate, spans, query_params=v.query, index_params=v.index))
    except FingerprintError as e:
        return Prints(None, None, str(e))


def product_row(v: Path_, items: list[Item], calls: list[Call], regions: tuple[list, list]) -> list[str]:
    """``v`` on the product's path: keyed and sealed indexes, each call looked up among its speaker's
    items (:func:`voicecheck.replaycheck.look_up`), the shipped rule (or each of ``v.min_hits``: one row each)."""
    from voicecheck.config import Settings
    from voicecheck.crypto import Cipher, Keyring, new_key
    from voicecheck.replaycheck import Indexes, look_up, rule_of
    from voicecheck.replaycheck import replays as passing

    shipped = rule_of(Settings())
    cipher = Cipher(Keyring.of([new_key()], "benchmark key"))
    fp_cpu, stored_hashes, stored_s, unstored, look_cpu, q_hashes = 0.0, 0, 0.0, 0, 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        indexes = Indexes(
            FingerprintIndex(Path(tmp) / "e.sqlite", cipher=cipher, all_items=False, params=v.index),
            FingerprintIndex(Path(tmp) / "c.sqlite", cipher=cipher, all_items=False, params=v.index),
        )
        stored = replace(v, pad_s=0.0, bridge_s=0.0) if v.query_only else v
        for it, reg in zip(items, regions[0], strict=True):
            prints = _prints(it.audio, it.rate, reg, stored)
            if prints.index is None:
                unstored += 1
            elif it.kind == "enrollment":
                indexes.enrollments.add(f"enrollment:{it.speaker}:{it.name}", prints.index, "enrollment", it.speaker)
            else:
                indexes.calls.add(f"call:{it.name}", prints.index, "call", it.speaker)
            if prints.index is not None:
                stored_hashes, stored_s = stored_hashes + len(prints.index), stored_s + it.audio.size / it.rate
        looked, worst = [], 0
        for n, (c, reg) in enumerate(zip(calls, regions[1], strict=True)):
            t = time.process_time()
            prints = _prints(c.audio, 8000, reg, v)
            fp_cpu += time.process_time() - t
            own = c.exclude if not c.truth else f"replay-{n}"  # an honest call is its own recording
            t = time.process_time()
            outcome = look_up(indexes, prints, c.speaker, own)
            look_cpu += time.process_time() - t
            q_hashes += len(prints.query) if prints.query is not None else 0
            wrong = [m for m in outcome.candidates if not (c.truth and m.item.endswith(f":{c.truth}"))]
            worst = max([worst, *(m.hits for m in wrong)])
            looked.append((c, outcome, wrong))
        indexes.close()
    lines = []
    for min_hits in v.min_hits or (shipped.min_hits,):
        rule = replace(shipped, min_hits=min_hits)
        rows = []
        for c, outcome, wrong in looked:
            found = passing(outcome, rule)
            true = bool(c.truth) and any(m.item.endswith(f":{c.truth}") for m in found)
            rows.append((c, outcome.checked, true, any(m in found for m in wrong)))
        name = v.name if not v.min_hits else f"{v.name}, {min_hits} hits"
        lines.append(_row(name, rows, stored_hashes / max(stored_s, 1e-9), q_hashes, fp_cpu, look_cpu, worst, unstored))
    return lines


def _row(
    name: str, rows: list, stored_per_s: float, q_hashes: int, fp_cpu: float, look_cpu: float, worst: int, unstored: int
) -> str:
    """One table row: rows are (call, checked, truly caught, a wrong item passed), one per call."""
    n = len(rows)
    rep = [r for r in rows if r[0].truth]
    ge5 = [r for r in rep if r[0].replayed_s >= 5.0]
    cells = [f"{sum(r[2] for r in ge5 if r[0].codec == k)}/{sum(r[0].codec == k for r in ge5)}" for k in CODECS]
    part = [r for r in rep if r[0].partial]
    hon = [r for r in rows if not r[0].truth]
    return (
        f"| {name} | {stored_per_s:.0f} | {q_hashes / n:.0f} "
        f"| {1000 * fp_cpu / n:.1f} | {1000 * look_cpu / n:.2f} | "
        f"{_pct(sum(r[2] for r in ge5), len(ge5))} | "
        + " | ".join(cells)
        + f" | {_pct(sum(r[2] for r in part), len(part))} "
        f"| {sum(r[3] for r in hon)}/{len(hon)} | {worst} | {sum(not r[1] for r in rows)} | {unstored} |"
    )


PRODUCT_HEAD = [
    "| variant | stored hashes per s of recording | query hashes per call | query+stored fingerprint CPU ms per call "
    "| look-up CPU ms per call | replays >= 5 s caught | "
    + " | ".join(f"{c} >= 5 s" for c in CODECS)
    + " | partial 3-6 s | honest calls marked | most hits of a wrong item | calls not checked | items not stored |",
    "|---" * (11 + len(CODECS)) + "|",
]


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.1f}%)" if n else "-"


PATH_VARIANTS: tuple[tuple[str, FingerprintParams, FingerprintParams], ...] = (
    ("shipped fingerprint", QUERY_PARAMS, INDEX_PARAMS),
    ("query fan-out 6", replace(QUERY_PARAMS, fan_out=6), INDEX_PARAMS),
    ("query fan-out 5", replace(QUERY_PARAMS, fan_out=5), INDEX_PARAMS),
    ("query fan-out 4", replace(QUERY_PARAMS, fan_out=4), INDEX_PARAMS),
    ("hop 20 ms", coarser(QUERY_PARAMS, 160), coarser(INDEX_PARAMS, 160)),
    ("hop 16 ms", coarser(QUERY_PARAMS, 128), coarser(INDEX_PARAMS, 128)),
    ("hop 20 ms, times refined to 10 ms", coarser(QUERY_PARAMS, 160, True), coarser(INDEX_PARAMS, 160, True)),
    ("hop 30 ms, times refined to 10 ms", coarser(QUERY_PARAMS, 240, True), coarser(INDEX_PARAMS, 240, True)),
)
"""Fingerprint variants run on the product's path at a pad (``--path-variants``): (name, query, index)."""


def product_sweep(args: argparse.Namespace, items: list[Item], calls: list[Call]) -> list[str]:
    """The product's path at each region pad (and whole recordings), then any ``--path-variants``."""
    t = time.perf_counter()
    regions = speech_regions(items, calls)
    log.info("regions in %.0f s", time.perf_counter() - t)
    pads = [float(x) for x in args.pads.split(",") if x.strip()]
    variants = [Path_("whole recordings (no regions)", None)]
    variants += [Path_(f"pad {p:g} s", p) for p in pads]
    min_hits = tuple(int(x) for x in args.path_min_hits.split(",") if x.strip())
    for k in (int(x) for x in args.path_variants.split(",") if x.strip()):
        name, q, i = PATH_VARIANTS[k]
        where = f"pad {pads[-1]:g} s" + (f" + gaps <= {args.path_bridge:g} s" if args.path_bridge else "")
        variants.append(Path_(f"{where}, {name}", pads[-1], args.path_bridge, q, i, min_hits if k else ()))
    for text in (x for x in args.bridges.split(",") if x.strip()):
        pad, bridge = (float(y) for y in text.split("+"))
        variants.append(Path_(f"pad {pad:g} s, gaps <= {bridge:g} s between them closed", pad, bridge))
    lines = [
        f"Non-EVAL speakers only ({len(items)} items, {sum(bool(c.truth) for c in calls)} replays, "
        f"{sum(not c.truth for c in calls)} honest calls; fold 0 of benchmarks/common.py), the product's path: "
        "silero's regions padded either side, keyed and sealed indexes, each call looked up among its own "
        f"speaker's items, the shipped rule (15 hits over >= 1 s). CPU: {cpu_features()}; one thread.",
        "",
        *PRODUCT_HEAD,
    ]
    for v in variants:
        lines += product_row(v, items, calls, regions)
        log.info("\n".join(lines[-max(1, len(v.min_hits)) :]))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", default=str(DEFAULT_SPEECH))
    parser.add_argument("--only", default="", help="comma-separated variant numbers (default all)")
    parser.add_argument(
        "--bridges", default="", help="with --pads: also PAD+BRIDGE pairs (s), e.g. 0.25+1.5 (gaps closed)"
    )
    parser.add_argument(
        "--pads", default="", help="the product's path instead, at these region pads (s), e.g. 0,0.25,0.5,1.0"
    )
    parser.add_argument(
        "--path-variants", default="", help="with --pads: also these PATH_VARIANTS (numbers) at the last pad"
    )
    parser.add_argument("--path-bridge", type=float, default=0.0, help="the --path-variants' bridge (s) (default 0)")
    parser.add_argument(
        "--path-min-hits", default="", help="the --path-variants but 0: one row per min_hits (default the shipped)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    speakers = read_corpus(args.speech)
    split = split_speakers(speakers)
    eval_keys = {s.key for s in split["eval"]}
    tune = [s for s in speakers if s.key not in eval_keys]  # EVAL speakers are never looked at here
    items = build_items(tune)
    calls = simulate(items)
    log.info("%d non-EVAL items, %d calls simulated", len(items), len(calls))
    if args.pads:
        print("\n".join(product_sweep(args, items, calls)))
        return
    picked = [int(x) for x in args.only.split(",") if x.strip()] or list(range(len(VARIANTS)))
    lines = [
        f"Non-EVAL speakers only ({len(items)} items, {sum(bool(c.truth) for c in calls)} replays, "
        f"{sum(not c.truth for c in calls)} honest calls; fold 0 of benchmarks/common.py). Rule per variant: "
        "least min_hits above 1.5 x the most hits of a wrong item, over >= 1 s (as replay.py). CPU: "
        f"{cpu_features()}; one thread.",
        "",
        "| variant | stored hashes / s | query hashes / s | query+stored fingerprint CPU ms per call "
        "| min_hits | replays >= 5 s caught | " + " | ".join(f"{c} >= 5 s" for c in CODECS) + " | partial 3-6 s "
        "| honest calls marked |",
        "|---" * (9 + len(CODECS)) + "|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for k in picked:
            lines += evaluate(VARIANTS[k], items, calls, Path(tmp))
            log.info(lines[-1])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
