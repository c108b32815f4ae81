"""voicecheck.pipeline.Judge with the fake model, the energy VAD and generated tone "voices":
speaker change inside a call, watchlist hits, and collectors removed from mono recordings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.fakes import EnergyVad, FakeEmbedder, chord, silence
from voicecheck.config import Settings
from voicecheck.embedders import embed_speech
from voicecheck.enrollment import VoiceprintStore
from voicecheck.pipeline import Engine, Judge, to_narrow
from voicecheck.scorer import Scorer
from voicecheck.types import Audio

VOICE_A = (220.0, 660.0, 1500.0)  # the borrower
VOICE_B = (350.0, 1100.0, 2700.0)  # someone else
VOICE_C = (470.0, 900.0, 2000.0)  # the collector


def _audio(x: np.ndarray, rate: int, channels: int, tag: str) -> Audio:
    return Audio(
        samples=x,
        sample_rate=rate,
        file_sample_rate=rate,
        subtype="PCM_16",
        channels=channels,
        channel=channels - 1,
        content_hash=f"{tag}-{len(x)}",
        path=f"{tag}.wav",
    )


@pytest.fixture()
def parts(settings: Settings, fake: FakeEmbedder, energy_vad: EnergyVad):
    """(engine, store, enroll(owner, voice, rate, kind), judge(**settings overrides)); B1 enrolled on voice A."""
    engine = Engine(settings, embedder=fake, vad=energy_vad)
    store = VoiceprintStore(settings.store)

    def enroll(owner: str, voice: tuple[float, ...], rate: int = 16000, kind: str = "borrower") -> None:
        x = chord(voice, 8.0, rate)
        vecs = engine.embed_audio(_audio(x, rate, 1, owner))
        band = "narrow" if rate <= 8000 else "wide"
        speech = chord(voice, 8.0, 16000)
        vectors = {"narrow": vecs.vector if band == "narrow" else embed_speech(fake, to_narrow(speech, 16000))}
        if band == "wide":
            vectors["wide"] = vecs.vector
        store.add_recording(
            owner, fake.name, f"{owner}.wav", f"h-{owner}", band, 8.0, vectors, kind=kind, consent="test consent"
        )

    enroll("B1", VOICE_A)

    def judge(**kw: object) -> Judge:
        s = replace(settings, **kw)
        return Judge(VoiceprintStore(settings.store), Scorer(s, fake.name, "fake", None, {}), min_speech_s=1.0)

    yield engine, store, enroll, judge
    store.close()


def test_takeover_halfway_is_a_speaker_change_near_the_true_time(parts) -> None:
    engine, _, _, judge = parts
    x = np.concatenate([silence(0.5), chord(VOICE_A, 8.0), chord(VOICE_B, 8.0), silence(0.5)])
    emb = engine.embed_audio(_audio(x, 16000, 2, "takeover"))
    j = judge(thresholds={"cosine": 0.5})
    whole = j.scorer.score(j.voiceprints.get("B1", j.scorer.model), emb)
    assert whole.score >= 0.5  # the whole call alone would pass
    r = j("T1", "B1", "takeover.wav", emb, emb.speech_seconds, 1)
    assert (r.verdict, r.reason) == ("mismatch", "speaker_change"), r
    assert r.speaker_change_s == pytest.approx(8.5, abs=1.0)
    assert r.score is not None and r.score >= r.threshold == 0.5


def test_one_voice_throughout_is_a_match(parts) -> None:
    engine, _, _, judge = parts
    emb = engine.embed_audio(_audio(chord(VOICE_A, 16.0), 16000, 2, "own"))
    r = judge(thresholds={"cosine": 0.5})("M1", "B1", "own.wav", emb, emb.speech_seconds, 1)
    assert (r.verdict, r.reason, r.speaker_change_s) == ("match", None, None)
    assert r.watchlist_hits == []


def test_watchlist_hit_overrides_a_match_and_flags_an_unenrolled_borrower(parts, fake: FakeEmbedder) -> None:
    engine, store, _, judge = parts
    proxy = engine.embed_audio(_audio(chord(VOICE_A, 6.0), 16000, 2, "proxy"))
    assert proxy.narrow_vector is not None
    store.watch_add("AGENT-1", "case 7", proxy.narrow_vector, fake.name)
    store.watch_add(
        "AGENT-2", "case 8", engine.embed_audio(_audio(chord(VOICE_B, 6.0), 16000, 2, "b")).narrow_vector, fake.name
    )
    emb = engine.embed_audio(_audio(chord(VOICE_A, 10.0), 16000, 2, "call"))
    j = judge(thresholds={"cosine": 0.5}, watchlist_thresholds={"cosine": 0.9})
    r = j("W1", "B1", "call.wav", emb, emb.speech_seconds, 1)
    assert r.score is not None and r.score >= 0.5  # the voice matches the borrower ...
    assert (r.verdict, r.reason) == ("mismatch", "watchlist_hit")  # ... but it is a known proxy agent
    assert [h["label"] for h in r.watchlist_hits] == ["AGENT-1"]
    assert r.watchlist_hits[0]["source"] == "case 7" and r.watchlist_hits[0]["score"] >= 0.9
    r = j("W2", "B404", "call.wav", emb, emb.speech_seconds, 1)
    assert (r.verdict, r.reason) == ("mismatch", "watchlist_hit") and r.score is None
    other = engine.embed_audio(_audio(chord(VOICE_C, 10.0), 16000, 2, "c"))
    r = j("W3", "B404", "c.wav", other, other.speech_seconds, 1)
    assert (r.verdict, r.reason, r.watchlist_hits) == ("inconclusive", "not_enrolled", [])


def _mono_call(rate: int) -> np.ndarray:
    """Customer (the borrower, voice A) speaks first, then the collector (voice C), on one channel."""
    return np.concatenate([chord(VOICE_A, 6.0, rate), silence(0.3, rate), chord(VOICE_C, 6.0, rate)])


def test_mono_call_with_enrolled_collector_scores_only_the_customer(parts) -> None:
    engine, _, enroll, judge = parts
    enroll("B1n", VOICE_A, rate=8000)
    mono = _audio(_mono_call(8000), 8000, 1, "mono")
    assert mono.band == "narrow"
    emb = engine.embed_audio(mono)
    # without a collector voiceprint the first voice is taken for the collector: the borrower is dropped
    r = judge(thresholds={"cosine": 0.5})("N1", "B1n", "mono.wav", emb, emb.speech_seconds, 0)
    assert (r.verdict, r.reason) == ("mismatch", "voice_mismatch")
    enroll("AG1", VOICE_C, rate=8000, kind="agent")
    j = judge(thresholds={"cosine": 0.5})
    assert j.agent_vectors is not None and len(j.agent_vectors) == 1
    r = j("N1", "B1n", "mono.wav", emb, emb.speech_seconds, 0)
    assert r.verdict == "match", r
    assert r.score is not None and r.score > 0.9
    assert r.speech_seconds == pytest.approx(6.0, abs=1.0)  # the collector's 6 s are gone
    # mono_split off: both voices scored together
    r = judge(thresholds={"cosine": 0.9}, mono_split=False)("N1", "B1n", "mono.wav", emb, emb.speech_seconds, 0)
    assert r.speech_seconds == pytest.approx(emb.speech_seconds, abs=0.01) and r.verdict == "mismatch"


def test_mono_call_of_the_collector_alone_is_inconclusive(parts) -> None:
    engine, _, enroll, judge = parts
    enroll("AG1", VOICE_C, rate=8000, kind="agent")
    emb = engine.embed_audio(_audio(chord(VOICE_C, 8.0, 8000), 8000, 1, "agent-only"))
    r = judge(thresholds={"cosine": 0.5})("N2", "B1", "agent-only.wav", emb, emb.speech_seconds, 0)
    assert (r.verdict, r.reason, r.speech_seconds) == ("inconclusive", "insufficient_speech", 0.0)


def test_a_call_that_cannot_be_judged_is_an_error_record_not_an_exception(parts) -> None:
    # no threshold configured and no calibration for the fake model: the mono split needs one
    engine, _, _, judge = parts
    x = np.concatenate([chord(VOICE_C, 6.0), chord(VOICE_A, 6.0)])
    emb = engine.embed_audio(_audio(x, 16000, 1, "mono-uncalibrated"))
    r = judge(thresholds={})("U1", "B1", "mono.wav", emb, emb.speech_seconds, 0)
    assert r.verdict == "error"
    assert r.reason is not None and r.reason.startswith("usage_error") and "calibrate" in r.reason
