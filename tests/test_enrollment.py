"""voicecheck.enrollment.VoiceprintStore, and enroll_recordings with the fake model and real clips."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import SPEECH, silence, write
from voicecheck.enrollment import DB_NAME, VoiceprintStore
from voicecheck.errors import ModelMismatchError, NotEnrolledError, StoreError, UsageError
from voicecheck.pipeline import enroll_recordings

P225 = [SPEECH / "vctk_autovc" / "p225" / f"p225_{n}.flac" for n in ("003", "011")]
P226 = SPEECH / "vctk_autovc" / "p226" / "p226_005.flac"


def _unit(seed: int, d: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).random(d).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def store(tmp_path: Path):
    s = VoiceprintStore(tmp_path / "store")
    yield s
    s.close()


def _add(
    store: VoiceprintStore, owner: str, seed: int, seconds: float = 5.0, model: str = "m", wide: bool = True, **kw
) -> bool:
    vectors = {"narrow": _unit(seed)}
    if wide:
        vectors["wide"] = _unit(seed + 100)
    kw.setdefault("consent", "test consent")
    return store.add_recording(
        owner, model, f"{owner}-{seed}.wav", f"hash{seed}", "wide" if wide else "narrow", seconds, vectors, **kw
    )


def test_one_recording_makes_a_voiceprint(store: VoiceprintStore) -> None:
    assert _add(store, "B1", 1, 4.0)
    vp = store.get("B1", "m")
    assert (vp.owner_id, vp.model, vp.dimension, vp.recording_count, vp.kind) == ("B1", "m", 8, 1, "borrower")
    assert vp.speech_seconds == pytest.approx(4.0)
    assert vp.created_at and vp.created_at == vp.updated_at
    np.testing.assert_allclose(vp.for_band("narrow"), _unit(1), atol=1e-6)
    np.testing.assert_allclose(vp.for_band("wide"), _unit(101), atol=1e-6)


def test_more_recordings_are_a_speech_weighted_unit_mean(store: VoiceprintStore) -> None:
    _add(store, "B1", 1, 2.0)
    _add(store, "B1", 2, 6.0)
    vp = store.get("B1", "m")
    assert vp.recording_count == 2 and vp.speech_seconds == pytest.approx(8.0)
    expected = 2.0 * _unit(1) + 6.0 * _unit(2)
    np.testing.assert_allclose(vp.vectors["narrow"], expected / np.linalg.norm(expected), atol=1e-6)
    assert np.linalg.norm(vp.vectors["wide"]) == pytest.approx(1.0, abs=1e-5)
    assert vp.created_at <= vp.updated_at


def test_same_audio_twice_is_not_duplicated(store: VoiceprintStore) -> None:
    assert _add(store, "B1", 1)
    assert not _add(store, "B1", 1)
    assert store.get("B1", "m").recording_count == 1


def test_replace_starts_over(store: VoiceprintStore) -> None:
    _add(store, "B1", 1)
    _add(store, "B1", 2)
    assert _add(store, "B1", 3, replace=True)
    vp = store.get("B1", "m")
    assert vp.recording_count == 1
    np.testing.assert_allclose(vp.vectors["narrow"], _unit(3), atol=1e-6)


def test_narrowband_enrollment_has_no_wide_vector(store: VoiceprintStore) -> None:
    _add(store, "B1", 1, wide=False)
    vp = store.get("B1", "m")
    assert set(vp.vectors) == {"narrow"} and vp.for_band("wide") is None


def test_unknown_owner_is_not_enrolled(store: VoiceprintStore) -> None:
    with pytest.raises(NotEnrolledError, match="B404"):
        store.get("B404", "m")


def test_other_model_is_a_model_mismatch(store: VoiceprintStore) -> None:
    _add(store, "B1", 1, model="model-a")
    with pytest.raises(ModelMismatchError, match="model-a"):
        store.get("B1", "model-b")
    with pytest.raises(ModelMismatchError, match="--replace"):
        _add(store, "B1", 2, model="model-b")
    assert _add(store, "B1", 2, model="model-b", replace=True)
    assert store.get("B1", "model-b").model == "model-b"


def test_empty_id_is_refused(store: VoiceprintStore) -> None:
    with pytest.raises(UsageError):
        _add(store, "  ", 1)


def test_summaries_recordings_remove(store: VoiceprintStore) -> None:
    _add(store, "B2", 1, 3.0)
    _add(store, "B1", 2, 4.0)
    _add(store, "B1", 3, 5.0)
    rows = store.summaries()
    assert [r["id"] for r in rows] == ["B1", "B2"]
    assert rows[0]["recordings"] == 2 and rows[0]["speech_seconds"] == pytest.approx(9.0)
    assert {"created_at", "updated_at", "model", "dimension"} <= set(rows[0])
    recs = store.recordings("B1")
    assert [r["content_hash"] for r in recs] == ["hash2", "hash3"]
    assert "vector" not in recs[0] and "narrow" not in recs[0]  # never hand out vectors in listings
    assert store.remove("B1") == 2
    assert store.remove("B1") == 0
    assert [r["id"] for r in store.summaries()] == ["B2"]


def test_agents_and_borrowers_are_separate(store: VoiceprintStore) -> None:
    _add(store, "X", 1)
    _add(store, "X", 2, kind="agent")
    assert store.get("X", "m").recording_count == 1
    assert [v.owner_id for v in store.all("m", "agent")] == ["X"]
    with pytest.raises(NotEnrolledError):
        store.get("Y", "m", kind="agent")


def test_store_persists_across_reopen(tmp_path: Path) -> None:
    s = VoiceprintStore(tmp_path / "st")
    _add(s, "B1", 1)
    s.close()
    s = VoiceprintStore(tmp_path / "st")
    assert s.get("B1", "m").recording_count == 1
    s.close()


def test_damaged_vector_is_a_store_error(tmp_path: Path) -> None:
    s = VoiceprintStore(tmp_path / "st")
    _add(s, "B1", 1)
    s.close()
    with sqlite3.connect(tmp_path / "st" / DB_NAME) as db:
        db.execute("UPDATE recordings SET narrow = ?", (b"\x00" * 12,))
    s = VoiceprintStore(tmp_path / "st")
    with pytest.raises(StoreError, match="damaged"):
        s.get("B1", "m")
    s.close()


def test_unopenable_store_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot be opened"):
        VoiceprintStore(blocker / "store")


def test_watchlist(store: VoiceprintStore) -> None:
    store.watch_add("proxy-1", "call C9", _unit(5), "m", added_on="2024-01-01")
    store.watch_add("proxy-1", "call C10", _unit(6), "m")  # same label: replaced
    entries = store.watch_list("m")
    assert len(entries) == 1 and entries[0].source == "call C10"
    assert store.watch_list("other") == []
    assert store.watch_remove("proxy-1") == 1


# -- enroll_recordings: the fake model behind the real front end (silero on real clips) --------------


def test_enroll_recordings_counts_and_skips(settings, tmp_path: Path) -> None:
    lines: list[str] = []
    short = write(tmp_path / "short.wav", silence(2.0), 16000)
    items = [
        ("B1", str(P225[0])),
        ("B1", str(P225[1])),
        ("B1", str(P225[0])),
        ("B2", str(P226)),
        ("B3", str(short)),
        ("", str(P226)),
        ("B4", str(tmp_path / "missing.wav")),
    ]
    failures = enroll_recordings(items, settings, report=lines.append, consent="test consent")
    assert failures == 3  # silence, empty id, missing file; the rest are enrolled
    store = VoiceprintStore(settings.store)
    try:
        vp = store.get("B1", "fake-bands")
        assert vp.recording_count == 2 and vp.speech_seconds > 8.0
        assert set(vp.vectors) == {"wide", "narrow"}  # wideband clips: both bands
        assert store.get("B2", "fake-bands").recording_count == 1
        with pytest.raises(NotEnrolledError):
            store.get("B3", "fake-bands")
    finally:
        store.close()
    assert any("already enrolled, skipped" in line for line in lines)
    assert any(line.startswith("B3: refused") and "speech" in line for line in lines)
    assert any("missing.wav" in line and "no such file" in line for line in lines)


def test_enroll_recordings_replace(settings) -> None:
    enroll_recordings([("B1", str(P225[0])), ("B1", str(P225[1]))], settings, report=lambda _: None, consent="c")
    enroll_recordings([("B1", str(P226))], settings, replace=True, report=lambda _: None, consent="c")
    store = VoiceprintStore(settings.store)
    try:
        assert [r["audio"] for r in store.recordings("B1")] == [str(P226)]
    finally:
        store.close()
