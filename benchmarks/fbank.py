"""How close voicecheck's numpy Kaldi fbank (voicecheck.fbank) is to the two references, and how fast.

References: ``torchaudio.compliance.kaldi.fbank`` (what WeSpeaker's and 3D-Speaker's recipes call)
and ``kaldi-native-fbank`` (sherpa-onnx's C++ port of Kaldi). Each is run with the settings of the
two recipes (3D-Speaker: povey window, samples in [-1, 1]; WeSpeaker: hamming, samples x 32768) at
8 and 16 kHz, on real clips of the corpus (every speaker's first clip of at least 2 s, up to
``--clips``). Differences are in natural-log mel energy, before mean normalisation (after it they
are at most twice these). Speed: 3 s windows (a speaker model's window) at 16 kHz, one thread.

    .venv/bin/python benchmarks/fbank.py [--speech ../shared/speech] [--clips 40] [--out benchmarks/results/fbank.md]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.machine import cpu_features  # noqa: E402
from voicecheck.audio import load, resample  # noqa: E402
from voicecheck.fbank import Fbank, FbankOptions  # noqa: E402

RECIPES = {"3D-Speaker": ("povey", 1.0), "WeSpeaker": ("hamming", 32768.0)}


def clips(speech: Path, limit: int) -> list[Path]:
    """The first clip of >= 2 s of each speaker in the corpus manifest, up to ``limit``."""
    seen: set[str] = set()
    out: list[Path] = []
    with (speech / "MANIFEST.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            who = f"{row['source']}/{row['speaker']}"
            path = speech / row["file"]
            if who in seen or not path.is_file() or float(row["seconds"]) < 2.0:
                continue
            seen.add(who)
            out.append(path)
            if len(out) >= limit:
                break
    return out


def torchaudio_fbank(x: np.ndarray, rate: int, window: str, scale: float) -> np.ndarray:
    import torch
    import torchaudio.compliance.kaldi as kaldi

    return kaldi.fbank(
        torch.from_numpy(x * np.float32(scale))[None],
        num_mel_bins=80,
        frame_length=25,
        frame_shift=10,
        dither=0.0,
        energy_floor=0.0,
        sample_frequency=rate,
        window_type=window,
        use_energy=False,
    ).numpy()


def native_fbank(x: np.ndarray, rate: int, window: str, scale: float) -> np.ndarray:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = rate
    opts.frame_opts.window_type = window
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0.0
    opts.use_energy = False
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(rate, (x.astype(np.float64) * scale).tolist())
    fb.input_finished()
    return np.stack([np.asarray(fb.get_frame(i)) for i in range(fb.num_frames_ready)])


def agreement(paths: list[Path]) -> list[str]:
    rows = [
        "| recipe | rate | compared | clips | frames | max abs diff | mean abs diff | 99.9th pct |",
        "|---" * 8 + "|",
    ]
    audio = [load(p) for p in paths]
    for recipe, (window, scale) in RECIPES.items():
        for rate in (8000, 16000):
            ours = Fbank(rate, FbankOptions(window_type=window, sample_scale=scale, cmn=False))
            signals = [resample(a.samples, a.sample_rate, rate).astype(np.float32) for a in audio]
            pairs = (
                ("voicecheck vs torchaudio", ours, torchaudio_fbank),
                ("voicecheck vs kaldi-native-fbank", ours, native_fbank),
                ("torchaudio vs kaldi-native-fbank", None, native_fbank),
            )
            for name, mine, ref in pairs:
                diffs = np.concatenate(
                    [
                        np.abs(
                            (mine(x) if mine is not None else torchaudio_fbank(x, rate, window, scale))
                            - ref(x, rate, window, scale)
                        ).ravel()
                        for x in signals
                    ]
                )
                rows.append(
                    f"| {recipe} | {rate} | {name} | {len(signals)} | {diffs.size // 80} | {diffs.max():.2e} | "
                    f"{diffs.mean():.2e} | {np.quantile(diffs, 0.999):.2e} |"
                )
    return rows


def speed(x: np.ndarray, windows: int = 32, repeats: int = 5) -> list[str]:
    import torch

    torch.set_num_threads(1)
    batch = np.stack([np.resize(x, 48000) for _ in range(windows)]).astype(np.float32)
    ours = Fbank(16000)
    timings = {}
    for name, fn in (
        ("voicecheck.fbank, one call for the batch", lambda: ours(batch)),
        ("voicecheck.fbank, window by window", lambda: [ours(w) for w in batch]),
        (
            "torchaudio.compliance.kaldi.fbank, window by window",
            lambda: [torchaudio_fbank(w, 16000, "povey", 1.0) for w in batch],
        ),
        ("kaldi-native-fbank, window by window", lambda: [native_fbank(w, 16000, "povey", 1.0) for w in batch]),
    ):
        fn()
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        timings[name] = min(runs) / windows * 1000  # best of the repeats: the least disturbed by other jobs
    rows = ["| implementation | ms per 3 s window (best of 5) |", "|---|---:|"]
    rows += [f"| {k} | {v:.2f} |" for k, v in timings.items()]
    return rows


def cpu() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu_features()}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speech", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "speech")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    paths = clips(args.speech, args.clips)
    if not paths:
        raise SystemExit(f"no clips found under {args.speech} (MANIFEST.csv)")
    first = load(paths[0])
    lines = [
        "# Kaldi fbank: voicecheck.fbank against the references",
        "",
        f"`benchmarks/fbank.py --clips {args.clips}` on {cpu()}; {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "Natural-log mel energies (80 bins, 25/10 ms, dither 0, no energy), before mean normalisation; "
        f"{len(paths)} real clips, one per speaker, resampled to each rate.",
        "",
        *agreement(paths),
        "",
        f"Speed at 16 kHz, 32 windows of 3 s, one thread; load average {os.getloadavg()[0]:.1f} when it ran "
        "(other jobs shared the CPUs: compare the rows with each other, not with other tables):",
        "",
        *speed(resample(first.samples, first.sample_rate, 16000).astype(np.float32)),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
