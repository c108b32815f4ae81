"""The onnxruntime boundary: pinned model files and inference sessions.

Used by the ONNX speaker-embedding backend (:mod:`voicecheck.embedders.onnx`) and the liveness
detector (:mod:`voicecheck.antispoof`). onnxruntime is imported inside :func:`open_session` only,
so importing this module is cheap and works without the ``onnx`` extra.

A model file is read once: its bytes are hashed, compared with the sha256 the manifest pins, and
the same bytes are handed to onnxruntime, so the file that was checked is the file that runs (a
model stored with external data files is not supported: export it as one file).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from .errors import BackendUnavailableError, UsageError

log = logging.getLogger(__name__)

INSTALL_HINT = "install with: pip install 'voicecheck[onnx]'"

MAX_MODEL_BYTES = 2 * 1024**3
"""Largest model file read (protobuf's own limit for a single-file ONNX model)."""


def pinned_bytes(path: str, sha256: str, what: str) -> bytes:
    """The bytes of a model file whose sha256 is the one the manifest pins.

    Args:
        path: the model file ("" when the manifest names none).
        sha256: 64 lowercase hex digits from the manifest ("" when it pins none).
        what: names the model in messages, e.g. "model [campp] in embeddings/models.toml".

    Raises:
        UsageError: no path, or no sha256 (the message gives the file's, to pin it once it is checked).
        BackendUnavailableError: the file is missing, unreadable, too large, or has another sha256.
    """
    if not path:
        raise UsageError(f"{what}: weights is empty; set weights to the path of the .onnx file")
    p = Path(path)
    if not p.is_file():
        raise BackendUnavailableError(
            f"{what}: model file {p} does not exist or is not a file; copy the exported .onnx file there "
            "(README, 'ONNX speaker models') or fix weights"
        )
    try:
        if p.stat().st_size > MAX_MODEL_BYTES:
            raise BackendUnavailableError(f"{what}: model file {p} is larger than 2 GiB; export it as one smaller file")
        data = p.read_bytes()
    except OSError as e:
        raise BackendUnavailableError(f"{what}: model file {p} cannot be read: {e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if not sha256:
        raise UsageError(
            f"{what}: no sha256 pins the model file {p}; a model runs only from a pinned file: check that this is "
            f'the file you mean and add sha256 = "{digest}"'
        )
    if digest != sha256:
        raise BackendUnavailableError(
            f"{what}: model file {p} has sha256 {digest}, the manifest pins {sha256}: a different file; restore "
            "the pinned file or, if the new file is intended, update sha256 (and the model's name, so vectors "
            "of the two files are never compared)"
        )
    return data


def open_session(model: bytes, device: str, threads: int, what: str) -> Any:
    """An onnxruntime InferenceSession for a model's bytes on ``device``.

    Args:
        model: the ONNX model (see :func:`pinned_bytes`).
        device: "cpu", "cuda" or "cuda:N".
        threads: intra-op threads (one per batch worker: workers are processes).
        what: names the model in messages.

    Raises:
        BackendUnavailableError: onnxruntime missing, CUDA asked for but not in this onnxruntime, or a
            file onnxruntime cannot load.
        UsageError: an invalid thread count or device.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
        raise UsageError(f"{what}: threads must be a whole number in [1, 256], got {threads!r}")
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailableError(f"{what} needs onnxruntime, which is not installed ({e}); {INSTALL_HINT}") from e
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: onnxruntime's warnings go to stderr, not to logging
    try:
        return onnxruntime.InferenceSession(model, sess_options=options, providers=providers(device, what))
    # onnxruntime raises its own pybind exception types (InvalidProtobuf, InvalidGraph, Fail, ...),
    # all meaning "this file cannot be run"; the original is chained for debugging.
    except Exception as e:
        raise BackendUnavailableError(
            f"{what}: onnxruntime cannot load the model ({type(e).__name__}: {str(e)[:300]}); is it an ONNX file "
            "exported as described in the README?"
        ) from e


def providers(device: str, what: str) -> list[Any]:
    """onnxruntime execution providers for ``device`` ("cpu", "cuda", "cuda:N")."""
    import onnxruntime

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if not device.startswith("cuda"):
        raise UsageError(f"{what}: device {device!r} is not cpu, cuda or cuda:N")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise BackendUnavailableError(
            f"{what}: device {device!r} was asked for, but this onnxruntime has no CUDA provider "
            f"({', '.join(onnxruntime.get_available_providers())}); use device cpu or install onnxruntime-gpu"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def metadata(session: Any) -> dict[str, str]:
    """The model's custom metadata (sherpa-onnx's exports say ``sample_rate``, ``output_dim``, ...)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except (AttributeError, RuntimeError):
        return {}


def pick(names: list[str], wanted: str, kind: str, what: str) -> str:
    """The model's input/output called ``wanted``; "" takes the only one there is.

    Raises:
        UsageError: ``wanted`` is not among ``names``, or "" with several to choose from.
    """
    if wanted:
        if wanted not in names:
            raise UsageError(f"{what}: the model has no {kind} {wanted!r} (its {kind}s: {', '.join(names)})")
        return wanted
    if len(names) != 1:
        raise UsageError(f"{what}: the model has several {kind}s ({', '.join(names)}); name one as {kind}_name")
    return names[0]
