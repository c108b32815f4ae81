"""Every default in one place. Precedence: defaults < config file < environment < CLI flags.

The config file is TOML (``voicecheck.toml`` in the working directory, or the path in
``VOICECHECK_CONFIG`` / ``--config``) with keys named as the fields of :class:`Settings`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from .errors import UsageError

CONFIG_FILE = "voicecheck.toml"


@dataclass(frozen=True)
class Settings:
    """Run-time settings. Every field can be set in the config file.

    Attributes:
        store: voiceprint store directory (env VOICECHECK_STORE).
        embeddings: workspace folder with models.toml, weights, call embeddings (env VOICECHECK_EMBEDDINGS).
        model: key of the model in models.toml (or a built-in: "ge2e", "ecapa").
        device: "cpu" or "cuda".
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
        cohort_min: fewest call embeddings that make a usable cohort.
        backend_file: trained back-end (.npz) relative to the package's models dir or absolute; "" = none.
        threshold: decision threshold on ``score``; None = the model's calibrated default.
        mono_split: in mono recordings, separate the two speakers and score only the customer's voice.
        takeover_window_s: span of speech averaged for the similarity timeline.
        takeover_min_segment_s: least speech on each side of a speaker change.
        watchlist_threshold: score at or above which a watchlist entry is a hit; None = model default.
        ring_min_borrowers: least distinct borrowers of a voice the batch report lists as a ring.
        workers: worker processes for a batch.
        calls_per_task: calls a batch worker takes at a time; silero's LSTM runs over them together
            (about 30% less VAD CPU at 8 than one by one). Results still stream per call; a killed
            batch redoes at most this many calls per worker.
        torch_threads: torch threads per worker process.
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
    cohort_min: int = 20
    backend_file: str = "auto"
    threshold: float | None = None
    mono_split: bool = True
    takeover_window_s: float = 4.0
    takeover_min_segment_s: float = 4.0
    watchlist_threshold: float | None = None
    ring_min_borrowers: int = 3
    workers: int = 1
    calls_per_task: int = 8
    torch_threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ENV = {"store": "VOICECHECK_STORE", "embeddings": "VOICECHECK_EMBEDDINGS"}


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, the config file, the environment, then ``overrides``.

    ``overrides`` whose value is None are ignored, so CLI options can pass through unset.

    Raises:
        UsageError: unreadable config file, unknown key or a value of the wrong type.
    """
    settings = Settings()
    path = config_path or os.environ.get("VOICECHECK_CONFIG")
    if path is None and Path(CONFIG_FILE).is_file():
        path = CONFIG_FILE
    if path is not None:
        settings = _apply(settings, _read_toml(Path(path)), f"config file {path}")
    env = {key: os.environ[var] for key, var in _ENV.items() if os.environ.get(var)}
    settings = _apply(settings, env, "environment")
    return _apply(settings, {k: v for k, v in overrides.items() if v is not None}, "options")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist; pass an existing file or drop --config") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"config file {path} cannot be read: {e}") from None


def _apply(settings: Settings, values: dict[str, Any], where: str) -> Settings:
    known = {f.name: f for f in fields(Settings)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise UsageError(f"unknown setting {key!r} in {where}; known settings: {', '.join(sorted(known))}")
        default = getattr(Settings(), key)
        clean[key] = _coerce(key, value, default, where)
    return replace(settings, **clean)


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    if default is None:  # optional floats
        try:
            return None if value in ("", None) else float(value)
        except (TypeError, ValueError):
            raise UsageError(f"setting {key!r} in {where} must be a number, got {value!r}") from None
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"setting {key!r} in {where} must be true or false, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"setting {key!r} in {where} must be {kind.__name__}, got {value!r}") from None
