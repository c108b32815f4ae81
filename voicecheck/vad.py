"""Speech regions with silero-vad (its weights ship in its wheel), and net speech."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .audio import resample
from .types import SpeechRegion


class Vad(Protocol):
    """Finds speech in mono audio."""

    def regions(self, samples: np.ndarray, sample_rate: int) -> list[SpeechRegion]:
        """Speech regions in seconds from the start of ``samples``, sorted, non-overlapping."""
        ...


@dataclass
class SileroVad:
    """silero-vad v5/v6 (weights from the silero-vad wheel), run at 8 or 16 kHz.

    The model runs chunk by chunk (32 ms) over the whole recording with its state carried
    throughout, exactly as silero's ``get_speech_timestamps``, whose hysteresis then turns the
    probabilities into regions. With onnxruntime installed the wheel's ONNX export of the same
    model runs it (about 2x faster per chunk on one thread than the TorchScript model, mostly
    less per-call overhead; probabilities agree to ~1e-5); otherwise the TorchScript model does.

    Attributes:
        threshold: speech probability above which a frame is speech, 0..1.
        min_silence_s: shorter gaps do not end a region.
        pad_s: padding added on both sides of each region.
        min_speech_s: shorter regions are dropped.
        runtime: "auto" (ONNX if onnxruntime imports, else TorchScript), "onnx" or "jit".
    """

    threshold: float = 0.5
    min_silence_s: float = 0.3
    pad_s: float = 0.05
    min_speech_s: float = 0.25
    runtime: str = "auto"
    _model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            if self.runtime in ("auto", "onnx"):
                try:
                    self._model = _OnnxSilero()
                except ImportError:
                    if self.runtime == "onnx":
                        raise
            if self._model is None:
                import torch
                from silero_vad import load_silero_vad

                threads = torch.get_num_threads()
                self._model = load_silero_vad()
                torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread
        return self._model

    def regions(self, samples: np.ndarray, sample_rate: int) -> list[SpeechRegion]:
        rate = sample_rate if sample_rate in (8000, 16000) else 16000
        x = np.ascontiguousarray(resample(samples, sample_rate, rate), dtype=np.float32)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak < 1e-4:  # digital silence: nothing to find, and skips the model
            return []
        probs = self.probabilities(x, rate)
        return [SpeechRegion(s["start"] / rate, s["end"] / rate) for s in self._stamps(probs, len(x), rate)]

    def regions_many(self, recordings: list[tuple[np.ndarray, int]], streams: int = 8) -> list[list[SpeechRegion]]:
        """Regions of several recordings, the same as ``[regions(s, r) for s, r in recordings]``.

        With the ONNX runtime, up to ``streams`` recordings go through silero in lockstep, one
        batched model call per 32 ms step, each stream keeping its own state from its own start, so
        every recording's probabilities are what it gets alone (to float rounding); on one thread
        this costs about 2.5x less CPU per chunk than one recording at a time (8 streams).

        Args:
            recordings: (mono samples, sample rate in Hz) pairs.
            streams: recordings run together.

        Returns:
            One region list per recording, in order.
        """
        out: list[list[SpeechRegion]] = [[] for _ in recordings]
        todo: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, (samples, sample_rate) in enumerate(recordings):
            rate = sample_rate if sample_rate in (8000, 16000) else 16000
            x = np.ascontiguousarray(resample(samples, sample_rate, rate), dtype=np.float32)
            if len(x) and float(np.max(np.abs(x))) >= 1e-4:
                todo.setdefault(rate, []).append((i, x))
        model = self._load()
        for rate, items in todo.items():
            if isinstance(model, _OnnxSilero):
                probs = model.probabilities_many([_frames(x, rate) for _, x in items], rate, streams)
            else:
                probs = [self.probabilities(x, rate) for _, x in items]
            for (i, x), p in zip(items, probs, strict=True):
                out[i] = [SpeechRegion(s["start"] / rate, s["end"] / rate) for s in self._stamps(p, len(x), rate)]
        return out

    def probabilities(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """silero's speech probability per chunk (256 samples at 8 kHz, 512 at 16 kHz; 32 ms).

        Args:
            x: mono float32 audio at 8000 or 16000 Hz, shape (n,).
            sample_rate: 8000 or 16000.

        Returns:
            float32, shape (ceil(n / chunk),), each in [0, 1].
        """
        frames = _frames(x, sample_rate)
        model = self._load()
        if isinstance(model, _OnnxSilero):
            return model.probabilities(frames, sample_rate)
        import torch

        tensor = torch.from_numpy(frames)
        model.reset_states()
        with torch.no_grad():
            return np.array([model(tensor[i], sample_rate).item() for i in range(len(frames))], dtype=np.float32)

    def _stamps(self, probs: np.ndarray, n_samples: int, sample_rate: int) -> list[dict[str, int]]:
        """silero's hysteresis over per-chunk probabilities -> [{"start", "end"}] in samples."""
        options = dict(
            sampling_rate=sample_rate,
            threshold=self.threshold,
            min_silence_duration_ms=int(self.min_silence_s * 1000),
            speech_pad_ms=int(self.pad_s * 1000),
            min_speech_duration_ms=int(self.min_speech_s * 1000),
        )
        try:
            from silero_vad.utils_vad import get_speech_timestamps_from_probs
        except ImportError:  # silero-vad < 6: replay the probabilities through get_speech_timestamps
            import torch
            from silero_vad import get_speech_timestamps

            return get_speech_timestamps(torch.zeros(n_samples), _Replay(probs), **options)
        return get_speech_timestamps_from_probs(probs.tolist(), audio_length_samples=n_samples, **options)


class _OnnxSilero:
    """The silero-vad wheel's ONNX model on onnxruntime, one thread, state carried across chunks."""

    def __init__(self) -> None:
        from importlib.resources import files

        import onnxruntime

        path = files("silero_vad") / "data" / "silero_vad.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, frames: np.ndarray, sample_rate: int) -> np.ndarray:
        """Per-chunk probabilities of ``frames`` (n, chunk), the state reset at the first chunk."""
        return self.probabilities_many([frames], sample_rate, 1)[0]

    def probabilities_many(self, frames: list[np.ndarray], sample_rate: int, streams: int) -> list[np.ndarray]:
        """Per-chunk probabilities of several recordings' chunks, ``streams`` at a time in lockstep.

        Recordings run longest first; a recording leaves the batch at its last chunk (the batch
        shrinks), so no step is spent on padding and no recording sees chunks after its end.
        """
        context = 64 if sample_rate == 16000 else 32  # silero prepends the previous chunk's tail
        rate = np.array(sample_rate, dtype=np.int64)
        run = self._session.run
        order = sorted(range(len(frames)), key=lambda i: -len(frames[i]))  # active streams stay a prefix
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(frames)
        for g in range(0, len(order), streams):
            group = order[g : g + streams]
            lengths = np.array([len(frames[i]) for i in group])
            steps = int(lengths[0])
            rows = np.zeros((steps, len(group), context + frames[group[0]].shape[1]), dtype=np.float32)
            for b, i in enumerate(group):
                f = frames[i]
                rows[: len(f), b, context:] = f
                rows[1 : len(f), b, :context] = f[:-1, -context:]
            active = (lengths[None, :] > np.arange(steps)[:, None]).sum(axis=1)  # streams still running
            state = np.zeros((2, len(group), 128), dtype=np.float32)
            probs = np.empty((steps, len(group)), dtype=np.float32)
            for t in range(steps):
                a = int(active[t])
                live = np.ascontiguousarray(state[:, :a])
                p, state[:, :a] = run(None, {"input": rows[t, :a], "state": live, "sr": rate})
                probs[t, :a] = p[:, 0]
            for b, i in enumerate(group):
                out[i] = probs[: len(frames[i]), b].copy()
        return out


def _frames(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """``x`` cut into silero's chunks, the last zero-padded: float32, shape (ceil(n / chunk), chunk)."""
    chunk = _chunk(sample_rate)
    frames = np.zeros((-(-len(x) // chunk), chunk), dtype=np.float32)
    frames.reshape(-1)[: len(x)] = x
    return frames


def _chunk(sample_rate: int) -> int:
    """silero's chunk length in samples at ``sample_rate`` (32 ms)."""
    return 512 if sample_rate == 16000 else 256


class _Replay:
    """Stands in for the silero model in ``get_speech_timestamps``: returns given probabilities in turn."""

    def __init__(self, probs: np.ndarray) -> None:
        self._probs = probs.tolist()
        self._i = 0

    def reset_states(self) -> None:
        self._i = 0

    def __call__(self, chunk: Any, sample_rate: int) -> Any:
        import torch

        p = self._probs[self._i] if self._i < len(self._probs) else 0.0
        self._i += 1
        return torch.tensor(p)


def regions_of(vad: Vad, recordings: list[tuple[np.ndarray, int]]) -> list[list[SpeechRegion]]:
    """Speech regions of several recordings: in lockstep when the VAD can (silero), else one by one."""
    many = getattr(vad, "regions_many", None)
    if many is not None:
        return many(recordings)
    return [vad.regions(samples, rate) for samples, rate in recordings]


def speech_seconds(regions: list[SpeechRegion]) -> float:
    """Net speech: the summed length of the regions."""
    return float(sum(r.duration_s for r in regions))


def collect(samples: np.ndarray, sample_rate: int, regions: list[SpeechRegion]) -> np.ndarray:
    """Concatenate the speech regions of ``samples`` into one float32 array."""
    parts = [samples[int(r.start_s * sample_rate) : int(r.end_s * sample_rate)] for r in regions]
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


def recording_time(offset_s: float | np.ndarray, regions: list[SpeechRegion]) -> np.ndarray:
    """Map offsets in the concatenated speech back to times in the recording.

    Args:
        offset_s: seconds into the output of :func:`collect`.
        regions: the regions that built it.

    Returns:
        Seconds from the start of the recording, same shape as ``offset_s``.
    """
    offsets = np.atleast_1d(np.asarray(offset_s, dtype=np.float64))
    if not regions:
        return offsets
    starts = np.array([r.start_s for r in regions])
    lengths = np.array([r.duration_s for r in regions])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    idx = np.clip(np.searchsorted(cum, offsets, side="right") - 1, 0, len(regions) - 1)
    return starts[idx] + (offsets - cum[idx])
