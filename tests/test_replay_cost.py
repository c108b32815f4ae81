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
from voicecheck.jit import compiled
from voicecheck.replay import FingerprintIndex
from voicecheck.types import SpeechRegion


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (4, 2), (17, 7), (300, 99)])
@pytest.mark.parametrize("half_t, half_f", [(8, 3), (1, 1), (20, 6), (0, 0), (200, 2)])
def test_local_maxima_are_scipys_max_filter_value_for_value(shape: tuple[int, int], half_t: int, half_f: int) -> None:
    rng = np.random.default_rng(sum(shape) + half_t)
    a = np.round(rng.standard_normal(shape), 1).astype(np.float32)  # many ties
    along_time = compiled(fpmod._time_max_loop)(a, half_t)
    assert np.array_equal(along_time, ndimage.maximum_filter1d(a, 2 * half_t + 1, axis=0, mode="nearest"))
    box = ndimage.maximum_filter(a, size=(2 * half_t + 1, 2 * half_f + 1), mode="nearest")
    tops = compiled(fpmod._tops_loop)
    for is_peak in (np.ones(shape, dtype=bool), rng.random(shape) < 0.3, np.zeros(shape, dtype=bool)):
        assert np.array_equal(tops(a, along_time, is_peak, half_f), is_peak & (a >= box))
    assert compiled(fpmod._time_max_loop)(a[:0], half_t).shape == (0, shape[1])


@pytest.mark.parametrize("shape", [(1, 9), (40, 99), (300, 20)])
def test_box_mean_of_some_rows_is_the_whole_filters_value_for_value(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    a = (rng.standard_normal(shape) * 20 - 60).astype(np.float32)
    want = ndimage.uniform_filter(a, size=(31, 13), mode="nearest")
    assert np.array_equal(fpmod._box_mean(a, 15, 6), want)
    rows = np.unique(rng.integers(0, shape[0], 5))
    assert np.array_equal(fpmod._box_mean(a, 15, 6, rows), want[rows])
    assert fpmod._box_mean(a, 15, 6, rows[:0]).shape == (0, shape[1])
    for bad in (rows[::-1] if rows.size > 1 else np.array([0, 0]), np.array([shape[0]]), np.array([-1])):
        with pytest.raises(ValueError, match="rows must increase"):
            fpmod._box_mean(a, 15, 6, bad)


@pytest.mark.parametrize("half_t, half_f", [(15, 6), (1, 1), (3, 0), (0, 2), (40, 70)])
def test_box_mean_is_scipys_on_random_shapes_and_ties(half_t: int, half_f: int) -> None:
    """The compiled running sums must give scipy's floats exactly, or stored fingerprints would change."""
    rng = np.random.default_rng(half_t * 100 + half_f)
    for trial in range(30):
        n, bins = int(rng.integers(1, 300)), int(rng.integers(1, 120))
        a = (rng.standard_normal((n, bins)) * rng.uniform(1, 40) - 60).astype(np.float32)
        if trial % 3 == 0:
            a = np.round(a)
        want = ndimage.uniform_filter(a, size=(2 * half_t + 1, 2 * half_f + 1), mode="nearest")
        rows = np.unique(rng.integers(0, n, int(rng.integers(0, n + 1))))
        assert np.array_equal(fpmod._box_mean(a, half_t, half_f, rows), want[rows]), trial


def test_peaks_are_the_local_maxima_that_pass_the_thresholds() -> None:
    """The definition, over the whole spectrogram: at least every value of its box, in speech, above
    the floor by min_above_floor_db, above its box mean by min_prominence_db."""
    x = syllables(6.0, seed=12)
    spec = fpmod._prepare(x, 8000, None, 1.0)[0]
    found = fpmod.peaks(spec, QUERY_PARAMS, QUERY_PARAMS)
    band = spec.band
    box = ndimage.maximum_filter(band, size=(17, 7), mode="nearest")
    mean = ndimage.uniform_filter(band, size=(31, 13), mode="nearest")
    want = (band >= box) & spec.usable[:, None] & (band >= spec.ceiling - 70.0)
    want &= (band - spec.floor[None, :] >= QUERY_PARAMS.min_above_floor_db) & (band - mean >= 6.0)
    rows, bins = np.nonzero(want)
    assert rows.size > 50
    assert np.array_equal(found.frames, spec.frames[rows]) and np.array_equal(found.bins, bins + fpmod._LO_BIN)


def test_candidates_and_ceiling_are_numpys_value_for_value() -> None:
    """The compiled candidate test compares in float32 as numpy does with a Python float (NEP 50), values
    exactly at a threshold included; the ceiling is the largest speech value."""
    rng = np.random.default_rng(21)
    for trial in range(30):
        n, bins = int(rng.integers(1, 200)), int(rng.integers(1, 100))
        band = np.round(rng.standard_normal((n, bins)) * 20 - 60, 1).astype(np.float32)  # many exact ties
        usable = rng.random(n) < 0.7
        usable[int(rng.integers(0, n))] = True
        spec = fpmod._speech_view(band, np.arange(n), usable, fpmod.HOP)
        assert spec.ceiling == float(band[usable].max())
        floor = np.round(rng.standard_normal(bins) * 5 - 70, 1).astype(np.float32)
        spec = fpmod._Spectrogram(band, np.arange(n), usable, floor, float(band[usable].max()) - 0.05 * trial)
        for above in (10.0, 6.0, 0.1 * trial):
            params = FingerprintParams(min_above_floor_db=above)
            want = (band >= spec.ceiling - 70.0) & usable[:, None] & (band - floor[None, :] >= above)
            assert np.array_equal(fpmod._candidates(band, spec, params), want), (trial, above)


def test_the_speech_spectrogram_is_the_whole_recordings_row_for_row() -> None:
    """The compiled windowing and power loops, block by block, give the rows of numpy's spectrogram of
    the whole recording exactly (log10 stays numpy's)."""
    x = syllables(9.0, seed=5)
    whole = fpmod.spectrogram_db(x)
    usable = np.zeros(whole.shape[0], dtype=bool)
    usable[30:200] = usable[420:700] = True  # two runs, more rows than one block
    spec = fpmod._chunks(x, usable)
    assert spec.band.shape[0] > fpmod._ROW_BLOCK
    assert np.array_equal(spec.band, whole[spec.frames])


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


def _random_landmarks(rng: np.random.Generator, most: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``most`` landmarks (frames sorted, many shared; bins in the band) within ``span`` frames."""
    m = int(rng.integers(0, most))
    frames = np.sort(rng.integers(0, int(rng.integers(1, span)), m)).astype(np.int32)
    return frames, rng.integers(10, 109, m).astype(np.int32)


def test_targets_are_each_anchors_first_in_the_zone() -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        frames, bins = _random_landmarks(rng, 120, 200)
        for params in (QUERY_PARAMS, INDEX_PARAMS, FingerprintParams(fan_out=1, max_dt_frames=10)):
            got = fpmod._targets(frames, bins, params)
            assert np.array_equal(got, _targets_one_by_one(frames, bins, params)), (trial, params)


def test_pair_hashes_are_each_pairs_hash_in_anchor_time_order() -> None:
    """The definition: a hash per (anchor, target) pair, the pairs of each target rank in anchor order,
    rank after rank, then a stable sort by anchor time (equal times keep rank, then anchor, order)."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        frames, bins = _random_landmarks(rng, 150, 120)
        for params in (QUERY_PARAMS, INDEX_PARAMS, FingerprintParams(dt_step_frames=3, max_dt_frames=60)):
            targets = _targets_one_by_one(frames, bins, params)
            hashes, times = [], []
            for r in range(params.fan_out):
                for a in np.flatnonzero(targets[:, r] >= 0):
                    t = targets[a, r]
                    dt = (frames[t] - frames[a]) // params.dt_step_frames
                    hashes.append((int(bins[a]) << 13) | (int(bins[t]) << 6) | int(dt))
                    times.append(int(frames[a]))
            order = np.argsort(np.array(times, dtype=np.int64), kind="stable")
            got_h, got_t = fpmod.landmark_hashes(frames, bins, params)
            assert got_h.dtype == np.uint32 and got_t.dtype == np.int32
            assert np.array_equal(got_h, np.array(hashes, dtype=np.uint32)[order]), (trial, params)
            assert np.array_equal(got_t, np.array(times, dtype=np.int32)[order]), (trial, params)


def test_values_hits_are_isin_with_positions() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1 << 31, 3000)
    values[:500] = values[500:1000]  # repeated values
    mine = replay._Values.of(values, np.arange(values.size))
    stored = np.concatenate([rng.integers(0, 1 << 31, 4000), values[::7], values[::11] + (1 << 20)])  # same low bits
    hits = mine.hits([np.column_stack([stored, np.arange(stored.size)])], [1])
    assert np.array_equal(hits[:, 2], np.flatnonzero(np.isin(stored, values)))  # the rows' frames: positions
    assert np.array_equal(mine.distinct[hits[:, 3]], hits[:, 0]) and np.array_equal(hits[:, 0], stored[hits[:, 2]])
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


def test_a_widened_query_and_its_stored_fingerprint_from_one_search_equal_separate_ones() -> None:
    """The query over widened regions and the stored fingerprint over the regions come from one peak
    search over the wider spectrogram: each must be what its own search gives, hash for hash."""
    from voicecheck.fingerprint import padded_regions

    regions = [SpeechRegion(1.0, 3.5), SpeechRegion(4.2, 6.0), SpeechRegion(9.0, 12.5)]
    x = syllables(14.0, seed=9, rate=16000)
    quiet = np.ones(x.size, dtype=bool)
    for r in regions:
        quiet[int(r.start_s * 16000) : int(r.end_s * 16000)] = False
    x[quiet] *= 0.01  # quieter outside speech: the widened query's noise floor is not the stored one's
    wider = padded_regions(regions, 1.0, 14.0)
    query, stored = fingerprints(x, 16000, regions, query_regions=wider)
    for both, alone in (
        (query, fingerprint(x, 16000, wider, params=QUERY_PARAMS)),
        (stored, fingerprint(x, 16000, regions, params=INDEX_PARAMS)),
    ):
        assert len(both) > 100
        assert np.array_equal(both.hashes, alone.hashes) and np.array_equal(both.frames, alone.frames)
        assert both.n_landmarks == alone.n_landmarks and both.analysed_s == alone.analysed_s


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 11, 26, 250, 761])
def test_the_noise_floor_percentile_is_numpys_value_for_value(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(10):
        values = (rng.standard_normal((9, n)) * rng.uniform(1, 30) - 60).astype(np.float32)
        if trial % 3 == 0:
            values = np.round(values)  # ties
        assert np.array_equal(fpmod._percentile_20(values), np.percentile(values, 20, axis=1)), trial


@pytest.mark.parametrize(
    "values, frames",
    [
        (np.array([0, 5, (1 << 31) - 1]), np.array([0, 0, 7])),  # keyed pair values: by columns
        (np.array([(1 << 47) - 1, 3]), np.array([1, 2])),  # keyed triplets: compressed int64 pairs
        (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)),
    ],
)
def test_rows_unpack_to_what_was_packed(values: np.ndarray, frames: np.ndarray) -> None:
    for by_columns in (True, False):
        blob = replay._pack(values, frames, by_columns)
        assert blob.startswith(replay._ROWS_V2) == (by_columns and values.max(initial=0) < 1 << 32)
        rows = replay._unpack(blob)
        assert rows.dtype == np.int64 and np.array_equal(rows, np.stack([values, frames], axis=1).reshape(-1, 2))


def test_a_schema_2_index_is_read_and_written_as_before(tmp_path: Path) -> None:
    """An index made before rows were packed by columns: its items stay readable, new items are
    written the old way (an older version can still read the file), lookups find the same."""
    import sqlite3

    x, rate = _clip(CLIP_A)
    call = fingerprint(_phone(x, rate, seed=5), 8000, params=QUERY_PARAMS)
    path = tmp_path / "old.sqlite"
    with FingerprintIndex(path, key=KEY, all_items=False) as idx:
        idx.add("enroll-a", fingerprint(x, rate), "enrollment", owner="a")
        new_layout = idx.query(call, owner="a")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
        blob = db.execute("SELECT rows FROM items").fetchone()[0]
        old = replay._unpack(blob)
        db.execute("UPDATE items SET rows = ?", (replay._pack(old[:, 0], old[:, 1], by_columns=False),))
    with FingerprintIndex(path, key=KEY, all_items=False) as idx:
        assert idx.query(call, owner="a") == new_layout and new_layout.replay
        y, rate_b = _clip(CLIP_B)
        idx.add("call-b", fingerprint(y, rate_b), "call", owner="a")
    with sqlite3.connect(path) as db:
        added = db.execute("SELECT rows FROM items WHERE name = 'call-b'").fetchone()[0]
        assert not added.startswith(replay._ROWS_V2) and replay._unpack(added).shape[1] == 2
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    with pytest.raises(replay.StoreError, match="schema '1'"):
        FingerprintIndex(path, key=KEY)


def test_a_stored_outcome_is_the_json_of_its_fields() -> None:
    import json
    from dataclasses import asdict

    from voicecheck.replay import ReplayMatch
    from voicecheck.replaycheck import ReplayOutcome

    m = ReplayMatch("call:x", "call", "b1", 0.1, 4.130000000000001, 0.2, 4.2, 4.03, 17, -0.01, True)
    for outcome in (ReplayOutcome(True, "", (m, m), 3), ReplayOutcome(False, "why \u4e2d", (), 0)):
        assert outcome.to_json() == json.dumps(asdict(outcome), separators=(",", ":"))
        assert ReplayOutcome.from_json(outcome.to_json()) == outcome


def _ledger_world(tmp_path: Path, n: int) -> tuple:
    """n calls of one borrower, each replaying the one before (shared audio), as phase-1 results."""
    from voicecheck.config import Settings
    from voicecheck.crypto import cipher_for
    from voicecheck.manifest import Row
    from voicecheck.replaycheck import Prints
    from voicecheck.workers import Embedded

    settings = Settings(store=str(tmp_path / "s"), embeddings=str(tmp_path / "e"))
    x = syllables(6.0 * (n + 1), seed=8)
    results = []
    for i in range(n):  # call i holds seconds 6i .. 6i+12: half of it is call i-1's second half
        part = x[6 * i * 8000 : (6 * i + 12) * 8000]
        row = Row(i + 1, f"c{i}", "B1", f"{i}.wav", 1)
        results.append(
            Embedded(row, "ok", content_hash=f"{i:064x}", channel=1, prints=Prints(*fingerprints(part, 8000)))
        )
    return settings, cipher_for(settings), results


def _run_ledger(settings, cipher, results, chunk: int, stop_after: int | None = None) -> dict[str, str]:
    """The ledger over ``results``; ``stop_after``: the process dies after that many checks (nothing flushed
    beyond what the chunks committed). Returns the outcomes the call store then holds."""
    from voicecheck.callstore import CallStore
    from voicecheck.replaycheck import Indexes, Ledger

    calls, indexes = CallStore(settings.embeddings, cipher), Indexes.open(settings, cipher)
    try:
        ledger = Ledger(indexes, calls, chunk=chunk)
        todo = results if stop_after is None else results[:stop_after]
        for res in todo:
            ledger.expect(res.row.row)
            ledger.arrive(res)
        if stop_after is None:
            ledger.finish()
        return {r.content_hash: calls.replay_outcome(r.content_hash, 1, "B1") for r in results}
    finally:
        indexes.close()  # without finish: what was not committed is rolled back
        calls.close()


def test_ledger_chunks_store_what_calls_one_by_one_store(tmp_path: Path) -> None:
    one_by_one = _run_ledger(*_ledger_world(tmp_path / "a", 7), chunk=1)
    chunked = _run_ledger(*_ledger_world(tmp_path / "b", 7), chunk=3)
    assert chunked == one_by_one and all(chunked.values())
    replayed = [json for json in chunked.values() if '"candidates":[]' not in json]
    assert len(replayed) == 6  # every call but the first replays the one before


def test_a_batch_stopped_between_chunks_resumes_to_the_same_checks(tmp_path: Path) -> None:
    """Stopped after 5 checks with chunks of 3: the first 3 calls are in the index and the call store,
    calls 4-5 in neither; run again over all 7 (as a resumed batch does for the calls without a stored
    check), the outcomes equal an uninterrupted run's."""
    from voicecheck.replay import FingerprintIndex
    from voicecheck.replaycheck import call_item

    settings, cipher, results = _ledger_world(tmp_path / "a", 7)
    stopped = _run_ledger(settings, cipher, results, chunk=3, stop_after=5)
    assert [h for h, o in stopped.items() if o] == [r.content_hash for r in results[:3]]
    with FingerprintIndex(Path(settings.embeddings) / "replay.sqlite", cipher=cipher, all_items=False) as idx:
        assert [call_item(r.content_hash) in idx for r in results] == [True] * 3 + [False] * 4
    left = [r for r in results if not stopped[r.content_hash]]
    resumed = _run_ledger(settings, cipher, left, chunk=3)
    whole = _run_ledger(*_ledger_world(tmp_path / "b", 7), chunk=3)
    assert {**{h: o for h, o in stopped.items() if o}, **resumed} == whole


def test_a_check_lost_after_its_call_was_indexed_is_found_again(tmp_path: Path) -> None:
    """The index committed, the process stopped before the call store kept the outcomes: looked up
    again, each call sees the items stored before it, as the first time (not itself, nor later calls)."""
    from voicecheck.callstore import CallStore
    from voicecheck.replaycheck import ReplayOutcome

    settings, cipher, results = _ledger_world(tmp_path / "a", 4)
    whole = _run_ledger(settings, cipher, results, chunk=2)
    calls = CallStore(settings.embeddings, cipher)
    with calls._db:
        calls._db.execute("DELETE FROM replay_checks")
    calls.close()
    again = _run_ledger(settings, cipher, results, chunk=2)
    for h, first in whole.items():  # the same spans found; ``items`` counts what the index holds now
        a, b = ReplayOutcome.from_json(first), ReplayOutcome.from_json(again[h])
        assert a.candidates == b.candidates and a.checked and b.checked and b.items >= a.items
    assert any(ReplayOutcome.from_json(o).candidates for o in again.values())


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).integers(0, 50, 5000),  # many ties: their order must be kept
        np.random.default_rng(2).integers(0, 2**31, 3000),  # keyed pair values
        np.random.default_rng(3).integers(-5, 5, 100),  # negative: the stable argsort itself
        np.random.default_rng(4).integers(2**60, 2**62, 100),  # too wide to pack with a position
        np.zeros(0, dtype=np.int64),
    ],
)
def test_stable_order_is_a_stable_argsort(values: np.ndarray) -> None:
    values = values.astype(np.int64)
    assert np.array_equal(fpmod.stable_order(values), np.argsort(values, kind="stable"))


def test_region_mask_holds_the_frames_whose_centre_is_in_a_region() -> None:
    from voicecheck.types import SpeechRegion

    rng = np.random.default_rng(5)
    n = 700
    centres = (np.arange(n) * fpmod.HOP + fpmod.N_FFT // 2) / fpmod.FINGERPRINT_SAMPLE_RATE
    for _ in range(20):
        starts = np.sort(rng.uniform(-1.0, 8.0, 6))
        regions = [SpeechRegion(float(s), float(s + rng.uniform(0, 1.5))) for s in starts]
        regions.append(SpeechRegion(float(centres[10]), float(centres[10])))  # empty: no frame
        want = np.zeros(n, dtype=bool)
        for r in regions:
            want |= (centres >= r.start_s) & (centres < r.end_s)
        assert np.array_equal(fpmod._region_mask(regions, n), want)


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_batch_process_reuses_the_memory_it_frees() -> None:
    """Per-call arrays of a few MB must not cost a page fault per 4 kB each time (workers.keep_freed_memory)."""
    import resource

    from voicecheck.workers import keep_freed_memory

    def one_call() -> float:
        arrays = [np.ones(1 << 19, dtype=np.float32) for _ in range(4)]  # 4 x 2 MB alive at once, written
        return sum(float(a[0]) for a in arrays)  # then all freed

    keep_freed_memory()
    one_call()  # the heap grows once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        one_call()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 200  # glibc's defaults: ~40,000


def test_keeping_freed_memory_is_skipped_without_glibcs_malloc(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from voicecheck import workers

    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    workers.keep_freed_memory()  # nothing to set, and no error
