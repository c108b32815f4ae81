"""Every default in one place. Precedence: defaults < config file < environment < CLI flags.

The config file is TOML (``voicecheck.toml`` in the working directory, or the path in
``VOICECHECK_CONFIG`` / ``--config``) with keys named as the fields of :class:`Settings`. Every value
is checked (type, finite, in range) wherever it comes from: a setting that cannot be validated is an
error, never a quieter default. Decision thresholds belong to a scoring mode, so they are set per
mode (``[thresholds]`` table: ``"lda+asnorm" = 2.1``; ``--threshold lda+asnorm=2.1``) and a
threshold set for one mode never applies to another.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from .errors import UsageError

CONFIG_FILE = "voicecheck.toml"

SCORE_RANGES: dict[str, tuple[float, float]] = {
    "cosine": (-1.0, 1.0),
    "lda": (-1.0, 1.0),
    "asnorm": (-20.0, 20.0),
    "lda+asnorm": (-20.0, 20.0),
    "plda": (-1000.0, 1000.0),
}
"""The scoring modes and the range of their score scale (a threshold outside it is refused): cosines
in [-1, 1]; PLDA log-likelihood ratios (natural log; GE2E's lie within about +-200); AS-normalised
scores are standard deviations above the cohort (see voicecheck.scoring)."""

_RANGES: dict[str, tuple[float, float]] = {
    "channel": (0, 63),
    "vad_threshold": (0.01, 0.99),
    "vad_min_silence_s": (0.0, 10.0),
    "vad_pad_s": (0.0, 2.0),
    "cohort_top_n": (2, 1_000_000),
    "cohort_max": (1, 10_000_000),
    "cohort_min": (2, 1_000_000),
    "cohort_per_borrower": (1, 1_000_000),
    "cohort_covariance_shrink": (0.0, 1.0),
    "max_false_accept": (0.001, 0.5),
    "weak_evidence_band": (1.0, 10.0),
    "nontarget_calls": (10, 10_000_000),
    "nontarget_voiceprints": (2, 10_000_000),
    "nontarget_per_call": (1, 10_000),
    "false_flag_alarm": (0.0, 1.0),
    "takeover_window_s": (0.5, 600.0),
    "takeover_min_segment_s": (0.5, 3600.0),
    "refine_cosine_margin": (0.0, 2.0),
    "refine_score_margin": (0.0, 1000.0),
    "ring_min_borrowers": (2, 1_000_000),
    "workers": (1, 1024),
    "calls_per_task": (1, 1024),
    "torch_threads": (1, 1024),
    "max_audio_s": (1.0, 86400.0),
    "max_audio_bytes": (1024, 1 << 40),
    "retention_days": (0, 36500),
    "replay_min_hits": (5, 100_000),
    "replay_min_matched_s": (0.0, 600.0),
    "adapt_min_borrowers": (2, 10_000_000),
    "adapt_max_false_accept": (0.0001, 0.1),
    "adapt_every_days": (0, 3650),
}
"""Inclusive bounds of every numeric setting."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("auto", "fp32", "bf16"),
    "backend_scoring": ("cosine", "plda"),
    "cohort_covariance": ("off", "coral", "whiten"),
}
_MODEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DEVICE = re.compile(r"^(cpu|cuda(:\d{1,2})?)$")


@dataclass(frozen=True)
class Settings:
    """Run-time settings. Every field can be set in the config file; every value is validated when
    the settings are built (:class:`voicecheck.errors.UsageError` otherwise).

    Attributes:
        store: voiceprint store directory (env VOICECHECK_STORE).
        embeddings: workspace folder with models.toml, weights, call embeddings (env VOICECHECK_EMBEDDINGS).
        model: key of the model in models.toml (or a built-in: "ge2e", "ecapa").
        device: "cpu", "cuda" or "cuda:N".
        precision: arithmetic of the embedding network: "auto" (bfloat16 on CPUs with AMX, where it is faster,
            float32 elsewhere), "fp32" or "bf16". GE2E only; see voicecheck.embedders.ge2e.
        channel: customer channel of stereo calls (0-based); mono files use channel 0.
        vad_threshold: silero-vad speech probability threshold, 0..1.
        vad_min_silence_s: gaps shorter than this do not split speech regions.
        vad_pad_s: padding kept around each speech region.
        channel_matching: pass wideband audio through the telephone band when the other side is narrow.
        cohort: use in-domain call embeddings for centring and AS-norm.
        cohort_top_n: AS-norm top-N.
        cohort_max: most call embeddings kept in a cohort (bounds memory).
        cohort_min: fewest distinct people (borrowers; an unlinked call counts as one) that make a usable
            cohort: AS-norm against a few people's calls moves the score scale (benchmarks/transfer.py:
            cohorts of 7-12 people gave EER 7-8%, of 25 or more 4-5%).
        cohort_per_borrower: most calls of one borrower in a cohort.
        cohort_covariance: label-free alignment of the back-end's projected space to the cohort's covariance as
            well as its mean (voicecheck.scoring.with_domain_covariance): "off", "coral" (whiten with the
            cohort's covariance, re-colour with the back-end's training covariance) or "whiten". Needs more
            cohort calls than the back-end's output dimension (else centring only, logged). Off by default:
            on the leave-one-corpus-out benchmark (benchmarks/results/transfer.md, "Label-free covariance
            alignment") it lowered the held-out EER on some corpora and raised it on LibriSpeech (large cohort).
        cohort_covariance_shrink: weight in [0, 1] of the shrinkage target (the training covariance for
            "coral", a scaled identity for "whiten"); 1 is the same as "off".
        backend_file: the trained back-end: "auto" (the model's shipped one, if any), "adapted" (the newest
            back-end trained on this deployment's calls by ``voicecheck backend train``, in
            ``<embeddings>/backends/``; the shipped one until there is one), a path to a ``.npz``, or "" (none).
        backend_scoring: how a trained back-end compares two vectors (benchmarks/adaptation.py chose cosine: the
            adapted PLDA had a higher EER than the adapted cosine at every relevance tried): "cosine" (LDA/WCCN
            then cosine: modes lda, lda+asnorm) or "plda" (the back-end's PLDA log-likelihood ratio, centred on the
            cohort when there is one: mode plda; the back-end file must carry its training statistics).
        adapt_min_borrowers: ``backend train`` refuses to write a back-end whose in-domain data has fewer
            borrowers with two or more vectors of their voice: two usable calls, or one and the borrower's
            voiceprint (benchmarks/adaptation.py: adapting the shipped back-end
            from as few as 4-5 such borrowers already lowered the EER on both development deployments; the
            relevance weights keep a small sample's pull small). A model that ships no back-end statistics
            needs more borrowers than LDA directions besides.
        adapt_max_false_accept: the margin a call needs to be taken as its borrower's voice when the
            back-end is trained: its score must reach the level only this share of the operating point's
            non-target trials (calls scored against other borrowers' voiceprints) reach (chosen in
            benchmarks/adaptation.py with 10% impostor calls in the store: 0.001-0.02 absorbed no impostor
            call on the development lender; 0.02 gave the lowest EER).
        adapt_every_days: the nightly batch retrains the in-domain back-end when the newest one is at least
            this many days old (0 = never; run ``voicecheck backend train`` by hand).
        operating_point: set each band's threshold from the deployment's own calls (a share
            ``max_false_accept`` of calls scored against other borrowers' voiceprints may pass) once
            there are enough of them; off, or below that, the profile's threshold (voicecheck.operating).
        max_false_accept: the operating point's false-accept rate (chosen leave-one-corpus-out in
            benchmarks/transfer.py: 0.04 keeps >= 95% of impostors flagged with sampling noise).
        weak_evidence_band: w > 1 makes calls between the thresholds for ``max_false_accept * w`` and
            ``max_false_accept / w`` inconclusive (reason weak_evidence) instead of a coin-flip verdict;
            1 = no band (the default: see the README for what the band costs and buys).
        nontarget_calls: most stored calls sampled for the operating point.
        nontarget_voiceprints: other borrowers' voiceprints sampled for the operating point.
        nontarget_per_call: voiceprints each sampled call is scored against.
        false_flag_alarm: warn (summary, report) when tonight's estimated share of honest borrowers
            flagged exceeds this.
        thresholds: decision threshold per scoring mode (e.g. {"lda+asnorm": 2.1}), overriding the
            calibrated one for that mode only; modes not named keep theirs.
        mono_split: in mono recordings, separate the two speakers and score only the customer's voice.
        takeover_window_s: span of speech averaged for the similarity timeline.
        takeover_min_segment_s: least speech on each side of a speaker change.
        refine_cosine_margin: a call whose coarse timeline (windows back to back) is within this raw
            window cosine of the takeover side test or of the mono split gets the in-between windows and
            is judged on the finer timeline (voicecheck.refine; chosen on TUNE in benchmarks/analysis.py).
        refine_score_margin: ... and within this many natural-log likelihood-ratio units of the
            takeover score test (through the scoring mode's calibration slope).
        refine_ring_candidates: telephone-band calls that rings may group (no voiceprint for their
            borrower, or failing the 1:1 check) get the
            in-between windows too: rings compare calls by the mean of their stored windows, which
            separates voices better on the finer timeline (short calls above all). Off saves that CPU.
        watchlist_thresholds: per scoring mode, the score at or above which a watchlist entry is a
            hit; modes not named use the match threshold.
        ring_min_borrowers: least distinct borrowers of a voice the batch report lists as a ring.
        workers: worker processes for a batch; default one per CPU this process may run on
            (:func:`available_cores`: its affinity mask, so a container's or taskset's limit counts); set
            it lower to leave cores to other work.
        calls_per_task: calls a batch worker takes at a time; silero's LSTM runs over them together
            (about 30% less VAD CPU at 8 than one by one). Results still stream per call; a killed
            batch redoes at most this many calls per worker.
        torch_threads: torch threads per worker process.
        max_audio_s: longest recording accepted (seconds); a longer one is an error, not a guess.
        max_audio_bytes: largest audio file accepted (bytes).
        encryption: encrypt biometric data at rest (AES-256-GCM; see voicecheck.crypto). False is the
            explicit opt-out: stores are then created unencrypted, and every run warns.
        key_file: the encryption key file (env VOICECHECK_KEY_FILE); "" = $XDG_CONFIG_HOME/voicecheck/key.
            VOICECHECK_KEY (base64 of 32 bytes) takes precedence. Never inside the store or embeddings folder.
        retention_days: call embeddings older than this are purged at the start of every batch; 0 keeps them.
        replay: check every call for a replayed recording (issue 15; voicecheck.replaycheck): its customer
            speech is fingerprinted and looked up among its borrower's enrollment recordings and earlier
            calls (index ``<embeddings>/replay.sqlite``); a replay is ``mismatch`` (reason ``replay``) and a
            call that cannot be checked is never ``match``. Off: no fingerprint is made or stored.
        replay_min_hits: time-consistent landmark hits (counted once per 10 ms of the call) a stored
            recording needs to be a replay; chosen in benchmarks/replay.py on speakers held apart from
            the judged ones (1.5 x the most hits any unrelated recording had). At least 5.
        replay_min_matched_s: ... spanning at least this many seconds of the call.
    """

    store: str = "enrollment"
    embeddings: str = "embeddings"
    model: str = "ge2e"
    device: str = "cpu"
    precision: str = "auto"
    channel: int = 1
    vad_threshold: float = 0.5
    vad_min_silence_s: float = 0.3
    vad_pad_s: float = 0.05
    channel_matching: bool = True
    cohort: bool = True
    cohort_top_n: int = 200
    cohort_max: int = 5000
    cohort_min: int = 25
    cohort_per_borrower: int = 3
    cohort_covariance: str = "off"
    cohort_covariance_shrink: float = 0.5
    backend_file: str = "auto"
    backend_scoring: str = "cosine"
    adapt_min_borrowers: int = 4
    adapt_max_false_accept: float = 0.02
    adapt_every_days: int = 0
    operating_point: bool = True
    max_false_accept: float = 0.04
    weak_evidence_band: float = 1.0
    nontarget_calls: int = 2000
    nontarget_voiceprints: int = 200
    nontarget_per_call: int = 20
    false_flag_alarm: float = 0.08
    thresholds: dict[str, float] = field(default_factory=dict)
    mono_split: bool = True
    takeover_window_s: float = 4.0
    takeover_min_segment_s: float = 4.0
    refine_cosine_margin: float = 0.02
    refine_score_margin: float = 1.0
    refine_ring_candidates: bool = True
    watchlist_thresholds: dict[str, float] = field(default_factory=dict)
    ring_min_borrowers: int = 3
    workers: int = field(default_factory=lambda: available_cores())
    calls_per_task: int = 8
    torch_threads: int = 1
    max_audio_s: float = 3600.0
    max_audio_bytes: int = 256 * 1024 * 1024
    encryption: bool = True
    key_file: str = ""
    retention_days: int = 0
    replay: bool = True
    replay_min_hits: int = 15
    replay_min_matched_s: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            try:
                _check(f.name, getattr(self, f.name))
            except UsageError as e:
                raise UsageError(f"setting {f.name!r}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def available_cores() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``), at least 1; ``os.cpu_count()``
    where the affinity mask cannot be read (not Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_ENV = {"store": "VOICECHECK_STORE", "embeddings": "VOICECHECK_EMBEDDINGS", "key_file": "VOICECHECK_KEY_FILE"}


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, the config file, the environment, then ``overrides``.

    ``overrides`` whose value is None are ignored, so CLI options can pass through unset.

    Raises:
        UsageError: unreadable config file, unknown key, a value of the wrong type or out of range.
    """
    settings = Settings()
    path = config_path or os.environ.get("VOICECHECK_CONFIG")
    if path is None and Path(CONFIG_FILE).is_file():
        path = CONFIG_FILE
    if path is not None:
        settings = _apply(settings, _read_toml(Path(path)), f"config file {path}", strict=True)
    env = {key: os.environ[var] for key, var in _ENV.items() if os.environ.get(var)}
    settings = _apply(settings, env, "environment")
    return _apply(settings, {k: v for k, v in overrides.items() if v is not None}, "options")


def parse_thresholds(values: list[str], option: str = "--threshold") -> dict[str, float]:
    """``["lda+asnorm=2.1", "lda=0.5"]`` -> ``{"lda+asnorm": 2.1, "lda": 0.5}``.

    Raises:
        UsageError: a value without its mode, an unknown mode or a value that is not a number.
    """
    out: dict[str, float] = {}
    for value in values:
        mode, sep, number = value.partition("=")
        if not sep:
            raise UsageError(
                f"{option} {value!r} does not say which scoring mode it is for; a threshold belongs to one "
                f"mode's scale: give MODE=VALUE, e.g. {option} lda+asnorm={value} (modes: {', '.join(SCORE_RANGES)})"
            )
        try:
            out[mode.strip()] = float(number)
        except ValueError:
            raise UsageError(f"{option} {value!r}: {number!r} is not a number") from None
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist; pass an existing file or drop --config") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {path} cannot be read: {e}") from None


def _apply(settings: Settings, values: dict[str, Any], where: str, strict: bool = False) -> Settings:
    known = {f.name: f for f in fields(Settings)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key == "threshold" or key == "watchlist_threshold":
            raise UsageError(
                f"setting {key!r} in {where} is not used any more: a threshold belongs to one scoring mode's "
                f'scale; set it per mode, e.g. [{key}s] "lda+asnorm" = 2.1 (modes: {", ".join(SCORE_RANGES)})'
            )
        if key not in known:
            raise UsageError(f"unknown setting {key!r} in {where}; known settings: {', '.join(sorted(known))}")
        name = (
            f"option --{key.replace('_', '-').rstrip('s') if key.endswith('thresholds') else key.replace('_', '-')}"
            if where == "options"
            else f"setting {key!r} in {where}"
        )
        try:
            clean[key] = _coerce(key, value, getattr(Settings(), key), strict)
            _check(key, clean[key])
        except UsageError as e:
            raise UsageError(f"{name}: {e}") from None
    return replace(settings, **clean)


def _coerce(key: str, value: Any, default: Any, strict: bool) -> Any:
    """``value`` as the type of ``default``; strings are parsed only where they are the natural form
    (environment, command line), never in the typed config file."""
    kind = type(default)
    if kind is dict:
        if not isinstance(value, dict):
            raise UsageError(f"must be a table of scoring mode = number, got {value!r}")
        return {str(k): _number(v, float, strict) for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        if not strict and str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if not strict and str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"must be true or false, got {value!r}")
    if kind in (int, float):
        return _number(value, kind, strict)
    if not isinstance(value, str):
        raise UsageError(f"must be text, got {value!r}")
    return value


def _number(value: Any, kind: type, strict: bool) -> Any:
    if isinstance(value, bool) or (strict and isinstance(value, str)):
        raise UsageError(f"must be a number ({kind.__name__}), got {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise UsageError(f"must be a whole number (int), got {value!r}")
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"must be a number ({kind.__name__}), got {value!r}") from None
    return number


def _check(key: str, value: Any) -> None:
    """Raise UsageError unless ``value`` is a valid value of setting ``key``."""
    if key in ("thresholds", "watchlist_thresholds"):
        if not isinstance(value, dict):
            raise UsageError(f"{key!r} must map scoring modes to numbers, got {value!r}")
        for mode, number in value.items():
            if mode not in SCORE_RANGES:
                raise UsageError(f"unknown scoring mode {mode!r}; modes: {', '.join(SCORE_RANGES)}")
            _in_range(f"the {mode} threshold", number, SCORE_RANGES[mode])
    elif key in _RANGES:
        _in_range("the value", value, _RANGES[key])
    elif key in _CHOICES and value not in _CHOICES[key]:
        raise UsageError(f"must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    elif key == "model" and not (isinstance(value, str) and _MODEL_KEY.match(value)):
        raise UsageError(f"must be a model key such as ge2e (letters, digits, _ . -), got {value!r}")
    elif key == "device" and not (isinstance(value, str) and _DEVICE.match(value)):
        raise UsageError(f"must be cpu, cuda or cuda:N, got {value!r}")
    elif key in ("store", "embeddings") and not (isinstance(value, str) and value.strip() and "\0" not in value):
        raise UsageError(f"must be a folder path, got {value!r}")
    elif key == "key_file" and not (isinstance(value, str) and "\0" not in value):
        raise UsageError(f"must be empty (the per-user default) or a file path, got {value!r}")
    elif key == "backend_file" and not (isinstance(value, str) and "\0" not in value):
        raise UsageError(f"must be auto, adapted, empty or a file path, got {value!r}")


def _in_range(key: str, value: Any, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise UsageError(f"{key} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
