"""Speaker embeddings from an ONNX model over Kaldi fbank features (WeSpeaker and 3D-Speaker exports).

Both toolkits export the embedding network alone: input float32 features ``[batch, frames, 80]``
(Kaldi fbank with per-utterance mean normalisation, :mod:`voicecheck.fbank`), output ``[batch,
dimension]``. WeSpeaker names them ``feats`` / ``embs`` (``wespeaker/bin/export_onnx.py``),
3D-Speaker ``feature`` / ``embedding`` (``speakerlab/bin/export_speaker_embedding_onnx.py``). The
front end is declared in the model's ``embeddings/models.toml`` entry, next to the file's sha256:

    [campp]
    backend = "onnx"
    name = "campp-3dspeaker-zh-cn-16k-common"
    weights = "weights/campp/campplus_cn_common.onnx"
    sha256 = "<64 hex digits>"
    sample_rate = 16000
    dimension = 192
    window_s = 3.0
    hop_s = 1.5
    input_name = "feature"
    output_name = "embedding"
    window_type = "povey"     # WeSpeaker: "hamming"
    sample_scale = 1.0        # WeSpeaker: 32768.0

Each window the pipeline cuts is one utterance for the model (its own mean normalisation), as the
toolkits do when they embed a segment. onnxruntime is imported when a model is loaded, not before.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, BackendUnavailableError, UsageError
from ..fbank import Fbank, FbankOptions
from ..onnxrt import metadata, open_session, pick, pinned_bytes
from .base import unit

logger = logging.getLogger(__name__)

SAMPLE_RATES = (8000, 16000)
"""Rates the published speaker models are trained at; the model's manifest entry says which."""

FBANK_KEYS = tuple(f.name for f in fields(FbankOptions))
"""Manifest keys of the feature settings (see :class:`voicecheck.fbank.FbankOptions`)."""

MODEL_KEYS = ("input_name", "output_name", "batch_size", "threads")
"""Manifest keys of the network's interface and run-time settings."""


class OnnxEmbedder:
    """A speaker-embedding network in an ONNX file, run with onnxruntime on fbank features.

    Attributes:
        name: stable model id stored with every voiceprint.
        sample_rate: rate (Hz) ``embed_batch`` expects: 8000 or 16000, as the model was trained.
        dimension: embedding size (checked against the model's output).
        min_speech_s: least net speech (s) that gives a usable embedding.
        window_s: window length (s) the pipeline cuts speech into.
        hop_s: step (s) between windows.
        weights: the model file.
        fbank: the feature extractor (Kaldi-compatible).
        batch_size: windows per onnxruntime call.
    """

    @classmethod
    def from_spec(cls, spec: Any, root: Path, device: str, precision: str) -> OnnxEmbedder:
        """Build from a manifest entry (:class:`voicecheck.embedders.ModelSpec`); ``root`` is the manifest's folder.

        Raises:
            UsageError: precision "bf16", or a manifest key this backend does not know.
        """
        from . import resolve

        where = f"model [{spec.key}] in {root / 'models.toml'}"
        if precision == "bf16":
            raise UsageError("precision 'bf16' is available for the ge2e backend only, not onnx; use auto or fp32")
        unknown = sorted(set(spec.options) - set(FBANK_KEYS) - set(MODEL_KEYS))
        if unknown:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(unknown)} for backend onnx; known: "
                f"{', '.join(MODEL_KEYS + FBANK_KEYS)}"
            )
        features = {k: v for k, v in spec.options.items() if k in FBANK_KEYS}
        settings = {k: v for k, v in spec.options.items() if k in MODEL_KEYS}
        return cls(
            weights=resolve(root, spec.weights),
            sha256=spec.sha256,
            name=spec.name,
            device=device,
            sample_rate=spec.sample_rate,
            dimension=spec.dimension or None,
            min_speech_s=spec.min_speech_s,
            window_s=spec.window_s,
            hop_s=spec.hop_s,
            fbank=FbankOptions(**features),
            where=where,
            **settings,
        )

    def __init__(
        self,
        weights: str,
        sha256: str,
        name: str,
        device: str = "cpu",
        sample_rate: int = 16000,
        dimension: int | None = None,
        min_speech_s: float = 3.0,
        window_s: float = 3.0,
        hop_s: float = 1.5,
        fbank: FbankOptions | None = None,
        input_name: str = "",
        output_name: str = "",
        batch_size: int = 16,
        threads: int = 1,
        where: str = "",
    ) -> None:
        """Check the file against its sha256 and load it.

        Args:
            weights: the .onnx file.
            sha256: its pinned checksum (required).
            name: model id stored with every voiceprint.
            device: "cpu", "cuda" or "cuda:N".
            sample_rate: the model's input rate, 8000 or 16000.
            dimension: expected embedding size (from the manifest); None takes the model's.
            min_speech_s, window_s, hop_s: as in the manifest.
            fbank: feature settings as the model was trained (defaults: Kaldi's, 3D-Speaker's).
            input_name, output_name: the network's input and output; "" takes the only one.
            batch_size: windows per onnxruntime call (memory vs. speed).
            threads: onnxruntime intra-op threads (1 per batch worker).
            where: names the manifest entry in messages.

        Raises:
            UsageError: settings out of range, input/output names or shapes that do not fit the model, or
                a dimension or sample rate the model's own metadata contradicts.
            BackendUnavailableError: onnxruntime missing, the file missing or not the pinned one, or
                not loadable.
        """
        what = where or f"ONNX model {name}"
        if sample_rate not in SAMPLE_RATES:
            raise UsageError(
                f"{what}: sample_rate must be 8000 or 16000 (the rate the model was trained at), got {sample_rate!r}"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= 1024:
            raise UsageError(f"{what}: batch_size must be a whole number in [1, 1024], got {batch_size!r}")
        self.name = name
        self.device = device
        self.sample_rate = int(sample_rate)
        self.min_speech_s = float(min_speech_s)
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.weights = weights
        self.fbank = Fbank(self.sample_rate, fbank)
        self._what = what
        self._session = open_session(pinned_bytes(weights, sha256, what), device, threads, what)
        self._input = pick([i.name for i in self._session.get_inputs()], input_name, "input", what)
        self._output = pick([o.name for o in self._session.get_outputs()], output_name, "output", what)
        self.batch_size = self._check_input(batch_size)
        self._check_metadata(dimension)
        window = np.zeros((1, max(1, round(self.window_s * self.sample_rate))), dtype=np.float32)
        found = self._encode(window).shape[1]
        if dimension is not None and int(dimension) != found:
            raise UsageError(
                f"{what}: dimension {dimension} in the manifest, but {weights} produces {found}; fix the manifest"
            )
        self.dimension = int(found)
        logger.info("loaded ONNX model %s from %s on %s (dimension %d)", name, weights, device, self.dimension)

    def _check_input(self, batch_size: int) -> int:
        """The batch size the model allows; UsageError when its input is not [batch, frames, bins]."""
        shape = next(i.shape for i in self._session.get_inputs() if i.name == self._input)
        bins = self.fbank.options.num_mel_bins
        if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != bins):
            raise UsageError(
                f"{self._what}: input {self._input!r} has shape {shape}; this backend feeds [batch, frames, "
                f"{bins}] fbank features (num_mel_bins = {bins})"
            )
        if isinstance(shape[1], int):
            frames = self.fbank.num_frames(round(self.window_s * self.sample_rate))
            if shape[1] != frames:
                raise UsageError(
                    f"{self._what}: input {self._input!r} takes exactly {shape[1]} frames, a {self.window_s:g} s "
                    f"window makes {frames}; set window_s to match or export the model with a dynamic frame axis"
                )
        return 1 if shape[0] == 1 else batch_size

    def _check_metadata(self, dimension: int | None) -> None:
        """What the file says of itself (sherpa-onnx exports carry ``sample_rate`` and ``output_dim``)
        must agree with the manifest."""
        meta = metadata(self._session)
        for key, expected in (("sample_rate", self.sample_rate), ("output_dim", dimension)):
            if key in meta and expected is not None and meta[key].strip() != str(expected):
                raise UsageError(
                    f"{self._what}: the model file says {key} = {meta[key]}, the manifest {expected}; fix the manifest"
                )

    def embed_batch(self, windows: np.ndarray) -> np.ndarray:
        """Embed equal-length windows of speech, ``batch_size`` at a time.

        Args:
            windows: float32, shape (n, window_samples), at ``sample_rate``, amplitude in [-1, 1].

        Returns:
            float32, shape (n, dimension), each row unit L2 norm.

        Raises:
            UsageError: ``windows`` is not two-dimensional or shorter than one fbank frame.
            AudioError: NaN or infinite samples.
            BackendUnavailableError: the model fails or returns non-finite values.
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 2:
            raise UsageError(f"windows must have shape (n, samples); got shape {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if not np.isfinite(x).all():
            raise AudioError("windows contain NaN or infinite samples; check the decoded audio")
        return unit(self._encode(x))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        """Raw model outputs, float32 (n, d), for float32 windows (n, samples): features and network in
        chunks of ``batch_size`` windows (the features of a long call never sit in memory at once)."""
        rows = []
        for start in range(0, x.shape[0], self.batch_size):
            features = self.fbank(x[start : start + self.batch_size])
            try:
                out = self._session.run([self._output], {self._input: features})[0]
            except Exception as e:  # onnxruntime's own exception types; chained for debugging
                raise BackendUnavailableError(
                    f"{self._what}: the model failed on a batch of shape {features.shape}: {type(e).__name__}: "
                    f"{str(e)[:300]}"
                ) from e
            rows.append(np.asarray(out, dtype=np.float32).reshape(features.shape[0], -1))
        vectors = np.concatenate(rows, axis=0)
        if not np.isfinite(vectors).all():
            raise BackendUnavailableError(
                f"{self._what}: the model produced non-finite embeddings; the file {self.weights} may be damaged"
            )
        return vectors
