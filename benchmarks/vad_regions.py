"""silero VAD as the product runs it against silero's own modules: same regions? how much CPU?

Recordings: the customer channel of the throughput benchmark's simulated calls (stereo 8 kHz G.711,
built exactly as ``benchmarks/throughput.py`` builds them, same seed) and of ``samples/calls``. Each is
run through

* the **reference**: silero's own STFT and encoder modules over every chunk, its LSTM cell's weights
  over the sequence (the sequence runtime with the modules as its feature stack; itself checked
  against silero's streaming model in tests/test_vad.py), and
* the **product**: ``SileroVad().regions_many`` over tasks of 8 recordings, as a batch worker runs it,

and compared: the largest difference in speech probability, recordings whose regions are identical,
and the speech that moved (seconds of audio inside the regions of one and not the other). CPU time
per second of audio for both, one torch thread, tasks of 8 recordings.

``--gate MARGIN_DB,HEAD,TAIL`` (repeatable) also measures an energy gate that was tried and not
adopted (issue 16, item 4): chunks quieter than the recording's noise floor (10th percentile of the
chunk energies) + MARGIN_DB, in runs longer than HEAD + TAIL chunks, are left out of silero except
the first HEAD and last TAIL chunks of each run; the LSTM state is held over the chunks left out
(``hold``) or fed the mean features of the HEAD chunks before them (``mean``, the feature stack saved,
the LSTM not), and the chunks left out score 0.

``--bf16`` also measures silero in bfloat16, tried on a CPU with AMX and not adopted: the product's
runtime with the encoder's matrix products and the LSTM in bfloat16 (the STFT magnitude and the head
in float32), timed like the product.

    .venv/bin/python benchmarks/vad_regions.py [--calls 200] [--work DIR] [--gate 10,16,16] [--bf16]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from recipes.corpus import DEFAULT_SPEECH  # noqa: E402

RESULTS_MD = ROOT / "benchmarks" / "results" / "vad.md"
TASK = 8
"""Recordings per VAD pass: a batch task's calls (Settings.calls_per_task)."""


def recordings(speech: Path, n_calls: int, work: Path) -> list[tuple[str, np.ndarray]]:
    """(name, customer channel at 8 kHz) of the throughput benchmark's calls and of samples/calls."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import build_calls

    from voicecheck.audio import load

    build_calls(speech, n_calls, work)
    out = []
    for folder in (work, ROOT / "samples"):
        with (folder / "calls.csv").open() as f:
            for row in csv.DictReader(f):
                audio = load(folder / row["audio"], int(row["customer_channel"]))
                if audio.sample_rate != 8000:
                    raise SystemExit(f"{row['audio']}: {audio.sample_rate} Hz, this check runs silero at 8 kHz")
                out.append((f"{folder.name}/{row['call_id']}", audio.samples.astype(np.float32)))
    return out


def reference_probabilities(model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    """silero's STFT and encoder modules over every chunk, the LSTM over the sequence, per recording."""
    import torch
    from silero_vad import load_silero_vad

    from voicecheck.vad import _frames

    jit = load_silero_vad()._model_8k
    torch.set_num_threads(1)
    _, lstm, head = model._parts[8000]
    out = []
    with torch.no_grad():
        for x in xs:
            rows = _rows(_frames(x, 8000))
            features = jit.encoder(jit.stft(torch.from_numpy(rows))).squeeze(-1)
            hidden, _ = lstm(features[:, None, :])
            out.append(head(hidden[:, 0]).numpy())
    return out


def _rows(frames: np.ndarray) -> np.ndarray:
    """Each chunk with the previous chunk's last 32 samples before it, as silero sees it at 8 kHz."""
    rows = np.zeros((len(frames), 32 + frames.shape[1]), dtype=np.float32)
    rows[:, 32:] = frames
    rows[1:, :32] = frames[:-1, -32:]
    return rows


def quiet_runs(frames: np.ndarray, margin_db: float, head: int, tail: int) -> np.ndarray:
    """The gate tried: bool (chunks,), True where a chunk is left out of silero."""
    db = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
    quiet = db < np.quantile(db, 0.1) + margin_db
    skip = np.zeros(len(db), dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a > head + tail:
            skip[a + head : b - tail] = True
    return skip


def gated_probabilities(model: Any, x: np.ndarray, skip: np.ndarray, mode: str, head_n: int) -> np.ndarray:
    """silero's probabilities with the chunks in ``skip`` left out (see the module docstring)."""
    import torch

    from voicecheck.vad import _frames

    features_of, lstm, head = model._parts[8000]
    with torch.no_grad():
        rows = torch.from_numpy(_rows(_frames(x, 8000)))
        keep = np.flatnonzero(~skip)
        if mode == "hold":
            hidden, _ = lstm(features_of(rows[keep])[:, None, :])
            p = np.zeros(len(skip), dtype=np.float32)
            p[keep] = head(hidden[:, 0]).numpy()
            return p
        features = torch.zeros(len(skip), lstm.input_size)
        features[keep] = features_of(rows[keep])
        edges = np.flatnonzero(np.diff(np.concatenate([[0], skip.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            features[a:b] = features[max(a - head_n, 0) : a].mean(dim=0)
        hidden, _ = lstm(features[:, None, :])
        p = head(hidden[:, 0]).numpy()
        p[skip] = 0.0
        return p


def compare(vad: Any, xs: list[np.ndarray], ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    """Largest probability difference, recordings with identical regions, speech moved per recording."""
    same, moved = 0, []
    for x, p_ref, p_got in zip(xs, ref, got, strict=True):
        a, b = vad._stamps(p_ref, len(x), 8000), vad._stamps(p_got, len(x), 8000)
        same += a == b
        moved.append(np.sum(_mask(a, len(x)) ^ _mask(b, len(x))) / 8000)
    return {
        "max_dp": max(float(np.max(np.abs(r - g))) for r, g in zip(ref, got, strict=True)),
        "identical": same,
        "moved_mean_s": float(np.mean(moved)),
        "moved_max_s": float(np.max(moved)),
    }


def _mask(stamps: list[dict[str, int]], n: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for s in stamps:
        m[s["start"] : s["end"]] = True
    return m


def cpu_per_audio_s(fn: Any, xs: list[np.ndarray]) -> tuple[list[Any], float]:
    """``fn`` over tasks of :data:`TASK` recordings: (results in order, ms of CPU per audio second)."""
    out: list[Any] = []
    t = time.process_time()
    for i in range(0, len(xs), TASK):
        out += fn(xs[i : i + TASK])
    return out, (time.process_time() - t) / (sum(len(x) for x in xs) / 8000) * 1000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    p.add_argument("--calls", type=int, default=200, help="throughput benchmark calls (its --calls)")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "throughput-calls")
    p.add_argument("--gate", action="append", default=[], help="MARGIN_DB,HEAD,TAIL of a gate to measure")
    p.add_argument("--bf16", action="store_true", help="also time and compare silero in bfloat16 (not adopted)")
    p.add_argument("--results", type=Path, default=RESULTS_MD)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    import torch

    from voicecheck.vad import SileroVad, _frames

    torch.set_num_threads(1)
    items = recordings(a.speech, a.calls, a.work)
    names, xs = [n for n, _ in items], [x for _, x in items]
    vad = SileroVad()
    model = vad._load()
    vad.regions_many([(xs[0], 8000)])  # warm-up
    reference_probabilities(model, xs[:1])  # warm-up (and silero loaded once more, untimed)
    ref, ref_ms = cpu_per_audio_s(lambda xs_: reference_probabilities(model, xs_), xs)
    got, ms = cpu_per_audio_s(lambda xs_: vad.probabilities_many(xs_, 8000), xs)
    rows = [("product (SileroVad, tasks of 8)", 0.0, compare(vad, xs, ref, got), ms)]
    for spec in a.gate:
        margin, head_n, tail_n = (float(v) for v in spec.split(","))
        skips = [quiet_runs(_frames(x, 8000), margin, int(head_n), int(tail_n)) for x in xs]
        share = sum(int(s.sum()) for s in skips) / sum(len(s) for s in skips)
        for mode in ("hold", "mean"):
            gated = [gated_probabilities(model, x, s, mode, int(head_n)) for x, s in zip(xs, skips, strict=True)]
            label = f"gate {margin:g} dB, head {int(head_n)}, tail {int(tail_n)} chunks, state {mode}"
            rows.append((label, share, compare(vad, xs, ref, gated), float("nan")))
    if a.bf16:
        low = bf16_variant()
        low.regions_many([(xs[0], 8000)])  # warm-up
        got_low, ms_low = cpu_per_audio_s(lambda xs_: low.probabilities_many(xs_, 8000), xs)
        label = "silero in bf16: encoder products + LSTM (tried, not adopted)"
        rows.append((label, 0.0, compare(vad, xs, ref, got_low), ms_low))
    md = render(a, names, xs, ref_ms, rows)
    print(md)
    a.results.parent.mkdir(parents=True, exist_ok=True)
    a.results.write_text(md, encoding="utf-8")
    print(f"written {a.results}")


def bf16_variant() -> Any:
    """A fresh ``SileroVad`` whose sequence runtime runs the encoder's products and the LSTM in bfloat16."""
    import torch

    from voicecheck.vad import SileroVad, _Features

    low = SileroVad()
    seq = low._load()
    torch.set_num_threads(1)
    for rate, (features, lstm, head) in list(seq._parts.items()):
        if not isinstance(features, _Features):
            raise SystemExit("--bf16 needs the product's matrix-product feature stack (this silero has another layout)")
        features.layers = [
            [(lo, hi, w.bfloat16(), b.bfloat16()) for lo, hi, w, b in layer] for layer in features.layers
        ]
        seq._parts[rate] = (
            lambda rows, f=features: f.encode(f.magnitude(rows).bfloat16()).float(),
            _Bf16Lstm(lstm),
            head,
        )
    return low


class _Bf16Lstm:
    """``torch.nn.LSTM`` in bfloat16 behind the float32 interface ``voicecheck.vad._lstm_to_ends`` uses."""

    def __init__(self, lstm: Any) -> None:
        import copy

        import torch

        self.hidden_size = lstm.hidden_size
        self._lstm = copy.deepcopy(lstm).to(torch.bfloat16)

    def __call__(self, seq: Any, state: tuple[Any, Any]) -> tuple[Any, tuple[Any, Any]]:
        out, (h, c) = self._lstm(seq.bfloat16(), (state[0].bfloat16(), state[1].bfloat16()))
        return out.float(), (h.float(), c.float())


def render(
    a: argparse.Namespace,
    names: list[str],
    xs: list[np.ndarray],
    ref_ms: float,
    rows: list[tuple[str, float, dict[str, float], float]],
) -> str:
    from recipes.machine import cpu_features

    audio_min = sum(len(x) for x in xs) / 8000 / 60
    gates = "".join(f" --gate {g}" for g in a.gate) + (" --bf16" if a.bf16 else "")
    lines = [
        "# silero VAD: the product's regions against silero's modules",
        "",
        f"`benchmarks/vad_regions.py --calls {a.calls}{gates}` on {platform.machine()}, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}. CPU: {cpu_features()}.",
        "",
        f"{len(xs)} recordings ({a.calls} throughput-benchmark calls + {len(names) - a.calls} of samples/calls), "
        f"the customer channel, {audio_min:.1f} min at 8 kHz. Reference: silero's own STFT and encoder "
        f"modules, its LSTM over the sequence ({ref_ms:.3f} ms CPU per audio second, one recording at a time). "
        "Speech moved: seconds of audio inside the regions of one and not the other, per recording. "
        "CPU: one torch thread, tasks of 8 recordings (gate rows: not timed; the share of chunks left out "
        "is what they would save of the feature stack, and with the state held of the LSTM too).",
        "",
        "| run | chunks left out | max abs. difference in p | regions identical | speech moved, mean s "
        "per recording | max s | ms CPU per audio s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, share, c, ms in rows:
        shown = "–" if np.isnan(ms) else f"{ms:.3f}"
        lines.append(
            f"| {label} | {share:.1%} | {c['max_dp']:.2g} | {c['identical']} of {len(xs)} "
            f"| {c['moved_mean_s']:.3f} | {c['moved_max_s']:.2f} | {shown} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
