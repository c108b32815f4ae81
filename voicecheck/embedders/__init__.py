"""Embedding backends and the registry that builds them by name from the model manifest.

The manifest is ``<embeddings>/models.toml``: one table per model key, e.g. ``[ge2e]``, with
``backend`` (a registered backend or an import path ``"package.module:Class"``), ``name`` (the id
stored with every vector), ``source``, ``sample_rate``, ``dimension``, ``sha256`` where a weights file
is pinned, and optional ``min_speech_s``, ``window_s``, ``hop_s``. Entries override the built-ins below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from ..errors import BackendUnavailableError, UsageError
from .base import PRECISIONS, Embedder, embed_speech, embed_windows, frame, unit

__all__ = [
    "Embedder",
    "ModelSpec",
    "embed_speech",
    "embed_windows",
    "frame",
    "load_embedder",
    "model_spec",
    "read_manifest",
    "unit",
]

BACKENDS: dict[str, str] = {
    "ge2e": "voicecheck.embedders.ge2e:GE2EEmbedder",
    "ecapa": "voicecheck.embedders.ecapa:EcapaEmbedder",
}


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
        hop_s=0.8,  # 1.6 (back to back) halves the work; README 'Throughput' has what it costs
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
        UsageError: unreadable manifest or an entry with unknown or mistyped keys.
    """
    specs = dict(BUILTIN)
    path = Path(embeddings_dir) / "models.toml"
    if not path.is_file():
        return specs
    try:
        with path.open("rb") as f:
            tables = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"model manifest {path} cannot be read: {e}") from None
    known = {f.name for f in fields(ModelSpec)} - {"key", "options"}
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(f"model manifest {path}: {key!r} must be a table like [{key}]")
        base = specs.get(key)
        values = {k: v for k, v in table.items() if k in known}
        options = {k: v for k, v in table.items() if k not in known}
        if base is None and ("backend" not in values or "name" not in values):
            raise UsageError(f"model manifest {path}: new model [{key}] needs at least backend and name")
        try:
            spec = replace(base, **values) if base else ModelSpec(key=key, **values)
        except TypeError as e:
            raise UsageError(f"model manifest {path}: [{key}] {e}") from None
        if options:
            spec = replace(spec, options={**spec.options, **options})
        specs[key] = spec
    return specs


def model_spec(model: str, embeddings_dir: str | Path) -> ModelSpec:
    """The manifest entry for ``model`` (a key such as "ge2e")."""
    specs = read_manifest(embeddings_dir)
    if model not in specs:
        raise UsageError(f"unknown model {model!r}; models in the manifest: {', '.join(sorted(specs))}")
    return specs[model]


def load_embedder(model: str, embeddings_dir: str | Path, device: str = "cpu", precision: str = "auto") -> Embedder:
    """Build the embedder for manifest key ``model``.

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
    target = BACKENDS.get(spec.backend, spec.backend)
    if ":" not in target:
        raise UsageError(f"model {model!r} has unknown backend {spec.backend!r}; known: {', '.join(BACKENDS)}")
    module_name, class_name = target.split(":", 1)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise BackendUnavailableError(f"backend {target!r} for model {model!r} cannot be imported: {e}") from None
    root = Path(embeddings_dir)
    kwargs: dict[str, Any] = {
        "name": spec.name,
        "device": device,
        "min_speech_s": spec.min_speech_s,
        "window_s": spec.window_s,
        "hop_s": spec.hop_s,
        **spec.options,
    }
    if spec.backend == "ge2e":
        kwargs.update(weights=_resolve(root, spec.weights) or None, sha256=spec.sha256 or None, precision=precision)
    elif precision == "bf16":
        raise UsageError(
            f"precision 'bf16' is available for the ge2e backend only, not {spec.backend!r}; use auto or fp32"
        )
    elif spec.backend == "ecapa":
        local = _resolve(root, spec.source)
        kwargs.update(
            source=local if Path(local).exists() else spec.source,
            savedir=str(root / "weights" / spec.key),
            dimension=spec.dimension or None,
        )
    else:
        kwargs.update(sample_rate=spec.sample_rate, dimension=spec.dimension)
    embedder: Embedder = cls(**kwargs)
    return embedder


def _resolve(root: Path, value: str) -> str:
    if not value:
        return ""
    p = Path(value)
    return str(p if p.is_absolute() else root / p)
