"""The real-speech corpus as speakers, and their split into TRAIN / TUNE / EVAL.

Reads ``shared/speech`` (``MANIFEST.csv``: one row per FLAC file). Speakers are keyed on
(source, speaker). ``conversations_*`` (several people per file) are left out. The Asterisk
``allison_smith_en``/``allison_smith_esMX`` folders are one woman: merged into one speaker.
Speakers recorded narrowband (the Asterisk prompts, 8 kHz originals) cannot give a wideband
enrollment and speakers with under :data:`MIN_EVAL_SECONDS` of audio cannot give an enrollment and a
call: both go to TRAIN only (they still help the LDA and the cohort).

The split (:func:`split_speakers`, seed 0, fold 0) is the one the shipped back-end and profile come
from (``scripts/train_backend.py``) and the one every benchmark reports EVAL figures on.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
"""The repository."""

DEFAULT_SPEECH = ROOT.parent / "shared" / "speech"
"""The real-speech corpus beside the repository (benchmarks and scripts take ``--speech``)."""

SAMPLE_RATE = 16000
"""Rate of the corpus audio as read (:func:`load_utterances`), samples per second."""

MIN_EVAL_SECONDS = 10.0
"""Least total audio (s) a speaker needs to give both an enrollment and a call."""

FOLDS = 5
"""Speakers are dealt into this many folds: EVAL = fold f, TUNE = fold f+1, TRAIN = the rest."""

_MERGE = {
    ("telephone_asterisk_prompts_debian", "allison_smith_esMX"): "allison_smith_en",
}
# The sherpa "3dspk_speakerN_cn" and "_en" folders are NOT merged: an earlier version merged them
# as one person each and their own-voice trials then scored below every impostor (AS-norm -0.5),
# so they are taken as the different people the manifest names them.


@dataclass
class Speaker:
    """One person of the corpus.

    Attributes:
        key: "source/speaker" (unique).
        files: FLAC paths in manifest order.
        seconds: summed duration of the files (s).
        wideband: every original was recorded at >= 16 kHz.
    """

    key: str
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    wideband: bool = True

    @property
    def evaluable(self) -> bool:
        """Can give a wideband enrollment and a call (so may be a TUNE or EVAL speaker)."""
        return self.wideband and self.seconds >= MIN_EVAL_SECONDS


def portable(arg: str) -> str:
    """A command-line argument as a results file records it: an absolute path relative to the
    repository (``../shared/speech`` for the default speech folder, not the machine's absolute
    path; a folder elsewhere still shows the folders on the way), anything else as given."""
    path = Path(arg)
    return os.path.relpath(path, ROOT) if path.is_absolute() else arg


def read_corpus(speech_dir: str | Path) -> list[Speaker]:
    """Speakers of ``speech_dir/MANIFEST.csv``, sorted by key (see the module notes)."""
    root = Path(speech_dir)
    speakers: dict[str, Speaker] = {}
    with (root / "MANIFEST.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            source = row["source"]
            if source.startswith("conversations_"):
                continue
            name = _MERGE.get((source, row["speaker"]), row["speaker"])
            key = f"{source}/{name}"
            spk = speakers.setdefault(key, Speaker(key))
            spk.files.append(root / row["file"])
            spk.seconds += float(row["seconds"])
            spk.wideband &= int(row["sample_rate_original"]) >= 16000
    return [speakers[k] for k in sorted(speakers)]


def split_speakers(
    speakers: list[Speaker], seed: int = 0, fold: int = 0, folds: int = FOLDS, tune_fold: int | None = None
) -> dict[str, list[Speaker]]:
    """Deal speakers into disjoint TRAIN / TUNE / EVAL sets.

    Evaluable speakers are shuffled with ``seed`` and dealt round-robin into ``folds`` folds;
    EVAL = fold ``fold``, TUNE = fold ``tune_fold`` (default ``fold + 1``), TRAIN = the other
    folds plus every non-evaluable speaker. ``fold=0`` is *the* split (the one the shipped files
    come from); other folds rotate EVAL over all speakers for a pooled cross-check, and other
    ``tune_fold`` values rotate TUNE over the non-EVAL speakers (inner cross-validation).

    Returns:
        {"train": [...], "tune": [...], "eval": [...]}, each sorted by key.
    """
    ok = [s for s in speakers if s.evaluable]
    order = np.random.default_rng(seed).permutation(len(ok))
    fold_of = {ok[i].key: rank % folds for rank, i in enumerate(order)}
    eval_fold = fold % folds
    tune = (fold + 1) % folds if tune_fold is None else tune_fold % folds
    if tune == eval_fold:
        raise ValueError(f"TUNE fold {tune} is the EVAL fold")
    out: dict[str, list[Speaker]] = {"train": [], "tune": [], "eval": []}
    for s in speakers:
        f = fold_of.get(s.key)
        if f == eval_fold:
            out["eval"].append(s)
        elif f == tune:
            out["tune"].append(s)
        else:
            out["train"].append(s)
    return out


def tune_rotations(
    speakers: list[Speaker], seed: int = 0, eval_fold: int = 0, folds: int = FOLDS
) -> list[dict[str, list[Speaker]]]:
    """Splits with EVAL fixed and TUNE rotated over every other fold; the first is the main split."""
    return [
        split_speakers(speakers, seed, eval_fold, folds, tune_fold=(eval_fold + 1 + i) % folds)
        for i in range(folds - 1)
    ]


def load_utterances(spk: Speaker) -> list[np.ndarray]:
    """The speaker's files as float32 mono arrays at 16 kHz."""
    import soundfile as sf

    from voicecheck.audio import resample

    out = []
    for path in spk.files:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
        out.append(resample(x.mean(axis=1), int(rate), SAMPLE_RATE))
    return out
