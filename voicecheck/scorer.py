"""THE scoring path: the scoring space per band, calibration, and the accept decision.

Every decision that a score passes or fails goes through a :class:`Scorer`: the Judge's verdict,
the watchlist search, the mono split's collector test, rings (calls verified as their borrower)
and rescore. The cross-call analyses map vectors into the same :class:`Space` instead of
rebuilding it.

A **space** is what one band's vectors go through before they are compared: the trained back-end
(LDA for GE2E) or none, centred on the in-domain mean when a cohort of the deployment's own calls
exists, and AS-norm against that cohort. Its **mode** names what was applied: ``cosine`` (raw),
``asnorm`` (centred + AS-norm), ``lda`` and ``lda+asnorm`` (a trained projection first, cosine
scores), ``plda`` (the back-end's PLDA log-likelihood ratio instead of the cosine, centred on the
cohort when there is one but not normalised: ``backend_scoring = "plda"``). Each mode has its own
score scale, so thresholds and calibrations are kept per mode in a *profile*: shipped defaults in
``voicecheck/data/<model key>-profile.json`` (which say which data they came from), overridden by
``<embeddings>/calibration/<model key>.json`` written by ``voicecheck calibrate``, and overridden
in turn by a threshold the settings give for that mode. A back-end adapted to the deployment's own
calls (:mod:`voicecheck.adapt`) has a score scale of its own: the shipped profile's back-end modes
do not apply to it, a calibration applies to the back-end it was made with only, and the operating
point (measured on the deployment's calls, any scale) is what normally sets its threshold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import Settings
from .errors import ModelMismatchError, NotEnrolledError, UsageError
from .operating import OperatingPoint, choose_pairs, operating_point
from .scoring import (
    Backend,
    Calibration,
    Plda,
    asnorm_matrix,
    top_stats,
    unit,
    with_domain_covariance,
    with_domain_mean,
)
from .types import Voiceprint

log = logging.getLogger(__name__)

DATA = resources.files("voicecheck") / "data"


class Scorable(Protocol):
    """What the scorer reads of a call (a :class:`voicecheck.types.CallEmbedding` is one)."""

    @property
    def content_hash(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def band(self) -> str: ...
    @property
    def vector(self) -> np.ndarray: ...
    @property
    def narrow_vector(self) -> np.ndarray | None: ...


@dataclass(frozen=True)
class CallVector:
    """A :class:`Scorable` without windows: a stored call's vectors, or an enrollment recording
    checked against a voiceprint."""

    content_hash: str
    model: str
    band: str
    vector: np.ndarray
    narrow_vector: np.ndarray | None


@dataclass
class Cohort:
    """Unlabelled in-domain call embeddings of one band: the centring mean and the AS-norm cohort."""

    vectors: np.ndarray  # (n, d) raw unit-norm
    hashes: list[str]
    owners: list[set[str]]

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def people(self) -> int:
        """Distinct borrowers among the calls (an unlinked call counts as one person)."""
        return len({b for o in self.owners for b in o}) + sum(1 for o in self.owners if not o)


@dataclass(frozen=True)
class Space:
    """One band's scoring space: back-end (centred on the cohort's mean when there is a cohort), the
    comparison (cosine, or the back-end's PLDA) and, in the ``*asnorm`` modes, AS-norm against the
    cohort.

    Attributes:
        band: "narrow" or "wide".
        mode: what is applied (see the module notes).
        backend: the transform before scoring, or None (plain length normalisation).
        cohort: the in-domain cohort, or None (fewer than ``cohort_min`` calls).
        top_n: AS-norm top-N.
        cohort_min: fewest distinct people a cohort needs (checked when the space is built).
        plda: score with this PLDA model of the back-end's projected space instead of the cosine.
    """

    band: str
    mode: str
    backend: Backend | None
    cohort: Cohort | None = None
    top_n: int = 200
    cohort_min: int = 20
    plda: Plda | None = None
    _projected: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.plda is not None and self.backend is None:
            raise UsageError("a PLDA space needs the back-end whose projection it models")
        if self.cohort is not None and self._projected is None:
            object.__setattr__(self, "_projected", self.embed(self.cohort.vectors))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Rows (or one vector) mapped into the space: unit-norm, float32, cosine = similarity there
        (the cross-call analyses' scale; PLDA scoring starts from the same projection)."""
        return unit(x) if self.backend is None else self.backend.transform(x)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Rows as :meth:`compare` takes them: unit-norm (float32) for cosine scoring, PLDA
        coordinates (float64) for PLDA scoring; shape (n, k)."""
        if self.plda is not None:
            assert self.backend is not None
            return self.plda.project(self.backend.project(x))
        return np.atleast_2d(self.transform(x))

    def compare(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores on this space's (un-normalised) scale of every row of ``a`` with every row of ``b``
        (both from :meth:`embed`), shape (n, m)."""
        return self.plda.llr(a, b) if self.plda is not None else a @ b.T

    def compare_pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """:meth:`compare` of row i of ``a`` with row i of ``b``, shape (n,)."""
        return self.plda.llr_pairs(a, b) if self.plda is not None else np.sum(a * b, axis=1)

    def recentred(self, domain: np.ndarray) -> Space:
        """The same space without AS-norm, centred on the mean of ``domain`` (raw vectors, (n, d)):
        for cross-call analyses over a population of calls that is its own domain."""
        base = self.backend or Backend.identity("", np.asarray(domain).shape[1])
        return Space(self.band, self.mode, with_domain_mean(base, domain), None, self.top_n, self.cohort_min, self.plda)

    def scores(
        self, enroll: np.ndarray, tests: np.ndarray, exclude_hash: str = "", exclude_owner: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score one enrollment vector against rows of test vectors.

        The cohort leaves out the call ``exclude_hash`` and every call of ``exclude_owner`` (a call
        never normalises against itself or its own borrower's calls).

        Returns:
            (scores on this space's scale, raw cosines), each float64, shape (n,).
        """
        tests = np.atleast_2d(tests)
        raw = tests @ enroll / (np.linalg.norm(tests, axis=1) * np.linalg.norm(enroll) + 1e-12)
        e, t = self.embed(enroll[None, :]), self.embed(tests)
        s = self.compare(e, t)[0].astype(np.float64)
        if self.cohort is not None and self._projected is not None and self.mode.endswith("asnorm"):
            keep = np.array(
                [
                    h != exclude_hash and exclude_owner not in o
                    for h, o in zip(self.cohort.hashes, self.cohort.owners, strict=True)
                ]
            )
            proj = self._projected[keep]
            s = asnorm_matrix(s[None, :], self.compare(e, proj), self.compare(t, proj), min(self.top_n, len(proj)))[0]
        return np.asarray(s, dtype=np.float64), np.asarray(raw, dtype=np.float64)

    def pair_scores(
        self, enrolls: np.ndarray, owners: list[str], rows: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]
    ) -> np.ndarray:
        """Scores of cohort calls against other voiceprints, as :meth:`scores` would give each pair.

        Each enrollment side leaves out its owner's calls, each call side leaves out the call itself
        (a call in the cohort would otherwise match itself); the borrower's own calls of the call
        stay, as an impostor's other calls stay in a real impostor trial.

        Args:
            enrolls: voiceprint vectors, shape (v, d); ``owners`` their borrowers, (v,).
            rows: cohort rows of the calls, shape (c,).
            pairs: (index into ``enrolls``, index into ``rows``) of each trial, each shape (n,).

        Returns:
            float64, shape (n,).
        """
        if self.cohort is None or self._projected is None:
            raise UsageError(f"the {self.band}-band space has no cohort: its calls cannot be paired")
        e = self.embed(enrolls).astype(np.float64)
        proj, t = self._projected.astype(np.float64), self._projected[rows].astype(np.float64)
        vp, call = pairs
        raw = self.compare_pairs(e[vp], t[call])
        if not self.mode.endswith("asnorm"):
            return raw
        rows_of: dict[str, list[int]] = {}
        for j, who in enumerate(self.cohort.owners):
            for b in who:
                rows_of.setdefault(b, []).append(j)
        enroll_side, most = self.compare(e, proj), 0
        for i, owner in enumerate(owners):
            mine = rows_of.get(owner, [])
            enroll_side[i, mine] = -np.inf
            most = max(most, len(mine))
        call_side = self.compare(t, proj)
        call_side[np.arange(len(rows)), rows] = -np.inf
        mu_e, sd_e = top_stats(enroll_side, min(self.top_n, len(proj) - most))
        mu_t, sd_t = top_stats(call_side, min(self.top_n, len(proj) - 1))
        return np.asarray(0.5 * ((raw - mu_e[vp]) / sd_e[vp] + (raw - mu_t[call]) / sd_t[call]), dtype=np.float64)


@dataclass(frozen=True)
class Threshold:
    """A decision threshold on one mode's scale and where it came from.

    ``lower`` < ``value`` marks a weak-evidence band: a score in [lower, value) is inconclusive.
    """

    value: float
    source: str
    lower: float | None = None

    @property
    def mismatch_below(self) -> float:
        return self.value if self.lower is None else self.lower


@dataclass(frozen=True)
class Score:
    """A comparison's outcome on the scorer's scale, and the decision on it."""

    score: float
    raw_cosine: float
    llr: float | None
    threshold: float  # NaN when scored with ``with_threshold=False`` (labelled trials)
    band: str
    mode: str
    threshold_source: str = ""
    mismatch_below: float | None = None

    @property
    def accepted(self) -> bool:
        """The 1:1 decision: the score reaches the threshold (False when there is no threshold)."""
        return bool(self.score >= self.threshold)

    @property
    def weak(self) -> bool:
        """Not accepted, but not below the mismatch threshold either: too weak evidence either way."""
        return self.mismatch_below is not None and self.mismatch_below <= self.score < self.threshold


def needs_backend(mode: str) -> bool:
    """Does a scoring mode's scale depend on the trained back-end (``lda*``, ``plda*``)?"""
    return mode.startswith(("lda", "plda"))


@dataclass
class Profile:
    """Thresholds and calibrations per scoring mode, with where they came from.

    ``takeover`` holds the model's limits for the takeover detector (``max_side_cosine``: a raw window
    cosine, so one value for every mode), with their ``source``; {} when none was measured.
    """

    model: str
    source: str
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    takeover: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, key: str, embeddings: str | Path, backend: Backend | None = None) -> Profile:
        """The shipped profile of ``key`` overridden by the workspace's calibration file.

        For the back-end modes, an entry applies only to the back-end it was made with: the shipped
        ones not to a back-end adapted to the deployment (:attr:`Backend.adapted`); a calibrated one
        (which records the back-end's :attr:`Backend.digest`) to that back-end only, and one made
        before back-ends were recorded to any back-end but an adapted one.
        """
        shipped = DATA / f"{key}-profile.json"
        data: dict[str, Any] = json.loads(shipped.read_text()) if shipped.is_file() else {"model": "", "source": ""}
        adapted = backend is not None and backend.adapted
        digest = "" if backend is None else backend.digest
        modes = {
            m: {**v, "source": f"shipped profile {key}-profile.json"}
            for m, v in data.get("modes", {}).items()
            if not (adapted and needs_backend(m))
        }
        takeover = data.get("takeover", {})
        local = Path(embeddings) / "calibration" / f"{key}.json"
        if local.is_file():
            try:
                over = json.loads(local.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise UsageError(f"calibration file {local} cannot be read: {e}") from None
            for mode, values in over.get("modes", {}).items():
                made_with = values.get("backend", "")
                if needs_backend(mode) and (made_with or adapted) and made_with != digest:
                    log.info("calibration of mode %s in %s was made with another back-end: not used", mode, local)
                    continue
                modes[mode] = {
                    **modes.get(mode, {}),
                    **values,
                    "source": over.get("source", f"calibration file {local}"),
                    "local": True,
                }
            takeover = over.get("takeover", takeover)
        return cls(data.get("model", ""), data.get("source", ""), modes, dict(takeover))

    def save_mode(
        self,
        key: str,
        embeddings: str | Path,
        mode: str,
        values: dict[str, Any],
        source: str,
        backend: Backend | None = None,
    ) -> Path:
        """Write ``values`` for ``mode`` into the workspace's calibration file (other modes kept); a
        back-end mode records ``backend``'s digest (the entry then applies to that back-end only)."""
        from .files import private_dir, write_private

        path = private_dir(Path(embeddings) / "calibration") / f"{key}.json"
        current: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"model": self.model, "modes": {}}
        current["source"] = source
        current["modes"][mode] = {**values, **({"backend": backend.digest} if backend and needs_backend(mode) else {})}
        write_private(path, json.dumps(current, indent=2) + "\n")
        return path

    def save_takeover(self, key: str, embeddings: str | Path, values: dict[str, Any]) -> Path:
        """Write the takeover limits (``values``, with their ``source``) into the workspace's calibration file."""
        from .files import private_dir, write_private

        path = private_dir(Path(embeddings) / "calibration") / f"{key}.json"
        current: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"model": self.model, "modes": {}}
        current["takeover"] = values
        write_private(path, json.dumps(current, indent=2) + "\n")
        return path


class Scorer:
    """Scores embeddings of one model against voiceprints, and decides.

    Args:
        settings: run settings (threshold overrides, AS-norm top-N, ...).
        model: embedder name every vector must carry.
        key: manifest key of the model (names the shipped files).
        backend: trained projection, or None.
        cohorts: in-domain cohort per band ("narrow"/"wide"); empty for none.
    """

    def __init__(
        self, settings: Settings, model: str, key: str, backend: Backend | None, cohorts: dict[str, Cohort]
    ) -> None:
        self.settings = settings
        self.model = model
        self.key = key
        self.backend = backend
        self.profile = Profile.load(key, settings.embeddings, backend)
        self.plda = backend.plda() if backend is not None and settings.backend_scoring == "plda" else None
        self.spaces = {band: self._space(band, backend, cohorts.get(band)) for band in ("narrow", "wide")}
        self.operating: dict[str, OperatingPoint | str] = {}

    def _space(self, band: str, backend: Backend | None, cohort: Cohort | None) -> Space:
        """The band's space. With PLDA the cohort centres the back-end but does not normalise the
        scores: AS-norm on PLDA log-likelihood ratios raised the EER of the shipped profile's TUNE
        trials (four rotations, 124 genuine) from 3.1% to 6.0% (benchmarks/adaptation.py has in-domain figures)."""
        s = self.settings
        if cohort is None or cohort.people < s.cohort_min:
            mode = "cosine" if backend is None else ("plda" if self.plda is not None else "lda")
            return Space(band, mode, backend, None, s.cohort_top_n, s.cohort_min, self.plda)
        centred = with_domain_mean(backend or Backend.identity(self.model, cohort.vectors.shape[1]), cohort.vectors)
        mode = "asnorm" if backend is None else ("plda" if self.plda is not None else "lda+asnorm")
        return Space(band, mode, self._aligned(band, centred, cohort), cohort, s.cohort_top_n, s.cohort_min, self.plda)

    def _aligned(self, band: str, centred: Backend, cohort: Cohort) -> Backend:
        """``centred`` aligned to the cohort's covariance as well (``settings.cohort_covariance``), or as
        it is when that is off or the cohort has no more calls than the back-end has output dimensions
        (logged: the space is then centred only, today's default)."""
        s = self.settings
        if s.cohort_covariance == "off":
            return centred
        if len(cohort) <= centred.output_dimension:
            log.warning(
                "%s-band cohort of %d calls is too small to align the %d-dimensional space's covariance: centred only",
                band, len(cohort), centred.output_dimension,
            )  # fmt: skip
            return centred
        return with_domain_covariance(centred, cohort.vectors, s.cohort_covariance, s.cohort_covariance_shrink)

    @classmethod
    def build(
        cls, settings: Settings, model: str, key: str, callstore: Any | None = None, voiceprints: Any | None = None
    ) -> Scorer:
        """Load the back-end named by the settings and, if enabled, the cohort from ``callstore``;
        with ``voiceprints`` (the store) and ``settings.operating_point``, measure each band's
        operating point (:meth:`measure_operating_points`)."""
        cohorts: dict[str, Cohort] = {}
        if settings.cohort and callstore is not None:
            for band in ("narrow", "wide"):
                vectors, hashes, owners = callstore.cohort(
                    model, band, settings.cohort_max, settings.cohort_per_borrower
                )
                if len(vectors):
                    cohorts[band] = Cohort(vectors, hashes, owners)
        scorer = cls(settings, model, key, load_backend(settings, key, model), cohorts)
        if voiceprints is not None and settings.operating_point:
            scorer.measure_operating_points(voiceprints)
        return scorer

    def measure_operating_points(self, voiceprints: Any, seed: int = 0) -> None:
        """Each band's threshold from the deployment's own calls (:mod:`voicecheck.operating`).

        The calls are the band's cohort members linked to a borrower (tonight's and earlier nights'
        calls; at most ``settings.nontarget_calls``, evenly spread); each is scored, in the band's
        space and normalisation, against ``settings.nontarget_per_call`` voiceprints of other
        borrowers drawn from a pool of ``settings.nontarget_voiceprints``; pairs of two borrowers with
        the same voice are left out (:meth:`_not_twins`). Deterministic for a given store. A band
        without enough trials keeps its profile threshold (:meth:`threshold` says why in the source).
        """
        s = self.settings
        rng = np.random.default_rng(seed)
        enrolled = sorted(str(r["id"]) for r in voiceprints.summaries("borrower", self.model))
        for band, space in self.spaces.items():
            if space.cohort is None:
                self.operating[band] = "no in-domain cohort of enough people yet"
                continue
            linked = np.array([i for i, o in enumerate(space.cohort.owners) if o], dtype=np.int64)
            rows = linked[:: max(1, -(-len(linked) // s.nontarget_calls))]
            pool_ids = [enrolled[i] for i in np.sort(rng.permutation(len(enrolled))[: s.nontarget_voiceprints])]
            pool = _vectors(voiceprints, pool_ids, self.model, band)
            owners = [space.cohort.owners[r] for r in rows]
            call, vp = choose_pairs(owners, [o for o, _ in pool], s.nontarget_per_call, rng)
            keep = self._not_twins(space, voiceprints, rows, owners, pool, (call, vp))
            non = np.zeros(0)
            if keep.any():
                enrolls = np.stack([v for _, v in pool])
                non = space.pair_scores(enrolls, [o for o, _ in pool], rows, (vp[keep], call[keep]))
            self.operating[band] = operating_point(
                band,
                space.mode,
                non,
                len(set(call[keep].tolist())),
                len(set(vp[keep].tolist())),
                s.max_false_accept,
                s.weak_evidence_band,
                dropped=float(1.0 - keep.mean()) if len(keep) else 0.0,
            )

    def _not_twins(
        self,
        space: Space,
        voiceprints: Any,
        rows: np.ndarray,
        owners: list[set[str]],
        pool: list[tuple[str, np.ndarray]],
        pairs: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Which sampled pairs are kept: a pair whose two borrowers' voiceprints are as alike as a
        typical call and its own borrower's voiceprint (in the space, before normalisation) is taken
        for one person enrolled as two borrowers (an agent) and left out of the non-target sample.

        Different people's voiceprints almost never come that close, so on a clean store this drops
        next to nothing (unlike trimming the top of the sample, which costs false accepts).
        """
        call, vp = pairs
        keep = np.ones(len(call), dtype=bool)
        single = {r: sorted(o)[0] for r, o in zip(rows.tolist(), owners, strict=True) if len(o) == 1}
        own = dict(_vectors(voiceprints, sorted(set(single.values())), self.model, space.band))
        if not own or not len(call):
            return keep
        assert space.cohort is not None
        mine = [(r, o) for r, o in single.items() if o in own]
        calls_t = space.transform(space.cohort.vectors[[r for r, _ in mine]])
        own_t = dict(zip(own, space.transform(np.stack(list(own.values()))), strict=True))
        level = float(np.median(np.sum(calls_t * np.stack([own_t[o] for _, o in mine]), axis=1)))
        pool_t = space.transform(np.stack([v for _, v in pool]))
        for k, (c, v) in enumerate(zip(call.tolist(), vp.tolist(), strict=True)):
            o = single.get(int(rows[c]))
            if o in own_t and float(own_t[o] @ pool_t[v]) >= level:
                keep[k] = False
        return keep

    def space(self, band: str) -> Space:
        return self.spaces[band]

    def mode(self, band: str) -> str:
        return self.spaces[band].mode

    def threshold(self, band: str) -> Threshold:
        """The threshold of ``band``'s mode, in this order: the settings' for that mode; one
        ``voicecheck calibrate`` fitted on the lender's own labelled calls; the band's operating point
        (:meth:`measure_operating_points`); the shipped profile's.

        Raises:
            UsageError: the mode has neither (say how to get one).
        """
        mode = self.mode(band)
        if mode in self.settings.thresholds:
            return Threshold(float(self.settings.thresholds[mode]), f"settings: thresholds.{mode}")
        values = self.profile.modes.get(mode, {})
        if values.get("local") and "threshold" in values:  # voicecheck calibrate on the lender's own labels
            return Threshold(float(values["threshold"]), str(values.get("source", "calibration file")))
        point = self.operating.get(band)
        if isinstance(point, OperatingPoint) and point.mode == mode:
            lower = point.lower if point.lower < point.threshold else None
            return Threshold(point.threshold, point.source, lower)
        why = f" ({point})" if isinstance(point, str) else ""
        if "threshold" not in values:
            raise UsageError(
                f"no calibrated threshold for model {self.key!r} in scoring mode {mode!r} and no operating point"
                f"{why or ' (operating_point is off)'}; run 'voicecheck calibrate TRIALS.csv' or pass "
                f"--threshold {mode}=VALUE"
            )
        return Threshold(float(values["threshold"]), str(values.get("source", "profile")) + why)

    def watchlist_threshold(self) -> Threshold:
        """Score at or above which a watchlist voice is a hit (narrow band): the settings' for the
        narrow mode, else the match threshold."""
        mode = self.mode("narrow")
        if mode in self.settings.watchlist_thresholds:
            return Threshold(float(self.settings.watchlist_thresholds[mode]), f"settings: watchlist_thresholds.{mode}")
        return self.threshold("narrow")

    def calibration(self, band: str) -> Calibration | None:
        c = self.profile.modes.get(self.mode(band), {}).get("calibration")
        return Calibration(a=float(c["a"]), b=float(c["b"])) if c else None

    def scores(
        self, enroll: np.ndarray, tests: np.ndarray, band: str, exclude_hash: str = "", exclude_owner: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`Space.scores` in ``band``: (scores on this scorer's scale, raw cosines), each (n,)."""
        return self.spaces[band].scores(enroll, tests, exclude_hash, exclude_owner)

    def score(self, voiceprint: Voiceprint, call: Scorable, with_threshold: bool = True) -> Score:
        """Compare a call's customer embedding with a voiceprint in the call's band, and decide.

        Args:
            with_threshold: look up the decision threshold (raises UsageError when the mode has none);
                False (``Score.threshold`` is then NaN) for scoring labelled trials, which must work
                before any calibration exists.
        """
        return self.score_many(voiceprint, [call], with_threshold, exclude_hash=call.content_hash)[0]

    def score_many(
        self, voiceprint: Voiceprint, calls: Sequence[Scorable], with_threshold: bool = True, exclude_hash: str = ""
    ) -> list[Score]:
        """:meth:`score` for several calls of one claimed borrower, vectorised per band.

        The cohort leaves out the borrower's own calls (and ``exclude_hash``), as the batch does.
        """
        by_band: dict[str, list[tuple[int, np.ndarray]]] = {}
        enrolls: dict[str, np.ndarray] = {}
        for i, call in enumerate(calls):
            band, test, enroll = self._sides(voiceprint, call)
            by_band.setdefault(band, []).append((i, test))
            enrolls[band] = enroll
        out: list[Score | None] = [None] * len(calls)
        for band, items in by_band.items():
            s, raw = self.scores(
                enrolls[band], np.stack([t for _, t in items]), band, exclude_hash, voiceprint.owner_id
            )
            calib = self.calibration(band)
            limit = self.threshold(band) if with_threshold else Threshold(float("nan"), "")
            for (i, _), value, cosine in zip(items, s, raw, strict=True):
                out[i] = Score(
                    score=float(value),
                    raw_cosine=float(cosine),
                    llr=None if calib is None else float(calib.llr(float(value))),
                    threshold=limit.value,
                    band=band,
                    mode=self.mode(band),
                    threshold_source=limit.source,
                    mismatch_below=limit.lower,
                )
        return [o for o in out if o is not None]

    def takeover_max_side_cosine(self) -> Threshold:
        """How alike (raw window cosine) the two sides of a call may be for a speaker change to count
        (:func:`voicecheck.analysis.detect_speaker_change`): the model's profile says, measured on its own
        genuine calls (``voicecheck calibrate`` fits it). A model without one gets 1.0 — the side test
        off, every change the score test finds reported — never another model's value."""
        value = self.profile.takeover.get("max_side_cosine")
        if value is None:
            log.warning(
                "no takeover limit for model %s in its profile: the side-cosine test is off (more speaker changes "
                "flagged); run 'voicecheck calibrate' on labelled calls to fit one",
                self.key,
            )
            return Threshold(1.0, "none for this model: side test off")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not -1.0 <= float(value) <= 1.0:
            raise UsageError(
                f"takeover max_side_cosine of model {self.key!r} must be a cosine in [-1, 1], got {value!r}"
            )
        return Threshold(float(value), str(self.profile.takeover.get("source", "profile")))

    def _sides(self, voiceprint: Voiceprint, call: Scorable) -> tuple[str, np.ndarray, np.ndarray]:
        """(band, call vector, enrollment vector) a call is compared in: its own band, or the
        telephone band when the voiceprint has only that (channel matching)."""
        if voiceprint.model != call.model or call.model != self.model:
            raise ModelMismatchError(
                f"voiceprint of model {voiceprint.model}, call of model {call.model}, scorer of model {self.model}:"
                " vectors of different models cannot be compared"
            )
        band, test = call.band, call.vector
        enroll = voiceprint.for_band(band)
        if enroll is None and call.narrow_vector is not None:  # narrowband enrollment, wideband call
            band, test = "narrow", call.narrow_vector
            enroll = voiceprint.for_band("narrow")
        if enroll is None:
            raise UsageError(f"voiceprint {voiceprint.owner_id} has no {band}-band vector")
        return band, test, enroll


def _vectors(voiceprints: Any, owners: list[str], model: str, band: str) -> list[tuple[str, np.ndarray]]:
    """(owner, vector in ``band``) of each owner's voiceprint that has one."""
    out = []
    for owner in owners:
        try:
            vector = voiceprints.get(owner, model).for_band(band)
        except (NotEnrolledError, ModelMismatchError):  # a call whose borrower has no voiceprint (any more)
            continue
        if vector is not None:
            out.append((owner, vector))
    return out


BACKENDS_DIR = "backends"
"""Folder of the embeddings workspace holding back-ends trained on the deployment's own calls."""


def adapted_backends(embeddings: str | Path, key: str) -> list[Path]:
    """The in-domain back-ends of model ``key`` in the workspace, oldest first (names carry the UTC time)."""
    folder = Path(embeddings) / BACKENDS_DIR
    return sorted(folder.glob(f"{key}-in-domain-*.npz")) if folder.is_dir() else []


def backend_path(settings: Settings, key: str) -> Any:
    """Where the back-end the settings name is: "auto" (the shipped file, None when the model ships
    none), "adapted" (the newest in-domain back-end of the model in the workspace, else as "auto"),
    "" (None: no back-end) or a path."""
    choice = settings.backend_file
    if choice == "":
        return None
    if choice == "adapted":
        found = adapted_backends(settings.embeddings, key)
        if found:
            return found[-1]
        log.info("no in-domain back-end for %s in %s yet: the shipped one is used", key, settings.embeddings)
    if choice in ("auto", "adapted"):
        shipped = DATA / f"{key}-backend.npz"
        return shipped if shipped.is_file() else None
    return Path(choice)


def load_backend(settings: Settings, key: str, model: str) -> Backend | None:
    """The trained back-end the settings name (:func:`backend_path`), or None.

    Raises:
        UsageError: the file is missing or malformed, or was trained for another model.
    """
    path = backend_path(settings, key)
    if path is None:
        return None
    with resources.as_file(path) as p:
        backend = Backend.load(p)
    if backend.model and backend.model != model:
        raise UsageError(f"back-end {path} was trained for model {backend.model}, not {model}")
    return replace(backend)
