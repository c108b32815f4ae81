"""Honest calls that share a recurring non-speech sound: false replays on the product's path.

The replay check fingerprints a call's speech regions. Widened and joined across short pauses
(``voicecheck.fingerprint.REGION_PAD_S``, ``REGION_BRIDGE_S``), they take in a sound that recurs from
call to call -- a ringback tone, a hold jingle, a phone's notification sound -- between two stretches of
a customer's speech. Two honest calls of one borrower that both hold the same sound would then share
audio the check can find, although no one replayed anything.

For every speaker of the corpus with two recordings, two honest calls are made: the first and second
halves of one recording with a sound between them (0.3 s of silence either side), and the same of the
other recording with the *same* sound, each through its own simulated telephone line (300-3400 Hz,
pink noise at 10-30 dB SNR, a real codec; ``benchmarks.replay.telephone_call``). The first call is
stored as the borrower's earlier call, the second is looked up among the borrower's items
(``voicecheck.replaycheck.look_up``, the shipped rule): a call marked ``replay`` is a false replay.
Paths: silero's speech regions alone, widenings of both fingerprints, whole recordings (what
fingerprinting everything would do), and widenings of the query only (the stored first call keeps
the regions as they are: what ships). A column without a sound is the control.

    .venv/bin/python benchmarks/replay_recurring.py > benchmarks/results/replay_recurring.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.replay import CODECS, telephone_call  # noqa: E402
from recipes.corpus import DEFAULT_SPEECH, SAMPLE_RATE, load_utterances, read_corpus  # noqa: E402
from recipes.machine import cpu_features  # noqa: E402
from recipes.material import rng_for  # noqa: E402

log = logging.getLogger("benchmarks.replay_recurring")

GAP_S = 0.3
"""Silence either side of the sound (s)."""

MIN_HALF_S = 1.5
"""Least speech in each half of a recording (s); shorter recordings are skipped."""


def _tone(freqs_hz: list[float], seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs_hz) / len(freqs_hz)
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms on and off ramps
    return np.asarray(level * x * ramp, np.float32)


def ringback() -> np.ndarray:
    """China's ringback: 450 Hz, 1 s on, then 1.8 s of the 4 s off."""
    return np.concatenate([_tone([450.0], 1.0), np.zeros(int(1.8 * SAMPLE_RATE), np.float32)])


def melody() -> np.ndarray:
    """A hold jingle: eight notes of 0.35 s, each with four decaying harmonics."""
    notes = [523.3, 659.3, 784.0, 659.3, 698.5, 880.0, 784.0, 523.3]
    t = np.arange(int(0.35 * SAMPLE_RATE)) / SAMPLE_RATE
    out = []
    for f in notes:
        x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 5) if k * f < 3800)
        out.append(0.3 * x * np.exp(-4.0 * t) * np.minimum(1.0, t / 0.01))
    return np.concatenate(out).astype(np.float32)


def notification() -> np.ndarray:
    """A phone's notification sound: a rising sweep and two short dual-tone beeps."""
    t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    sweep = 0.3 * np.sin(2 * np.pi * (600 * t + 1500 * t**2))
    beep = _tone([1209.0, 697.0], 0.15)
    pause = np.zeros(int(0.1 * SAMPLE_RATE), np.float32)
    return np.concatenate([sweep.astype(np.float32), pause, beep, pause, beep])


def sound_effect() -> np.ndarray:
    """A recorded sound effect: the same 2.5 s of shaped noise (fixed seed) in every call."""
    rng = rng_for("recurring", "effect")
    x = rng.standard_normal(int(2.5 * SAMPLE_RATE))
    envelope = np.repeat(rng.uniform(0.05, 0.4, 25), x.size // 25 + 1)[: x.size]
    return np.asarray(0.5 * x * envelope / 3.0, np.float32)


SOUNDS: dict[str, Callable[[], np.ndarray] | None] = {
    "none (control)": None,
    "ringback 450 Hz": ringback,
    "hold jingle": melody,
    "notification": notification,
    "sound effect": sound_effect,
    "sound effect, first 1.2 s": lambda: sound_effect()[: int(1.2 * SAMPLE_RATE)],
}


@dataclass
class Pair:
    speaker: str
    first: np.ndarray  # 8 kHz, stored as the earlier call
    second: np.ndarray  # 8 kHz, looked up


def honest_call(x: np.ndarray, sound: np.ndarray | None, rng: np.random.Generator, codec: str) -> np.ndarray:
    """The recording's halves with ``sound`` between them (or a pause), through a telephone line."""
    half = x.size // 2
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    middle = [gap, gap] if sound is None else [gap, sound, gap]
    call = np.concatenate([x[:half], *middle, x[half:]]).astype(np.float32)
    return telephone_call(call, SAMPLE_RATE, codec, rng)


def recordings(speech: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(speaker, speech of the first call, speech of the second call) for every speaker with enough:
    two recordings of >= 2 x :data:`MIN_HALF_S`, or else one of >= 4 x it cut in two."""
    out = []
    for spk in read_corpus(speech):
        x = load_utterances(spk)
        if len(x) >= 2 and min(x[0].size, x[1].size) >= 2 * MIN_HALF_S * SAMPLE_RATE:
            out.append((spk.key, x[0], x[1]))
        elif x and x[0].size >= 4 * MIN_HALF_S * SAMPLE_RATE:
            half = x[0].size // 2
            out.append((spk.key, x[0][:half], x[0][half:]))
    return out


def make_pairs(material: list[tuple[str, np.ndarray, np.ndarray]], sound: np.ndarray | None, label: str) -> list[Pair]:
    pairs = []
    for n, (key, a, b) in enumerate(material):
        calls = [
            honest_call(x, sound, rng_for("recurring", label, key, k), CODECS[(n + k) % len(CODECS)])
            for k, x in enumerate((a, b))
        ]
        pairs.append(Pair(key, *calls))
    return pairs


PATHS: dict[str, tuple[float, float] | None] = {
    "speech regions alone": (0.0, 0.0),
    "pad 0.25 s": (0.25, 0.0),
    "pad 0.5 s": (0.5, 0.0),
    "pad 1 s": (1.0, 0.0),
    "pad 0.25 s, gaps <= 1.5 s closed": (0.25, 1.5),
    "pad 0.5 s, gaps <= 1 s closed": (0.5, 1.0),
    "pad 0.25 s, gaps <= 3.5 s closed": (0.25, 3.5),
    "whole recordings": None,
    "query only: pad 0.25 s, gaps <= 3.5 s closed": (0.25, 3.5),
    "query only: pad 1 s": (1.0, 0.0),
}
"""Widenings of the speech regions (pad either side, gaps closed), as ``fingerprint_call`` takes them;
"query only": the stored first call keeps the regions as they are, only the call looked up is widened."""


def prints_of(audio: np.ndarray, regions: list, path: str, stored: bool):  # noqa: ANN201 - replaycheck.Prints
    """A call's fingerprints on ``path``: widened on both sides (both fingerprints over the widened
    regions), or "query only" (``voicecheck.replaycheck.fingerprint_call``: the stored fingerprint over
    the regions as they are, the query widened)."""
    from voicecheck.fingerprint import FingerprintError, fingerprints, padded_regions
    from voicecheck.replaycheck import Prints, fingerprint_call
    from voicecheck.types import SpeechRegion

    widening = PATHS[path]
    if path.startswith("query only") and widening is not None:
        pad, bridge = (0.0, 0.0) if stored else widening
        return fingerprint_call(audio, 8000, regions, pad_s=pad, bridge_s=bridge)
    duration_s = audio.size / 8000
    spans = (
        [SpeechRegion(0.0, duration_s)]
        if widening is None
        else padded_regions(regions, widening[0], duration_s, widening[1])
    )
    try:
        return Prints(*fingerprints(audio, 8000, spans))
    except FingerprintError as e:
        return Prints(None, None, str(e))


def run(pairs: list[Pair], path: str, regions: list[tuple[list, list]]) -> tuple[int, int, int, int]:
    """(second calls marked replay, calls looked up, most hits on the earlier call, calls not checked)."""
    from voicecheck.config import Settings
    from voicecheck.crypto import Cipher, Keyring, new_key
    from voicecheck.replay import FingerprintIndex
    from voicecheck.replaycheck import Indexes, look_up, rule_of
    from voicecheck.replaycheck import replays as passing

    rule = rule_of(Settings())
    cipher = Cipher(Keyring.of([new_key()], "benchmark key"))
    marked, looked, worst, unchecked = 0, 0, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        indexes = Indexes(
            FingerprintIndex(Path(tmp) / "e.sqlite", cipher=cipher, all_items=False),
            FingerprintIndex(Path(tmp) / "c.sqlite", cipher=cipher, all_items=False),
        )
        for n, p in enumerate(pairs):
            first = prints_of(p.first, regions[n][0], path, stored=True)
            if first.index is not None:
                indexes.calls.add(f"call:first-{n}", first.index, "call", p.speaker)
            outcome = look_up(indexes, prints_of(p.second, regions[n][1], path, stored=False), p.speaker, f"second-{n}")
            looked += 1
            unchecked += not outcome.checked
            marked += bool(passing(outcome, rule))
            worst = max([worst, *(m.hits for m in outcome.candidates)])
        indexes.close()
    return marked, looked, worst, unchecked


def _shown(speech: str) -> str:
    """The corpus folder as the results file names it: ``../shared/speech`` for the default, never a
    path of the machine that ran it."""
    return "../shared/speech" if Path(speech).resolve() == DEFAULT_SPEECH.resolve() else Path(speech).name


def detections(speech: str, thresholds: list[float]) -> list[str]:
    """Replays caught on the non-EVAL speakers' product path with silero's regions at each threshold
    (no pad): ``benchmarks/replay_params.py``'s replays, honest calls and table row."""
    from benchmarks import replay_params as rp
    from recipes.corpus import split_speakers
    from voicecheck.config import Settings
    from voicecheck.vad import SileroVad

    st = Settings()
    speakers = read_corpus(speech)
    eval_keys = {s.key for s in split_speakers(speakers)["eval"]}
    items = rp.build_items([s for s in speakers if s.key not in eval_keys])  # EVAL speakers never read
    calls = rp.simulate(items)
    lines = ["Non-EVAL speakers' product path (replay_params.py), silero's regions at each threshold, no pad:", ""]
    lines += rp.PRODUCT_HEAD
    for thr in thresholds:
        vad = SileroVad(threshold=thr, min_silence_s=st.vad_min_silence_s, pad_s=st.vad_pad_s)
        regions = ([vad.regions(it.audio, it.rate) for it in items], [vad.regions(c.audio, 8000) for c in calls])
        lines += rp.product_row(rp.Path_(f"silero threshold {thr:g}, no pad", 0.0, 0.0), items, calls, regions)
        log.info(lines[-1])
        if thr != st.vad_threshold:
            continue
        for name, widening in PATHS.items():
            if name.startswith("query only") and widening is not None:
                v = rp.Path_(name, widening[0], widening[1], query_only=True)
                lines += rp.product_row(v, items, calls, regions)
                log.info(lines[-1])
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", default=str(DEFAULT_SPEECH), help="real-speech corpus folder (MANIFEST.csv)")
    parser.add_argument(
        "--thresholds", default="", help="also silero's regions at these speech thresholds, no pad (e.g. 0.35,0.25)"
    )
    parser.add_argument(
        "--detections",
        action="store_true",
        help="also the replays caught on the non-EVAL speakers (replay_params.py's path): regions as shipped, "
        "the query-only widenings and --thresholds",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    import torch

    from voicecheck.config import Settings
    from voicecheck.fingerprint import REGION_BRIDGE_S, REGION_PAD_S
    from voicecheck.replaycheck import rule_of
    from voicecheck.vad import SileroVad

    torch.set_num_threads(1)
    st = Settings()
    vad = SileroVad(threshold=st.vad_threshold, min_silence_s=st.vad_min_silence_s, pad_s=st.vad_pad_s)
    rule = rule_of(st)
    thresholds = [float(x) for x in args.thresholds.split(",") if x.strip()]
    material = recordings(args.speech)
    cells: dict[str, list[str]] = {path: [] for path in PATHS}
    for label, make in SOUNDS.items():
        sound = None if make is None else make()
        pairs = make_pairs(material, sound, label)
        regions = [(vad.regions(p.first, 8000), vad.regions(p.second, 8000)) for p in pairs]
        for path in PATHS:
            marked, looked, worst, unchecked = run(pairs, path, regions)
            note = f", {unchecked} not checked" if unchecked else ""
            cells[path].append(f"{marked}/{looked} ({worst}{note})")
            log.info("%s / %s: %s", label, path, cells[path][-1])
        for thr in thresholds:
            low = SileroVad(threshold=thr, min_silence_s=st.vad_min_silence_s, pad_s=st.vad_pad_s)
            marked, looked, worst, unchecked = run(
                pairs,
                "speech regions alone",
                [(low.regions(p.first, 8000), low.regions(p.second, 8000)) for p in pairs],
            )
            note = f", {unchecked} not checked" if unchecked else ""
            cells.setdefault(f"silero threshold {thr:g}, no pad", []).append(f"{marked}/{looked} ({worst}{note})")
    lines = [
        "# Honest calls sharing a recurring non-speech sound (issue 15: false replays of the widened regions)",
        "",
        f"Command: `.venv/bin/python benchmarks/replay_recurring.py` (corpus `{_shown(args.speech)}`).",
        "What it simulates:",
        f"the module's notes. {len(material)} speakers (two recordings of >= {2 * MIN_HALF_S} s, or one of",
        f">= {4 * MIN_HALF_S} s cut in two): one pair of honest calls each. Shipped when run: the query's",
        f"regions padded by {REGION_PAD_S} s, pauses of up to {REGION_BRIDGE_S} s between them closed, the stored",
        f"side's as they are; rule: {rule.min_hits} hits",
        f"over >= {rule.min_matched_s} s. CPU: {cpu_features()}.",
        "",
        "Each cell: second calls marked `replay` / pairs (most hits of the first call at one offset; calls",
        "that could not be fingerprinted).",
        "",
        "| widening | " + " | ".join(SOUNDS) + " |",
        "|---" * (1 + len(SOUNDS)) + "|",
        *(f"| {path} | " + " | ".join(row) + " |" for path, row in cells.items()),
    ]
    if args.detections:
        lines += ["", *detections(args.speech, [st.vad_threshold, *thresholds])]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
