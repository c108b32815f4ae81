"""Which calls get the in-between windows: the coarse timeline for every call, the finer one near a decision.

GE2E's windows go back to back (hop 1.6 s): half the network work of windows every 0.8 s, and the
call vector the 1:1 score and the back-end rest on. The window-level analyses decide on a timeline of
windows, and their defaults were tuned on windows every 0.8 s. So a call whose coarse timeline puts it
close to one of their decisions gets the in-between windows as well, embedded from the speech still
in memory (:meth:`voicecheck.pipeline.Engine.embed_audio` with a rule from :meth:`Refiner.rule`), and
is judged on the finer timeline; a call far from every decision keeps its coarse windows. Most calls
are one clear voice on a stereo channel whose borrower's voiceprint they match well: they never
need it. The reasons:

* "takeover": the best change on the coarse timeline has sides within ``Settings.refine_cosine_margin``
  of the side test (raw window cosine) and a lower side within ``Settings.refine_score_margin`` of the
  score test (natural-log likelihood-ratio units through the mode's calibration slope, so one margin
  serves every scoring mode);
* "mono": a mono recording whose unsmoothed coarse split finds two voices within the cosine margin;
* "ring": a telephone-band call rings may group (its borrower has no voiceprint, or it fails the 1:1
  check), when ``Settings.refine_ring_candidates``: rings and
  consistency compare calls by the mean of their stored windows
  (:func:`voicecheck.crosscall.stored_calls`), which on the finer timeline separates short calls'
  voices as before.

The margins were chosen in ``benchmarks/analysis.py`` on TUNE speakers so that the takeover and mono
decisions match the finer timeline's. In a batch each worker builds its :class:`Refiner` once from
the stores as they are when it starts (the Judge scores later, with tonight's calls in the cohort);
the score margin covers that too. A call that cannot be scored here (no threshold yet, a damaged
voiceprint) is decided by the side tests alone.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from . import analysis as A
from .config import Settings
from .errors import NotEnrolledError, VoicecheckError
from .scorer import Scorer
from .types import CallEmbedding

log = logging.getLogger(__name__)

REASONS = ("mono", "ring", "takeover")
"""Why a call was refined, as :meth:`Refiner.reason` names it."""


class Refiner:
    """Decides, from a call's coarse embedding, whether it needs the in-between windows.

    Args:
        settings: margins (``refine_cosine_margin``, ``refine_score_margin``), ``refine_ring_candidates``,
            ``mono_split`` and ``takeover_min_segment_s``.
        scorer: the product's scorer (space, thresholds, calibration); None: side tests alone.
        voiceprints: the voiceprint store (:class:`voicecheck.enrollment.VoiceprintStore`); None:
            side tests alone.
    """

    def __init__(self, settings: Settings, scorer: Scorer | None = None, voiceprints: Any | None = None) -> None:
        self.settings = settings
        self.scorer = scorer
        self.voiceprints = voiceprints
        self.takeover_limit = _takeover_limit(scorer)

    @classmethod
    def open(cls, settings: Settings, model: str, key: str, calls: Any, voiceprints: Any) -> Refiner:
        """A refiner with the product's scorer built from the stores (cohort and operating point as
        :meth:`voicecheck.scorer.Scorer.build` finds them now)."""
        return cls(settings, Scorer.build(settings, model, key, calls, voiceprints), voiceprints)

    def rule(self, borrower_id: str) -> Any:
        """The :data:`voicecheck.pipeline.RefineRule` for one call of ``borrower_id``."""
        return lambda emb: self.reason(emb, borrower_id)

    def reason(self, emb: CallEmbedding, borrower_id: str) -> str | None:
        """Why the call needs the finer timeline ("mono", "ring", "takeover"), or None.

        "ring": a telephone-band call that is a ring candidate (its borrower has no voiceprint, or it
        fails the 1:1 check as the worker scores it) when ``settings.refine_ring_candidates``:
        rings compare such calls by the mean of their stored windows, and on short calls the mean of
        windows every 0.8 s separates voices better than the coarse one (benchmarks/analysis.py).

        Args:
            emb: the call's embedding on the coarse timeline.
            borrower_id: the borrower the call is claimed to be.
        """
        s = self.settings
        if (
            emb.channels == 1
            and s.mono_split
            and A.near_two_speakers(emb.windows, emb.window_times_s, s.refine_cosine_margin)
        ):
            return "mono"
        check = self._check(emb, borrower_id)
        if check is None:  # no voiceprint: no 1:1 check and no takeover check; a ring candidate
            return "ring" if s.refine_ring_candidates and emb.band == "narrow" else None
        score_fn, threshold, margin, whole = check
        if s.refine_ring_candidates and emb.band == "narrow" and whole is not None and whole < threshold:
            return "ring"
        if score_fn is False:
            return None  # compared in another band than its own: the Judge looks for no takeover
        near = A.near_speaker_change(
            emb.windows,
            emb.window_times_s,
            score_fn or None,
            threshold,
            min_segment_s=s.takeover_min_segment_s,
            cosine_margin=s.refine_cosine_margin,
            score_margin=margin,
            max_side_cosine=self.takeover_limit,
        )
        return "takeover" if near else None

    def _check(self, emb: CallEmbedding, borrower_id: str) -> tuple[Any, float, float, float | None] | None:
        """The call's 1:1 check as the Judge will run it: (score function for its windows, threshold,
        score margin on the mode's scale, whole-call score). None when the borrower has no voiceprint.

        The score function is False when the call is compared in another band than its own (no
        takeover check then), None when the mode has no calibration to convert the margin (the side
        test decides alone) or the call cannot be scored here (no whole-call score either).
        """
        if self.scorer is None or self.voiceprints is None:
            return None, 0.0, 0.0, None
        scorer = self.scorer
        try:
            voiceprint = self.voiceprints.get(borrower_id, scorer.model)
        except NotEnrolledError:
            return None
        except VoicecheckError as e:
            log.debug("refine: %s: side tests alone (%s)", borrower_id, e)
            return None, 0.0, 0.0, None
        try:
            s = scorer.score(voiceprint, emb)
            calibration = scorer.calibration(s.band)
        except VoicecheckError as e:
            log.debug("refine: %s: side tests alone (%s)", borrower_id, e)
            return None, 0.0, 0.0, None
        if s.band != emb.band:
            return False, s.threshold, 0.0, s.score
        if calibration is None or not calibration.a > 0:
            return None, s.threshold, 0.0, s.score
        enroll = voiceprint.vectors[s.band]

        def score_fn(rows: np.ndarray) -> np.ndarray:
            return scorer.scores(enroll, rows, s.band, emb.content_hash, voiceprint.owner_id)[0]

        return score_fn, s.threshold, self.settings.refine_score_margin / calibration.a, s.score


def _takeover_limit(scorer: Scorer | None) -> float:
    """The side-cosine limit the Judge's takeover test uses (the model's profile, via
    :meth:`voicecheck.scorer.Scorer.takeover_max_side_cosine`); 1.0 (the side test off, so every call
    long enough to split is near) when there is no scorer or its profile's limit is unusable."""
    if scorer is None:
        return 1.0
    try:
        return scorer.takeover_max_side_cosine().value
    except VoicecheckError:
        return 1.0
