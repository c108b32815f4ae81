"""Embedding backends and the registry that builds them by name from the model manifest.

The manifest is ``<embeddings>/models.toml``: one table per model key, e.g. ``[ge2e]``, with
``backend`` (the name of a registered backend), ``name`` (the id stored with every vector),
``source``, ``sample_rate``, ``dimension``, ``sha256`` where a weights file is pinned, and optional
``min_speech_s``, ``window_s``, ``hop_s``; other keys go to the backend (e.g. the fbank settings of
an ``onnx`` model). Entries override the built-ins below. The ``[liveness]`` table is not a speaker
model: it declares the synthetic-speech detector (:mod:`voicecheck.antispoof`).

A manifest never names code: ``backend`` is looked up in a fixed registry — voicecheck's own
backends, backends installed packages declare in the ``voicecheck.embedders`` entry-point group,
and backends a program registers with :func:`register_backend`. A config file that could import
and run any module would let whoever can write it run code with the batch's rights.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from ..errors import BackendUnavailableError, UsageError
from .base import PRECISIONS, Embedder, embed_speech, embed_windows, frame, unit

__all__ = [
    "Embedder",
    "ModelSpec",
    "backends",
    "embed_speech",
    "embed_windows",
    "frame",
    "load_embedder",
    "manifest_tables",
    "model_spec",
    "read_manifest",
    "register_backend",
    "registered",
    "resolve",
    "spec_kwargs",
    "unit",
]

BACKENDS: dict[str, str] = {
    "ge2e": "voicecheck.embedders.ge2e:GE2EEmbedder",
    "ecapa": "voicecheck.embedders.ecapa:EcapaEmbedder",
    "onnx": "voicecheck.embedders.onnx:OnnxEmbedder",
}
"""voicecheck's own backends: name -> "module:Class"."""

ENTRY_POINTS = "voicecheck.embedders"
"""Entry-point group through which an installed package adds a backend (name -> "module:Class")."""

_REGISTERED: dict[str, str] = {}

NOT_MODELS = ("liveness",)
"""Tables of models.toml that declare something other than a speaker model (read elsewhere)."""


def register_backend(name: str, target: str) -> None:
    """Make backend ``name`` (the class at ``target``, "package.module:Class") available to manifests.

    For programs that embed voicecheck (and its tests); batch workers receive the registrations of
    the process that starts them (:func:`registered`).
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or ":" not in target:
        raise UsageError(f"register_backend needs a plain name and a 'module:Class' target, got {name!r}, {target!r}")
    _REGISTERED[name] = target


def registered() -> dict[str, str]:
    """The backends registered in this process with :func:`register_backend` (to pass to workers)."""
    return dict(_REGISTERED)


def backends() -> dict[str, str]:
    """Every backend a manifest may name: built-in, installed plugins, then registered ones."""
    from importlib.metadata import entry_points

    found = dict(BACKENDS)
    for ep in entry_points(group=ENTRY_POINTS):
        found.setdefault(ep.name, ep.value)
    found.update({k: v for k, v in _REGISTERED.items() if k not in BACKENDS})
    return found


@dataclass(frozen=True)
class ModelSpec:
    """One model of the manifest."""

    key: str
    backend: str
    name: str
    source: str = ""
    weights: str = ""
    sha256: str = ""
    sample_rate: int = 16000
    dimension: int = 0
    min_speech_s: float = 3.0
    window_s: float = 1.6
    hop_s: float = 0.8
    options: dict[str, Any] = field(default_factory=dict)


BUILTIN: dict[str, ModelSpec] = {
    "ge2e": ModelSpec(
        key="ge2e",
        backend="ge2e",
        name="ge2e-resemblyzer-0.1.4",
        source="resemblyzer 0.1.4 wheel (resemblyzer/pretrained.pt)",
        sha256="39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
        sample_rate=16000,
        dimension=256,
        min_speech_s=3.0,
        window_s=1.6,
        hop_s=1.6,  # back to back; the window-level analyses refine where they need 0.8 (voicecheck.refine)
    ),
    "ecapa": ModelSpec(
        key="ecapa",
        backend="ecapa",
        name="ecapa-spkrec-voxceleb",
        source="speechbrain/spkrec-ecapa-voxceleb",
        sample_rate=16000,
        dimension=192,
        min_speech_s=3.0,
        window_s=3.0,
        hop_s=1.5,
    ),
}


def read_manifest(embeddings_dir: str | Path) -> dict[str, ModelSpec]:
    """Built-in models updated by ``<embeddings_dir>/models.toml`` when it exists.

    Raises:
        UsageError: unreadable manifest, an entry with unknown or mistyped keys or out-of-range
            values, or a backend that is not registered (a manifest names no code).
    """
    specs = dict(BUILTIN)
    path = Path(embeddings_dir) / "models.toml"
    tables = manifest_tables(embeddings_dir)
    known = {f.name for f in fields(ModelSpec)} - {"key", "options"}
    for key, table in tables.items():
        if key in NOT_MODELS:
            continue
        if not isinstance(table, dict):
            raise UsageError(f"model manifest {path}: {key!r} must be a table like [{key}]")
        base = specs.get(key)
        values = {k: v for k, v in table.items() if k in known}
        options = {k: v for k, v in table.items() if k not in known}
        if base is None and ("backend" not in values or "name" not in values):
            raise UsageError(f"model manifest {path}: new model [{key}] needs at least backend and name")
        spec = replace(base, **values) if base else ModelSpec(key=key, **values)
        if options:
            spec = replace(spec, options={**spec.options, **options})
        specs[key] = _checked(spec, f"model manifest {path}: [{key}]")
    return specs


def manifest_tables(embeddings_dir: str | Path) -> dict[str, Any]:
    """The tables of ``<embeddings_dir>/models.toml`` as parsed ({} when there is no manifest).

    Raises:
        UsageError: the file cannot be read or is not TOML.
    """
    path = Path(embeddings_dir) / "models.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"model manifest {path} cannot be read: {e}") from None


_NUMBERS: dict[str, tuple[type, float, float]] = {
    "sample_rate": (int, 8000, 192000),
    "dimension": (int, 0, 65536),
    "min_speech_s": (float, 0.1, 600.0),
    "window_s": (float, 0.1, 60.0),
    "hop_s": (float, 0.01, 60.0),
}


def _checked(spec: ModelSpec, where: str) -> ModelSpec:
    """``spec`` if every value has its type and range and the backend is registered; else UsageError."""
    for name in ("backend", "name", "source", "weights", "sha256"):
        if not isinstance(getattr(spec, name), str):
            raise UsageError(f"{where}: {name} must be text, got {getattr(spec, name)!r}")
    known = backends()
    if spec.backend not in known:
        raise UsageError(
            f"{where}: backend {spec.backend!r} is not a registered backend ({', '.join(sorted(known))}); a manifest "
            f"names no code: a plugin registers its backend through the {ENTRY_POINTS!r} entry-point group"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}", spec.name):
        raise UsageError(f"{where}: name must be a model id (letters, digits, _ . + -), got {spec.name!r}")
    if spec.sha256 and not re.fullmatch(r"[0-9a-f]{64}", spec.sha256):
        raise UsageError(f"{where}: sha256 must be 64 lowercase hex digits, got {spec.sha256!r}")
    for name, (kind, lo, hi) in _NUMBERS.items():
        value = getattr(spec, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (kind is int and value != int(value)) or not lo <= value <= hi:
            raise UsageError(f"{where}: {name} must be a {kind.__name__} in [{lo:g}, {hi:g}], got {value!r}")
    if spec.hop_s > spec.window_s:
        raise UsageError(f"{where}: hop_s ({spec.hop_s}) must not exceed window_s ({spec.window_s})")
    for name, value in spec.options.items():
        if isinstance(value, (dict, list)) or (isinstance(value, float) and not math.isfinite(value)):
            raise UsageError(f"{where}: option {name} must be a plain finite value, got {value!r}")
    return replace(spec, sample_rate=int(spec.sample_rate), dimension=int(spec.dimension))


def model_spec(model: str, embeddings_dir: str | Path) -> ModelSpec:
    """The manifest entry for ``model`` (a key such as "ge2e")."""
    specs = read_manifest(embeddings_dir)
    if model not in specs:
        raise UsageError(f"unknown model {model!r}; models in the manifest: {', '.join(sorted(specs))}")
    return specs[model]


def load_embedder(model: str, embeddings_dir: str | Path, device: str = "cpu", precision: str = "auto") -> Embedder:
    """Build the embedder for manifest key ``model`` through its backend's ``from_spec``.

    Relative ``source``/``weights`` paths in the manifest are taken relative to ``embeddings_dir``.
    ``precision`` ("auto", "fp32", "bf16") reaches the backends that have a choice (ge2e); asking
    another backend for "bf16" is an error.

    Raises:
        UsageError: unknown model or backend.
        BackendUnavailableError: the backend's packages or weights are missing.
    """
    spec = model_spec(model, embeddings_dir)
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    target = backends()[spec.backend]
    module_name, class_name = target.split(":", 1)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise BackendUnavailableError(f"backend {target!r} for model {model!r} cannot be imported: {e}") from None
    embedder: Embedder = cls.from_spec(spec, Path(embeddings_dir), device, precision)
    return embedder


def spec_kwargs(spec: ModelSpec, device: str) -> dict[str, Any]:
    """The constructor arguments every backend takes from its manifest entry."""
    return {
        "name": spec.name,
        "device": device,
        "min_speech_s": spec.min_speech_s,
        "window_s": spec.window_s,
        "hop_s": spec.hop_s,
        **spec.options,
    }


def resolve(root: Path, value: str) -> str:
    """A manifest path: absolute as given, relative ones taken from the manifest's folder."""
    if not value:
        return ""
    p = Path(value)
    return str(p if p.is_absolute() else root / p)
