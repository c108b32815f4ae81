"""The takeover detector's side-cosine limit belongs to the model: GE2E's ships in its profile, a
calibration file (written by ``voicecheck calibrate`` from genuine calls) sets another model's, and a
model with none runs with the side test off, never with GE2E's value (issue 14.4)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import EnergyVad, FakeEmbedder, chord, silence, stereo, write
from voicecheck.analysis import TAKEOVER_MAX_SIDE_COSINE, side_cosine
from voicecheck.config import Settings
from voicecheck.enrollment import VoiceprintStore
from voicecheck.errors import UsageError
from voicecheck.evaluate import TAKEOVER_MIN_CALLS, fit_takeover
from voicecheck.pipeline import Engine, Judge
from voicecheck.scorer import Profile, Scorer
from voicecheck.types import Audio

VOICE_A = (220.0, 660.0, 1500.0)
VOICE_B = (350.0, 1100.0, 2700.0)


def _scorer(settings: Settings, key: str = "fake", model: str = "fake-bands") -> Scorer:
    return Scorer(settings, model, key, None, {})


def _calibration(settings: Settings, key: str, takeover: dict) -> None:
    folder = Path(settings.embeddings) / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{key}.json").write_text(json.dumps({"model": "m", "modes": {}, "takeover": takeover}))


def test_ge2e_ships_its_limit_in_the_profile(settings: Settings) -> None:
    assert Profile.load("ge2e", settings.embeddings).takeover["max_side_cosine"] == TAKEOVER_MAX_SIDE_COSINE
    limit = _scorer(settings, "ge2e", "ge2e-resemblyzer-0.1.4").takeover_max_side_cosine()
    assert limit.value == TAKEOVER_MAX_SIDE_COSINE and "benchmarks/analysis.py" in limit.source


def test_a_model_without_a_limit_runs_with_the_side_test_off(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="voicecheck.scorer"):
        limit = _scorer(settings).takeover_max_side_cosine()
    assert limit.value == 1.0 and "side test off" in limit.source
    assert "voicecheck calibrate" in caplog.text


def test_a_calibration_file_sets_the_limit(settings: Settings) -> None:
    _calibration(settings, "fake", {"max_side_cosine": 0.42, "source": "calibrate x"})
    limit = _scorer(settings).takeover_max_side_cosine()
    assert (limit.value, limit.source) == (0.42, "calibrate x")
    _calibration(settings, "fake", {"max_side_cosine": 7})
    with pytest.raises(UsageError, match="must be a cosine"):
        _scorer(settings).takeover_max_side_cosine()


def test_the_judge_applies_the_models_limit(settings: Settings, fake: FakeEmbedder, energy_vad: EnergyVad) -> None:
    """A borrower-then-someone-else call: flagged with the side test off; with a limit below the two
    sides' cosine the side test holds the flag back."""
    engine = Engine(settings, embedder=fake, vad=energy_vad)
    store = VoiceprintStore(settings.store)
    own = engine.embed_audio(Audio(chord(VOICE_A, 8.0), 16000, "a.wav", 1, 2, 16000, "PCM_16", "h-a"))
    vectors = {"narrow": own.vector, "wide": own.vector}
    store.add_recording("B1", fake.name, "a.wav", "h-a", "wide", 8.0, vectors, consent="test")
    x = np.concatenate([silence(0.5), chord(VOICE_A, 8.0), chord(VOICE_B, 8.0), silence(0.5)])
    emb = engine.embed_audio(Audio(x, 16000, "t.wav", 1, 2, 16000, "PCM_16", "h-t"))
    sides = side_cosine(emb.windows, emb.window_times_s, settings.takeover_min_segment_s)
    assert sides is not None and sides < 0.99

    def judged() -> str | None:
        j = Judge(store, _scorer(replace(settings, thresholds={"cosine": 0.5})), min_speech_s=1.0)
        return j("T1", "B1", "t.wav", emb, emb.speech_seconds, 1).reason

    assert judged() == "speaker_change"
    _calibration(settings, "fake", {"max_side_cosine": round(sides - 0.05, 4), "source": "test"})
    assert judged() is None
    store.close()


def test_fit_takeover_takes_a_low_quantile_of_genuine_calls(settings: Settings) -> None:
    cosines = np.linspace(0.80, 0.99, 40)
    trials = [{"label": 1, "test": f"t{i}", "side_cosine": float(c)} for i, c in enumerate(cosines)]
    trials += [{"label": 1, "test": "t0", "side_cosine": 0.80}] * 5  # a call in several trials counts once
    trials += [{"label": 0, "test": f"n{i}", "side_cosine": 0.1} for i in range(50)]  # impostors play no part
    trials += [{"label": 1, "test": "short", "side_cosine": None}]  # too short for two sides
    fit = fit_takeover(trials, settings, "trials.csv")
    assert fit is not None and fit["n_calls"] == 40
    assert fit["max_side_cosine"] == pytest.approx(float(np.quantile(cosines, 0.05)), abs=1e-4)
    assert np.mean(cosines < fit["max_side_cosine"]) <= 0.05
    assert fit_takeover(trials[: TAKEOVER_MIN_CALLS - 1], settings, "t.csv") is None


def test_calibrate_fits_and_saves_the_limit(vc, tmp_path: Path) -> None:
    """Trials with 24 genuine test calls of two 5 s halves each: calibrate writes the limit, and the
    Judge built for the model then uses it."""
    d = tmp_path / "trials"
    voices = [VOICE_A, VOICE_B, (470.0, 900.0, 2000.0), (300.0, 800.0, 3100.0)]
    lines = ["enroll_audio,test_audio,label"]
    for v, voice in enumerate(voices):
        write(d / f"enroll{v}.wav", chord(voice, 6.0), 16000)
        for take in range(6):
            detuned = tuple(f * (1.0 + 0.003 * take) for f in voice)
            x = np.concatenate([chord(voice, 5.0), silence(0.3), chord(detuned, 5.0)])
            write(d / f"test{v}_{take}.wav", stereo(silence(len(x) / 16000), x), 16000)
            lines += [f"enroll{e}.wav,test{v}_{take}.wav,{int(e == v)}" for e in range(len(voices))]
    (d / "trials.csv").write_text("\n".join(lines) + "\n")
    res = vc("calibrate", d / "trials.csv")
    assert res.exit_code == 0, res.output
    assert "takeover limit: max side cosine" in res.output and "24 genuine calls" in res.output
    saved = json.loads((tmp_path / "embeddings" / "calibration" / "fake.json").read_text())["takeover"]
    assert saved["n_calls"] == 24 and -1.0 <= saved["max_side_cosine"] <= 1.0
    assert saved["source"].startswith("voicecheck calibrate")
    settings = Settings(store=str(tmp_path / "store"), embeddings=str(tmp_path / "embeddings"), model="fake")
    assert _scorer(settings).takeover_max_side_cosine().value == saved["max_side_cosine"]
