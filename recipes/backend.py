"""The LDA back-end the product ships, trained on the TRAIN speakers' embeddings.

:func:`train_backend` is what ``scripts/train_backend.py`` runs to make
``voicecheck/data/ge2e-backend.npz`` (with :data:`BACKEND`); the benchmarks train the same recipe on
other folds. The product only loads and applies the result (:mod:`voicecheck.scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recipes.corpus import Speaker
from recipes.embed_cache import MODEL_KEY, SpeakerEmbeddings


def lda_training_set(
    embs: dict[str, SpeakerEmbeddings], speakers: list[Speaker], views: str = "wide,band,tel,tel2"
) -> tuple[np.ndarray, np.ndarray]:
    """LDA training rows: each speaker's segments in every view in ``views``, one class per speaker.

    Returns:
        (X (n, d), labels (n,) speaker keys).
    """
    xs, labels = [], []
    for s in speakers:
        e = embs.get(s.key)
        if e is None:
            continue
        for view in views.split(","):
            rows = getattr(e, f"seg_{view}")
            xs.append(rows)
            labels += [s.key] * len(rows)
    return np.concatenate(xs).astype(np.float64), np.array(labels)


def cohort_calls(embs: dict[str, SpeakerEmbeddings], speakers: list[Speaker]) -> tuple[np.ndarray, list[str]]:
    """The in-domain cohort: every simulated call of ``speakers`` (unlabelled for the scorer).

    Returns:
        (vectors (n, d), owner key of each row).
    """
    rows, owners = [], []
    for s in speakers:
        e = embs.get(s.key)
        if e is None:
            continue
        rows.append(e.calls)
        owners += [s.key] * len(e.calls)
    return np.concatenate(rows), owners


@dataclass(frozen=True)
class BackendConfig:
    """How the LDA back-end is trained (chosen on TUNE speakers: ``benchmarks/accuracy.py``'s search).

    Attributes:
        dim: LDA directions kept.
        wccn: whiten the within-class covariance after LDA.
        shrink: shrinkage of the within-class scatter.
        views: segment views in the training set ("wide", "band", "tel", "tel2"; comma-separated).
        mean: centring mean shipped for use without a cohort: "train" (LDA training mean) or "tel"
            (mean of the TRAIN speakers' simulated calls: in-domain for telephone calls).
    """

    dim: int = 64
    wccn: bool = False
    shrink: float = 0.5
    views: str = "wide,band,tel,tel2"
    mean: str = "tel"


BACKEND = BackendConfig()
"""The configuration of the shipped back-end (see accuracy.md for the TUNE search)."""


def train_backend(
    embs: dict[str, SpeakerEmbeddings], train: list[Speaker], config: BackendConfig = BACKEND, source: str = ""
):  # noqa: ANN201 - voicecheck.scoring.Backend
    """The LDA back-end trained on ``train`` speakers' segments (telephone augmented), with the
    segments' speaker statistics (what PLDA scoring and a deployment's adaptation start from) and its
    recipe in ``info`` (``info["lda"]``: what an adapted back-end re-fits LDA with).

    Returns:
        voicecheck.scoring.Backend for the GE2E model.
    """
    from dataclasses import asdict, replace

    from voicecheck.embedders import BUILTIN
    from voicecheck.scoring import fit_lda, scatter_stats, with_domain_mean

    X, labels = lda_training_set(embs, train, config.views)
    backend = fit_lda(
        X, labels, config.dim, wccn=config.wccn, shrink=config.shrink, model=BUILTIN[MODEL_KEY].name, source=source
    )
    if config.mean == "tel":
        calls, _ = cohort_calls(embs, train)
        backend = with_domain_mean(backend, calls)
    info = {"kind": "out-of-domain", "lda": {"dim": config.dim, "wccn": config.wccn, "shrink": config.shrink}}
    info["training"] = {**asdict(config), "speakers": len({*labels}), "vectors": len(X)}
    return replace(backend, source=source, stats=scatter_stats(X, labels), info=info)
