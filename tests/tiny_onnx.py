"""Tiny ONNX models built offline with ``onnx.helper``: a speaker-embedding network in the WeSpeaker /
3D-Speaker export format and a liveness detector, for tests of the ONNX paths (no weights download).

- :func:`build_speaker`: fbank features ``[batch, frames, bins]`` -> per-frame linear layer + ReLU ->
  mean over frames -> linear layer -> ``[batch, dimension]``. Random fixed weights: the embeddings
  depend on the signal's spectrum but carry no speaker meaning.
- :func:`build_liveness`: raw samples ``[batch, samples]`` -> ln(energy of the first difference /
  energy), a "high-frequency energy" score: about ln 2 = 0.69 for white noise, ln(2 - 2 cos(2 pi f /
  rate)) for a tone at f (-5.1 for 200 Hz at 16 kHz). Or, with ``features="fbank"``, the mean over
  frames and the top quarter of the bins minus the mean over the bottom quarter (uncentred fbank).

Needs the ``onnx`` package (dev extra); import after ``pytest.importorskip("onnx")``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

OPSET = 17


def _save(model: object, path: Path) -> str:
    """Check and write ``model``; returns the file's sha256."""
    import onnx

    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model(graph: object, metadata: dict[str, str] | None) -> object:
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="voicecheck-tests")
    model.ir_version = 8  # loadable by any onnxruntime >= 1.10
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def build_speaker(
    path: Path,
    num_mel_bins: int = 80,
    hidden: int = 64,
    dimension: int = 16,
    seed: int = 0,
    input_name: str = "feats",
    output_name: str = "embs",
    batch: int | str = "B",
    frames: int | str = "T",
    metadata: dict[str, str] | None = None,
) -> str:
    """Write a tiny speaker-embedding network; returns its sha256.

    Args:
        batch, frames: the input's first two dimensions: a name (dynamic, as the toolkits export) or a
            fixed size.
        metadata: custom metadata (sherpa-onnx style: ``sample_rate``, ``output_dim``).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((num_mel_bins, hidden)) / np.sqrt(num_mel_bins)).astype(np.float32)
    b1 = (0.1 * rng.standard_normal(hidden)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, dimension)) / np.sqrt(hidden)).astype(np.float32)
    b2 = (0.01 * rng.standard_normal(dimension)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", [input_name, "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("ReduceMean", ["h2"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w2"], ["e0"]),
        helper.make_node("Add", ["e0", "b2"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_speaker",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, frames, num_mel_bins])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, dimension])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    return _save(_model(graph, metadata), path)


def build_liveness(path: Path, features: str = "waveform", samples: int | str = "N", num_mel_bins: int = 80) -> str:
    """Write the tiny "high-frequency energy" detector; returns its sha256 (output ``[batch, 1]``).

    Args:
        features: "waveform" (input ``[batch, samples]``) or "fbank" (``[batch, frames, num_mel_bins]``).
        samples: the waveform input's length: a name (dynamic) or a fixed size (a model that fails on
            windows of any other length).
    """
    from onnx import TensorProto, helper, numpy_helper

    if features == "fbank":
        quarter = num_mel_bins // 4
        weights = np.zeros(num_mel_bins, np.float32)
        weights[:quarter], weights[-quarter:] = -1.0 / quarter, 1.0 / quarter
        nodes = [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["m", "tilt"], ["s"]),
            helper.make_node("Unsqueeze", ["s", "one"], ["score"]),
        ]
        inits = [numpy_helper.from_array(weights, "tilt"), numpy_helper.from_array(np.array([1], np.int64), "one")]
        shape: list[int | str] = ["B", "T", num_mel_bins]
    else:
        nodes = [
            helper.make_node("Slice", ["x", "start1", "end", "axis"], ["later"]),
            helper.make_node("Slice", ["x", "start0", "endm1", "axis"], ["earlier"]),
            helper.make_node("Sub", ["later", "earlier"], ["d"]),
            helper.make_node("Mul", ["d", "d"], ["d2"]),
            helper.make_node("Mul", ["x", "x"], ["x2"]),
            helper.make_node("ReduceSum", ["d2", "axis"], ["num"], keepdims=1),
            helper.make_node("ReduceSum", ["x2", "axis"], ["den0"], keepdims=1),
            helper.make_node("Add", ["den0", "eps"], ["den"]),
            helper.make_node("Div", ["num", "den"], ["ratio"]),
            helper.make_node("Add", ["ratio", "eps"], ["ratio1"]),
            helper.make_node("Log", ["ratio1"], ["score"]),
        ]
        big = np.iinfo(np.int64).max
        inits = [
            numpy_helper.from_array(np.array([v], np.int64), n)
            for v, n in ((1, "start1"), (big, "end"), (1, "axis"), (0, "start0"), (-1, "endm1"))
        ] + [numpy_helper.from_array(np.array(1e-6, np.float32), "eps")]
        shape = ["B", samples]
    graph = helper.make_graph(
        nodes,
        "tiny_liveness",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["B", 1])],
        inits,
    )
    return _save(_model(graph, None), path)


def speaker_entry(key: str, path: Path, sha256: str, **values: object) -> str:
    """A models.toml table for a tiny speaker model (WeSpeaker-style names; ``values`` override)."""
    fields: dict[str, object] = {
        "backend": "onnx",
        "name": f"{key}-tiny-random",
        "weights": str(path),
        "sha256": sha256,
        "sample_rate": 16000,
        "dimension": 16,
        "min_speech_s": 1.0,
        "window_s": 1.0,
        "hop_s": 0.5,
        "input_name": "feats",
        "output_name": "embs",
        "window_type": "hamming",
        "sample_scale": 32768.0,
    }
    fields.update(values)
    return f"\n[{key}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in fields.items())


def liveness_entry(path: Path, sha256: str, **values: object) -> str:
    """A models.toml ``[liveness]`` table for the tiny detector: spoof score = raw + 1.0, threshold 0
    (white noise and tones above ~2.2 kHz at 16 kHz score > 0; speech and low chords < 0)."""
    fields: dict[str, object] = {
        "backend": "onnx",
        "name": "hf-energy-tiny",
        "weights": str(path),
        "sha256": sha256,
        "sample_rate": 16000,
        "features": "waveform",
        "threshold": 0.0,
        "llr_scale": 1.0,
        "llr_offset": 1.0,
        "calibration_source": "tests: chosen by hand for generated tones",
        "window_s": 1.0,
        "hop_s": 0.5,
    }
    fields.update(values)
    return "\n[liveness]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in fields.items())


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
