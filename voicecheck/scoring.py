"""The maths the product scores with (numpy, scipy): vectors, back-end, normalisation, calibration.

The score scale is defined here: a **score** is a similarity, higher means more alike. Raw scores
are cosines in [-1, 1]; PLDA scores are the model's natural-log likelihood ratios of "same speaker"
against "different speakers" (unbounded; :class:`Plda`); AS-normalised scores are unbounded z-like
values; calibrated scores are natural-log likelihood ratios (LLR). A call is accepted (``match``)
when ``score >= threshold``, so a *false flag* is a genuine (target) trial scoring below the
threshold. Decisions are taken by :class:`voicecheck.scorer.Scorer`; evaluation figures live in
:mod:`voicecheck.metrics`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from .errors import ModelMismatchError, UsageError

log = logging.getLogger(__name__)

_MIN_NORM = 1e-12
"""Vectors with an L2 norm below this are treated as zero (no direction, no cosine)."""

_MIN_STD = 1e-6
"""Floor on cohort standard deviations in AS-norm, so a degenerate cohort cannot divide by zero."""

_BACKEND_FORMAT = "voicecheck-backend"
_FORMAT_VERSION = 2
"""Version 2 adds the training statistics (``stats_*``, ``prior_*``) and ``info``; version 1 files load."""


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def as_scores(values: npt.ArrayLike, what: str) -> np.ndarray:
    """A 1-D, finite, non-empty float64 array, or UsageError naming ``what``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be numbers; got {type(values).__name__}: {exc}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise UsageError(f"{what} must be a 1-D array of scores; got shape {arr.shape}.")
    if arr.size == 0:
        raise UsageError(f"{what} is empty: at least one score is needed.")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise UsageError(f"{what} contains {bad} NaN or infinite value(s); remove them first.")
    return arr


def as_matrix(values: npt.ArrayLike, what: str) -> np.ndarray:
    """A 2-D finite float64 array (a 1-D input becomes one row), or UsageError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be numbers; got {type(values).__name__}: {exc}") from exc
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise UsageError(f"{what} must be a vector or an (n, d) matrix; got shape {arr.shape}.")
    if arr.size == 0:
        raise UsageError(f"{what} is empty (shape {arr.shape}).")
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{what} contains NaN or infinite values.")
    return arr


def _unit_rows(arr: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit norm; a zero row raises UsageError (it has no direction)."""
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < _MIN_NORM):
        rows = np.flatnonzero(norms[:, 0] < _MIN_NORM)
        raise UsageError(
            f"{what} has {rows.size} zero vector(s) (e.g. row {int(rows[0])}); a zero vector has "
            "no direction, so no cosine. It usually means silent or failed extraction."
        )
    out: np.ndarray = arr / norms
    return out


def unit(vectors: npt.ArrayLike) -> np.ndarray:
    """Rows (or one vector) scaled to unit L2 norm, float32; a zero row stays zero.

    The one length normalisation of the product: embeddings, call means, back-end outputs.
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    out: np.ndarray = np.where(norms > 0, v / np.maximum(norms, _MIN_NORM), 0.0).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# similarity
# --------------------------------------------------------------------------------------------


def cosine_matrix(A: npt.ArrayLike, B: npt.ArrayLike) -> np.ndarray:
    """Cosine similarity of every row of ``A`` with every row of ``B``.

    Args:
        A: shape (n, d), or (d,) for one vector.
        B: shape (m, d), or (d,) for one vector.

    Returns:
        float64, shape (n, m), values in [-1, 1].

    Raises:
        UsageError: dimension mismatch, non-finite values or zero vectors.
    """
    ma = as_matrix(A, "first set of vectors")
    mb = as_matrix(B, "second set of vectors")
    if ma.shape[1] != mb.shape[1]:
        raise UsageError(
            f"cannot compare vectors of dimension {ma.shape[1]} and {mb.shape[1]}: they come "
            "from different models or backends."
        )
    sims = _unit_rows(ma, "first set of vectors") @ _unit_rows(mb, "second set of vectors").T
    out: np.ndarray = np.clip(sims, -1.0, 1.0)
    return out


# --------------------------------------------------------------------------------------------
# training statistics: what LDA and PLDA are fitted from, and what adaptation interpolates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ScatterStats:
    """Speaker-labelled embeddings summarised by their moments (raw embedding space).

    Enough to fit LDA (:func:`lda_from_stats`) and PLDA (:meth:`Backend.plda`) and to adapt both to
    another domain (:func:`interpolate_stats`) without the embeddings themselves: a shipped back-end
    keeps the statistics of its public training speech, so a deployment adapts it with its own
    calls and needs no public speech.

    Attributes:
        mean: mean of all rows, shape (d,).
        within: within-speaker covariance W, shape (d, d): scatter of rows about their speaker's mean
            divided by the degrees of freedom (rows - speakers).
        between: between-speaker covariance B, shape (d, d): covariance of the speakers' means with
            the part their own sampling noise adds (``W / rows of the speaker``, averaged) taken off,
            floored at zero (positive semi-definite); one speaker, one weight.
        n_vectors: rows summarised.
        n_speakers: speakers summarised.
    """

    mean: np.ndarray
    within: np.ndarray
    between: np.ndarray
    n_vectors: int
    n_speakers: int

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float64)
        d = mean.shape[0] if mean.ndim == 1 else 0
        for name in ("within", "between"):
            cov = np.array(getattr(self, name), dtype=np.float64)
            if d == 0 or cov.shape != (d, d) or not np.all(np.isfinite(cov)):
                raise UsageError(f"ScatterStats {name} must be a finite ({d}, {d}) matrix; got shape {cov.shape}.")
            cov = 0.5 * (cov + cov.T)
            cov.setflags(write=False)
            object.__setattr__(self, name, cov)
        if not np.all(np.isfinite(mean)):
            raise UsageError("ScatterStats mean contains NaN or infinite values.")
        if self.n_speakers < 2 or self.n_vectors <= self.n_speakers:
            raise UsageError(
                f"ScatterStats need >= 2 speakers and more rows than speakers; got {self.n_vectors} rows of "
                f"{self.n_speakers} speakers."
            )
        mean.setflags(write=False)
        object.__setattr__(self, "mean", mean)

    @property
    def dimension(self) -> int:
        return int(self.mean.shape[0])


def scatter_stats(X: npt.ArrayLike, labels: npt.ArrayLike) -> ScatterStats:
    """The moments of speaker-labelled embeddings (see :class:`ScatterStats`).

    Args:
        X: embeddings, shape (n, d).
        labels: speaker of each row, shape (n,) (any hashable values).

    Raises:
        UsageError: shape mismatch, fewer than two speakers, or no speaker with two rows.
    """
    data = as_matrix(X, "training embeddings")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != data.shape[0]:
        raise UsageError(f"labels must have shape ({data.shape[0]},) to match the embeddings; got {lab.shape}.")
    classes, inverse = np.unique(lab, return_inverse=True)
    n, c = data.shape[0], classes.shape[0]
    if c < 2 or n - c < 1:
        raise UsageError(
            f"speaker statistics need >= 2 speakers and one with two or more embeddings; got {n} embeddings "
            f"of {c} speaker(s)."
        )
    mean = data.mean(axis=0)
    counts = np.bincount(inverse, minlength=c).astype(np.float64)
    sums = np.zeros((c, data.shape[1]))
    np.add.at(sums, inverse, data)
    class_means = sums / counts[:, None]
    resid = data - class_means[inverse]
    within = resid.T @ resid / (n - c)
    spread = class_means - class_means.mean(axis=0)
    between = _psd(spread.T @ spread / (c - 1) - float(np.mean(1.0 / counts)) * within)
    return ScatterStats(mean, within, between, int(n), int(c))


def _psd(matrix: np.ndarray) -> np.ndarray:
    """The nearest positive semi-definite matrix (negative eigenvalues set to zero)."""
    return _spectral(matrix, lambda values: np.maximum(values, 0.0))


def _spectral(matrix: np.ndarray, of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``of`` applied to the eigenvalues of the symmetric part of ``matrix``: ``V diag(of(w)) V'``."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    out: np.ndarray = (vectors * of(values)) @ vectors.T
    return out


def interpolate_stats(
    prior: ScatterStats, domain: ScatterStats, within_weight: float, between_weight: float
) -> ScatterStats:
    """Statistics adapted to a domain: ``W = a W_domain + (1 - a) W_prior``, ``B = b B_domain + (1 - b)
    B_prior``, centred on the domain's mean (supervised PLDA/LDA adaptation by interpolation, as in
    the NIST SRE16 systems; the prior is kept, not replaced).

    Args:
        prior: out-of-domain statistics (e.g. a shipped back-end's).
        domain: in-domain statistics of the same dimension.
        within_weight: ``a`` in [0, 1].
        between_weight: ``b`` in [0, 1].

    Raises:
        UsageError: dimensions differ or a weight is outside [0, 1].
    """
    if prior.dimension != domain.dimension:
        raise UsageError(
            f"cannot adapt statistics of dimension {prior.dimension} with in-domain ones of dimension "
            f"{domain.dimension}: they come from different models."
        )
    for name, w in (("within_weight", within_weight), ("between_weight", between_weight)):
        if not (math.isfinite(w) and 0.0 <= w <= 1.0):
            raise UsageError(f"{name} must be in [0, 1]; got {w}.")
    a, b = float(within_weight), float(between_weight)
    return ScatterStats(
        mean=domain.mean,
        within=a * domain.within + (1.0 - a) * prior.within,
        between=b * domain.between + (1.0 - b) * prior.between,
        n_vectors=prior.n_vectors + domain.n_vectors,
        n_speakers=prior.n_speakers + domain.n_speakers,
    )


# --------------------------------------------------------------------------------------------
# PLDA: two-covariance model in a back-end's projected space
# --------------------------------------------------------------------------------------------


PLDA_RIDGE = 0.01
"""Share of the total covariance added to the within-speaker one before PLDA (see :func:`fit_plda`)."""


@dataclass(frozen=True, eq=False)
class Plda:
    """Two-covariance PLDA (Ioffe 2006; Brummer & de Villiers 2010), diagonalised.

    A vector is ``speaker + noise`` with speaker ~ N(0, B) and noise ~ N(0, W). ``basis`` maps a
    (centred, projected) vector ``z`` to ``u = z @ basis``, where W is the identity and B is
    ``diag(psi)``; the log-likelihood ratio of "same speaker" against "two speakers" of ``u`` and
    ``v`` is then, summed over the r dimensions::

        psi / (2 psi + 1) * u v  -  psi^2 / (2 (psi + 1)(2 psi + 1)) * (u^2 + v^2)
            +  0.5 log((psi + 1)^2 / (2 psi + 1))

    symmetric in the two vectors, natural log, unbounded (the score scale of the ``plda`` modes).

    Attributes:
        basis: shape (k, r).
        psi: between-speaker variances in units of the within-speaker ones, shape (r,), >= 0.
    """

    basis: np.ndarray
    psi: np.ndarray

    def project(self, Z: npt.ArrayLike) -> np.ndarray:
        """``Z @ basis``: rows into the diagonal space, float64 (n, r)."""
        out: np.ndarray = np.atleast_2d(np.asarray(Z, dtype=np.float64)) @ self.basis
        return out

    def _terms(self) -> tuple[np.ndarray, np.ndarray, float]:
        psi = self.psi
        cross = psi / (2.0 * psi + 1.0)
        square = psi**2 / (2.0 * (psi + 1.0) * (2.0 * psi + 1.0))
        const = 0.5 * float(np.sum(np.log((psi + 1.0) ** 2 / (2.0 * psi + 1.0))))
        return cross, square, const

    def llr(self, U: npt.ArrayLike, V: npt.ArrayLike) -> np.ndarray:
        """LLR of every row of ``U`` with every row of ``V`` (both from :meth:`project`), shape (n, m)."""
        u, v = np.atleast_2d(U), np.atleast_2d(V)
        cross, square, const = self._terms()
        out: np.ndarray = (u * cross) @ v.T - ((u * u) @ square)[:, None] - ((v * v) @ square)[None, :] + const
        return out

    def llr_pairs(self, U: npt.ArrayLike, V: npt.ArrayLike) -> np.ndarray:
        """LLR of row i of ``U`` with row i of ``V``, shape (n,)."""
        u, v = np.atleast_2d(U), np.atleast_2d(V)
        cross, square, const = self._terms()
        out: np.ndarray = (u * v) @ cross - (u * u + v * v) @ square + const
        return out


def fit_plda(within: npt.ArrayLike, between: npt.ArrayLike) -> Plda:
    """The diagonalised two-covariance PLDA of covariances ``within`` (W) and ``between`` (B).

    Solves ``B v = psi W v`` (``scipy.linalg.eigh``); ``basis`` holds the W-orthonormal eigenvectors,
    so ``basis.T W basis = I`` and ``basis.T B basis = diag(psi)``. W first takes in
    :data:`PLDA_RIDGE` times the total covariance ``W + B`` (so no direction has a between/within
    ratio above ``1 / PLDA_RIDGE``: statistics from fewer calls than dimensions leave directions with
    no within-speaker variance at all), which keeps the model unchanged by any invertible map of the space.

    Args:
        within: shape (k, k), positive definite up to the ridge.
        between: shape (k, k), positive semi-definite (negative eigenvalues become 0).

    Raises:
        UsageError: shapes that do not match, non-finite values, or a zero W.
    """
    from scipy.linalg import eigh

    w = as_matrix(within, "PLDA within-speaker covariance")
    b = as_matrix(between, "PLDA between-speaker covariance")
    if w.shape[0] != w.shape[1] or b.shape != w.shape:
        raise UsageError(f"PLDA covariances must be square and alike; got {w.shape} and {b.shape}.")
    scale = float(np.trace(w)) / w.shape[0]
    if not scale > 1e-15:
        raise UsageError("the within-speaker covariance is zero: PLDA cannot be fitted.")
    w = 0.5 * (w + w.T)
    w = w + PLDA_RIDGE * (w + 0.5 * (b + b.T)) + 1e-9 * scale * np.eye(w.shape[0])
    psi, basis = eigh(0.5 * (b + b.T), w)
    order = np.argsort(psi)[::-1]
    return Plda(basis=basis[:, order], psi=np.maximum(psi[order], 0.0))


# --------------------------------------------------------------------------------------------
# backend: centring + LDA/WCCN projection + length normalisation (cosine) or PLDA
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Backend:
    """A trained transform applied to embeddings before scoring.

    ``transform(x) = unit((x - mean) @ projection)``; with no projection it is ``unit(x - mean)``.
    Cosines of transformed vectors are the ``lda`` scores; :meth:`plda` gives the PLDA model of the
    same projected space (from ``stats``) for the ``plda`` scores.

    Attributes:
        mean: centring vector in the embedder's space, shape (d,).
        projection: LDA (optionally WCCN-whitened) directions, shape (d, k); None for centring only.
        model: embedder name the backend was trained for (vectors of other models are refused).
        source: free text saying what data trained it (kept with every saved file).
        stats: the speaker statistics the projection was fitted from (raw space); None for a back-end
            saved without them (PLDA then unavailable).
        prior: for a back-end adapted to a deployment's calls, the out-of-domain statistics it was
            adapted from (a later adaptation starts from them again, never from its own output);
            None for an out-of-domain back-end.
        info: provenance (JSON-able): how and on what it was trained.
    """

    mean: np.ndarray
    projection: np.ndarray | None = None
    model: str = ""
    source: str = ""
    stats: ScatterStats | None = None
    prior: ScatterStats | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float64)
        if mean.ndim != 1 or mean.size == 0:
            raise UsageError(f"Backend mean must have shape (d,); got {mean.shape}.")
        if not np.all(np.isfinite(mean)):
            raise UsageError("Backend mean contains NaN or infinite values.")
        mean.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        if self.projection is not None:
            proj = np.array(self.projection, dtype=np.float64)
            if proj.ndim != 2 or proj.shape[0] != mean.shape[0] or proj.shape[1] < 1:
                raise UsageError(
                    f"Backend projection must have shape ({mean.shape[0]}, k) with k >= 1 to "
                    f"match the mean; got {proj.shape}."
                )
            if not np.all(np.isfinite(proj)):
                raise UsageError("Backend projection contains NaN or infinite values.")
            proj.setflags(write=False)
            object.__setattr__(self, "projection", proj)
        for name in ("stats", "prior"):
            st = getattr(self, name)
            if st is not None and st.dimension != mean.shape[0]:
                raise UsageError(f"Backend {name} have dimension {st.dimension}, the mean {mean.shape[0]}.")

    @property
    def dimension(self) -> int:
        """Input dimension d (the embedder's)."""
        return int(self.mean.shape[0])

    @property
    def output_dimension(self) -> int:
        """Output dimension k (d when there is no projection)."""
        return self.dimension if self.projection is None else int(self.projection.shape[1])

    @property
    def adapted(self) -> bool:
        """Trained on a deployment's own calls (its score scale is not the shipped profile's)."""
        return self.prior is not None or self.info.get("kind") == "in-domain"

    @property
    def digest(self) -> str:
        """sha256 (hex) of what the scores depend on: model, mean, projection and statistics."""
        h = hashlib.sha256(self.model.encode("utf-8"))
        for arr in (self.mean, np.zeros(0) if self.projection is None else self.projection):
            h.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
        if self.stats is not None:  # saved as float32: the digest of a loaded file is its writer's
            for arr in (self.stats.within, self.stats.between):
                h.update(np.ascontiguousarray(arr, dtype="<f4").tobytes())
        return h.hexdigest()

    @classmethod
    def identity(cls, model: str, dimension: int) -> Backend:
        """A backend that only length-normalises (zero mean, no projection).

        Args:
            model: embedder name.
            dimension: embedding size d, >= 1.
        """
        if dimension < 1:
            raise UsageError(f"dimension must be >= 1; got {dimension}.")
        return cls(mean=np.zeros(dimension), projection=None, model=model, source="identity")

    def _check(self, X: npt.ArrayLike, model: str | None) -> np.ndarray:
        if model is not None and self.model and model != self.model:
            raise ModelMismatchError(
                f"backend was trained for model {self.model!r} but the vectors come from "
                f"{model!r}; use the backend of that model or Backend.identity()."
            )
        arr = as_matrix(X, "embeddings")
        if arr.shape[1] != self.dimension:
            raise UsageError(
                f"embeddings have dimension {arr.shape[1]} but the backend expects "
                f"{self.dimension} (model {self.model!r})."
            )
        return arr

    def project(self, X: npt.ArrayLike, model: str | None = None) -> np.ndarray:
        """Centre and project embeddings, without length normalisation (PLDA's input).

        Returns:
            float64, shape (n, k) (one row for a 1-D input).
        """
        out = self._check(X, model) - self.mean
        return out if self.projection is None else out @ self.projection

    def transform(self, X: npt.ArrayLike, model: str | None = None) -> np.ndarray:
        """Centre, project and length-normalise embeddings.

        Args:
            X: shape (n, d), or (d,) for one vector.
            model: if given, the embedder that produced ``X``; must equal ``self.model``.

        Returns:
            float32 unit-norm vectors, shape (n, k), or (k,) for a 1-D input.

        Raises:
            ModelMismatchError: ``model`` differs from the backend's model.
            UsageError: wrong dimension, non-finite values, or a vector that becomes zero.
        """
        single = np.ndim(X) == 1
        out = _unit_rows(self.project(X, model), "transformed embeddings").astype(np.float32)
        return out[0] if single else out

    def plda(self) -> Plda:
        """The PLDA model of this back-end's projected space, from its statistics projected there
        (``P.T W P`` and ``P.T B P``; a PLDA is unchanged by any invertible map of that space, so WCCN
        does not change it).

        Raises:
            UsageError: the back-end has no statistics.
        """
        if self.stats is None:
            raise UsageError(
                f"back-end of model {self.model!r} ({self.source[:80]}) carries no training statistics, so it "
                "cannot score with PLDA: train one with 'voicecheck backend train' (or scripts/train_backend.py), "
                'or set backend_scoring = "cosine"'
            )
        p = np.eye(self.dimension) if self.projection is None else self.projection
        return fit_plda(p.T @ self.stats.within @ p, p.T @ self.stats.between @ p)

    def save(self, path: str | Path) -> None:
        """Write the backend as a ``.npz`` file at exactly ``path`` (no pickles).

        Raises:
            UsageError: the file cannot be written.
        """
        try:
            with open(path, "wb") as fh:
                fh.write(self.to_bytes())
        except OSError as exc:
            raise UsageError(f"cannot write backend file {str(path)!r}: {exc}") from exc

    def to_bytes(self) -> bytes:
        """The ``.npz`` file :meth:`save` writes, as bytes (compressed numpy arrays, no pickles)."""
        import io

        proj = np.zeros((0, 0)) if self.projection is None else self.projection
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_BACKEND_FORMAT),
            "version": np.array(_FORMAT_VERSION),
            "mean": self.mean,
            "projection": proj,
            "model": np.array(self.model),
            "source": np.array(self.source),
            "info": np.array(json.dumps(self.info, sort_keys=True)),
        }
        for name in ("stats", "prior"):
            st = getattr(self, name)
            if st is not None:
                arrays.update(
                    {
                        f"{name}_mean": st.mean,
                        f"{name}_within": st.within.astype(np.float32),
                        f"{name}_between": st.between.astype(np.float32),
                        f"{name}_counts": np.array([st.n_vectors, st.n_speakers], np.int64),
                    }
                )
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as a flag
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | Path) -> Backend:
        """Read a backend written by :meth:`save` (format version 1 or 2).

        Raises:
            UsageError: missing, unreadable or malformed file (the message says which part).
        """
        where = str(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except FileNotFoundError as exc:
            raise UsageError(f"backend file {where!r} does not exist.") from exc
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise UsageError(f"backend file {where!r} is not a voicecheck backend (.npz) file: {exc}") from exc
        missing = {"format", "mean", "projection", "model", "source"} - contents.keys()
        if missing:
            raise UsageError(f"backend file {where!r} lacks {sorted(missing)}; write it with Backend.save().")
        if str(contents["format"]) != _BACKEND_FORMAT:
            raise UsageError(
                f"backend file {where!r} has format {str(contents['format'])!r}, expected {_BACKEND_FORMAT!r}."
            )
        proj = contents["projection"]
        try:
            info = json.loads(str(contents["info"])) if "info" in contents else {}
            return cls(
                mean=contents["mean"],
                projection=None if proj.size == 0 else proj,
                model=str(contents["model"]),
                source=str(contents["source"]),
                stats=_stats_from(contents, "stats"),
                prior=_stats_from(contents, "prior"),
                info=info if isinstance(info, dict) else {},
            )
        except (UsageError, ValueError, KeyError) as exc:
            raise UsageError(f"backend file {where!r} is malformed: {exc}") from exc


def _stats_from(contents: dict[str, np.ndarray], name: str) -> ScatterStats | None:
    if f"{name}_mean" not in contents:
        return None
    counts = contents[f"{name}_counts"]
    return ScatterStats(
        mean=contents[f"{name}_mean"],
        within=contents[f"{name}_within"],
        between=contents[f"{name}_between"],
        n_vectors=int(counts[0]),
        n_speakers=int(counts[1]),
    )


def fit_lda(
    X: npt.ArrayLike,
    labels: npt.ArrayLike,
    dim: int,
    wccn: bool = True,
    shrink: float = 0.1,
    model: str = "",
    source: str = "",
) -> Backend:
    """Train an LDA (+ optional WCCN) backend on embeddings labelled by speaker.

    Centres on the global mean, builds the within-class scatter ``Sw`` and between-class scatter
    ``Sb``, solves ``Sb v = lambda Sw' v`` with the shrunk ``Sw' = (1 - shrink) Sw + shrink *
    trace(Sw)/d * I`` (``scipy.linalg.eigh``) and keeps the ``dim`` leading directions. With
    ``wccn`` the projection is then whitened by the inverse square root of the (equally shrunk)
    within-class covariance of the projected training data (Hatch et al. 2006), so that cosine
    scoring weighs every retained direction by its speaker-discriminating power; without it the
    directions are scaled to unit length.

    Speakers with one embedding add to ``Sb`` only. At least one speaker needs two or more.

    Args:
        X: embeddings, shape (n, d).
        labels: speaker label of each row, shape (n,) (any hashable values).
        dim: directions to keep, >= 1; clipped to min(n_speakers - 1, d).
        wccn: whiten the within-class covariance in the projected space.
        shrink: shrinkage in [0, 1) towards a scaled identity; 0.1 suits d in the hundreds with a
            few thousand embeddings.
        model: embedder name stored in the backend.
        source: description of the training data stored in the backend.

    Returns:
        A Backend with ``mean`` shape (d,) and ``projection`` shape (d, k).

    Raises:
        UsageError: shape mismatch, fewer than two speakers, no speaker with two embeddings,
            ``dim < 1`` or ``shrink`` outside [0, 1).
    """
    data = as_matrix(X, "LDA training embeddings")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != data.shape[0]:
        raise UsageError(f"labels must have shape ({data.shape[0]},) to match the embeddings; got {lab.shape}.")
    if dim < 1:
        raise UsageError(f"LDA dim must be >= 1; got {dim}.")
    if not 0.0 <= shrink < 1.0:
        raise UsageError(f"shrink must be in [0, 1); got {shrink}.")
    n, d = data.shape
    classes, inverse = np.unique(lab, return_inverse=True)
    n_classes = classes.shape[0]
    if n_classes < 2:
        raise UsageError(f"LDA needs embeddings of at least 2 speakers; got {n_classes}.")
    if n - n_classes < 1:
        raise UsageError(
            f"LDA needs at least one speaker with two or more embeddings to measure within-speaker "
            f"variation; all {n_classes} speakers have one."
        )
    k = min(dim, n_classes - 1, d)
    if k < dim:
        log.info("LDA dim %d clipped to %d (%d speakers, dimension %d)", dim, k, n_classes, d)

    mean = data.mean(axis=0)
    sw, sb = _scatters(data - mean, inverse, n_classes)
    proj = _lda_projection(sw, sb, k, wccn, shrink)
    return Backend(mean=mean, projection=proj, model=model, source=source)


def lda_from_stats(
    stats: ScatterStats,
    dim: int,
    wccn: bool = True,
    shrink: float = 0.1,
    model: str = "",
    source: str = "",
    prior: ScatterStats | None = None,
    info: dict[str, Any] | None = None,
) -> Backend:
    """An LDA (+ optional WCCN) backend fitted from statistics instead of embeddings (see
    :func:`fit_lda`; the between-speaker covariance takes the place of the between-class scatter,
    which differs from it by a multiple of the within-speaker one and has the same directions).

    Args:
        stats: the training statistics (kept in the result: its PLDA comes from them).
        dim: directions to keep, clipped to min(n_speakers - 1, d).
        prior: the out-of-domain statistics ``stats`` were adapted from, kept in the result.
        info: provenance kept in the result.

    Returns:
        A Backend centred on ``stats.mean``.

    Raises:
        UsageError: ``dim < 1``, ``shrink`` outside [0, 1) or a zero within-speaker covariance.
    """
    if dim < 1:
        raise UsageError(f"LDA dim must be >= 1; got {dim}.")
    if not 0.0 <= shrink < 1.0:
        raise UsageError(f"shrink must be in [0, 1); got {shrink}.")
    k = min(dim, stats.n_speakers - 1, stats.dimension)
    proj = _lda_projection(stats.within, stats.between, k, wccn, shrink)
    return Backend(stats.mean, proj, model, source, stats=stats, prior=prior, info=dict(info or {}))


def _lda_projection(sw: np.ndarray, sb: np.ndarray, k: int, wccn: bool, shrink: float) -> np.ndarray:
    """The ``k`` leading directions of ``sb v = lambda sw' v`` (``sw'`` shrunk), unit length or
    WCCN-whitened, signs fixed (largest entry of each column positive): shape (d, k)."""
    from scipy.linalg import eigh

    sw_reg = _shrunk(sw, shrink)
    if sw_reg is None:
        raise UsageError("within-speaker scatter is zero: every speaker's embeddings are identical.")
    # Generalised symmetric eigenproblem; eigenvalues come back ascending.
    _, vectors = eigh(sb, sw_reg)
    proj = vectors[:, ::-1][:, :k]
    proj = proj / np.linalg.norm(proj, axis=0, keepdims=True)
    if wccn:
        proj = _wccn(proj, sw, shrink)
    # Deterministic signs: the largest-magnitude entry of each column is positive.
    pivots = np.argmax(np.abs(proj), axis=0)
    out: np.ndarray = proj * np.sign(proj[pivots, np.arange(proj.shape[1])])
    return out


def _scatters(centred: np.ndarray, inverse: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Within- and between-class scatter (each divided by n) of centred rows labelled ``inverse``."""
    n, d = centred.shape
    counts = np.bincount(inverse, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, d))
    np.add.at(sums, inverse, centred)
    class_means = sums / counts[:, None]
    within = centred - class_means[inverse]
    return within.T @ within / n, (class_means * counts[:, None]).T @ class_means / n


def _wccn(proj: np.ndarray, sw: np.ndarray, shrink: float) -> np.ndarray:
    """``proj`` whitened by the inverse square root of the (shrunk) within-class covariance it projects to."""
    sw_proj = _shrunk(proj.T @ sw @ proj, shrink)
    if sw_proj is None:
        raise UsageError("within-speaker scatter vanishes in the LDA space; cannot apply WCCN.")
    evals, evecs = np.linalg.eigh(sw_proj)
    out: np.ndarray = proj @ (evecs / np.sqrt(evals)) @ evecs.T
    return out


def _shrunk(scatter: np.ndarray, shrink: float) -> np.ndarray | None:
    """``(1 - shrink) S + shrink * trace(S)/d * I`` plus a tiny ridge; None when trace(S) is ~0."""
    size = scatter.shape[0]
    scale = float(np.trace(scatter)) / size
    if not scale > 1e-15:
        return None
    out = (1.0 - shrink) * scatter + (shrink * scale + 1e-9 * scale) * np.eye(size)
    sym: np.ndarray = 0.5 * (out + out.T)
    return sym


def with_domain_mean(backend: Backend, X_domain: npt.ArrayLike) -> Backend:
    """A copy of ``backend`` centred on the mean of unlabelled in-domain embeddings.

    Re-estimating the mean on the target channel (e.g. a lender's own calls) is the cheapest
    domain adaptation: it removes the channel offset without needing speaker labels.

    Args:
        backend: the backend to adapt.
        X_domain: raw (not transformed) embeddings from the target domain, shape (n, d), n >= 1.

    Returns:
        A new Backend with the same projection and model, the new mean, and ``source`` extended.

    Raises:
        UsageError: wrong dimension, empty or non-finite input.
    """
    arr = as_matrix(X_domain, "in-domain embeddings")
    if arr.shape[1] != backend.dimension:
        raise UsageError(
            f"in-domain embeddings have dimension {arr.shape[1]} but the backend expects {backend.dimension}."
        )
    note = f"domain mean from {arr.shape[0]} embeddings"
    source = f"{backend.source}; {note}" if backend.source else note
    return replace(backend, mean=arr.mean(axis=0), source=source)


COVARIANCE_METHODS = ("coral", "whiten")
"""Label-free covariance alignment of the projected space to a deployment's calls
(:func:`with_domain_covariance`): ``coral`` whitens with the in-domain covariance and re-colours with
the back-end's training covariance; ``whiten`` only whitens."""


def with_domain_covariance(
    backend: Backend, X_domain: npt.ArrayLike, method: str = "coral", shrink: float = 0.5
) -> Backend:
    """A copy of ``backend`` whose projected space is aligned to the covariance of unlabelled
    in-domain embeddings (CORAL, Sun et al. 2016; for speaker verification Alam et al., Odyssey 2018).

    In the projected space (after the LDA projection ``P``, before length normalisation), with
    ``C_in`` the covariance of the projected in-domain rows about their own mean and ``C_out = P' (W +
    B) P`` the total covariance of the back-end's training segments (its statistics), every projected
    vector ``y`` becomes ``y A``:

    - ``coral``: ``A = C_a^(-1/2) C_out^(1/2)`` with ``C_a = (1 - shrink) C_in + shrink C_out``
      (shrunk towards the training covariance, i.e. towards the identity in training-whitened coordinates);
    - ``whiten``: ``A = C_a^(-1/2)`` with ``C_a = (1 - shrink) C_in + shrink trace(C_in)/k I``.

    ``A`` is folded into the projection (``P A``), so the result scores through the same code; the
    mean is unchanged (centre with :func:`with_domain_mean` as well). ``shrink = 1`` leaves the
    projection as it is (today's scores exactly).

    Args:
        backend: the backend to adapt; ``coral`` needs its training statistics.
        X_domain: raw (not transformed) in-domain embeddings, shape (n, d), n > k (the back-end's
            output dimension): fewer rows cannot estimate a (k, k) covariance.
        method: one of :data:`COVARIANCE_METHODS`.
        shrink: weight of the shrinkage target in [0, 1]; 0 trusts the in-domain covariance alone.

    Returns:
        A new Backend with projection shape (d, k) and ``source`` extended.

    Raises:
        UsageError: unknown method, shrink outside [0, 1], wrong dimension, non-finite input, too few
            rows, a back-end without statistics (``coral``) or a degenerate in-domain covariance.
    """
    if method not in COVARIANCE_METHODS:
        raise UsageError(f"covariance alignment method {method!r} is unknown; use one of {COVARIANCE_METHODS}.")
    if not 0.0 <= shrink <= 1.0:
        raise UsageError(f"covariance alignment shrink must be in [0, 1]; got {shrink}.")
    arr = as_matrix(X_domain, "in-domain embeddings")
    k = backend.output_dimension
    if arr.shape[1] != backend.dimension:
        raise UsageError(
            f"in-domain embeddings have dimension {arr.shape[1]} but the backend expects {backend.dimension}."
        )
    if arr.shape[0] <= k:
        raise UsageError(
            f"covariance alignment needs more in-domain embeddings than the {k} dimensions it aligns; got "
            f"{arr.shape[0]}: wait for more calls in the cohort, or turn the alignment off."
        )
    if method == "coral" and backend.stats is None:
        raise UsageError(
            f"CORAL alignment needs the back-end's training statistics, and back-end {backend.source[:80]!r} "
            "has none: train it with scripts/train_backend.py, or use method 'whiten'."
        )
    proj = np.eye(backend.dimension) if backend.projection is None else backend.projection
    note = f"{method} covariance alignment (shrink {shrink:g}) to {arr.shape[0]} embeddings"
    source = f"{backend.source}; {note}" if backend.source else note
    if shrink == 1.0:
        return replace(backend, source=source)
    y = arr @ proj
    y = y - y.mean(axis=0)
    c_in = y.T @ y / (len(y) - 1)
    if method == "coral":
        assert backend.stats is not None
        target = proj.T @ (backend.stats.within + backend.stats.between) @ proj
    else:
        target = float(np.trace(c_in)) / k * np.eye(k)
    mixed = (1.0 - shrink) * c_in + shrink * target
    align = _inverse_sqrt(mixed, "in-domain")
    if method == "coral":
        align = align @ _sqrt(target)
    return replace(backend, projection=proj @ align, source=source)


def _sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance (negative eigenvalues, rounding, set to zero)."""
    return _spectral(cov, lambda values: np.sqrt(np.maximum(values, 0.0)))


def _inverse_sqrt(cov: np.ndarray, what: str) -> np.ndarray:
    """Symmetric inverse square root of a covariance; UsageError when it is (numerically) singular."""
    values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    if not values[0] > 1e-12 * max(float(values[-1]), 1e-300):
        raise UsageError(
            f"the {what} covariance is singular (eigenvalues {values[0]:.3g} .. {values[-1]:.3g}): the embeddings "
            "vary in fewer directions than the back-end has; raise the shrinkage or add more varied calls."
        )
    out: np.ndarray = (vectors / np.sqrt(values)) @ vectors.T
    return out


# --------------------------------------------------------------------------------------------
# score normalisation
# --------------------------------------------------------------------------------------------


def top_stats(cohort: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (floored) std of the ``top_n`` highest scores of each row of ``cohort`` (r, c)."""
    size = cohort.shape[1]
    use = min(top_n, size)
    if use < 2:
        raise UsageError(
            f"AS-norm needs at least 2 cohort scores per side (top_n={top_n}, cohort size={size}); "
            "use a larger cohort and top_n >= 2."
        )
    top = np.partition(cohort, size - use, axis=1)[:, size - use :]
    return top.mean(axis=1), np.maximum(top.std(axis=1), _MIN_STD)


def asnorm_matrix(
    raw: npt.ArrayLike,
    enroll_cohort_scores: npt.ArrayLike,
    test_cohort_scores: npt.ArrayLike,
    top_n: int,
) -> np.ndarray:
    """Adaptive symmetric score normalisation for a grid of trials (every enrolment vs every test).

    Args:
        raw: scores, shape (n, m): enrolment i vs test j.
        enroll_cohort_scores: shape (n, c_e): enrolment i vs each cohort vector.
        test_cohort_scores: shape (m, c_t): test j vs each cohort vector.
        top_n: cohort scores kept per side, >= 2 (clipped to the cohort size).

    Returns:
        float64, shape (n, m): ``0.5 * ((raw - mu_e) / sd_e + (raw - mu_t) / sd_t)`` where ``mu``/``sd``
        are the mean and standard deviation of the ``top_n`` highest cohort scores of each side
        (AS-norm1, Matejka et al. 2017; unchanged by one increasing affine map of all scores).

    Raises:
        UsageError: shapes that do not line up, empty or non-finite inputs.
    """
    scores = as_matrix(raw, "raw scores")
    enroll = as_matrix(enroll_cohort_scores, "enrolment cohort scores")
    test = as_matrix(test_cohort_scores, "test cohort scores")
    if enroll.shape[0] != scores.shape[0] or test.shape[0] != scores.shape[1]:
        raise UsageError(
            f"raw scores {scores.shape} need {scores.shape[0]} rows of enrolment cohort scores "
            f"and {scores.shape[1]} rows of test cohort scores; got {enroll.shape[0]} and "
            f"{test.shape[0]}."
        )
    mu_e, sd_e = top_stats(enroll, top_n)
    mu_t, sd_t = top_stats(test, top_n)
    out: np.ndarray = 0.5 * ((scores - mu_e[:, None]) / sd_e[:, None] + (scores - mu_t) / sd_t)
    return out


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Affine map from a score to a natural-log likelihood ratio: ``llr = a * score + b``.

    Attributes:
        a: slope (> 0 for a useful score).
        b: offset.
        source: what data it was fitted on.
        model: embedder (and scoring chain) whose scores it maps.
        n_target: genuine trials used to fit it.
        n_nontarget: impostor trials used to fit it.
        prior: target prior the fit was weighted for.
    """

    a: float
    b: float
    source: str = ""
    model: str = ""
    n_target: int = 0
    n_nontarget: int = 0
    prior: float = 0.5

    @overload
    def llr(self, score: float) -> float: ...

    @overload
    def llr(self, score: np.ndarray) -> np.ndarray: ...

    def llr(self, score: float | np.ndarray) -> float | np.ndarray:
        """Log-likelihood ratio (natural log) of a score or an array of scores (same shape)."""
        if np.ndim(score) == 0:
            return float(self.a * float(score) + self.b)
        return self.a * np.asarray(score, dtype=np.float64) + self.b


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def fit_calibration(
    target_scores: npt.ArrayLike,
    nontarget_scores: npt.ArrayLike,
    prior: float = 0.5,
    model: str = "",
    source: str = "",
) -> Calibration:
    """Fit ``llr = a * score + b`` by prior-weighted logistic regression (BOSARIS style).

    Minimises ``prior * mean_t log(1 + exp(-(llr + logit(prior)))) + (1 - prior) * mean_n
    log(1 + exp(llr + logit(prior)))`` (scipy's trust-region Newton method with the exact
    gradient and Hessian) on standardised scores. A tiny L2 penalty on the slope keeps the
    solution finite when the classes are perfectly separated.

    Args:
        target_scores: genuine-trial scores, shape (n_t,).
        nontarget_scores: impostor-trial scores, shape (n_n,).
        prior: target prior in (0, 1) the fit is weighted for (the cost is Cllr at that prior).
        model: stored in the result.
        source: stored in the result.

    Returns:
        The fitted Calibration.

    Raises:
        UsageError: empty/non-finite inputs, ``prior`` outside (0, 1), or scores with no spread.
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    tar = as_scores(target_scores, "target scores")
    non = as_scores(nontarget_scores, "nontarget scores")
    if not 0.0 < prior < 1.0:
        raise UsageError(f"prior must be in (0, 1); got {prior}.")
    scores = np.concatenate([tar, non])
    centre = float(scores.mean())
    spread = float(scores.std())
    if not spread > 1e-12:
        raise UsageError("all scores are equal; a calibration slope cannot be fitted.")
    z = (scores - centre) / spread
    y = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    w = np.concatenate([np.full(tar.size, prior / tar.size), np.full(non.size, (1 - prior) / non.size)])
    offset = _logit(prior)
    ridge = 1e-6

    def loss(p: np.ndarray) -> tuple[float, np.ndarray]:
        eta = p[0] * z + p[1] + offset
        per = np.where(y > 0, np.logaddexp(0.0, -eta), np.logaddexp(0.0, eta))
        g = w * (expit(eta) - y)
        return float(np.sum(w * per) + 0.5 * ridge * p[0] ** 2), np.array([g @ z + ridge * p[0], g.sum()])

    def hessian(p: np.ndarray) -> np.ndarray:
        post = expit(p[0] * z + p[1] + offset)
        h = w * post * (1.0 - post)
        return np.array([[h @ (z * z) + ridge, h @ z], [h @ z, h.sum() + 1e-12]])

    params = minimize(loss, np.array([1.0, 0.0]), jac=True, hess=hessian, method="trust-exact", tol=1e-12).x
    alpha, beta = float(params[0]), float(params[1])
    a = alpha / spread
    b = beta - alpha * centre / spread
    if a <= 0:
        log.warning("calibration slope %.3g is not positive: scores do not separate the classes", a)
    return Calibration(
        a=a,
        b=b,
        source=source,
        model=model,
        n_target=int(tar.size),
        n_nontarget=int(non.size),
        prior=prior,
    )


# --------------------------------------------------------------------------------------------
# thresholds and decisions
# --------------------------------------------------------------------------------------------


def threshold_at_false_flag(target_scores: npt.ArrayLike, max_false_flag: float) -> float:
    """Highest threshold that flags at most ``max_false_flag`` of the genuine trials.

    A genuine trial is flagged (verdict ``mismatch``) when its score is below the threshold. The
    result is an order statistic of ``target_scores``: ``#(target < threshold) <= max_false_flag
    * n``, and any higher threshold would flag more.

    Args:
        target_scores: genuine-trial scores, shape (n,).
        max_false_flag: tolerated fraction of genuine trials flagged, in [0, 1).

    Returns:
        The threshold (one of the target scores).

    Raises:
        UsageError: empty/non-finite scores or ``max_false_flag`` outside [0, 1).
    """
    tar = np.sort(as_scores(target_scores, "target scores"))
    if not 0.0 <= max_false_flag < 1.0:
        raise UsageError(f"max_false_flag must be a fraction in [0, 1); got {max_false_flag}.")
    allowed = math.floor(max_false_flag * tar.size + 1e-9)
    return float(tar[min(allowed, tar.size - 1)])
