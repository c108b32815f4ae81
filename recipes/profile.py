"""The shipped profile: thresholds and calibrations per scoring mode, chosen on TUNE speakers.

:func:`build_profile` is what ``scripts/train_backend.py`` runs to make
``voicecheck/data/ge2e-profile.json``; ``benchmarks/transfer.py`` runs it on other splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recipes.backend import train_backend
from recipes.corpus import Speaker, tune_rotations
from recipes.embed_cache import MODEL_KEY, SpeakerEmbeddings
from recipes.trials import build_trials, product_cohort, scorer_for_mode, scorer_matrix, scorer_settings

FALSE_FLAG_TARGET = 0.05
"""Share of genuine borrowers flagged that the shipped thresholds are set for (on TUNE)."""

PROFILE_MODES = ("cosine", "asnorm", "lda", "lda+asnorm", "plda")
"""The scoring modes the shipped profile has a threshold and a calibration for."""


def build_profile(
    embs: dict[str, SpeakerEmbeddings],
    speakers: list[Speaker],
    seed: int,
    backend,  # noqa: ANN001 - the shipped voicecheck.scoring.Backend (trained on the main split's TRAIN)
    workdir: str | Path,
    source: str,
) -> dict:
    """Thresholds and calibrations per scoring mode, from TUNE trials scored by the product's Scorer.

    TUNE is rotated over the non-EVAL folds (:func:`tune_rotations`); in each rotation the
    Scorer gets the back-end trained on that rotation's TRAIN speakers (the shipped one for the
    main split) and their simulated calls as cohort, and scores every TUNE wideband enrollment
    (channel-matched, as the product stores it) against every TUNE call. Scores are pooled over
    the rotations (~4x the trials of one fold: a steadier 5% point). The threshold flags at most
    :data:`FALSE_FLAG_TARGET` of the genuine calls (``threshold_at_false_flag``); the calibration
    is ``fit_calibration`` (prior 0.5) on the same scores.
    """
    from voicecheck.embedders import BUILTIN
    from voicecheck.metrics import eer
    from voicecheck.scoring import fit_calibration, threshold_at_false_flag

    settings = scorer_settings(workdir)
    pooled: dict[str, tuple[list, list]] = {m: ([], []) for m in PROFILE_MODES}
    for i, split in enumerate(tune_rotations(speakers, seed)):
        b = backend if i == 0 else train_backend(embs, split["train"])
        cohort = product_cohort(embs, split["train"])
        trials = build_trials(embs, split["tune"])
        mask = trials.target_mask
        for mode, (tar, non) in pooled.items():
            S = scorer_matrix(scorer_for_mode(mode, settings, b, cohort), trials.enroll["matched"], trials.calls)
            tar.append(S[mask])
            non.append(S[~mask])
    modes = {}
    for mode, (tar_list, non_list) in pooled.items():
        targets, nontargets = np.concatenate(tar_list), np.concatenate(non_list)
        cal = fit_calibration(targets, nontargets)
        modes[mode] = {
            "threshold": round(threshold_at_false_flag(targets, FALSE_FLAG_TARGET), 5),
            "false_flag_target": FALSE_FLAG_TARGET,
            "calibration": {"a": round(cal.a, 6), "b": round(cal.b, 6)},
            "tune_eer": round(eer(targets, nontargets)[0], 4),
            "n_target": int(targets.size),
            "n_nontarget": int(nontargets.size),
        }
    return {"model": BUILTIN[MODEL_KEY].name, "source": source, "modes": modes}
