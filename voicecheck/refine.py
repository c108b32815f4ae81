"""Which calls get the in-between windows: the coarse timeline for every call, the finer one near a decision.

GE2E's windows go back to back (hop 1.6 s): half the network work of windows every 0.8 s, and the
call vector the 1:1 score and the back-end rest on. The window-level analyses the Judge runs (a
takeover inside a call, two voices on a mono recording) decide on a timeline of windows, and their
defaults were tuned on windows every 0.8 s. So a call whose coarse timeline puts it close to one of
their decisions gets the in-between windows as well, embedded from the speech still in memory
(:meth:`voicecheck.pipeline.Engine.embed_audio` with a rule from :meth:`Refiner.rule`), and is judged
on the finer timeline; a call far from every decision keeps its coarse windows. Most calls are one
clear voice on a stereo channel whose sides score well above the threshold: they never need it.

A takeover is flagged when the best change's two sides differ (side cosine) and one of them fails
the voiceprint (score below the threshold): a call is *near* when its coarse timeline is within
``Settings.refine_cosine_margin`` of the first test and within ``Settings.refine_score_margin`` of
the second (in natural-log likelihood-ratio units through the mode's calibration slope, so one
margin serves every scoring mode). A mono recording is near when its unsmoothed coarse split finds
two voices within the cosine margin. The margins were chosen in ``benchmarks/analysis.py`` on TUNE
speakers so that the takeover and mono figures on EVAL match the finer timeline's.

In a batch, each worker builds its :class:`Refiner` once from the stores as they are when it starts
(the Judge scores later, with tonight's calls in the cohort); the score margin covers that too. A
call that cannot be scored here (no threshold yet, a damaged voiceprint) is decided by the side test
alone, so doubt costs CPU, never a takeover missed.
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

REASONS = ("mono", "takeover")
"""Why a call was refined, as :meth:`Refiner.reason` names it."""


class Refiner:
    """Decides, from a call's coarse embedding, whether it needs the in-between windows.

    Args:
        settings: margins (``refine_cosine_margin``, ``refine_score_margin``), ``mono_split`` and
            ``takeover_min_segment_s``.
        scorer: the product's scorer (space, thresholds, calibration); None: side tests alone.
        voiceprints: the voiceprint store (:class:`voicecheck.enrollment.VoiceprintStore`); None:
            side tests alone.
    """

    def __init__(self, settings: Settings, scorer: Scorer | None = None, voiceprints: Any | None = None) -> None:
        self.settings = settings
        self.scorer = scorer
        self.voiceprints = voiceprints

    @classmethod
    def open(cls, settings: Settings, model: str, key: str, calls: Any, voiceprints: Any) -> Refiner:
        """A refiner with the product's scorer built from the stores (cohort and operating point as
        :meth:`voicecheck.scorer.Scorer.build` finds them now)."""
        return cls(settings, Scorer.build(settings, model, key, calls, voiceprints), voiceprints)

    def rule(self, borrower_id: str) -> Any:
        """The :data:`voicecheck.pipeline.RefineRule` for one call of ``borrower_id``."""
        return lambda emb: self.reason(emb, borrower_id)

    def reason(self, emb: CallEmbedding, borrower_id: str) -> str | None:
        """Why the call needs the finer timeline ("mono", "takeover"), or None.

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
        return "takeover" if self._near_takeover(emb, borrower_id) else None

    def _near_takeover(self, emb: CallEmbedding, borrower_id: str) -> bool:
        """:func:`voicecheck.analysis.near_speaker_change` as the Judge would score the call's sides."""
        s = self.settings
        side_only = (None, 0.0, 0.0)
        score_fn, threshold, score_margin = side_only
        if self.scorer is not None and self.voiceprints is not None:
            try:
                voiceprint = self.voiceprints.get(borrower_id, self.scorer.model)
            except NotEnrolledError:
                return False  # no 1:1 check, so the Judge looks for no takeover
            except VoicecheckError as e:
                log.debug("refine: %s: side test alone (%s)", borrower_id, e)
                voiceprint = None
            if voiceprint is not None:
                try:
                    got = self._score_fn(emb, voiceprint)
                except VoicecheckError as e:
                    log.debug("refine: %s: side test alone (%s)", borrower_id, e)
                    got = side_only
                if got is None:
                    return False  # compared in another band: the Judge looks for no takeover
                score_fn, threshold, score_margin = got
        return A.near_speaker_change(
            emb.windows,
            emb.window_times_s,
            score_fn,
            threshold,
            min_segment_s=s.takeover_min_segment_s,
            cosine_margin=s.refine_cosine_margin,
            score_margin=score_margin,
        )

    def _score_fn(self, emb: CallEmbedding, voiceprint: Any) -> tuple[Any, float, float] | None:
        """(score function, threshold, score margin on the mode's scale) as Judge.within_call scores
        the call's windows; (None, 0, 0) without a calibration (side test alone); None when the call
        is compared in another band than its own (no within-call analysis then)."""
        assert self.scorer is not None
        scorer = self.scorer
        s = scorer.score(voiceprint, emb)
        if s.band != emb.band:
            return None
        calibration = scorer.calibration(s.band)
        if calibration is None or not calibration.a > 0:
            return None, 0.0, 0.0
        enroll = voiceprint.vectors[s.band]

        def score_fn(rows: np.ndarray) -> np.ndarray:
            return scorer.scores(enroll, rows, s.band, emb.content_hash, voiceprint.owner_id)[0]

        return score_fn, s.threshold, self.settings.refine_score_margin / calibration.a
