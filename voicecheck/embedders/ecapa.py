"""SpeechBrain ECAPA-TDNN speaker embeddings (speechbrain/spkrec-ecapa-voxceleb layout).

torch and speechbrain are imported inside ``EcapaEmbedder.__init__`` only, so importing this module
is cheap and works without the ``ecapa`` extra installed.

A local model directory is loaded with no network access at all: the directory is read in place
(nothing is linked or copied), ``pretrained_path`` in its ``hyperparams.yaml`` is overridden to
point at the directory (the published file points at the hub id), and speechbrain's fetcher is
told that the network is off. A hub id is fetched through speechbrain (only where a network
exists) and copied into ``savedir``, which then works as a local directory offline.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, BackendUnavailableError, UsageError
from .base import unit

logger = logging.getLogger(__name__)

INSTALL_HINT = "install with: pip install 'voicecheck[ecapa]'"

HYPERPARAMS_FILE = "hyperparams.yaml"
LAYOUT_FILES = (
    "embedding_model.ckpt",
    "mean_var_norm_emb.ckpt",
    "classifier.ckpt",
    "label_encoder.txt",
)
"""Files of the spkrec-ecapa-voxceleb layout besides ``hyperparams.yaml``; each one is required
when ``hyperparams.yaml`` mentions it."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PRETRAINED_PATH_KEY = re.compile(r"^pretrained_path\s*:", re.MULTILINE)


class EcapaEmbedder:
    """ECAPA-TDNN speaker embeddings through speechbrain's ``EncoderClassifier``.

    Attributes:
        name: stable model id stored with every voiceprint.
        sample_rate: rate (Hz) ``embed_batch`` expects; 16000 for the published model.
        dimension: embedding size read from the loaded model (192 for the published model).
        min_speech_s: least net speech (s) that gives a usable embedding.
        window_s: window length (s) the pipeline cuts speech into.
        hop_s: step (s) between windows.
        source: the model directory (absolute) or hub id it was loaded from.
        device: torch device the model runs on.
        batch_size: windows per forward pass.
    """

    @classmethod
    def from_spec(cls, spec: Any, root: Path, device: str, precision: str) -> EcapaEmbedder:
        """Build from a manifest entry (:class:`voicecheck.embedders.ModelSpec`); ``root`` is the manifest's folder."""
        from . import resolve, spec_kwargs

        if precision == "bf16":
            raise UsageError("precision 'bf16' is available for the ge2e backend only, not ecapa; use auto or fp32")
        local = resolve(root, spec.source)
        return cls(
            **spec_kwargs(spec, device),
            source=local if Path(local).exists() else spec.source,
            savedir=str(root / "weights" / spec.key),
            dimension=spec.dimension or None,
        )

    def __init__(
        self,
        source: str,
        name: str = "ecapa-spkrec-voxceleb",
        device: str = "cpu",
        savedir: str | None = None,
        sample_rate: int = 16000,
        dimension: int | None = None,
        min_speech_s: float = 3.0,
        window_s: float = 3.0,
        hop_s: float = 1.5,
        batch_size: int = 16,
    ) -> None:
        """Load the model.

        Args:
            source: a local directory in the speechbrain/spkrec-ecapa-voxceleb layout
                (``hyperparams.yaml``, ``embedding_model.ckpt``, ``mean_var_norm_emb.ckpt``,
                ``classifier.ckpt``, ``label_encoder.txt``), or a hub id such as
                ``"speechbrain/spkrec-ecapa-voxceleb"`` (needs a network the first time).
            name: model id stored with every voiceprint.
            device: torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
            savedir: for a hub id, the directory the downloaded files are copied into (it then
                works as a local ``source`` offline); ignored for a local directory, which is
                read in place.
            sample_rate: rate (Hz) the model was trained on.
            dimension: expected embedding size, e.g. from a model manifest; checked against the
                model. ``None`` takes whatever the model produces.
            min_speech_s: least net speech (s) for an embedding.
            window_s: window length (s).
            hop_s: step between windows (s).
            batch_size: windows per forward pass (memory vs. speed).

        Raises:
            BackendUnavailableError: speechbrain/torch missing, the directory or its files
                missing, the hub unreachable, CUDA requested but unavailable, or the model
                failing to load.
            UsageError: invalid numeric settings, or ``dimension`` disagreeing with the model.
        """
        if sample_rate <= 0 or window_s <= 0 or hop_s <= 0 or min_speech_s < 0:
            raise UsageError(
                f"invalid ECAPA settings: sample_rate={sample_rate}, window_s={window_s}, "
                f"hop_s={hop_s}, min_speech_s={min_speech_s}; all must be positive"
            )
        if batch_size < 1:
            raise UsageError(f"batch_size={batch_size}; it must be at least 1")

        torch = _import_torch(device)
        self.name = name
        self.sample_rate = int(sample_rate)
        self.min_speech_s = float(min_speech_s)
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.batch_size = int(batch_size)
        self.device = device
        self._torch = torch

        self._model = self._load_model(source, savedir, device)
        self._model.eval()

        # One silent window tells the embedding size whatever the hyperparams call it.
        found = self._encode(np.zeros((1, self._window_samples()), dtype=np.float32)).shape[1]
        if dimension is not None and int(dimension) != found:
            raise UsageError(
                f"{name}: expected embedding dimension {dimension}, but the model in "
                f"{self.source} produces {found}; fix the model manifest or the model files"
            )
        self.dimension = int(found)
        logger.info(
            "loaded ECAPA model %s from %s on %s (dimension %d)",
            name,
            self.source,
            device,
            self.dimension,
        )

    def _load_model(self, source: str, savedir: str | None, device: str) -> Any:
        """speechbrain's EncoderClassifier from a local directory (read in place, no network) or a hub id."""
        from speechbrain.inference.classifiers import EncoderClassifier
        from speechbrain.utils.fetching import FetchConfig, LocalStrategy

        local_dir = Path(source).expanduser()
        run_opts = {"device": device}
        if local_dir.is_dir():
            local_dir = local_dir.absolute()
            self.source = str(local_dir)
            overrides = _check_local_dir(local_dir)
            return _load(
                lambda: EncoderClassifier.from_hparams(
                    source=str(local_dir),
                    savedir=None,  # read in place: no links, no copies, nothing written
                    overrides=overrides,
                    run_opts=run_opts,
                    fetch_config=FetchConfig(allow_network=False),
                ),
                where=f"local model directory {local_dir}",
                hint=f"check the files in {local_dir} (a complete download of the "
                "speechbrain/spkrec-ecapa-voxceleb files)",
            )
        elif local_dir.exists():
            raise BackendUnavailableError(
                f"ECAPA model source {local_dir.absolute()} is not a directory; pass the directory "
                f"holding {HYPERPARAMS_FILE} and {', '.join(LAYOUT_FILES)}"
            )
        elif not _HUB_ID.match(source):
            raise BackendUnavailableError(
                f"ECAPA model directory {local_dir.absolute()} does not exist; download the "
                f"speechbrain/spkrec-ecapa-voxceleb files ({HYPERPARAMS_FILE}, "
                f"{', '.join(LAYOUT_FILES)}) into it"
            )
        else:
            self.source = source
            offline = _hub_offline()
            kwargs: dict[str, Any] = {
                "source": source,
                "savedir": savedir,
                "run_opts": run_opts,
                "fetch_config": FetchConfig(allow_network=not offline),
            }
            if savedir is not None:
                kwargs["local_strategy"] = LocalStrategy.COPY
            reason = "the hub is offline (HF_HUB_OFFLINE is set)" if offline else "no network?"
            model = _load(
                lambda: EncoderClassifier.from_hparams(**kwargs),
                where=f"model hub id {source!r} ({reason})",
                hint=f"if {source!r} was meant as a local directory, it does not exist "
                f"({local_dir.absolute()}); otherwise download the "
                f"speechbrain/spkrec-ecapa-voxceleb files ({HYPERPARAMS_FILE}, "
                f"{', '.join(LAYOUT_FILES)}) on a machine with network access into a directory "
                "and pass that directory as the source",
            )
            if savedir is not None:
                _complete_layout(Path(savedir))
            return model

    def _window_samples(self) -> int:
        return max(1, round(self.window_s * self.sample_rate))

    def embed_batch(self, windows: np.ndarray) -> np.ndarray:
        """Embed equal-length windows of speech in chunks of ``batch_size``.

        Args:
            windows: float32, shape (n, window_samples), at ``sample_rate``, amplitude in [-1, 1].

        Returns:
            float32, shape (n, dimension), each row unit L2 norm.

        Raises:
            UsageError: ``windows`` is not two-dimensional or has no samples.
            AudioError: ``windows`` holds NaN or infinite samples.
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 2:
            raise UsageError(f"windows must have shape (n, samples); got shape {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if x.shape[1] == 0:
            raise UsageError(f"windows must hold samples; got shape {x.shape}")
        if not np.isfinite(x).all():
            raise AudioError("windows contain NaN or infinite samples; check the decoded audio")
        return unit(self._encode(x))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        """Raw model embeddings, float32 (n, d), for float32 windows (n, samples)."""
        torch = self._torch
        rows = []
        with torch.no_grad():
            for start in range(0, x.shape[0], self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + self.batch_size]))
                chunk = chunk.to(self.device)
                lengths = torch.ones(chunk.shape[0], device=self.device)
                out = self._model.encode_batch(chunk, wav_lens=lengths)
                rows.append(out.reshape(chunk.shape[0], -1).float().cpu().numpy())
        vectors = np.concatenate(rows, axis=0).astype(np.float32)
        if not np.isfinite(vectors).all():
            raise BackendUnavailableError(
                f"{self.name} from {self.source} produced non-finite embeddings; the model files may be corrupt"
            )
        return vectors


def _check_local_dir(directory: Path) -> dict[str, str]:
    """Check a local model directory and say which hyperparams to override.

    Returns:
        ``overrides`` for ``from_hparams``: ``pretrained_path`` set to ``directory`` when
        ``hyperparams.yaml`` defines it (the published file sets it to the hub id).

    Raises:
        BackendUnavailableError: ``hyperparams.yaml`` or a file it names is missing.
    """
    hyperparams = directory / HYPERPARAMS_FILE
    if not hyperparams.is_file():
        raise BackendUnavailableError(
            f"ECAPA model directory {directory} has no {HYPERPARAMS_FILE}; it should hold the "
            f"speechbrain/spkrec-ecapa-voxceleb files "
            f"({HYPERPARAMS_FILE}, {', '.join(LAYOUT_FILES)})"
        )
    try:
        text = hyperparams.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BackendUnavailableError(f"cannot read {hyperparams}: {exc}") from exc
    missing = [f for f in LAYOUT_FILES if f in text and not (directory / f).is_file()]
    if missing:
        raise BackendUnavailableError(
            f"ECAPA model directory {directory} is missing {', '.join(missing)} "
            f"(named in its {HYPERPARAMS_FILE}); copy the complete model download into it"
        )
    if _PRETRAINED_PATH_KEY.search(text):
        return {"pretrained_path": directory.as_posix()}
    return {}


def _complete_layout(savedir: Path) -> None:
    """Make a hub download in ``savedir`` usable as a local source directory.

    speechbrain's pretrainer stores every loadable as ``<key>.ckpt``, so the published
    ``label_encoder.txt`` lands as ``label_encoder.ckpt``; add a copy under the published name.
    """
    for filename in LAYOUT_FILES:
        target = savedir / filename
        collected = target.with_suffix(".ckpt")
        if not target.exists() and collected.is_file():
            shutil.copyfile(collected, target)


def _load(load: Any, where: str, hint: str) -> Any:
    """Run a speechbrain load call, turning its failures into BackendUnavailableError."""
    try:
        return load()
    # speechbrain, hyperpyyaml, huggingface_hub and torch raise many unrelated exception types
    # (OSError, ValueError, KeyError, RuntimeError, TypeError, httpx errors, ...); all mean "this
    # model cannot be loaded", and the original is chained for debugging.
    except Exception as exc:
        raise BackendUnavailableError(
            f"could not load the ECAPA model from {where}: {type(exc).__name__}: {exc}; {hint}"
        ) from exc


def _hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off, read at call time (not at import)."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _import_torch(device: str) -> Any:
    """torch, after checking that speechbrain imports and ``device`` is usable."""
    try:
        import speechbrain.inference.classifiers  # noqa: F401 - fails here, with a clear message, if broken
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the ECAPA backend needs speechbrain and torch, which are not installed ({exc}); {INSTALL_HINT}"
        ) from exc
    except (OSError, RuntimeError) as exc:
        raise BackendUnavailableError(
            f"speechbrain is installed but failed to import ({type(exc).__name__}: {exc}); "
            f"reinstall a matching torch/torchaudio, or {INSTALL_HINT}"
        ) from exc

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device={device!r} was requested but CUDA is not available to torch "
            f"{torch.__version__}; use device='cpu' or install a CUDA build of torch"
        )
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"device={device!r} is not a torch device ({exc}); use 'cpu'") from exc

    return torch
