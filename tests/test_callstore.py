"""voicecheck.callstore.CallStore: embeddings keyed by audio content, call links, cohorts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicecheck.callstore import CallStore, StoredAudio
from voicecheck.types import CallEmbedding, SpeechRegion


def _unit(seed: int, shape: tuple[int, ...] = (8,)) -> np.ndarray:
    v = np.random.default_rng(seed).random(shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _emb(seed: int, band: str = "narrow", model: str = "m", narrow: bool = False) -> CallEmbedding:
    return CallEmbedding(
        content_hash=f"h{seed}",
        model=model,
        band=band,  # type: ignore[arg-type]
        channel=1,
        vector=_unit(seed),
        windows=_unit(seed + 50, (3, 8)),
        window_times_s=np.array([[0.0, 1.0], [0.5, 1.5], [1.0, 2.0]]),
        speech_seconds=2.0,
        duration_s=5.0,
        regions=(SpeechRegion(0.25, 2.25),),
        narrow_vector=_unit(seed + 200) if narrow else None,
    )


@pytest.fixture()
def calls(tmp_path: Path):
    c = CallStore(tmp_path / "emb")
    yield c
    c.close()


def _put(calls: CallStore, e: CallEmbedding) -> None:
    calls.put(e, content_hash=e.content_hash, channel=e.channel, model=e.model)


def test_round_trip(calls: CallStore) -> None:
    e = _emb(1, band="wide", narrow=True)
    _put(calls, e)
    stored = calls.lookup("h1", 1, "m")
    assert stored is not None and stored.status == "ok" and stored.speech_seconds == pytest.approx(2.0)
    got = stored.embedding
    assert got is not None
    np.testing.assert_array_equal(got.vector, e.vector)
    np.testing.assert_array_equal(got.narrow_vector, e.narrow_vector)
    np.testing.assert_allclose(got.windows, e.windows, atol=1e-3)  # stored as float16
    np.testing.assert_allclose(got.window_times_s, e.window_times_s, atol=1e-6)
    assert got.regions == e.regions and got.band == "wide" and got.model == "m"
    assert calls.has("h1", 1, "m") and not calls.has("h1", 0, "m") and not calls.has("h1", 1, "other")
    assert calls.lookup("h1", 1, "other") is None


def test_insufficient_speech_is_remembered(calls: CallStore) -> None:
    calls.put(None, content_hash="hs", channel=1, model="m", speech_seconds=0.4, duration_s=12.0)
    assert calls.lookup("hs", 1, "m") == StoredAudio("insufficient_speech", None, pytest.approx(0.4), 12.0)
    assert calls.has("hs", 1, "m") and calls.count("m") == 0


def test_links(calls: CallStore) -> None:
    _put(calls, _emb(1))
    assert calls.linked("C1", "m") is None
    calls.link("C1", "B1", "c1.wav", "h1", 1, "m")
    calls.link("C2", "B2", "copy-of-c1.wav", "h1", 1, "m")  # the same audio under another call id
    link = calls.linked("C1", "m")
    assert link is not None and link.status == "ok" and link.embedding is not None
    assert (link.call_id, link.borrower_id, link.audio, link.content_hash) == ("C1", "B1", "c1.wav", "h1")
    assert link.speech_seconds == pytest.approx(2.0) and link.duration_s > 0
    assert calls.linked("C1", "other") is None
    stored = list(calls.calls("m"))
    assert [s.call_id for s in stored] == ["C1", "C2"]
    assert [s.call_id for s in calls.calls("m", "B2")] == ["C2"]
    assert stored[0].embedding is not None and stored[0].speech_seconds == pytest.approx(2.0)


def test_cohort_by_band_with_owners(calls: CallStore) -> None:
    _put(calls, _emb(1, band="narrow"))
    _put(calls, _emb(2, band="wide", narrow=True))
    _put(calls, _emb(3, band="wide"))  # no narrow vector: only in the wide cohort
    _put(calls, _emb(4, band="narrow", model="other"))
    calls.put(None, content_hash="h5", channel=1, model="m")
    calls.link("C1", "B1", "a", "h1", 1, "m")
    calls.link("C9", "B9", "b", "h1", 1, "m")
    vectors, hashes, owners = calls.cohort("m", "narrow", 10)
    assert hashes == ["h1", "h2"] and vectors.shape == (2, 8)
    np.testing.assert_array_equal(vectors[1], _emb(2, narrow=True).narrow_vector)
    assert owners[0] == {"B1", "B9"} and owners[1] == set()
    vectors, hashes, _ = calls.cohort("m", "wide", 10)
    assert hashes == ["h2", "h3"]
    assert calls.cohort("m", "wide", 1)[0].shape == (1, 8)
    assert calls.cohort("nobody", "wide", 10)[0].shape == (0, 0)
    assert calls.count("m") == 3


def test_persists_across_reopen(tmp_path: Path) -> None:
    c = CallStore(tmp_path)
    _put(c, _emb(7))
    c.close()
    c = CallStore(tmp_path)
    assert c.has("h7", 1, "m")
    c.close()


def test_sync_puts_every_commit_in_the_database_file(calls: CallStore, tmp_path: Path) -> None:
    """Commits go to the write-ahead log (safe from a killed process); sync() checkpoints them into
    the database file itself, so a copy of that file alone, without the log, holds them."""
    import shutil
    import sqlite3

    calls.put(_emb(1), content_hash="h1", channel=1, model="m")
    calls.link("c1", "B1", "a.wav", "h1", 1, "m")

    def rows_in_file_alone() -> int:
        copy = tmp_path / f"copy{np.random.default_rng().integers(1 << 30)}.sqlite"
        shutil.copy(tmp_path / "emb" / "calls.sqlite", copy)  # the -wal file is not copied
        db = sqlite3.connect(copy)
        try:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        except sqlite3.OperationalError:  # not even the schema is in the file yet
            return 0
        finally:
            db.close()

    assert rows_in_file_alone() == 0  # still only in the log
    calls.sync()
    assert rows_in_file_alone() == 1
