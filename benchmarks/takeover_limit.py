"""Does ``voicecheck calibrate``'s rule for the takeover limit reproduce GE2E's hand-tuned one?

``voicecheck calibrate`` sets a model's takeover limit (the largest raw cosine between the two sides
of a call that still counts as two voices) at the 5% quantile of the side cosines of genuine test
calls (voicecheck.evaluate.fit_takeover). GE2E ships 0.87, chosen in benchmarks/analysis.py. This
script fits the rule on the TUNE speakers' simulated calls and judges both limits on the EVAL
speakers (held apart; split of recipes/corpus.py, seed 0); a call is 10-20 s of one speaker's
consecutive utterances through the simulated telephone channel: genuine calls the side test protects
(side cosine above the limit), and takeover calls (one EVAL speaker's call, then another's) it lets
through to the score test (side cosine at or below the limit).

    .venv/bin/python benchmarks/takeover_limit.py [--speech DIR] [--out benchmarks/results/takeover_limit.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.corpus import DEFAULT_SPEECH, SAMPLE_RATE, Speaker, load_utterances, read_corpus, split_speakers  # noqa: E402
from recipes.material import join_utterances, telephone  # noqa: E402
from voicecheck.analysis import TAKEOVER_MAX_SIDE_COSINE, side_cosine  # noqa: E402
from voicecheck.config import Settings  # noqa: E402
from voicecheck.errors import InsufficientSpeechError  # noqa: E402
from voicecheck.evaluate import TAKEOVER_GENUINE_SHARE  # noqa: E402
from voicecheck.pipeline import Engine  # noqa: E402
from voicecheck.types import Audio  # noqa: E402

MIN_SEGMENT_S = Settings().takeover_min_segment_s


CALL_S = (10.0, 20.0)
"""A simulated call: a speaker's consecutive utterances joined to between these lengths (s), so both
sides of a change point can hold 4 s of speech."""


def calls_of(speakers: list[Speaker], per_speaker: int = 3) -> dict[str, list[np.ndarray]]:
    """Up to ``per_speaker`` calls per speaker (16 kHz, before the channel), from disjoint utterances."""
    out: dict[str, list[np.ndarray]] = {}
    for spk in speakers:
        calls, current = [], []
        for u in load_utterances(spk):
            current.append(u[: int(CALL_S[1] * SAMPLE_RATE)])
            joined = sum(len(c) for c in current) / SAMPLE_RATE
            if joined >= CALL_S[0]:
                calls.append(join_utterances(current)[: int(CALL_S[1] * SAMPLE_RATE)])
                current = []
            if len(calls) == per_speaker:
                break
        if calls:
            out[spk.key] = calls
    return out


def cosines(engine: Engine, signals: list[tuple[str, np.ndarray]]) -> list[float]:
    """Side cosines of each signal passed through the simulated telephone channel (None-free)."""
    found = []
    for tag, x in signals:
        tel = telephone(x, "takeover", tag)
        try:
            # the finer timeline (windows every 0.8 s), as calibrate embeds its test calls and as the Judge's
            # takeover test sees a call near its decision (voicecheck.refine)
            emb = engine.embed_audio(Audio(tel, 8000, tag, 1, 2, 8000, "ULAW", tag), refine=lambda e: "fine")
        except InsufficientSpeechError:
            continue
        c = side_cosine(emb.windows, emb.window_times_s, MIN_SEGMENT_S)
        if c is not None:
            found.append(c)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    split = split_speakers(read_corpus(args.speech), seed=0)
    engine = Engine(Settings(embeddings=tempfile.mkdtemp()))
    tune, held = calls_of(split["tune"]), calls_of(split["eval"])
    genuine_tune = cosines(engine, [(f"{k}#{i}", c) for k, cs in tune.items() for i, c in enumerate(cs)])
    genuine_eval = cosines(engine, [(f"{k}#{i}", c) for k, cs in held.items() for i, c in enumerate(cs)])
    keys = sorted(held)
    pairs = [(keys[i], keys[(i + 1) % len(keys)]) for i in range(len(keys))]
    takeover_eval = cosines(engine, [(f"{a}>{b}", np.concatenate([held[a][0], held[b][0]])) for a, b in pairs])
    fitted = float(np.quantile(genuine_tune, TAKEOVER_GENUINE_SHARE))
    g, t = np.array(genuine_eval), np.array(takeover_eval)
    lines = [
        "# Takeover limit: calibrate's rule against GE2E's shipped value",
        "",
        f"`benchmarks/takeover_limit.py`, {time.strftime('%Y-%m-%d %H:%M')}. GE2E, silero VAD, simulated 8 kHz "
        f"mu-law calls of {CALL_S[0]:g}-{CALL_S[1]:g} s (one speaker's consecutive utterances; split seed 0), "
        f"two sides of at least {MIN_SEGMENT_S:g} s of speech.",
        "",
        f"Fitted on TUNE ({len(genuine_tune)} genuine calls long enough for two sides): the "
        f"{TAKEOVER_GENUINE_SHARE:.0%} quantile of their side cosines is **{fitted:.3f}** (shipped: "
        f"{TAKEOVER_MAX_SIDE_COSINE}).",
        "",
        f"Judged on EVAL (held apart): {len(g)} genuine calls, {len(t)} takeover calls (one speaker's call, then "
        "another's).",
        "",
        "| limit | genuine calls protected (side cosine above it) | takeovers let through to the score test |",
        "|---|---:|---:|",
    ]
    for name, limit in (("fitted on TUNE", fitted), ("shipped", TAKEOVER_MAX_SIDE_COSINE), ("side test off", 1.0)):
        lines.append(f"| {name} ({limit:.3f}) | {np.mean(g > limit):.1%} | {np.mean(t <= limit):.1%} |")
    lines += [
        "",
        f"Side cosines, EVAL genuine: median {np.median(g):.3f}, 5% {np.quantile(g, 0.05):.3f}; EVAL takeovers: "
        f"median {np.median(t):.3f}, 95% {np.quantile(t, 0.95):.3f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
