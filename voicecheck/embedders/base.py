"""The Embedder protocol every backend implements, and helpers shared by all of them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InsufficientSpeechError
from ..scoring import unit

PRECISIONS = ("auto", "fp32", "bf16")
"""Values of ``Settings.precision``: the embedding network's arithmetic."""


@runtime_checkable
class Embedder(Protocol):
    """A speaker-embedding model.

    Attributes:
        name: stable id stored with every voiceprint, e.g. "ge2e-resemblyzer-0.1.4".
        sample_rate: rate ``embed``/``embed_batch`` expect; the pipeline resamples, adapters never do.
        dimension: embedding size.
        min_speech_s: least net speech that gives a usable embedding.
        window_s: window length the pipeline cuts speech into.
        hop_s: step between windows.
    """

    name: str
    sample_rate: int
    dimension: int
    min_speech_s: float
    window_s: float
    hop_s: float

    def embed_batch(self, windows: np.ndarray) -> np.ndarray:
        """Embed equal-length windows of speech in one pass.

        Args:
            windows: float32, shape (n, window_samples), at ``sample_rate``.

        Returns:
            float32, shape (n, dimension), each row unit-norm.
        """
        ...


def frame(speech: np.ndarray, sample_rate: int, window_s: float, hop_s: float) -> np.ndarray:
    """Cut speech into overlapping windows of equal length.

    The last window is aligned to the end so no speech is dropped; speech shorter than one window
    gives one window padded by repetition (the caller has already checked the minimum).

    Returns:
        float32, shape (n, round(window_s * sample_rate)).
    """
    win = int(round(window_s * sample_rate))
    x = np.asarray(speech, dtype=np.float32)
    if len(x) == 0:
        raise InsufficientSpeechError("no speech to embed", 0.0)
    if len(x) < win:
        reps = int(np.ceil(win / len(x)))
        return np.tile(x, reps)[:win][None, :]
    starts = window_starts(len(x), sample_rate, window_s, hop_s)
    return np.stack([x[s : s + win] for s in starts])


def window_starts(n_samples: int, sample_rate: int, window_s: float, hop_s: float) -> np.ndarray:
    """Start offsets (samples) that ``frame`` uses for ``n_samples`` of speech."""
    win = int(round(window_s * sample_rate))
    hop = max(1, int(round(hop_s * sample_rate)))
    if n_samples <= win:
        return np.array([0])
    starts = list(range(0, n_samples - win + 1, hop))
    if starts[-1] + win < n_samples:
        starts.append(n_samples - win)
    return np.array(starts)


def refines(window_s: float, hop_s: float) -> bool:
    """Whether windows ``hop_s`` apart have a finer timeline to refine to: windows back to back (or
    further apart) do, and their in-between windows start ``hop_s / 2`` later; windows that already
    overlap by half or more do not (a GE2E manifest at hop 0.8 s is its own fine timeline)."""
    return hop_s >= window_s - 1e-9


def between_starts(n_samples: int, sample_rate: int, window_s: float, hop_s: float) -> np.ndarray:
    """Start offsets (samples) of the in-between windows: those of the timeline at ``hop_s / 2`` that
    the timeline at ``hop_s`` lacks.

    The timeline at ``hop_s`` (:func:`window_starts`) is a subset of the one at ``hop_s / 2`` when
    ``hop_s * sample_rate`` is an even number of samples (1.6 s at 16 kHz: 25600): its regular starts
    are every other one of the finer grid, and both end on the window aligned to the end of the
    speech. The two together are then exactly the timeline at ``hop_s / 2``
    (:func:`coarse_of_fine` says which of its windows the coarse timeline holds).

    Returns:
        int array, sorted; empty when the speech holds one window only.

    Raises:
        ValueError: ``hop_s * sample_rate`` is not an even number of samples.
    """
    hop = int(round(hop_s * sample_rate))
    if hop % 2:
        raise ValueError(f"hop_s {hop_s} is {hop} samples at {sample_rate} Hz; refining needs an even number")
    fine = window_starts(n_samples, sample_rate, window_s, hop / 2 / sample_rate)
    return np.setdiff1d(fine, window_starts(n_samples, sample_rate, window_s, hop_s))


def coarse_of_fine(n_windows: int) -> np.ndarray:
    """Which windows of a timeline at ``hop_s / 2`` belong to the timeline at ``hop_s`` (bool, shape (n,)).

    Every other window from the first (the regular grid at ``hop_s``), and the last one (aligned to
    the end of the speech in both timelines); see :func:`between_starts`.
    """
    i = np.arange(n_windows)
    return (i % 2 == 0) | (i == n_windows - 1)


def embed_windows(embedder: Embedder, speech: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Embeddings of the windows :func:`frame` cuts from ``speech``, shape (n_windows, dimension).

    A backend that can share work between overlapping windows (GE2E's spectrogram frames) does so
    through an ``embed_speech_windows(speech, starts=None)`` method of its own; the result is the same
    as ``embed_batch(frame(speech, ...))`` to float rounding.

    Args:
        speech: mono float32 at the embedder's rate, shape (n,).
        starts: window start offsets in samples (e.g. :func:`between_starts`), each window whole
            inside ``speech``; None: :func:`window_starts` at the embedder's hop.
    """
    own = getattr(embedder, "embed_speech_windows", None)
    if own is not None:
        return np.asarray(own(speech) if starts is None else own(speech, starts))
    if starts is None:
        return embedder.embed_batch(frame(speech, embedder.sample_rate, embedder.window_s, embedder.hop_s))
    win = int(round(embedder.window_s * embedder.sample_rate))
    x = np.asarray(speech, dtype=np.float32)
    return embedder.embed_batch(np.stack([x[s : s + win] for s in np.asarray(starts, dtype=np.int64)]))


def embed_windows_many(embedder: Embedder, speeches: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`embed_windows` of several stretches of speech (a batch task's calls), in order.

    A backend whose network runs faster on batches larger than one call's windows does them together
    through an ``embed_speech_windows_many(speeches)`` method of its own (GE2E); the result is the
    same as one :func:`embed_windows` each, to float rounding.
    """
    own = getattr(embedder, "embed_speech_windows_many", None)
    if own is not None:
        return [np.asarray(w) for w in own(speeches)]
    return [embed_windows(embedder, s) for s in speeches]


def embed_speech(embedder: Embedder, speech: np.ndarray) -> np.ndarray:
    """One unit-norm embedding for a stretch of speech: the mean of its window embeddings.

    Raises:
        InsufficientSpeechError: when ``speech`` is shorter than ``embedder.min_speech_s``.
    """
    seconds = len(speech) / embedder.sample_rate
    if seconds < embedder.min_speech_s:
        raise InsufficientSpeechError(
            f"{int(seconds * 100) / 100:.2f} s of speech; {embedder.name} needs at least {embedder.min_speech_s:g} s",
            seconds,
        )
    return unit(embed_windows(embedder, speech).mean(axis=0))
