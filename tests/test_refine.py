"""Windows back to back, the in-between windows where a decision is close (issue 16): the window
grids, the Engine's refinement, the near-decision tests, the Refiner, the worker and the batch, and
what rings compare."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import EnergyVad, FakeEmbedder, chord, silence, stereo, write
from voicecheck import analysis as A
from voicecheck.config import Settings, available_cores, load_settings
from voicecheck.crosscall import cross_call_vector
from voicecheck.embedders import embed_windows
from voicecheck.embedders.base import between_starts, coarse_of_fine, frame, refines, window_starts
from voicecheck.errors import UsageError
from voicecheck.pipeline import Engine
from voicecheck.refine import Refiner
from voicecheck.types import Audio

VOICE_A = (220.0, 660.0, 1500.0)
VOICE_B = (350.0, 1100.0, 2700.0)
RATE = 16000


def _audio(x: np.ndarray, channels: int = 2, name: str = "gen") -> Audio:
    return Audio(
        samples=x,
        sample_rate=RATE,
        file_sample_rate=8000,
        subtype="ULAW",
        channels=channels,
        content_hash=f"{name}{len(x)}",
    )


def _engine(settings: Settings, hop_s: float) -> Engine:
    return Engine(settings, embedder=FakeEmbedder(window_s=1.0, hop_s=hop_s), vad=EnergyVad())


def _takeover(seconds: float = 6.0) -> np.ndarray:
    """One voice, then another, one recording (a takeover)."""
    return np.concatenate([chord(VOICE_A, seconds), chord(VOICE_B, seconds)])


# --- the window grids -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [16000, 16001, 23999, 24000, 32000, 40000, 47999, 48000, 100001, 160000])
def test_coarse_and_between_windows_make_the_fine_timeline(n: int) -> None:
    coarse = window_starts(n, RATE, 1.0, 1.0)
    extra = between_starts(n, RATE, 1.0, 1.0)
    fine = window_starts(n, RATE, 1.0, 0.5)
    assert np.array_equal(np.sort(np.concatenate([coarse, extra])), fine)
    assert not set(coarse) & set(extra)
    assert np.array_equal(fine[coarse_of_fine(len(fine))], coarse)


def test_refining_needs_an_even_hop_and_windows_back_to_back() -> None:
    with pytest.raises(ValueError, match="even number"):
        between_starts(50000, 16000, 1.0, 1.0 + 1 / 16000)
    assert refines(1.6, 1.6) and refines(1.0, 1.2)
    assert not refines(1.6, 0.8)


def test_embed_windows_at_given_starts_is_embed_batch_of_those_windows() -> None:
    fake = FakeEmbedder(window_s=1.0, hop_s=1.0)
    x = chord(VOICE_A, 5.3)
    starts = between_starts(len(x), RATE, 1.0, 1.0)
    got = embed_windows(fake, x, starts)
    want = fake.embed_batch(np.stack([x[s : s + 16000] for s in starts]))
    assert got.shape == (len(starts), 32)
    assert np.allclose(got, want, atol=1e-6)
    assert np.allclose(embed_windows(fake, x), fake.embed_batch(frame(x, RATE, 1.0, 1.0)), atol=1e-6)


# --- the engine ---------------------------------------------------------------------------------------


def test_refined_embedding_is_the_fine_timeline_with_the_coarse_vector(settings: Settings) -> None:
    coarse_engine, fine_engine = _engine(settings, 1.0), _engine(settings, 0.5)
    audio = _audio(np.concatenate([silence(0.5), _takeover(), silence(0.7)]))
    asked = []

    def rule(emb):  # noqa: ANN001, ANN202
        asked.append(len(emb.windows))
        return "takeover"

    coarse = coarse_engine.embed_audio(audio)
    refined = coarse_engine.embed_audio(audio, refine=rule)
    fine = fine_engine.embed_audio(audio)
    assert asked == [len(coarse.windows)]  # the rule sees the coarse timeline
    assert len(coarse.windows) < len(refined.windows) == len(fine.windows)
    assert np.allclose(refined.windows, fine.windows, atol=1e-6)
    assert np.allclose(refined.window_times_s, fine.window_times_s, atol=1e-9)
    assert np.array_equal(refined.vector, coarse.vector)  # the 1:1 score rests on the coarse vector
    assert np.allclose(refined.windows[coarse_of_fine(len(refined.windows))], coarse.windows, atol=1e-6)


def test_no_refinement_without_a_reason_or_a_finer_timeline(settings: Settings) -> None:
    audio = _audio(_takeover())
    coarse = _engine(settings, 1.0).embed_audio(audio)
    assert len(_engine(settings, 1.0).embed_audio(audio, refine=lambda emb: None).windows) == len(coarse.windows)
    called = []
    overlapping = _engine(settings, 0.5)  # windows overlapping by half: already the fine timeline
    emb = overlapping.embed_audio(audio, refine=lambda e: called.append(1) or "takeover")
    assert not called and not overlapping.refines
    assert len(emb.windows) == len(window_starts(len(audio.samples), RATE, 1.0, 0.5))


def test_embed_many_passes_each_call_its_rule(settings: Settings) -> None:
    engine = _engine(settings, 1.0)
    one, two = _audio(chord(VOICE_A, 12.0), name="one"), _audio(_takeover(), name="two")
    out = engine.embed_many([one, two], [None, lambda emb: "takeover"])
    assert len(out[0].windows) == 12 and len(out[1].windows) == 23


# --- near a decision ------------------------------------------------------------------------------------


def _windows(voices: list[tuple[float, ...]], per_voice: int, hop_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    fake = FakeEmbedder(window_s=1.0, hop_s=hop_s)
    w = np.concatenate([fake.embed_batch(np.tile(chord(v, 1.0), (per_voice, 1))) for v in voices])
    start = np.arange(len(w)) * hop_s
    return w, np.stack([start, start + 1.0], axis=1)


def test_near_speaker_change_by_the_side_test() -> None:
    two_w, two_t = _windows([VOICE_A, VOICE_B], 6)
    one_w, one_t = _windows([VOICE_A], 12)
    assert A.near_speaker_change(two_w, two_t, None, 0.0)
    assert not A.near_speaker_change(one_w, one_t, None, 0.0)
    # one voice whose halves differ a little: near once the cosine margin reaches their distance
    tilt = one_w.copy()
    tilt[6:] = A.unit(tilt[6:] + 0.5 * two_w[6:])
    side = float(A.unit(tilt[:6].mean(0)) @ A.unit(tilt[6:].mean(0)))
    assert not A.near_speaker_change(tilt, one_t, None, 0.0, max_side_cosine=side - 0.01)
    assert A.near_speaker_change(tilt, one_t, None, 0.0, max_side_cosine=side - 0.01, cosine_margin=0.02)


def test_near_speaker_change_by_the_score_test() -> None:
    w, t = _windows([VOICE_A, VOICE_B], 6)

    def scores(low: float):  # noqa: ANN202 - both sides score ``low`` and ``low + 1``
        return lambda rows: np.array([low + 1.0, low])[: len(rows)]

    assert A.near_speaker_change(w, t, scores(0.5), threshold=1.0)  # the low side fails
    assert not A.near_speaker_change(w, t, scores(1.2), threshold=1.0)  # both sides pass
    assert A.near_speaker_change(w, t, scores(1.2), threshold=1.0, score_margin=0.3)  # within the margin


def test_near_speaker_change_on_calls_too_short_to_split_here() -> None:
    w, t = _windows([VOICE_A, VOICE_B], 2)
    assert A.change_point(w, t, 4.0) is None
    assert not A.near_speaker_change(w, t, None, 0.0, min_segment_s=4.0)  # too little speech either way
    assert A.near_speaker_change(w, t, None, 0.0, min_segment_s=2.0)


def test_near_two_speakers() -> None:
    alternating = [VOICE_A, VOICE_B] * 3
    two_w, two_t = _windows(alternating, 2)
    one_w, one_t = _windows([VOICE_A], 8)
    assert A.near_two_speakers(two_w, two_t)
    assert not A.near_two_speakers(one_w, one_t)
    short_w, short_t = _windows([VOICE_A], 3)
    assert A.near_two_speakers(short_w, short_t)  # too few coarse windows to tell: the fine timeline decides
    assert not A.near_two_speakers(short_w[:1], short_t[:1])


# --- the refiner ------------------------------------------------------------------------------------


def test_refiner_without_a_scorer_decides_by_the_side_tests(settings: Settings) -> None:
    engine = _engine(settings, 1.0)
    refiner = Refiner(settings)
    take = engine.embed_audio(_audio(_takeover()))
    one = engine.embed_audio(_audio(chord(VOICE_A, 12.0)))
    short = engine.embed_audio(_audio(chord(VOICE_A, 6.0)))
    # no scorer, so no takeover limit either: every call long enough for two sides is near
    assert refiner.reason(take, "b1") == "takeover" and refiner.reason(one, "b1") == "takeover"
    assert refiner.reason(short, "b1") is None
    refiner.takeover_limit = A.TAKEOVER_MAX_SIDE_COSINE  # with a limit, the side test tells them apart
    assert refiner.reason(take, "b1") == "takeover" and refiner.reason(one, "b1") is None
    mono_two = engine.embed_audio(_audio(np.concatenate([chord(VOICE_A, 2.0), chord(VOICE_B, 2.0)] * 3), channels=1))
    assert refiner.reason(mono_two, "b1") == "mono"
    assert Refiner(replace(settings, mono_split=False)).reason(mono_two, "b1") == "takeover"


def test_refiner_with_the_stores(settings: Settings, tmp_path: Path) -> None:
    from voicecheck.enrollment import VoiceprintStore
    from voicecheck.scorer import Scorer

    engine = _engine(settings, 1.0)
    store = VoiceprintStore(settings.store)
    try:
        enrolled = engine.embed_audio(_audio(chord(VOICE_A, 5.0), name="enroll"))
        store.add_recording(
            "b1", engine.model, "e.wav", "h-e", "narrow", 5.0, {"narrow": enrolled.vector}, consent="test"
        )
        scorer = Scorer(settings, engine.model, "fake", None, {})
        scorer.profile.takeover = {"max_side_cosine": 0.87}  # as a calibrated model's profile holds them
        scorer.profile.modes["cosine"] = {"calibration": {"a": 20.0, "b": -17.0}}
        refiner = Refiner(replace(settings, refine_ring_candidates=True), scorer, store)
        own = engine.embed_audio(_audio(chord(VOICE_A, 12.0), name="own"))
        other = engine.embed_audio(_audio(chord(VOICE_B, 12.0), name="other"))
        assert refiner.reason(own, "b1") is None  # its borrower's voice, one voice: coarse suffices
        assert refiner.reason(other, "b1") == "ring"  # fails its 1:1 check: a ring candidate
        assert refiner.reason(own, "nobody") == "ring"  # no voiceprint: a ring candidate
        quiet = Refiner(replace(settings, refine_ring_candidates=False), scorer, store)
        assert quiet.reason(other, "b1") is None and quiet.reason(own, "nobody") is None
        take = engine.embed_audio(_audio(_takeover(), name="take"))
        assert quiet.reason(take, "b1") == "takeover"
    finally:
        store.close()


# --- the worker and the batch ---------------------------------------------------------------------


def test_batch_refines_only_the_calls_near_a_decision(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecheck.batch import run_batch
    from voicecheck.callstore import CallStore
    from voicecheck.crypto import cipher_for

    emb_dir = Path(settings.embeddings)
    toml = (emb_dir / "models.toml").read_text().replace("hop_s = 0.5", "hop_s = 1.0", 1)
    (emb_dir / "models.toml").write_text(toml)
    (emb_dir / "calibration").mkdir()  # the fake model's profile: a calibration slope and a takeover limit
    (emb_dir / "calibration" / "fake.json").write_text(
        '{"model": "fake-bands", "source": "test", "modes": {"cosine": {"calibration": {"a": 20.0, "b": -17.0}}},'
        ' "takeover": {"max_side_cosine": 0.87, "source": "test"}}'
    )
    calls = tmp_path / "calls"
    take = np.concatenate([chord(VOICE_A, 6.0, 8000), chord(VOICE_B, 6.0, 8000)])
    write(calls / "one.wav", stereo(silence(12.0, 8000), chord(VOICE_A, 12.0, 8000)), 8000)  # narrowband,
    write(calls / "take.wav", stereo(silence(12.0, 8000), take), 8000)  # as the voiceprints below
    manifest = tmp_path / "calls.csv"
    manifest.write_text("call_id,borrower_id,audio\none,b1,calls/one.wav\ntake,b2,calls/take.wav\n")
    from voicecheck.enrollment import VoiceprintStore

    monkeypatch.setattr("voicecheck.pipeline.SileroVad", lambda **kw: EnergyVad())  # in-process: one worker
    run = replace(settings, workers=1, refine_ring_candidates=False, channel=1)
    voice = _engine(run, 1.0).embed_audio(_audio(chord(VOICE_A, 5.0), name="enroll")).vector
    store = VoiceprintStore(run.store)
    try:
        for borrower in ("b1", "b2"):  # both enrolled in voice A: a takeover is looked for only then
            store.add_recording(
                borrower, "fake-bands", "e.wav", f"h-{borrower}", "narrow", 5.0, {"narrow": voice}, consent="t"
            )
    finally:
        store.close()
    summary = run_batch(manifest, tmp_path / "out", run)
    assert summary["refined"] == {"coarse": 1, "takeover": 1}
    store = CallStore(run.embeddings, cipher_for(run))
    try:
        by_id = {c.call_id: c.embedding for c in store.calls("fake-bands")}
    finally:
        store.close()
    assert len(by_id["one"].windows) == 12  # back to back
    assert len(by_id["take"].windows) == 23  # every 0.5 s
    records = (tmp_path / "out" / "results.jsonl").read_text()
    assert '"speaker_change_s"' in records


def test_cross_call_vector_is_the_mean_of_the_stored_windows(settings: Settings) -> None:
    engine = _engine(settings, 1.0)
    audio = _audio(_takeover())
    coarse = engine.embed_audio(audio)
    refined = engine.embed_audio(audio, refine=lambda emb: "ring")
    assert np.allclose(cross_call_vector(coarse), coarse.vector, atol=1e-6)
    assert np.allclose(cross_call_vector(refined), A.unit(refined.windows.mean(axis=0)), atol=1e-6)
    wide = replace(coarse, band="wide", narrow_vector=np.ones(32, np.float32) / np.sqrt(32))
    assert np.array_equal(cross_call_vector(wide), wide.narrow_vector)


# --- settings -------------------------------------------------------------------------------------


def test_workers_default_to_the_usable_cpus() -> None:
    assert Settings().workers == available_cores()
    assert 1 <= available_cores() <= (os.cpu_count() or 1)
    assert load_settings(None, workers=1).workers == 1


@pytest.mark.parametrize("key,value", [("refine_cosine_margin", -0.1), ("refine_score_margin", float("nan"))])
def test_refine_margins_are_validated(key: str, value: float) -> None:
    with pytest.raises(UsageError, match=key.replace("_", "-")):
        load_settings(None, **{key: value})


def test_calibrate_fits_the_takeover_limit_on_the_finer_timeline_only(settings: Settings) -> None:
    from voicecheck.evaluate import fine_side_cosine

    engine = _engine(settings, 1.0)
    audio = _audio(np.concatenate([chord(VOICE_A, 6.0), silence(0.5), chord(VOICE_A, 6.0)]))
    coarse = engine.embed_audio(audio)
    refined = engine.embed_audio(audio, refine=lambda emb: "calibrate")
    assert not A.windows_overlap(coarse.window_times_s) and A.windows_overlap(refined.window_times_s)
    assert fine_side_cosine(coarse, settings) is None  # coarse side cosines run low: left out of the fit
    assert fine_side_cosine(refined, settings) == pytest.approx(
        A.side_cosine(refined.windows, refined.window_times_s, settings.takeover_min_segment_s)
    )
