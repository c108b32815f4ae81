"""Compose back-end, in-domain cohort, AS-norm, calibration and threshold for one model.

The scoring *mode* names what was applied: ``cosine`` (raw), ``centred`` (in-domain mean removed),
``asnorm`` (centred + AS-norm), ``lda`` and ``lda+asnorm`` (a trained projection first). Each mode has
its own score scale, so thresholds and calibrations are kept per mode in a *profile*: shipped defaults
in ``voicecheck/data/<model key>-profile.json`` (which say which data they came from), overridden by
``<embeddings>/calibration/<model key>.json`` written by ``voicecheck calibrate``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .config import Settings
from .errors import UsageError
from .scoring import Backend, Calibration, asnorm_matrix, with_domain_mean
from .types import CallEmbedding, Voiceprint

log = logging.getLogger(__name__)

DATA = resources.files("voicecheck") / "data"


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@dataclass
class Cohort:
    """Unlabelled in-domain call embeddings of one band: the centring mean and the AS-norm cohort."""

    vectors: np.ndarray  # (n, d) raw unit-norm
    hashes: list[str]
    owners: list[set[str]]

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class Score:
    """A comparison's outcome on the scorer's scale."""

    score: float
    raw_cosine: float
    llr: float | None
    threshold: float  # NaN when scored with ``with_threshold=False`` (labelled trials)
    band: str
    mode: str


@dataclass
class Profile:
    """Thresholds and calibrations per scoring mode, with where they came from."""

    model: str
    source: str
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, key: str, embeddings: str | Path) -> Profile:
        shipped = DATA / f"{key}-profile.json"
        data: dict[str, Any] = json.loads(shipped.read_text()) if shipped.is_file() else {"model": "", "source": ""}
        modes = dict(data.get("modes", {}))
        local = Path(embeddings) / "calibration" / f"{key}.json"
        if local.is_file():
            try:
                over = json.loads(local.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise UsageError(f"calibration file {local} cannot be read: {e}") from None
            for mode, values in over.get("modes", {}).items():
                modes[mode] = {**modes.get(mode, {}), **values, "source": over.get("source", str(local))}
        return cls(data.get("model", ""), data.get("source", ""), modes)

    def save_mode(self, key: str, embeddings: str | Path, mode: str, values: dict[str, Any], source: str) -> Path:
        """Write ``values`` for ``mode`` into the workspace's calibration file (other modes kept)."""
        from .files import private_dir, write_private

        path = private_dir(Path(embeddings) / "calibration") / f"{key}.json"
        current: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"model": self.model, "modes": {}}
        current["source"] = source
        current["modes"][mode] = values
        write_private(path, json.dumps(current, indent=2) + "\n")
        return path


class Scorer:
    """Scores embeddings of one model against voiceprints.

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
        self.cohorts = {b: c for b, c in cohorts.items() if len(c) >= settings.cohort_min}
        self.profile = Profile.load(key, settings.embeddings)
        self._backends: dict[str, Backend | None] = {}
        self._projected: dict[str, np.ndarray] = {}
        for band in ("narrow", "wide"):
            cohort = self.cohorts.get(band)
            b = backend
            if cohort is not None:
                b = with_domain_mean(backend or Backend.identity(model, cohort.vectors.shape[1]), cohort.vectors)
                self._projected[band] = b.transform(cohort.vectors)
            self._backends[band] = b
        self._trained = backend is not None

    @classmethod
    def build(cls, settings: Settings, model: str, key: str, callstore: Any | None = None) -> Scorer:
        """Load the back-end named by the settings and, if enabled, the cohort from ``callstore``."""
        cohorts: dict[str, Cohort] = {}
        if settings.cohort and callstore is not None:
            for band in ("narrow", "wide"):
                vectors, hashes, owners = callstore.cohort(model, band, settings.cohort_max)
                if len(vectors):
                    cohorts[band] = Cohort(vectors, hashes, owners)
        return cls(settings, model, key, load_backend(settings, key, model), cohorts)

    def mode(self, band: str) -> str:
        cohort = band in self.cohorts
        if self._trained:
            return "lda+asnorm" if cohort else "lda"
        return "asnorm" if cohort else "cosine"

    def threshold(self, band: str) -> float:
        mode = self.mode(band)
        if mode in self.settings.thresholds:
            return float(self.settings.thresholds[mode])
        values = self.profile.modes.get(mode, {})
        if "threshold" not in values:
            raise UsageError(
                f"no calibrated threshold for model {self.key!r} in scoring mode {mode!r}; run "
                f"'voicecheck calibrate TRIALS.csv' or pass --threshold {mode}=VALUE"
            )
        return float(values["threshold"])

    def calibration(self, band: str) -> Calibration | None:
        c = self.profile.modes.get(self.mode(band), {}).get("calibration")
        return Calibration(a=float(c["a"]), b=float(c["b"])) if c else None

    def _transform(self, band: str, x: np.ndarray) -> np.ndarray:
        b = self._backends[band]
        return _unit(np.asarray(x, np.float32)) if b is None else b.transform(x)

    def scores(
        self, enroll: np.ndarray, tests: np.ndarray, band: str, exclude_hash: str = "", exclude_owner: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score one enrollment vector against rows of test vectors, all in ``band``.

        Returns:
            (scores on this scorer's scale, raw cosines), each shape (n,).
        """
        tests = np.atleast_2d(tests)
        raw = tests @ enroll / (np.linalg.norm(tests, axis=1) * np.linalg.norm(enroll) + 1e-12)
        e, t = self._transform(band, enroll[None, :]), self._transform(band, tests)
        s = (t @ e[0]).astype(np.float64)
        cohort = self.cohorts.get(band)
        if cohort is not None:
            keep = np.array(
                [
                    h != exclude_hash and exclude_owner not in o
                    for h, o in zip(cohort.hashes, cohort.owners, strict=True)
                ]
            )
            proj = self._projected[band][keep]
            if len(proj) >= self.settings.cohort_min:
                top = min(self.settings.cohort_top_n, len(proj))
                s = asnorm_matrix(s[None, :], (proj @ e[0])[None, :], t @ proj.T, top)[0]
        return np.asarray(s, dtype=np.float64), raw

    def score(self, voiceprint: Voiceprint, call: CallEmbedding, with_threshold: bool = True) -> Score:
        """Compare a call's customer embedding with a voiceprint in the call's band.

        Args:
            with_threshold: look up the decision threshold (raises UsageError when the mode has none);
                False (``Score.threshold`` is then NaN) for scoring labelled trials, which must work
                before any calibration exists.
        """
        from .errors import ModelMismatchError

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
        s, raw = self.scores(enroll, test[None, :], band, call.content_hash, voiceprint.owner_id)
        calib = self.calibration(band)
        return Score(
            score=float(s[0]),
            raw_cosine=float(raw[0]),
            llr=None if calib is None else float(calib.llr(float(s[0]))),
            threshold=self.threshold(band) if with_threshold else float("nan"),
            band=band,
            mode=self.mode(band),
        )


def load_backend(settings: Settings, key: str, model: str) -> Backend | None:
    """The trained back-end the settings name: "auto" (shipped file if any), "" (none) or a path."""
    choice = settings.backend_file
    if choice == "":
        return None
    path: Any = DATA / f"{key}-backend.npz" if choice == "auto" else Path(choice)
    if choice == "auto" and not path.is_file():
        return None
    with resources.as_file(path) as p:
        backend = Backend.load(p)
    if backend.model and backend.model != model:
        raise UsageError(f"back-end {path} was trained for model {backend.model}, not {model}")
    return backend
