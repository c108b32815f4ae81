"""Build a tiny, randomly initialised ECAPA-TDNN in the speechbrain/spkrec-ecapa-voxceleb layout.

The directory it writes loads with ``EncoderClassifier.from_hparams(source=str(directory))`` with no
network: the same file names and ``hyperparams.yaml`` keys as the published model, only with a few
thousand parameters instead of twenty million. Tests use it to exercise the real loading and
inference code of ``voicecheck.embedders.ecapa`` offline; its embeddings carry no speaker meaning.

Needs torch and speechbrain; import this module only after ``pytest.importorskip("speechbrain")``.
"""

from __future__ import annotations

from pathlib import Path

HUB_ID = "speechbrain/spkrec-ecapa-voxceleb"
"""What the published ``hyperparams.yaml`` sets ``pretrained_path`` to."""

CHECKPOINT_FILES = (
    "embedding_model.ckpt",
    "mean_var_norm_emb.ckpt",
    "classifier.ckpt",
    "label_encoder.txt",
)
"""Files the pretrainer loads, besides ``hyperparams.yaml``."""

_HYPERPARAMS = """\
# Tiny random ECAPA-TDNN for offline tests (voicecheck tests/tiny_ecapa.py).
# Same keys and file names as speechbrain/spkrec-ecapa-voxceleb; the weights mean nothing.

pretrained_path: {pretrained_path}

n_mels: {n_mels}
emb_dim: {lin_neurons}
n_speakers: {n_speakers}

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {channels}
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: {attention_channels}
    se_channels: {se_channels}
    lin_neurons: !ref <emb_dim>

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: !ref <emb_dim>
    out_neurons: !ref <n_speakers>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def build_tiny_ecapa(
    directory: Path,
    n_mels: int = 24,
    channels: tuple[int, int, int, int, int] = (32, 32, 32, 32, 96),
    lin_neurons: int = 16,
    n_speakers: int = 4,
    seed: int = 0,
    pretrained_path: str | None = None,
) -> Path:
    """Write a tiny ECAPA-TDNN model directory that speechbrain loads offline.

    Args:
        directory: where to write (created if missing; existing files are overwritten).
        n_mels: filterbank channels of the front end.
        channels: the five ECAPA block widths; the first four must be multiples of 8 (Res2Net
            scale).
        lin_neurons: embedding dimension.
        n_speakers: classifier outputs (and labels in ``label_encoder.txt``).
        seed: torch seed for the random weights; the same seed gives the same files' weights.
        pretrained_path: value written for ``pretrained_path`` in ``hyperparams.yaml``; the default
            is ``directory`` itself (absolute), so the plain speechbrain call loads it. Pass
            ``HUB_ID`` to mimic the published file, which points at the hub.

    Returns:
        ``directory``, holding ``hyperparams.yaml`` and the files in ``CHECKPOINT_FILES``
        (about 100 kB in all with the defaults).
    """
    import torch
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.processing.features import InputNormalization

    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    attention_channels = 16
    se_channels = 16

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        embedding_model = ECAPA_TDNN(
            input_size=n_mels,
            channels=list(channels),
            kernel_sizes=[5, 3, 3, 3, 1],
            dilations=[1, 2, 3, 4, 1],
            attention_channels=attention_channels,
            se_channels=se_channels,
            lin_neurons=lin_neurons,
        )
        classifier = Classifier(input_size=lin_neurons, out_neurons=n_speakers)
        # Batch-norm running statistics start at mean 0 / var 1; perturb them so eval mode is not
        # a near-identity and different inputs map to clearly different embeddings.
        for module in embedding_model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    finally:
        torch.random.set_rng_state(generator_state)

    torch.save(embedding_model.state_dict(), directory / "embedding_model.ckpt")
    torch.save(classifier.state_dict(), directory / "classifier.ckpt")

    # An identity embedding normaliser: global mean 0, never updated.
    mean_var_norm_emb = InputNormalization(norm_type="global", std_norm=False)
    mean_var_norm_emb.glob_mean = torch.zeros(lin_neurons)
    mean_var_norm_emb.glob_std = torch.ones(lin_neurons)
    mean_var_norm_emb._save(directory / "mean_var_norm_emb.ckpt")

    label_encoder = CategoricalEncoder()
    label_encoder.update_from_iterable([f"spk{i}" for i in range(n_speakers)])
    label_encoder.save(directory / "label_encoder.txt")

    text = _HYPERPARAMS.format(
        pretrained_path=pretrained_path if pretrained_path is not None else directory.as_posix(),
        n_mels=n_mels,
        lin_neurons=lin_neurons,
        n_speakers=n_speakers,
        channels=list(channels),
        attention_channels=attention_channels,
        se_channels=se_channels,
    )
    (directory / "hyperparams.yaml").write_text(text, encoding="utf-8")
    return directory
