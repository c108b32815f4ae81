"""The maths the product scores with (numpy, scipy): vectors, back-end, normalisation, calibration.

The score scale is defined here: a **score** is a similarity, higher means more alike. Raw scores
are cosines in [-1, 1]; AS-normalised scores are unbounded z-like values; calibrated scores are
natural-log likelihood ratios (LLR). A call is accepted (``match``) when ``score >= threshold``,
so a *false flag* is a genuine (target) trial scoring below the threshold. Decisions are taken by
:class:`voicecheck.scorer.Scorer`; evaluation figures live in :mod:`voicecheck.metrics`.
"""

from __future__ import annotations

import logging
import math
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import overload

import numpy as np
import numpy.typing as npt

from .errors import ModelMismatchError, UsageError

log = logging.getLogger(__name__)

_MIN_NORM = 1e-12
"""Vectors with an L2 norm below this are treated as zero (no direction, no cosine)."""

_MIN_STD = 1e-6
"""Floor on cohort standard deviations in AS-norm, so a degenerate cohort cannot divide by zero."""

_BACKEND_FORMAT = "voicecheck-backend"
_FORMAT_VERSION = 1


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
# backend: centring + LDA/WCCN projection + length normalisation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Backend:
    """A trained transform applied to embeddings before cosine scoring.

    ``transform(x) = unit((x - mean) @ projection)``; with no projection it is ``unit(x - mean)``.

    Attributes:
        mean: centring vector in the embedder's space, shape (d,).
        projection: LDA (optionally WCCN-whitened) directions, shape (d, k); None for centring only.
        model: embedder name the backend was trained for (vectors of other models are refused).
        source: free text saying what data trained it (kept with every saved file).
    """

    mean: np.ndarray
    projection: np.ndarray | None = None
    model: str = ""
    source: str = ""

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

    @property
    def dimension(self) -> int:
        """Input dimension d (the embedder's)."""
        return int(self.mean.shape[0])

    @property
    def output_dimension(self) -> int:
        """Output dimension k (d when there is no projection)."""
        return self.dimension if self.projection is None else int(self.projection.shape[1])

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
        if model is not None and self.model and model != self.model:
            raise ModelMismatchError(
                f"backend was trained for model {self.model!r} but the vectors come from "
                f"{model!r}; use the backend of that model or Backend.identity()."
            )
        single = np.ndim(X) == 1
        arr = as_matrix(X, "embeddings")
        if arr.shape[1] != self.dimension:
            raise UsageError(
                f"embeddings have dimension {arr.shape[1]} but the backend expects "
                f"{self.dimension} (model {self.model!r})."
            )
        out = arr - self.mean
        if self.projection is not None:
            out = out @ self.projection
        out = _unit_rows(out, "transformed embeddings").astype(np.float32)
        return out[0] if single else out

    def save(self, path: str | Path) -> None:
        """Write the backend as a ``.npz`` file at exactly ``path`` (no pickles).

        Raises:
            UsageError: the file cannot be written.
        """
        proj = np.zeros((0, 0)) if self.projection is None else self.projection
        try:
            with open(path, "wb") as fh:
                np.savez(
                    fh,
                    format=np.array(_BACKEND_FORMAT),
                    version=np.array(_FORMAT_VERSION),
                    mean=self.mean,
                    projection=proj,
                    model=np.array(self.model),
                    source=np.array(self.source),
                )
        except OSError as exc:
            raise UsageError(f"cannot write backend file {str(path)!r}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Backend:
        """Read a backend written by :meth:`save`.

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
            return cls(
                mean=contents["mean"],
                projection=None if proj.size == 0 else proj,
                model=str(contents["model"]),
                source=str(contents["source"]),
            )
        except UsageError as exc:
            raise UsageError(f"backend file {where!r} is malformed: {exc}") from exc


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
    from scipy.linalg import eigh

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
    proj = proj * np.sign(proj[pivots, np.arange(proj.shape[1])])
    return Backend(mean=mean, projection=proj, model=model, source=source)


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
