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
    """silero-vad v5/v6 (JIT model from the silero-vad wheel), run at 8 or 16 kHz.

    Attributes:
        threshold: speech probability above which a frame is speech, 0..1.
        min_silence_s: shorter gaps do not end a region.
        pad_s: padding added on both sides of each region.
        min_speech_s: shorter regions are dropped.
    """

    threshold: float = 0.5
    min_silence_s: float = 0.3
    pad_s: float = 0.05
    min_speech_s: float = 0.25
    _model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            import torch
            from silero_vad import load_silero_vad

            threads = torch.get_num_threads()
            self._model = load_silero_vad()
            torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread
        return self._model

    def regions(self, samples: np.ndarray, sample_rate: int) -> list[SpeechRegion]:
        import torch
        from silero_vad import get_speech_timestamps

        rate = sample_rate if sample_rate in (8000, 16000) else 16000
        x = resample(samples, sample_rate, rate)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak < 1e-4:  # digital silence: nothing to find, and skips the model
            return []
        with torch.no_grad():
            stamps = get_speech_timestamps(
                torch.from_numpy(np.ascontiguousarray(x)),
                self._load(),
                sampling_rate=rate,
                threshold=self.threshold,
                min_silence_duration_ms=int(self.min_silence_s * 1000),
                speech_pad_ms=int(self.pad_s * 1000),
                min_speech_duration_ms=int(self.min_speech_s * 1000),
            )
        return [SpeechRegion(s["start"] / rate, s["end"] / rate) for s in stamps]


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
