"""voicecheck.pipeline: the Engine with injected fake model/VAD, judge, check_one; real GE2E on a
silent customer channel."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import SAMPLES, SPEECH, EnergyVad, FakeEmbedder, chord, noise, silence, stereo, tone, write
from voicecheck.audio import load
from voicecheck.config import Settings
from voicecheck.enrollment import VoiceprintStore
from voicecheck.errors import InsufficientSpeechError, ModelMismatchError
from voicecheck.pipeline import Engine, Judge, check_one, error_result
from voicecheck.scorer import Scorer
from voicecheck.types import Audio

VOICE_A = (220.0, 660.0, 1500.0)
VOICE_B = (350.0, 1100.0, 2700.0)


@pytest.fixture()
def engine(settings: Settings, fake: FakeEmbedder, energy_vad: EnergyVad) -> Engine:
    return Engine(settings, embedder=fake, vad=energy_vad)


def _audio(x: np.ndarray, rate: int, subtype: str = "PCM_16") -> Audio:
    return Audio(samples=x, sample_rate=rate, file_sample_rate=rate, subtype=subtype, content_hash=f"gen{len(x)}")


def test_engine_uses_injected_parts(engine: Engine, fake: FakeEmbedder, energy_vad: EnergyVad) -> None:
    assert engine.embedder is fake and engine.vad is energy_vad and engine.model == "fake-bands"


def test_embed_audio_wideband(engine: Engine) -> None:
    x = np.concatenate([silence(1.0), chord(VOICE_A, 4.0), silence(1.0)])
    emb = engine.embed_audio(_audio(x, 16000))
    assert emb.model == "fake-bands" and emb.band == "wide"
    assert emb.speech_seconds == pytest.approx(4.0, abs=0.05)
    assert emb.duration_s == pytest.approx(6.0)
    n = len(emb.windows)
    assert emb.windows.shape == (n, 32) and emb.window_times_s.shape == (n, 2) and n >= 5
    assert emb.window_times_s.min() >= 0.95 and emb.window_times_s.max() <= 5.05  # inside the speech
    assert np.all(np.diff(emb.window_times_s[:, 0]) > 0)
    assert np.linalg.norm(emb.vector) == pytest.approx(1.0, abs=1e-5)
    assert emb.narrow_vector is not None and emb.narrow_vector.shape == (32,)
    assert len(emb.regions) == 1


def test_embed_audio_narrowband_has_no_channel_matched_copy(engine: Engine) -> None:
    emb = engine.embed_audio(_audio(chord(VOICE_A, 3.0, 8000), 8000, "ULAW"))
    assert emb.band == "narrow" and emb.narrow_vector is None


def test_same_voice_same_vector_other_voice_differs(engine: Engine) -> None:
    a1 = engine.embed_audio(_audio(chord(VOICE_A, 3.0), 16000)).vector
    a2 = engine.embed_audio(_audio(chord(VOICE_A, 5.0, amplitude=0.3), 16000)).vector
    b = engine.embed_audio(_audio(chord(VOICE_B, 3.0), 16000)).vector
    assert float(a1 @ a2) > 0.99
    assert float(a1 @ b) < 0.5


@pytest.mark.parametrize(
    "x", [silence(5.0), tone(300, 0.5), noise(5.0, amplitude=0.001)], ids=["silence", "short", "faint"]
)
def test_too_little_speech(engine: Engine, x: np.ndarray) -> None:
    with pytest.raises(InsufficientSpeechError, match="needs at least") as info:
        engine.embed_audio(_audio(x, 16000))
    assert info.value.speech_seconds < 1.0


def test_embed_enrollment_bands(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    wide = engine.embed_enrollment(write(tmp_path / "w.wav", chord(VOICE_A, 3.0), 16000), None)
    assert wide.band == "wide" and set(wide.vectors) == {"wide", "narrow"}
    assert not np.allclose(wide.vectors["wide"], wide.vectors["narrow"])
    narrow = engine.embed_enrollment(write(tmp_path / "n.wav", chord(VOICE_A, 3.0, 8000), 8000, "ULAW"), None)
    assert narrow.band == "narrow" and set(narrow.vectors) == {"narrow"}
    plain = Engine(replace(settings, channel_matching=False), embedder=engine.embedder, vad=engine.vad)
    off = plain.embed_enrollment(tmp_path / "w.wav", None)
    np.testing.assert_array_equal(off.vectors["narrow"], off.vectors["wide"])


def _enroll(settings: Settings, engine: Engine, owner: str, path: Path, model: str | None = None) -> None:
    got = engine.embed_enrollment(path, None)
    store = VoiceprintStore(settings.store)
    store.add_recording(
        owner,
        model or engine.model,
        str(path),
        got.content_hash,
        got.band,
        got.speech_seconds,
        got.vectors,
        consent="test consent",
    )
    store.close()


def _judge(settings: Settings, engine: Engine, borrower: str, x: np.ndarray | None) -> object:
    emb = None if x is None else engine.embed_audio(_audio(x, 16000))
    store = VoiceprintStore(settings.store)
    try:
        judge = Judge(store, Scorer(settings, engine.model, "fake", None, {}))
        return judge("C1", borrower, "c1.wav", emb, 0.2 if x is None else emb.speech_seconds, channel=1)
    finally:
        store.close()


def test_judge_verdicts(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    _enroll(settings, engine, "B1", write(tmp_path / "a.wav", chord(VOICE_A, 4.0), 16000))
    same = _judge(settings, engine, "B1", chord(VOICE_A, 3.0, amplitude=0.2))
    assert same.verdict == "match" and same.reason is None
    assert same.score >= same.threshold == 0.9 and same.model == "fake-bands" and same.band == "wide"
    other = _judge(settings, engine, "B1", chord(VOICE_B, 3.0))
    assert other.verdict == "mismatch" and other.reason == "voice_mismatch" and other.score < same.score
    quiet = _judge(settings, engine, "B1", None)
    assert (quiet.verdict, quiet.reason, quiet.score, quiet.model) == (
        "inconclusive",
        "insufficient_speech",
        None,
        "fake-bands",
    )
    unknown = _judge(settings, engine, "B404", chord(VOICE_A, 3.0))
    assert (unknown.verdict, unknown.reason) == ("inconclusive", "not_enrolled")


def test_judge_across_models_is_an_error(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    """Enrolled with model A ("fake-bands-b"), checked with model B ("fake-bands") -> model_mismatch."""
    _enroll(settings, engine, "B1", write(tmp_path / "a.wav", chord(VOICE_A, 4.0), 16000), model="fake-bands-b")
    r = _judge(settings, engine, "B1", chord(VOICE_A, 3.0))
    assert r.verdict == "error" and r.reason.startswith("model_mismatch")
    assert r.score is None


def test_scorer_refuses_vectors_of_another_model(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    _enroll(settings, engine, "B1", write(tmp_path / "a.wav", chord(VOICE_A, 4.0), 16000))
    store = VoiceprintStore(settings.store)
    vp = store.get("B1", "fake-bands")
    store.close()
    emb = engine.embed_audio(_audio(chord(VOICE_A, 3.0), 16000))
    with pytest.raises(ModelMismatchError):
        Scorer(settings, "fake-bands", "fake", None, {}).score(vp, replace(emb, model="other-model"))
    with pytest.raises(ModelMismatchError):
        Scorer(settings, "other-model", "fake", None, {}).score(vp, emb)


def test_check_one_match_and_unreadable(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    settings = replace(settings, thresholds={"cosine": 0.5})  # telephone band + mu-law cost the fake some similarity
    _enroll(settings, engine, "B1", write(tmp_path / "a.wav", chord(VOICE_A, 4.0), 16000))
    call = write(tmp_path / "C7.wav", stereo(chord(VOICE_B, 4.0, 8000), chord(VOICE_A, 4.0, 8000)), 8000, "ULAW")
    r = check_one(call, "B1", settings, engine=engine)
    assert (r.call_id, r.verdict, r.channel, r.band, r.model) == ("C7", "match", 1, "narrow", "fake-bands")
    assert r.duration_s == pytest.approx(4.0)
    agent = check_one(call, "B1", replace(settings, channel=0), engine=engine)
    assert agent.verdict == "mismatch" and agent.score < r.score
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    bad = check_one(empty, "B1", settings, engine=engine)
    assert bad.verdict == "error" and bad.reason.startswith("unreadable_audio") and "empty.wav" in bad.reason


def test_error_result() -> None:
    from voicecheck.errors import AudioError

    r = error_result("C1", "B1", "x.wav", AudioError("x.wav: empty file (0 bytes)"), "m")
    assert (r.verdict, r.reason, r.model) == ("error", "unreadable_audio: x.wav: empty file (0 bytes)", "m")


# -- real GE2E: a silent customer channel must never score as a match ---------------------------------


@pytest.fixture()
def ge2e_enrolled(tmp_path: Path, ge2e, silero) -> tuple[Settings, Engine]:
    settings = Settings(store=str(tmp_path / "store"), embeddings=str(tmp_path / "embeddings"))
    engine = Engine(settings, embedder=ge2e, vad=silero)
    _enroll(settings, engine, "B1001", SPEECH / "vctk_autovc" / "p225" / "p225_003.flac")
    return settings, engine


@pytest.mark.parametrize("line", ["digital", "line-noise"])
def test_ge2e_silent_customer_channel_is_inconclusive(ge2e_enrolled, tmp_path: Path, line: str) -> None:
    settings, engine = ge2e_enrolled
    agent = load(SPEECH / "vctk_autovc" / "p225" / "p225_011.flac")  # the borrower's own voice, on the agent side
    n = len(agent.samples)
    customer = silence(n / 16000) if line == "digital" else noise(n / 16000, amplitude=0.003, seed=3)
    call = write(tmp_path / "call.wav", stereo(agent.samples, customer), 16000)
    r = check_one(call, "B1001", settings, engine=engine)
    assert r.verdict == "inconclusive" and r.reason == "insufficient_speech"
    assert r.score is None and r.model == engine.model
    assert check_one(call, "B1001", replace(settings, channel=0), engine=engine).verdict == "match"


def test_ge2e_sample_call_with_silent_customer(ge2e_enrolled) -> None:
    settings, engine = ge2e_enrolled
    r = check_one(SAMPLES / "calls" / "C007.wav", "B1001", settings, engine=engine)
    assert r.verdict == "inconclusive" and r.reason == "insufficient_speech"
