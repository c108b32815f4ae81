"""Benchmark of voicecheck.analysis on real speech through a simulated telephone channel.

What it measures (GE2E, every clip passed through voicecheck.channel.simulate_call_side: 300-3400 Hz,
8 kHz, noise at 10-30 dB SNR, G.711 mu-law; windows embedded with voicecheck.pipeline.Engine):

* takeovers: LibriSpeech speakers, enrolled on the first 5 s of their utterance; a genuine call is
  the rest of it; a takeover call is 5-7 s of the borrower then 5-8 s of another speaker, mixed
  as one recording. Flag rate of detect_speaker_change on takeovers, false flags on genuine calls.
* rings: borrowers (LibriSpeech) with one genuine call each (plus a second for some); impostor
  voices (speakers with several recordings: VCTK, Asterisk prompts, AMI, sherpa, picovoice, CMU,
  and some LibriSpeech speakers cut into pieces) each make calls for 2-4 borrowers. Precision and
  recall of find_rings at the call level and the voice level.
* voices per borrower: the same population seen per borrower; a borrower with an impostor call
  should split, one with only genuine calls should not.
* two speakers on one channel: AMI / pyannote conversations (RTTM beside each file), purity and
  coverage of split_two_speakers against the two main speakers; one-speaker calls wrongly split.

Speakers are split into TUNE and EVAL halves by a hash of their id; every threshold is chosen on
TUNE and reported on EVAL. Embeddings are cached in OUT/analysis_cache.npz.

Usage: python benchmarks/analysis.py --speech ../shared/speech --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from voicecheck import analysis as A  # noqa: E402

RATE = 16000
ENROLL_S = 5.0
MULTI_SOURCES = {
    "vctk_autovc", "telephone_asterisk_prompts_debian", "ami_segments_pyannote_tests", "sherpa_sr-data",
    "picovoice_eagle_samples", "cmu_arctic_pyroomacoustics",
}


def speaker_key(source: str, speaker: str) -> str:
    if speaker.startswith("allison_smith"):
        speaker = "allison_smith"  # the same voice talent in two folders
    if source == "sherpa_sr-data" and speaker.startswith("3dspk_"):
        speaker = speaker.rsplit("_", 1)[0]  # same person in English and Mandarin
    return f"{source}/{speaker}"


def split_of(key: str) -> str:
    return "tune" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 0 else "eval"


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12], 16))


# --- embedding (cached) ---------------------------------------------------------------------------


class Embedder:
    def __init__(self) -> None:
        import torch

        from voicecheck.config import Settings
        from voicecheck.pipeline import Engine

        self.engine = Engine(Settings())
        torch.set_num_threads(1)

    def call(self, samples_16k: np.ndarray, seed: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """Telephone-simulate 16 kHz speech and embed it: (windows (n,d), times (n,2)) or None."""
        from voicecheck.channel import simulate_call_side
        from voicecheck.errors import InsufficientSpeechError
        from voicecheck.types import Audio

        narrow = simulate_call_side(samples_16k, RATE, rng_for(*seed))
        try:
            e = self.engine.embed_audio(Audio(narrow, 8000, file_sample_rate=8000, subtype="ULAW"))
        except InsufficientSpeechError:
            return None
        return e.windows.astype(np.float32), e.window_times_s.astype(np.float32)


def read(path: Path) -> np.ndarray:
    import soundfile as sf

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == RATE, path
    return x[:, 0]


def build_cache(speech: Path, cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        return dict(np.load(cache, allow_pickle=False))
    rows = list(csv.DictReader(open(speech / "MANIFEST.csv", encoding="utf-8")))
    emb = Embedder()
    out: dict[str, np.ndarray] = {}
    t0 = time.time()

    def put(name: str, got: tuple[np.ndarray, np.ndarray] | None) -> None:
        if got is not None:
            out[f"{name}|w"], out[f"{name}|t"] = got

    libri = [r for r in rows if r["source"].startswith("librispeech") and float(r["seconds"]) >= 12.0]
    libri.sort(key=lambda r: r["speaker"])
    audio = {r["speaker"]: read(speech / r["file"]) for r in libri}
    speakers = list(audio)
    for i, spk in enumerate(speakers):
        x = audio[spk]
        key = speaker_key(libri[0]["source"], spk)
        cut = int(ENROLL_S * RATE)
        put(f"enroll/{key}", emb.call(x[:cut], ("enroll", key)))
        put(f"genuine/{key}", emb.call(x[cut:], ("genuine", key)))
        # takeover: 5-7 s of the borrower, then 5-8 s of another speaker of the same half
        r = rng_for("takeover", key)
        same_half = [s for s in speakers if s != spk and split_of(speaker_key(libri[0]["source"], s)) == split_of(key)]
        other = same_half[int(r.integers(len(same_half)))]
        y = audio[other]
        own = x[cut : cut + int(r.uniform(5.0, 7.0) * RATE)]
        take = int(r.uniform(5.0, 8.0) * RATE)
        start = int(r.integers(0, max(1, len(y) - take)))
        gap = np.zeros(int(0.3 * RATE), np.float32)
        put(f"takeover/{key}|{other}|{len(own) / RATE:.3f}", emb.call(np.concatenate([own, gap, y[start : start + take]]),
                                                                  ("takeover", key)))
        if i % 20 == 0:
            print(f"  libri {i}/{len(speakers)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    multi = [r for r in rows if r["source"] in MULTI_SOURCES]
    for i, r in enumerate(multi):
        key = speaker_key(r["source"], r["speaker"])
        put(f"multi/{key}/{r['utterance']}", emb.call(read(speech / r["file"]), ("multi", r["file"])))
        if i % 40 == 0:
            print(f"  multi {i}/{len(multi)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    for rttm in sorted(speech.glob("conversations_*/*/*.rttm")):
        flac = rttm.with_suffix(".flac")
        put(f"conv/{rttm.parent.parent.name}/{rttm.stem}", emb.call(read(flac), ("conv", str(flac))))
    print(f"  embedded {len(out) // 2} clips in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", default="../shared/speech", type=Path)
    p.add_argument("--out", default=Path(__file__).parent / "results", type=Path)
    args = p.parse_args()
    data = build_cache(args.speech, args.out / "analysis_cache.npz")
    print(len(data))


if __name__ == "__main__":
    main()
