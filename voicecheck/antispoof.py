"""The liveness slot: a synthetic-speech (anti-spoofing) detector scores each call's customer speech.

A deployment declares its detector in the ``[liveness]`` table of ``embeddings/models.toml``: an
ONNX file pinned by sha256, its input rate and features, and the calibration that turns the network's
output into a log-likelihood ratio (spoof against bona fide speech) with the threshold it was
chosen at. Each call then carries ``spoof_score`` (that LLR), and a call at or above the threshold is
``mismatch`` with reason ``synthetic_voice`` (:func:`judge_liveness`). A configured detector that
cannot run makes the call an ``error``, never a call checked without it.

None ships: measured, a public AASIST (trained on 16 kHz ASVspoof data) has a weak signal on wideband
cloned voices (EER ~17%) and none after a telephone channel (EER 30-50%, real speech pushed towards
"spoof"); the README section "Liveness" says what a deployment would plug in.

The detector's interface is one call, :meth:`SpoofDetector.score`. This module is named
``antispoof`` (not ``liveness``) because the replay work of issue 15 keeps its "too identical to be
live" warning in ``voicecheck/liveness.py``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import BackendUnavailableError, InsufficientSpeechError, UsageError, VoicecheckError
from .fbank import Fbank, FbankOptions
from .types import CallResult

TABLE = "liveness"
"""The models.toml table that declares the detector."""

FEATURES = ("waveform", "fbank")
"""What the detector's network takes: raw samples [batch, samples] in [-1, 1] (AASIST, RawNet2) or
Kaldi fbank [batch, frames, bins] (:mod:`voicecheck.fbank`; LCNN/ResNet detectors)."""

SYNTHETIC_VOICE = "synthetic_voice"
"""The mismatch reason of a call whose spoof score reaches the detector's threshold."""


@runtime_checkable
class SpoofDetector(Protocol):
    """A synthetic-speech detector.

    Attributes:
        name: stable id stored with every spoof score (a new file is a new name).
        sample_rate: the rate the network takes (Hz).
        threshold: the spoof score (LLR) at or above which a call is ``synthetic_voice``.
    """

    name: str
    sample_rate: int
    threshold: float

    def score(self, speech: np.ndarray, sample_rate: int) -> float:
        """The calibrated spoof score of a stretch of speech.

        Args:
            speech: mono float32 speech samples (regions joined), amplitude in [-1, 1].
            sample_rate: their rate; resampled to ``self.sample_rate`` when different.

        Returns:
            Natural-log likelihood ratio, spoofed against bona fide speech (> 0 leans spoof).
        """
        ...


@dataclass(frozen=True)
class SpoofScore:
    """A call's spoof score and the detector that gave it."""

    detector: str
    score: float


@dataclass(frozen=True)
class LivenessSpec:
    """The ``[liveness]`` table of models.toml.

    Attributes:
        name: detector id stored with every spoof score.
        weights: the .onnx file (relative paths from the manifest's folder).
        sha256: the file's pinned checksum.
        sample_rate: the rate the network takes, 8000 or 16000.
        features: one of :data:`FEATURES`.
        threshold: spoof score (LLR) at or above which a call is ``synthetic_voice``.
        llr_scale, llr_offset: the calibration: spoof score = llr_scale * raw + llr_offset, where raw is
            the network's output (``output_index`` of it) averaged over the call's windows. A network
            whose output rises with bona fide speech (AASIST's bona fide logit) gets a negative scale.
        calibration_source: the data the calibration and threshold were fitted on (shown in results).
        source: where the file came from.
        input_name, output_name: the network's input/output ("" = the only one).
        output_index: column of the output used as raw score (0 for a single-output network).
        window_s, hop_s: speech is cut into windows of this length (s) at this step; short speech is
            repeated to one window.
        batch_size: windows per onnxruntime call.
        threads: onnxruntime intra-op threads.
        fbank: feature settings when ``features`` is "fbank".
    """

    name: str
    weights: str
    sha256: str
    sample_rate: int
    features: str
    threshold: float
    llr_scale: float = 1.0
    llr_offset: float = 0.0
    calibration_source: str = ""
    source: str = ""
    input_name: str = ""
    output_name: str = ""
    output_index: int = 0
    window_s: float = 4.0
    hop_s: float = 2.0
    batch_size: int = 8
    threads: int = 1
    fbank: FbankOptions = field(default_factory=FbankOptions)


_TEXT = (
    "backend",
    "name",
    "weights",
    "sha256",
    "features",
    "calibration_source",
    "source",
    "input_name",
    "output_name",
)
_REQUIRED = ("backend", "name", "weights", "sha256", "sample_rate", "features", "threshold")
_NUMBERS: dict[str, tuple[type, float, float]] = {
    "sample_rate": (int, 8000, 16000),
    "threshold": (float, -1e6, 1e6),
    "llr_scale": (float, -1e6, 1e6),
    "llr_offset": (float, -1e6, 1e6),
    "output_index": (int, 0, 4096),
    "window_s": (float, 0.1, 60.0),
    "hop_s": (float, 0.01, 60.0),
    "batch_size": (int, 1, 1024),
    "threads": (int, 1, 256),
}
_FBANK = tuple(f.name for f in fields(FbankOptions))


def read_liveness(embeddings_dir: str | Path) -> LivenessSpec | None:
    """The detector declared in ``<embeddings_dir>/models.toml``, or None when there is no ``[liveness]``.

    Raises:
        UsageError: a table with unknown, missing, mistyped or out-of-range keys (a detector that is
            declared but cannot be validated is an error, never an absent check).
    """
    from .embedders import manifest_tables

    root = Path(embeddings_dir)
    table = manifest_tables(root).get(TABLE)
    if table is None:
        return None
    where = f"[{TABLE}] in {root / 'models.toml'}"
    if not isinstance(table, dict):
        raise UsageError(f"{where}: {TABLE} must be a table like [{TABLE}]")
    known = set(_TEXT) | set(_NUMBERS) | set(_FBANK)
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    missing = [k for k in _REQUIRED if k not in table]
    if missing:
        raise UsageError(
            f"{where}: missing {', '.join(missing)}; a detector needs its file (weights, sha256), input (sample_rate, "
            "features) and a calibrated threshold"
        )
    values = _checked(table, where)
    fbank = FbankOptions(**{k: table[k] for k in _FBANK if k in table})
    if values["features"] != "fbank" and any(k in table for k in _FBANK):
        raise UsageError(f"{where}: fbank settings given but features = {values['features']!r}")
    from .embedders import resolve

    values["weights"] = resolve(root, values["weights"])
    return LivenessSpec(**{k: v for k, v in values.items() if k != "backend"}, fbank=fbank)


def _checked(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The table's text and number values, each of its type and in range; UsageError otherwise."""
    values: dict[str, Any] = {}
    for key in _TEXT:
        if key in table:
            if not isinstance(table[key], str):
                raise UsageError(f"{where}: {key} must be text, got {table[key]!r}")
            values[key] = table[key]
    for key, (kind, lo, hi) in _NUMBERS.items():
        if key not in table:
            continue
        v = table[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (kind is int and v != int(v)) or not lo <= v <= hi:
            raise UsageError(f"{where}: {key} must be a {kind.__name__} in [{lo:g}, {hi:g}], got {v!r}")
        values[key] = kind(v)
    if values["backend"] != "onnx":
        raise UsageError(f"{where}: backend must be 'onnx' (the only detector backend), got {values['backend']!r}")
    if values["sample_rate"] not in (8000, 16000):
        raise UsageError(f"{where}: sample_rate must be 8000 or 16000, got {values['sample_rate']}")
    if values["features"] not in FEATURES:
        raise UsageError(f"{where}: features must be one of {', '.join(FEATURES)}, got {values['features']!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}", values["name"]):
        raise UsageError(f"{where}: name must be an id (letters, digits, _ . + -), got {values['name']!r}")
    if not values["weights"].strip():
        raise UsageError(f"{where}: weights is empty; set it to the path of the detector's .onnx file")
    if not re.fullmatch(r"[0-9a-f]{64}", values["sha256"]):
        raise UsageError(f"{where}: sha256 must be 64 lowercase hex digits, got {values['sha256']!r}")
    if values.get("llr_scale", 1.0) == 0:
        raise UsageError(f"{where}: llr_scale must not be 0 (it would make every call score llr_offset)")
    if values.get("hop_s", 2.0) > values.get("window_s", 4.0):
        raise UsageError(f"{where}: hop_s must not exceed window_s")
    return values


class OnnxSpoofDetector:
    """A spoofing detector in an ONNX file (see :class:`LivenessSpec` for what the manifest says).

    Raises (on construction):
        BackendUnavailableError: onnxruntime missing, the file missing, not the pinned one, or not loadable.
        UsageError: an input or output that does not fit the declared features.
    """

    def __init__(self, spec: LivenessSpec, device: str = "cpu") -> None:
        from .onnxrt import open_session, pick, pinned_bytes

        what = f"liveness detector {spec.name}"
        self.spec = spec
        self.name = spec.name
        self.sample_rate = spec.sample_rate
        self.threshold = spec.threshold
        self._what = what
        self._fbank = Fbank(spec.sample_rate, spec.fbank) if spec.features == "fbank" else None
        self._session = open_session(pinned_bytes(spec.weights, spec.sha256, what), device, spec.threads, what)
        self._input = pick([i.name for i in self._session.get_inputs()], spec.input_name, "input", what)
        self._output = pick([o.name for o in self._session.get_outputs()], spec.output_name, "output", what)
        shape = next(i.shape for i in self._session.get_inputs() if i.name == self._input)
        rank = 3 if self._fbank is not None else 2
        if len(shape) != rank:
            raise UsageError(
                f"{what}: input {self._input!r} has shape {shape}; features = {spec.features!r} feeds "
                + ("[batch, frames, bins]" if rank == 3 else "[batch, samples]")
            )
        self._batch = 1 if shape[0] == 1 else spec.batch_size

    def score(self, speech: np.ndarray, sample_rate: int) -> float:
        """See :meth:`SpoofDetector.score`.

        Raises:
            InsufficientSpeechError: no speech at all.
            BackendUnavailableError: the network fails, or gives a non-finite or missing output.
        """
        from .audio import resample
        from .embedders.base import frame

        x = np.asarray(speech, dtype=np.float32)
        if sample_rate != self.sample_rate and len(x):
            x = resample(x, sample_rate, self.sample_rate)
        windows = frame(x, self.sample_rate, self.spec.window_s, self.spec.hop_s)
        raw = np.concatenate([self._raw(windows[i : i + self._batch]) for i in range(0, len(windows), self._batch)])
        value = float(self.spec.llr_scale * float(np.mean(raw)) + self.spec.llr_offset)
        if not math.isfinite(value):
            raise BackendUnavailableError(f"{self._what}: non-finite spoof score; the model file may be damaged")
        return value

    def _raw(self, windows: np.ndarray) -> np.ndarray:
        """The network's raw score (column ``output_index``) per window, float64 (n,)."""
        inputs = self._fbank(windows) if self._fbank is not None else windows
        try:
            out = np.asarray(self._session.run([self._output], {self._input: inputs})[0], dtype=np.float64)
        except Exception as e:  # onnxruntime's own exception types; chained for debugging
            raise BackendUnavailableError(
                f"{self._what}: the model failed on input of shape {inputs.shape}: {type(e).__name__}: {str(e)[:300]}"
            ) from e
        out = out.reshape(len(windows), -1)
        if self.spec.output_index >= out.shape[1]:
            raise BackendUnavailableError(
                f"{self._what}: output_index {self.spec.output_index} but the model gives {out.shape[1]} value(s) per "
                "window; fix output_index in [liveness]"
            )
        return out[:, self.spec.output_index]


def describe(spec: LivenessSpec | None) -> dict[str, Any] | None:
    """What a run's summary records of the detector (None: no liveness check ran)."""
    if spec is None:
        return None
    return {
        "name": spec.name,
        "sha256": spec.sha256,
        "threshold": spec.threshold,
        "calibration": {"llr_scale": spec.llr_scale, "llr_offset": spec.llr_offset},
        "calibration_source": spec.calibration_source,
    }


class LazyDetector:
    """The declared detector, loaded on its first :meth:`score` (an Engine that never scores a call,
    e.g. one enrolling recordings, never loads it). A detector that cannot be loaded raises the same
    error on every call it should score, so each of those calls becomes an error record.
    """

    def __init__(self, spec: LivenessSpec, device: str = "cpu") -> None:
        self.spec = spec
        self.device = device
        self.name = spec.name
        self.sample_rate = spec.sample_rate
        self.threshold = spec.threshold
        self._detector: OnnxSpoofDetector | None = None
        self._failure: VoicecheckError | None = None

    def score(self, speech: np.ndarray, sample_rate: int) -> float:
        """See :meth:`SpoofDetector.score`; raises the load error when the detector cannot be loaded."""
        if self._detector is None:
            if self._failure is not None:
                raise type(self._failure)(str(self._failure))
            try:
                self._detector = OnnxSpoofDetector(self.spec, self.device)
            except VoicecheckError as e:
                self._failure = e
                raise
        return self._detector.score(speech, sample_rate)


def load_detector(embeddings_dir: str | Path, device: str = "cpu") -> SpoofDetector | None:
    """The workspace's detector (loaded when it first scores), or None when models.toml declares none.

    Raises:
        UsageError: a ``[liveness]`` table that cannot be validated.
    """
    spec = read_liveness(embeddings_dir)
    return None if spec is None else LazyDetector(spec, device)


def judge_liveness(result: CallResult, spoof: SpoofScore | None, spec: LivenessSpec) -> None:
    """Carry a judged call's spoof score into its record and flag a synthetic voice.

    A call with a speaker verdict (not too little speech) must have a score from the configured
    detector. At or above its threshold, any verdict but ``mismatch`` becomes ``mismatch`` with
    reason ``synthetic_voice`` (a mismatch keeps its first reason; the score shows in the record).

    Raises:
        BackendUnavailableError: the call has speech but no score from ``spec``'s detector (the caller
            records the call as an error).
    """
    if result.reason == InsufficientSpeechError.code:
        return
    if spoof is None or spoof.detector != spec.name or not math.isfinite(spoof.score):
        got = "none" if spoof is None else f"{spoof.score} from {spoof.detector}"
        raise BackendUnavailableError(
            f"liveness detector {spec.name} is configured but call {result.call_id} has no spoof score from it "
            f"(got {got}); re-run the batch (the call is scored again) or remove [liveness] from models.toml"
        )
    result.spoof_score = round(spoof.score, 3)
    if spoof.score >= spec.threshold and result.verdict != "mismatch":
        result.verdict, result.reason = "mismatch", SYNTHETIC_VOICE
