"""A voice too identical to be live (issue 15, item 2): a warning, measured, not a verdict.

A live speaker never says the same thing the same way twice, so a genuine call is only so close to
any ONE of the borrower's enrollment recordings. A replay of that recording that got past the
fingerprint (too short, too distorted) can be closer than genuine calls ever are. This module
reports that as a warning field; it changes no verdict.

The threshold belongs to a model and a band: :data:`TOO_IDENTICAL_COSINE` holds the measured ones
(``benchmarks/replay.py --embed``, see ``benchmarks/results/replay.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UsageError

TOO_IDENTICAL_COSINE: dict[str, float] = {
    # GE2E, narrowband call vs each enrollment recording passed through the call's channel
    # (Engine.embed_audio's narrow_vector). Chosen on the non-EVAL speakers of shared/speech as the
    # highest genuine cosine (0.914 over 693 pairs at hop 0.8 s) + 0.01; at hop 1.6 s the rule gives
    # 0.919 (max 0.909) and 0.92 is kept: no genuine or replayed pair of either split reaches 0.919
    # (EVAL genuine max 0.828 of 55). See benchmarks/results/replay.md.
    "ge2e-resemblyzer-0.1.4": 0.92,
}


@dataclass(frozen=True)
class IdenticalVoice:
    """How close a call came to its closest single enrollment recording.

    Attributes:
        too_identical: ``max_cosine`` >= ``threshold``: warn (possible replay of that recording).
        max_cosine: cosine between the call and its closest enrollment recording, in [-1, 1].
        recording: index of that recording in the vectors given.
        threshold: the cosine the warning starts at.
    """

    too_identical: bool
    max_cosine: float
    recording: int
    threshold: float


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{what} contains NaN or infinite values; re-embed it.")
    norms = np.linalg.norm(x, axis=-1)
    if np.any(np.abs(norms - 1.0) > 1e-3):
        raise UsageError(f"{what} must be unit-norm embeddings, got norms {np.round(norms, 4).tolist()}.")
    return x


def too_identical(
    call_vector: np.ndarray, recording_vectors: np.ndarray, model: str, threshold: float | None = None
) -> IdenticalVoice:
    """Is the call closer to one enrollment recording than genuine calls are?

    Args:
        call_vector: the call's unit-norm embedding, shape (dimension,).
        recording_vectors: one unit-norm embedding per enrollment recording of the borrower (not
            their average), embedded in the call's band, shape (n_recordings, dimension), n >= 1.
        model: embedder name; picks the measured threshold from :data:`TOO_IDENTICAL_COSINE`.
        threshold: a cosine in (-1, 1] to use instead of the measured one.

    Returns:
        :class:`IdenticalVoice`.

    Raises:
        UsageError: shapes that do not fit, non-finite or non-unit vectors, an invalid threshold, or
            a model with no measured threshold and none given.
    """
    call = np.asarray(call_vector, dtype=np.float64)
    recs = np.asarray(recording_vectors, dtype=np.float64)
    if call.ndim != 1 or recs.ndim != 2 or recs.shape[0] == 0 or recs.shape[1] != call.shape[0]:
        raise UsageError(
            f"need a call vector (dimension,) and recording vectors (n >= 1, dimension); got {call.shape} and "
            f"{recs.shape}."
        )
    _unit_rows(call[None, :], "call_vector")
    _unit_rows(recs, "recording_vectors")
    if threshold is None:
        if model not in TOO_IDENTICAL_COSINE:
            raise UsageError(
                f"no measured too-identical threshold for model {model!r} (known: {sorted(TOO_IDENTICAL_COSINE)}); "
                "measure one with benchmarks/replay.py --embed and pass it as threshold."
            )
        threshold = TOO_IDENTICAL_COSINE[model]
    if not (np.isfinite(threshold) and -1.0 < threshold <= 1.0):
        raise UsageError(f"threshold must be a cosine in (-1, 1], got {threshold!r}.")
    cosines = recs @ call
    best = int(np.argmax(cosines))
    return IdenticalVoice(
        too_identical=bool(cosines[best] >= threshold),
        max_cosine=float(cosines[best]),
        recording=best,
        threshold=float(threshold),
    )
