"""The cheaper replay check computes what the plain one did: the fingerprint's maximum filter and
pairing, the lookup's value screen, the keyed-value table and the decoded-rows cache (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tests.fakes import syllables
from tests.test_fingerprint import CLIP_A, CLIP_B, KEY, _clip, _phone
from voicecheck import fingerprint as fpmod
from voicecheck import replay
from voicecheck.fingerprint import INDEX_PARAMS, QUERY_PARAMS, FingerprintParams, fingerprint, fingerprints
from voicecheck.replay import FingerprintIndex


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (4, 2), (17, 7), (300, 99)])
@pytest.mark.parametrize("half_t, half_f", [(8, 3), (1, 1), (20, 6)])
def test_max_filter_is_scipys_value_for_value(shape: tuple[int, int], half_t: int, half_f: int) -> None:
    rng = np.random.default_rng(sum(shape) + half_t)
    a = np.round(rng.standard_normal(shape), 1).astype(np.float32)  # many ties
    want = ndimage.maximum_filter(a, size=(2 * half_t + 1, 2 * half_f + 1), mode="nearest")
    assert np.array_equal(fpmod._max_filter(a, half_t, half_f), want)


def _targets_one_by_one(frames: np.ndarray, bins: np.ndarray, params: FingerprintParams) -> np.ndarray:
    """The definition: each anchor's first ``fan_out`` later landmarks in the target zone, in order."""
    out = np.full((frames.size, params.fan_out), -1, dtype=np.int64)
    for a in range(frames.size):
        found = [
            t
            for t in range(a + 1, frames.size)
            if 1 <= frames[t] - frames[a] <= params.max_dt_frames
            and params.min_df_bins <= abs(int(bins[t]) - int(bins[a])) <= params.max_df_bins
        ][: params.fan_out]
        out[a, : len(found)] = found
    return out


@pytest.mark.parametrize("block", [3, 1 << 18])
def test_targets_are_each_anchors_first_in_the_zone(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(fpmod, "_PAIR_BLOCK", block)  # small blocks: anchors split across blocks
    rng = np.random.default_rng(7)
    for trial in range(40):
        m = int(rng.integers(0, 120))
        frames = np.sort(rng.integers(0, int(rng.integers(1, 200)), m)).astype(np.int32)  # shared frames too
        bins = rng.integers(10, 109, m).astype(np.int32)
        for params in (QUERY_PARAMS, INDEX_PARAMS, FingerprintParams(fan_out=1, max_dt_frames=10)):
            got = fpmod._targets(frames, bins, params)
            assert np.array_equal(got, _targets_one_by_one(frames, bins, params)), (trial, params)


def test_values_find_is_isin_with_positions() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1 << 31, 3000)
    values[:500] = values[500:1000]  # repeated values
    mine = replay._Values.of(values, np.arange(values.size))
    stored = np.concatenate([rng.integers(0, 1 << 31, 4000), values[::7], values[::11] + (1 << 20)])  # same low bits
    at, pos = mine.find(stored)
    assert np.array_equal(at, np.flatnonzero(np.isin(stored, values)))
    assert np.array_equal(mine.distinct[pos], stored[at])
    assert np.array_equal(mine.distinct, np.unique(values))
    runs = [mine.sorted_values[f : f + c] for f, c in zip(mine.first, mine.count, strict=True)]
    assert all(np.all(r == d) for r, d in zip(runs, mine.distinct, strict=True))
    assert np.array_equal(mine.sorted_frames, np.argsort(values, kind="stable"))  # frames here are positions


def test_keyed_table_gives_the_values_keyed_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "_TABLES", {})
    with FingerprintIndex(tmp_path / "a.sqlite", key=KEY) as idx:
        hashes = np.random.default_rng(1).integers(0, 1 << 20, 5000)
        direct = idx._stored_values(hashes)  # below the threshold: keyed by AES one by one
        assert not replay._TABLES
        idx._keyed_values = replay._TABLE_AFTER
        assert np.array_equal(idx._stored_values(hashes), direct)
        assert len(replay._TABLES) == 1
        wide = np.array([hashes[0], (1 << 20) + 5])  # one value outside the table: all keyed one by one
        assert np.array_equal(idx._stored_values(wide), idx._keyed(wide))
        assert idx._stored_values(wide)[0] == direct[0]
    with FingerprintIndex(tmp_path / "b.sqlite", key=KEY) as same_key:  # the table is shared by key
        assert np.array_equal(same_key._stored_values(hashes), direct) and len(replay._TABLES) == 1
    with FingerprintIndex(tmp_path / "c.sqlite", key=b"another key of 32 bytes........!") as other:
        assert other._keyed_values == 0 and not np.array_equal(other._stored_values(hashes), direct)


def test_lookups_warm_and_cold_agree_and_removal_reaches_the_cache(tmp_path: Path) -> None:
    """A call looked up twice (decoded rows and arrangement kept the second time) finds the same; an
    item removed is not found from the cache, and an item stored under its reused id is."""
    x, rate = _clip(CLIP_A)
    y, rate_b = _clip(CLIP_B)
    with FingerprintIndex(tmp_path / "fp.sqlite", key=KEY, all_items=False) as idx:
        idx.add("old", fingerprint(syllables(8.0, seed=2), 8000), "call", owner="a")
        idx.add("enroll-a", fingerprint(x, rate), "enrollment", owner="a")
        call = fingerprint(_phone(x, rate, seed=5), 8000, params=QUERY_PARAMS)
        cold = idx.query(call, owner="a")
        warm = idx.query(call, owner="a")
        assert cold == warm and [m.item for m in cold.matches] == ["enroll-a"]
        assert idx.remove("enroll-a")
        assert idx.query(call, owner="a").matches == ()
        idx.add("enroll-b", fingerprint(y, rate_b), "enrollment", owner="a")  # SQLite reuses the id
        replayed_b = fingerprint(_phone(y, rate_b, seed=6), 8000, params=QUERY_PARAMS)
        assert [m.item for m in idx.query(replayed_b, owner="a").matches] == ["enroll-b"]
        assert idx.query(call, owner="a").matches == ()


def test_query_and_index_fingerprints_from_one_search_equal_separate_ones() -> None:
    x = syllables(12.0, seed=4, rate=16000)
    query, stored = fingerprints(x, 16000)
    for both, alone in ((query, fingerprint(x, 16000, params=QUERY_PARAMS)), (stored, fingerprint(x, 16000))):
        assert np.array_equal(both.hashes, alone.hashes) and np.array_equal(both.frames, alone.frames)
