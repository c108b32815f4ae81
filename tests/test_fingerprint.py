"""Replay detection: fingerprints, the index, the match rule, and the too-identical warning."""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fakes import syllables
from voicecheck.errors import StoreError, UsageError, VoicecheckError
from voicecheck.fingerprint import (
    INDEX_PARAMS,
    PAIR_HASH_BITS,
    QUERY_PARAMS,
    TRIPLET_HASH_BITS,
    Fingerprint,
    FingerprintError,
    FingerprintParams,
    fingerprint,
    fingerprints,
    padded_regions,
)
from voicecheck.liveness import too_identical
from voicecheck.replay import FingerprintIndex, MatchRule
from voicecheck.types import SpeechRegion

SPEECH = Path(__file__).resolve().parent.parent / "samples" / "speech"
CLIP_A = SPEECH / "picovoice_eagle_samples" / "speaker_1" / "speaker_1_test_utt.flac"
CLIP_A2 = SPEECH / "picovoice_eagle_samples" / "speaker_1" / "speaker_1_utt_1.flac"  # same speaker, other words
CLIP_B = SPEECH / "vctk_autovc" / "p225" / "p225_011.flac"
CLIP_C = SPEECH / "vctk_autovc" / "p226" / "p226_011.flac"  # same sentence as CLIP_B, other speaker
KEY = b"0123456789abcdef0123456789abcdef"


def _clip(path: Path) -> tuple[np.ndarray, int]:
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), int(rate)


def _codec(x8k: np.ndarray, fmt: str, subtype: str) -> np.ndarray:
    """8 kHz audio written with a real codec and read back."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x8k, -1, 1), 8000, format=fmt, subtype=subtype)
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


def _phone(x: np.ndarray, rate: int, seed: int, fmt: str = "WAV", subtype: str = "ULAW") -> np.ndarray:
    from recipes.simulate import simulate_call_side

    rng = np.random.default_rng(seed)
    return _codec(simulate_call_side(x, rate, rng, snr_db=20.0, codec="none"), fmt, subtype)


@pytest.fixture()
def index(tmp_path: Path) -> FingerprintIndex:
    idx = FingerprintIndex(tmp_path / "fp.sqlite")
    for name, path in (("enroll-a", CLIP_A), ("call-b", CLIP_B)):
        x, rate = _clip(path)
        idx.add(name, fingerprint(x, rate), "enrollment" if name.startswith("enroll") else "call", owner=name[-1])
    yield idx
    idx.close()


# --- fingerprints ---------------------------------------------------------------------------------


def test_fingerprint_record_is_small_and_typed() -> None:
    x, rate = _clip(CLIP_A)
    fp = fingerprint(x, rate)
    assert fp.hashes.dtype == np.uint32 and fp.frames.dtype == np.int32
    assert fp.hashes.shape == fp.frames.shape and len(fp) > 100
    assert int(fp.hashes.max()) < 2**PAIR_HASH_BITS
    assert np.all(np.diff(fp.frames) >= 0)
    assert fp.duration_s == pytest.approx(len(x) / rate)
    assert 50 < len(fp) / fp.analysed_s < 400  # hashes per second of speech: compact
    query, stored = fingerprints(x, rate)
    assert len(query) > 2 * len(stored)  # the looked-up fingerprint is denser
    assert query.hash_key == stored.hash_key == INDEX_PARAMS.hash_key()


def test_regions_limit_the_landmarks_but_keep_the_time_axis() -> None:
    from voicecheck.types import SpeechRegion

    x, rate = _clip(CLIP_A)
    fp = fingerprint(x, rate, regions=[SpeechRegion(4.0, 8.0)])
    assert fp.analysed_s == pytest.approx(4.0, abs=0.05)
    assert fp.times_s.min() >= 3.9 and fp.times_s.max() <= 8.0


@pytest.mark.parametrize(
    "samples, rate, words",
    [
        (np.zeros(0, np.float32), 8000, "empty"),
        (np.full(16000, np.nan, np.float32), 8000, "NaN"),
        (np.random.default_rng(0).standard_normal(2000).astype(np.float32) * 0.1, 8000, "only 0."),
        (np.zeros((8000, 2), np.float32), 8000, "mono"),
        (np.zeros(16000, np.int16), 8000, "float"),
        (np.zeros(16000, np.float32), 4000, "8000 Hz"),
        (np.zeros(16000, np.float32), 8000, "no spectral landmarks"),  # digital silence
    ],
)
def test_bad_input_is_an_error_never_a_quiet_no_replay(samples: np.ndarray, rate: int, words: str) -> None:
    with pytest.raises(FingerprintError, match=words) as info:
        fingerprint(samples, rate)
    assert isinstance(info.value, VoicecheckError)
    assert info.value.code == "replay_not_checked"


def test_steady_tone_gives_no_hash_and_never_matches_across_calls(tmp_path: Path) -> None:
    t = np.arange(6 * 8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 450 * t)).astype(np.float32)  # a Chinese ringback tone
    with pytest.raises(FingerprintError, match="no spectral landmarks"):
        fingerprint(tone, 8000)
    # the same tone in two calls with their own line noise: whatever landmarks the noise gives, no replay
    calls = [tone + np.random.default_rng(s).standard_normal(t.size).astype(np.float32) * 0.01 for s in (1, 2)]
    with FingerprintIndex(tmp_path / "t.sqlite") as idx:
        idx.add("earlier-call", fingerprint(calls[0], 8000), "call")
        check = idx.query(fingerprint(calls[1], 8000, params=QUERY_PARAMS))
        assert not check.replay and (check.best is None or check.best.hits < 5)


def test_triplet_hashes_are_wider_and_still_find_a_copy(tmp_path: Path) -> None:
    params = FingerprintParams(targets_per_hash=2, fan_out=4)
    query = FingerprintParams(targets_per_hash=2, fan_out=8, min_prominence_db=6.0)
    x, rate = _clip(CLIP_A)
    stored = fingerprint(x, rate, params=params)
    assert int(stored.hashes.max()) < 2**TRIPLET_HASH_BITS and int(stored.hashes.max()) >= 2**PAIR_HASH_BITS
    with FingerprintIndex(tmp_path / "t.sqlite", key=KEY, params=params) as idx:
        idx.add("enroll-a", stored, "enrollment")
        check = idx.query(fingerprint(_phone(x, rate, seed=12), 8000, params=query))
        assert [m.item for m in check.matches] == ["enroll-a"]
        other = _clip(CLIP_A2)
        assert not idx.query(fingerprint(_phone(*other, seed=13), 8000, params=query)).replay


def test_params_that_cannot_hash_are_refused() -> None:
    with pytest.raises(FingerprintError, match="max_dt_frames"):
        FingerprintParams(max_dt_frames=200, dt_step_frames=1)
    with pytest.raises(FingerprintError, match="max_dt_frames"):
        FingerprintParams(targets_per_hash=2, max_dt_frames=80)  # 5 bits per time in a triplet
    with pytest.raises(FingerprintError, match="targets_per_hash"):
        FingerprintParams(targets_per_hash=3)
    x, rate = _clip(CLIP_A)
    with pytest.raises(FingerprintError, match="hash differently"):
        fingerprints(x, rate, query_params=FingerprintParams(dt_step_frames=1))


# --- matching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, subtype, gain", [("WAV", "ULAW", 0.3), ("WAV", "ALAW", 1.0), ("WAV", "GSM610", 0.5)])
def test_same_audio_through_a_codec_and_a_level_change_is_found(
    index: FingerprintIndex, fmt: str, subtype: str, gain: float
) -> None:
    x, rate = _clip(CLIP_A)
    call = _phone(x * gain, rate, seed=3, fmt=fmt, subtype=subtype)
    check = index.query(fingerprint(call, 8000, params=QUERY_PARAMS))
    assert check.replay
    assert [m.item for m in check.matches] == ["enroll-a"]
    m = check.matches[0]
    assert m.kind == "enrollment" and m.owner == "a"
    assert abs(m.offset_s) < 0.05 and m.matched_s > 5.0


@pytest.mark.parametrize("other", [CLIP_A2, CLIP_C])
def test_different_audio_is_not_found(index: FingerprintIndex, other: Path) -> None:
    """Another recording of the same speaker, and the same sentence said by another speaker."""
    x, rate = _clip(other)
    check = index.query(fingerprint(_phone(x, rate, seed=4), 8000, params=QUERY_PARAMS))
    assert not check.replay and check.matches == ()
    assert check.best is None or check.best.hits < check.rule.min_hits // 2


def _partial_replay_call(x: np.ndarray, rate: int) -> np.ndarray:
    """A telephone call (8 kHz) holding 2.0-7.0 s of ``x`` replayed at 4.0-9.0 s inside live speech of
    CLIP_C (which no test stores)."""
    part = x[int(2.0 * rate) : int(7.0 * rate)]
    live = np.resize(_clip(CLIP_C)[0], int(6.0 * rate)) * 0.5
    return _phone(np.concatenate([live[: int(4.0 * rate)], part * 0.6, live[int(4.0 * rate) :]]), rate, seed=5)


def test_partial_replay_is_found_with_its_span(index: FingerprintIndex) -> None:
    x, rate = _clip(CLIP_A)
    check = index.query(fingerprint(_partial_replay_call(x, rate), 8000, params=QUERY_PARAMS))
    assert check.replay and check.matches[0].item == "enroll-a"
    m = check.matches[0]
    assert m.call_start_s == pytest.approx(4.0, abs=0.6) and m.call_end_s == pytest.approx(9.0, abs=0.6)
    assert m.item_start_s == pytest.approx(2.0, abs=0.6) and m.item_end_s == pytest.approx(7.0, abs=0.6)
    assert m.offset_s == pytest.approx(-2.0, abs=0.05)


COARSE_INDEX = FingerprintParams(
    hop=160, peak_time_frames=4, context_frames=8, max_dt_frames=25, dt_step_frames=1, fan_out=3
)
COARSE_QUERY = FingerprintParams(
    hop=160, peak_time_frames=4, context_frames=8, max_dt_frames=25, dt_step_frames=1, fan_out=8, min_prominence_db=6.0
)


def test_a_coarser_time_grid_reports_spans_in_seconds_and_never_meets_the_other_grid(tmp_path: Path) -> None:
    """Frames every 20 ms: the fingerprint's times, the matched span and the offset stay in seconds
    (read through the index's own hop), and a 10 ms fingerprint cannot be stored or looked up there."""
    x, rate = _clip(CLIP_A)
    fine, coarse = fingerprint(x, rate), fingerprint(x, rate, params=COARSE_INDEX)
    assert coarse.frame_s == pytest.approx(0.02) and fine.frame_s == pytest.approx(0.01)
    assert coarse.hash_key != fine.hash_key and "hop=160" in coarse.hash_key
    assert coarse.times_s.max() == pytest.approx(fine.times_s.max(), abs=0.6)  # the same seconds, half the frames
    assert coarse.frames.max() < 0.6 * fine.frames.max()
    call = _partial_replay_call(x, rate)
    with FingerprintIndex(tmp_path / "coarse.sqlite", params=COARSE_INDEX) as idx:
        idx.add("enroll-a", coarse, "enrollment", owner="a")
        m = idx.query(fingerprint(call, 8000, params=COARSE_QUERY), rule=MatchRule(min_hits=8)).matches[0]
        assert m.item == "enroll-a" and m.offset_s == pytest.approx(-2.0, abs=0.05)
        assert m.call_start_s == pytest.approx(4.0, abs=0.6) and m.call_end_s == pytest.approx(9.0, abs=0.6)
        with pytest.raises(UsageError, match="fingerprint parameters"):
            idx.query(fingerprint(call, 8000, params=QUERY_PARAMS))
        with pytest.raises(UsageError, match="fingerprint parameters"):
            idx.add("enroll-a-fine", fine, "enrollment", owner="a")
    with pytest.raises(FingerprintError, match="hash differently"):
        fingerprints(x, rate, query_params=COARSE_QUERY, index_params=INDEX_PARAMS)
    with pytest.raises(FingerprintError, match="hop"):
        FingerprintParams(hop=0)
    with pytest.raises(FingerprintError, match="context_frames"):
        FingerprintParams(hop=160)  # +-15 frames of context would be 300 ms, beyond the 200 ms kept


def test_landmark_times_refined_between_coarse_frames_are_on_the_finer_step(tmp_path: Path) -> None:
    """Peaks searched every 20 ms, times refined to 10 ms (``time_step``): frames count 10 ms steps,
    half of them between the coarse frames, still sorted; a replay is found at its true offset."""
    refined = FingerprintParams(hop=160, time_step=80, peak_time_frames=4, context_frames=8, fan_out=3)
    query = FingerprintParams(
        hop=160, time_step=80, peak_time_frames=4, context_frames=8, fan_out=8, min_prominence_db=6.0
    )
    x, rate = _clip(CLIP_A)
    fp = fingerprint(x, rate, params=refined)
    assert (
        fp.frame_s == pytest.approx(0.01) and "time_step=80" in fp.hash_key and fp.hash_key != COARSE_INDEX.hash_key()
    )
    assert np.all(np.diff(fp.frames) >= 0)
    assert 0.1 < np.mean(fp.frames % 2) < 0.9  # refined: odd 10 ms steps, between the 20 ms frames, too
    assert fp.times_s.max() <= len(x) / rate
    call = _partial_replay_call(x, rate)
    with FingerprintIndex(tmp_path / "refined.sqlite", params=refined) as idx:
        idx.add("enroll-a", fp, "enrollment", owner="a")
        m = idx.query(fingerprint(call, 8000, params=query), rule=MatchRule(min_hits=8)).matches[0]
        assert m.item == "enroll-a" and m.offset_s == pytest.approx(-2.0, abs=0.03)
    with pytest.raises(FingerprintError, match="time_step"):
        FingerprintParams(hop=160, time_step=70, peak_time_frames=4, context_frames=8)


def test_generated_audio_is_found_and_told_apart(tmp_path: Path) -> None:
    with FingerprintIndex(tmp_path / "g.sqlite") as idx:
        idx.add("syllables-1", fingerprint(syllables(8.0, seed=1), 8000), "call")
        noise = np.random.default_rng(2).standard_normal(64000).astype(np.float32) * 0.1
        idx.add("noise", fingerprint(noise, 8000), "call")
        again = _phone(syllables(8.0, seed=1) * 0.2, 8000, seed=6)
        assert [m.item for m in idx.query(fingerprint(again, 8000, params=QUERY_PARAMS)).matches] == ["syllables-1"]
        other = _phone(syllables(8.0, seed=9), 8000, seed=7)
        assert not idx.query(fingerprint(other, 8000, params=QUERY_PARAMS)).replay


def test_the_rule_decides(index: FingerprintIndex) -> None:
    x, rate = _clip(CLIP_A)
    fp = fingerprint(_phone(x, rate, seed=8), 8000, params=QUERY_PARAMS)
    found = index.query(fp).matches[0]
    strict = MatchRule(min_hits=found.hits + 1)
    check = index.query(fp, rule=strict)
    assert not check.replay and check.best is not None and check.best.item == "enroll-a"
    assert not index.query(fp, rule=MatchRule(min_matched_s=found.matched_s + 1.0)).replay
    assert not index.query(fp, exclude=["enroll-a"]).replay
    with pytest.raises(UsageError, match="min_hits"):
        MatchRule(min_hits=0)
    with pytest.raises(UsageError, match="finite"):
        MatchRule(min_matched_s=float("nan"))


# --- the index ------------------------------------------------------------------------------------


def _synthetic(values: np.ndarray, seconds: float = 20.0, seed: int = 0) -> Fingerprint:
    rng = np.random.default_rng(seed)
    frames = np.sort(rng.integers(0, int(seconds * 100), values.size)).astype(np.int32)
    return Fingerprint(values.astype(np.uint32), frames, seconds, seconds, values.size, INDEX_PARAMS.hash_key())


def test_lookup_work_does_not_grow_with_unrelated_items(index: FingerprintIndex) -> None:
    x, rate = _clip(CLIP_A)
    fp = fingerprint(_phone(x, rate, seed=9), 8000, params=QUERY_PARAMS)
    before, before_own = index.query(fp), index.query(fp, owner="a")
    unused = np.setdiff1d(np.arange(2**PAIR_HASH_BITS), fp.hashes)  # hash values the call never looks up
    rng = np.random.default_rng(0)
    index.add_many((f"other-{i}", _synthetic(rng.choice(unused, 2000), seed=i), "call", "") for i in range(300))
    # and items of other borrowers that DO share the call's hash values
    index.add_many((f"busy-{i}", _synthetic(rng.choice(fp.hashes, 2000), seed=i), "call", f"o{i}") for i in range(30))
    after, after_own = index.query(fp), index.query(fp, owner="a")
    assert after.items_in_index == before.items_in_index + 330
    assert after_own.rows == before_own.rows  # a borrower's lookup reads that borrower's rows only
    assert [m.item for m in after_own.matches] == [m.item for m in before_own.matches] == ["enroll-a"]
    assert after.rows > before.rows  # the global lookup reads the rows sharing the call's values ...
    assert sum(index.remove_owner(f"o{i}") for i in range(30)) == 30
    assert index.query(fp).rows == before.rows  # ... and no row of the 300 unrelated items: no scan
    plan = " ".join(
        str(r)
        for r in index._db.execute(
            "EXPLAIN QUERY PLAN SELECT hash, item, frame FROM landmarks WHERE hash IN (?, ?)", (1, 2)
        )
    )
    assert "SEARCH landmarks USING PRIMARY KEY (hash=?)" in plan


def test_a_borrower_scoped_search_sees_only_that_borrower(index: FingerprintIndex) -> None:
    x, rate = _clip(CLIP_A)
    fp = fingerprint(_phone(x, rate, seed=14), 8000, params=QUERY_PARAMS)
    assert [m.item for m in index.query(fp, owner="a").matches] == ["enroll-a"]
    assert not index.query(fp, owner="b").replay  # borrower b's items do not hold this audio
    assert index.query(fp, owner="nobody").rows == 0


def test_the_row_budget_skips_the_commonest_values_first(index: FingerprintIndex) -> None:
    x, rate = _clip(CLIP_A)
    fp = fingerprint(_phone(x, rate, seed=15), 8000, params=QUERY_PARAMS)
    full = index.query(fp)
    assert full.skipped_values == 0
    tight = index.query(fp, max_rows=full.rows // 3)
    assert tight.rows <= full.rows // 3 and tight.skipped_values > 0
    assert tight.best is not None and tight.best.item == "enroll-a"  # the rarest values still find it
    with pytest.raises(UsageError, match="max_rows"):
        index.query(fp, max_rows=0)


def _buckets_agree(index: FingerprintIndex) -> bool:
    counted = dict(index._db.execute("SELECT hash, COUNT(*) FROM landmarks GROUP BY hash").fetchall())
    return counted == dict(index._db.execute("SELECT hash, n FROM buckets").fetchall())


def test_remove_erases_an_item_completely(index: FingerprintIndex) -> None:
    x, rate = _clip(CLIP_A)
    fp = fingerprint(_phone(x, rate, seed=10), 8000, params=QUERY_PARAMS)
    assert index.query(fp).replay
    assert _buckets_agree(index)
    assert index.remove("enroll-a") and not index.remove("enroll-a")
    assert _buckets_agree(index)
    assert "enroll-a" not in index and len(index) == 1
    assert not index.query(fp).replay
    rows = index._db.execute("SELECT COUNT(*) FROM landmarks l JOIN items i ON i.id = l.item").fetchone()[0]
    assert rows == index._db.execute("SELECT COUNT(*) FROM landmarks").fetchone()[0]  # no orphan rows
    assert index.remove_owner("b") == 1 and len(index) == 0
    assert index._db.execute("SELECT COUNT(*) FROM landmarks").fetchone()[0] == 0
    with pytest.raises(UsageError, match="owner"):
        index.remove_owner("")


def test_items_are_named_once_and_fingerprints_must_fit(index: FingerprintIndex) -> None:
    x, rate = _clip(CLIP_A)
    fp = fingerprint(x, rate)
    with pytest.raises(UsageError, match="already in the index"):
        index.add("enroll-a", fp, "enrollment")
    with pytest.raises(UsageError, match="kind"):
        index.add("x", fp, "voicemail")  # type: ignore[arg-type]
    other = fingerprint(x, rate, params=FingerprintParams(dt_step_frames=1))
    with pytest.raises(UsageError, match="parameters"):
        index.query(other)


def test_keyed_index_hides_raw_values_and_needs_its_key(tmp_path: Path) -> None:
    path = tmp_path / "keyed.sqlite"
    x, rate = _clip(CLIP_A)
    stored = fingerprint(x, rate)
    with FingerprintIndex(path, key=KEY) as idx:
        idx.add("enroll-a", stored, "enrollment", owner="a")
    assert os.stat(path).st_mode & 0o777 == 0o600
    raw = {int(v) for v in stored.hashes}
    with sqlite3.connect(path) as db:
        on_disk = {int(r[0]) for r in db.execute("SELECT hash FROM landmarks")}
    assert len(on_disk) > 100 and len(on_disk & raw) < len(on_disk) // 20  # not the raw landmark values
    with pytest.raises(StoreError, match="keyed"):
        FingerprintIndex(path)
    with pytest.raises(StoreError, match="wrong key"):
        FingerprintIndex(path, key=b"another key of 32 bytes........!")
    with pytest.raises(UsageError, match="16 to 64 bytes"):
        FingerprintIndex(tmp_path / "short.sqlite", key=b"short")
    with FingerprintIndex(path, key=KEY) as idx:
        check = idx.query(fingerprint(_phone(x, rate, seed=11), 8000, params=QUERY_PARAMS))
        assert [m.item for m in check.matches] == ["enroll-a"]


def test_unkeyed_index_refuses_a_key_and_a_foreign_file(tmp_path: Path) -> None:
    FingerprintIndex(tmp_path / "plain.sqlite").close()
    assert os.stat(tmp_path / "plain.sqlite").st_mode & 0o777 == 0o600
    with pytest.raises(StoreError, match="without a key"):
        FingerprintIndex(tmp_path / "plain.sqlite", key=KEY)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a fingerprint index"):
        FingerprintIndex(tmp_path / "junk.sqlite")
    with pytest.raises(StoreError, match=r"rebuild.*move the file aside.*enroll --replace"):
        FingerprintIndex(tmp_path / "plain.sqlite", params=FingerprintParams(dt_step_frames=1))


# --- too identical --------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_too_identical_warns_only_above_the_threshold() -> None:
    rng = np.random.default_rng(0)
    recs = _unit(rng.standard_normal((3, 16)))
    near = _unit(recs[1] + 0.01 * rng.standard_normal(16))
    far = _unit(recs.mean(axis=0) + 0.5 * rng.standard_normal(16))
    hit = too_identical(near, recs, model="any", threshold=0.95)
    assert hit.too_identical and hit.recording == 1 and hit.max_cosine > 0.99
    miss = too_identical(far, recs, model="any", threshold=0.95)
    assert not miss.too_identical and miss.max_cosine < 0.95
    assert too_identical(near, recs, model="ge2e-resemblyzer-0.1.4").threshold > 0.5  # a measured default


@pytest.mark.parametrize(
    "call, recs, kwargs, words",
    [
        (np.ones(4) / 2, np.ones((0, 4)), {"model": "x", "threshold": 0.9}, "n >= 1"),
        (np.ones(4) / 2, np.ones((2, 3)), {"model": "x", "threshold": 0.9}, "dimension"),
        (np.ones(4), np.ones((1, 4)) / 2, {"model": "x", "threshold": 0.9}, "unit-norm"),
        (np.full(4, np.nan), np.ones((1, 4)) / 2, {"model": "x", "threshold": 0.9}, "NaN"),
        (np.ones(4) / 2, np.ones((1, 4)) / 2, {"model": "unknown-model"}, "no measured"),
        (np.ones(4) / 2, np.ones((1, 4)) / 2, {"model": "x", "threshold": 1.5}, "threshold"),
    ],
)
def test_too_identical_refuses_bad_input(call: np.ndarray, recs: np.ndarray, kwargs: dict, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        too_identical(call, recs, **kwargs)


def test_padded_regions_are_widened_merged_and_clipped() -> None:
    regions = [SpeechRegion(5.0, 6.0), SpeechRegion(0.2, 1.0), SpeechRegion(1.5, 2.0), SpeechRegion(9.5, 9.9)]
    got = padded_regions(regions, 0.4, 10.0)
    # 0.2-1.0 and 1.5-2.0 overlap once widened; the first starts at 0 and the last ends at 10 s
    assert [(round(r.start_s, 6), round(r.end_s, 6)) for r in got] == [(0.0, 2.4), (4.6, 6.4), (9.1, 10.0)]
    assert padded_regions(regions, 0.0, 10.0) == sorted(regions, key=lambda r: r.start_s)
    assert padded_regions([], 0.5, 10.0) == []
    assert padded_regions([SpeechRegion(11.0, 12.0)], 0.5, 10.0) == []  # past the end: nothing left


def test_padded_regions_close_gaps_up_to_the_bridge_only() -> None:
    regions = [SpeechRegion(1.0, 2.0), SpeechRegion(4.0, 5.0), SpeechRegion(9.0, 9.5)]
    got = padded_regions(regions, 0.25, 20.0, bridge_s=1.5)  # widened gaps: 1.5 s (closed), 3.5 s (kept)
    assert [(round(r.start_s, 6), round(r.end_s, 6)) for r in got] == [(0.75, 5.25), (8.75, 9.75)]
    assert len(padded_regions(regions, 0.25, 20.0, bridge_s=1.49)) == 3


@pytest.mark.parametrize("pad, bridge", [(-0.1, 0.0), (float("nan"), 0.0), (float("inf"), 0.0), (0.0, -1.0)])
def test_padded_regions_refuse_a_bad_pad_or_bridge(pad: float, bridge: float) -> None:
    with pytest.raises(FingerprintError, match="pad|bridge"):
        padded_regions([SpeechRegion(1.0, 2.0)], pad, 10.0, bridge)


def test_a_padded_fingerprint_reaches_into_the_edges_of_speech() -> None:
    from voicecheck.replaycheck import fingerprint_call

    x = syllables(12.0, seed=3, rate=16000)
    regions = [SpeechRegion(3.0, 5.0), SpeechRegion(7.0, 9.0)]
    plain = fingerprint_call(x, 16000, regions, pad_s=0.0, bridge_s=0.0)
    padded = fingerprint_call(x, 16000, regions, pad_s=0.5, bridge_s=0.0)
    assert plain.query is not None and padded.query is not None and padded.index is not None
    assert padded.query.analysed_s == pytest.approx(plain.query.analysed_s + 2.0, abs=0.05)
    times = padded.query.times_s
    assert np.any((times >= 2.5) & (times < 3.0)) and not np.any(plain.query.times_s < 3.0)
    assert times.min() >= 2.5 - 0.02 and times.max() < 9.5


def test_only_the_query_is_widened_and_the_stored_fingerprint_stays_as_without_it() -> None:
    """A sound outside the speech regions must never be stored to be found again: the stored fingerprint
    of a widened call is the one of its regions alone, hash for hash, and only the query reaches out."""
    from voicecheck.replaycheck import fingerprint_call

    x = syllables(12.0, seed=4, rate=16000)
    regions = [SpeechRegion(3.0, 5.0), SpeechRegion(7.0, 9.0)]
    plain = fingerprint_call(x, 16000, regions, pad_s=0.0, bridge_s=0.0)
    wide = fingerprint_call(x, 16000, regions, pad_s=1.0, bridge_s=2.0)
    assert plain.index is not None and wide.index is not None and plain.query is not None and wide.query is not None
    np.testing.assert_array_equal(wide.index.hashes, plain.index.hashes)
    np.testing.assert_array_equal(wide.index.frames, plain.index.frames)
    assert wide.index.analysed_s == plain.index.analysed_s
    stored = wide.index.times_s
    assert np.all(((stored >= 3.0 - 0.02) & (stored < 5.0)) | ((stored >= 7.0 - 0.02) & (stored < 9.0)))
    between = (wide.query.times_s > 5.2) & (wide.query.times_s < 6.8)  # the closed gap: the query only
    assert np.any(between) and wide.query.analysed_s == pytest.approx(8.0, abs=0.05)
    assert len(wide.query) > len(plain.query)
