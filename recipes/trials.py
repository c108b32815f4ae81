"""Trials (every enrollment against every call) and the scores of each scoring chain on them.

:func:`score_matrix` is the numpy counterpart of the product's :class:`voicecheck.scorer.Scorer`
(same maths, whole grids at once); :func:`scorer_for_mode` and :func:`scorer_matrix` run the
product's own Scorer on the same trials, so a benchmark can check that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recipes.backend import cohort_calls
from recipes.corpus import Speaker
from recipes.embed_cache import MODEL_KEY, SpeakerEmbeddings


@dataclass
class Trials:
    """Every enrollment x every call of one speaker set.

    Attributes:
        speakers: keys of the enrolled speakers, (n_e,).
        enroll: enrollment vectors per condition name ("wide", "matched", "tel"), each (n_e, d).
        calls: call vectors, (n_c, d).
        call_owner: speaker index (into ``speakers``) of each call, (n_c,).
        call_speech_s: net speech of each call, (n_c,).
    """

    speakers: list[str]
    enroll: dict[str, np.ndarray]
    calls: np.ndarray
    call_owner: np.ndarray
    call_speech_s: np.ndarray

    @property
    def target_mask(self) -> np.ndarray:
        """(n_e, n_c) True where the call is the enrolled speaker's own."""
        return self.call_owner[None, :] == np.arange(len(self.speakers))[:, None]


def build_trials(embs: dict[str, SpeakerEmbeddings], speakers: list[Speaker]) -> Trials:
    """Trials among ``speakers`` that have both an enrollment and at least one call."""
    keys: list[str] = []
    owner: list[int] = []
    wide, matched, tel, calls, secs = [], [], [], [], []
    for s in speakers:
        e = embs.get(s.key)
        if e is None or not np.any(e.enroll_wide) or len(e.calls) == 0:
            continue
        i = len(keys)
        keys.append(s.key)
        wide.append(e.enroll_wide)
        matched.append(e.enroll_matched)
        tel.append(e.enroll_tel)
        calls.append(e.calls)
        owner += [i] * len(e.calls)
        secs.append(e.call_speech_s)
    return Trials(
        speakers=keys,
        enroll={"wide": np.array(wide), "matched": np.array(matched), "tel": np.array(tel)},
        calls=np.concatenate(calls),
        call_owner=np.array(owner),
        call_speech_s=np.concatenate(secs),
    )


SYSTEMS = ("raw", "matched", "centred", "asnorm", "lda", "lda+asnorm")
"""Scoring chains, each adding one step: raw cosine (enrollment in its own band), channel matching,
centring on the in-domain (cohort) mean, AS-norm, LDA back-end (no cohort: its own mean), LDA with
the cohort mean + AS-norm."""


def score_matrix(
    system: str,
    enroll: np.ndarray,
    calls: np.ndarray,
    cohort: np.ndarray | None,
    backend=None,  # noqa: ANN001 - voicecheck.scoring.Backend | None
    top_n: int = 200,
) -> np.ndarray:
    """Scores of every enrollment row against every call row, shape (n_e, n_c).

    The numpy counterpart of :class:`voicecheck.scorer.Scorer` (same maths, whole grids at once).
    ``enroll`` must already be in the call's band for every system but "raw".
    """
    from voicecheck.scoring import Backend, asnorm_matrix, cosine_matrix, with_domain_mean

    if system in ("raw", "matched"):
        return cosine_matrix(enroll, calls)
    if system == "lda":
        b = backend
    else:
        if cohort is None:
            raise ValueError(f"system {system!r} needs a cohort (its centring mean)")
        base = backend if system.startswith("lda") else Backend.identity("", enroll.shape[1])
        b = with_domain_mean(base, cohort)
    e, c = b.transform(enroll).astype(np.float64), b.transform(calls).astype(np.float64)
    s = e @ c.T
    if system.endswith("asnorm"):
        k = b.transform(cohort).astype(np.float64)
        s = asnorm_matrix(s, e @ k.T, c @ k.T, min(top_n, len(k)))
    return s


# --- the product's Scorer on recipe trials ------------------------------------------------------


def product_cohort(embs: dict[str, SpeakerEmbeddings], train: list[Speaker]):  # noqa: ANN201
    """TRAIN speakers' simulated calls as a :class:`voicecheck.scorer.Cohort` (narrow band)."""
    from voicecheck.scorer import Cohort

    vectors, owners = cohort_calls(embs, train)
    return Cohort(vectors.astype(np.float32), [f"cohort-{i}" for i in range(len(owners))], [{o} for o in owners])


COHORT_MIN_CALLS = 20
"""The benchmarks' cohorts are built by hand (TRAIN calls, a held-out corpus's calls): each needs
this many calls, the rule the shipped profile was made with. The product itself asks its
call-store cohort for ``Settings.cohort_min`` distinct people (benchmarks/transfer.py measured why)."""


def scorer_settings(workdir: str | Path):  # noqa: ANN201 - voicecheck.config.Settings
    """Product settings whose workspace has no calibration override (so the shipped profile is read),
    taking the benchmark's hand-built cohorts as they are (:data:`COHORT_MIN_CALLS` is checked by the
    benchmark, not by a count of people)."""
    from voicecheck.config import Settings

    return Settings(embeddings=str(workdir), cohort_min=2)


def scorer_for_mode(mode: str, settings, backend, cohort):  # noqa: ANN001, ANN201
    """The product's Scorer set up so that its narrow-band mode is ``mode``."""
    from dataclasses import replace

    from voicecheck.embedders import BUILTIN
    from voicecheck.scorer import Scorer, needs_backend

    with_backend = needs_backend(mode)
    with_cohort = mode.endswith("asnorm") or (mode == "plda" and cohort is not None)
    scorer = Scorer(
        replace(settings, backend_scoring="plda" if mode.startswith("plda") else "cosine"),
        BUILTIN[MODEL_KEY].name,
        MODEL_KEY,
        backend if with_backend else None,
        {"narrow": cohort} if with_cohort else {},
    )
    if scorer.mode("narrow") != mode:
        raise RuntimeError(f"Scorer runs mode {scorer.mode('narrow')!r}, expected {mode!r}")
    return scorer


def scorer_matrix(scorer, enroll: np.ndarray, calls: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Scorer.scores for every enrollment row against every call row, shape (n_e, n_c)."""
    return np.stack([scorer.scores(np.asarray(e, np.float32), calls.astype(np.float32), "narrow")[0] for e in enroll])
