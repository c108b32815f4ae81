"""The batch parent's cheaper replay look-up computes what the plain one did: the radix argsort, the
values' hash table, keyed values in chunks, the best spans of all candidates at once, and matches() (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_fingerprint import CLIP_A, KEY, _clip, _phone
from voicecheck import replay
from voicecheck.fingerprint import QUERY_PARAMS, fingerprint, stable_order, stable_sort
from voicecheck.replay import FingerprintIndex


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).integers(0, 50, 5000),  # many ties: their order must be kept
        np.random.default_rng(2).integers(0, 2**31, 3000),  # keyed pair values: two 16-bit digits
        np.random.default_rng(3).integers(-(2**40), 2**40, 2000),  # negative, three digits
        np.random.default_rng(4).integers(0, 2**62, 100),  # too wide for the digits: one sort
        np.array([7]),
        np.zeros(0, dtype=np.int64),
    ],
)
def test_radix_argsort_is_a_stable_argsort(values: np.ndarray) -> None:
    values = values.astype(np.int64)
    assert np.array_equal(stable_order(values), np.argsort(values, kind="stable"))


@pytest.mark.parametrize("bits", [0, 1, 11, 12, 22, 23, 47, 62])
def test_stable_sort_is_a_stable_argsort_applied(bits: int) -> None:
    """Keys of every width around the digits' edges, with many ties: sorted keys and the payload in a
    stable argsort's order; the input is left as it was."""
    rng = np.random.default_rng(bits)
    keys = rng.integers(0, 1 << bits, 3000) if bits else np.zeros(3000, dtype=np.int64)
    keys[::3] = keys[1::3]  # ties
    payload = rng.integers(-(2**40), 2**40, keys.size)
    before = keys.copy(), payload.copy()
    order = np.argsort(keys, kind="stable")
    got_keys, got_payload = stable_sort(keys, payload)
    assert np.array_equal(got_keys, keys[order]) and np.array_equal(got_payload, payload[order])
    assert np.array_equal(keys, before[0]) and np.array_equal(payload, before[1])


def test_stable_sort_of_nothing_and_its_errors() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert all(a.size == 0 for a in stable_sort(empty, empty))
    assert [a.tolist() for a in stable_sort(np.array([4]), np.array([-1]))] == [[4], [-1]]
    with pytest.raises(ValueError, match="non-negative"):
        stable_sort(np.array([3, -1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="alike"):
        stable_sort(np.array([3, 1]), np.array([0]))


def _found(q: replay._Values, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``stored`` q's hits names (their positions, as one item's frames) and the index of each
    value in ``q.distinct``, asserting the other columns."""
    hits = q.hits([np.column_stack([stored, np.arange(stored.size)]).astype(np.int64)], [7])
    assert np.array_equal(hits[:, 0], stored[hits[:, 2]]) and np.all(hits[:, 1] == 7)
    return hits[:, 2], hits[:, 3]


@pytest.mark.parametrize(
    "values",
    [
        np.arange(1, 40, dtype=np.int64) << 20,  # evenly spread: one per bucket
        np.concatenate([np.arange(30), [2**40, 2**62]]).astype(np.int64),  # all but two in the first bucket
        np.array([-(2**62), -5, 0, 3, 2**62], dtype=np.int64),  # the span does not fit in int64
        np.array([2**63 - 1, -(2**63)], dtype=np.int64),  # the widest span
        np.array([5, 5, 5], dtype=np.int64),  # one value
    ],
)
def test_values_are_found_by_bucket(values: np.ndarray) -> None:
    """Every value is found in its bucket, the ones between, beside and outside them are not."""
    mine = replay._Values.of(values[::-1], np.arange(values.size))
    assert np.array_equal(mine.distinct, np.unique(values))
    near = np.concatenate([values - 1, values + 1])  # wraps at the ends of int64: still values to look for
    stored = np.concatenate([values[::2], near, [0, 1, -1, 2**63 - 1, -(2**63)], values])
    at, pos = _found(mine, stored)
    assert np.array_equal(at, np.flatnonzero(np.isin(stored, values)))
    assert np.array_equal(mine.distinct[pos], stored[at])


def test_values_of_nothing_find_nothing() -> None:
    empty = np.zeros(0, dtype=np.int64)
    mine = replay._Values.of(empty, empty)
    assert mine.distinct.size == mine.first.size == mine.count.size == 0
    assert _found(mine, np.array([0, 5], dtype=np.int64))[0].size == 0
    assert mine.hits([], []).shape == (0, 4)
    one = replay._Values.of(np.array([3]), np.array([9]))
    assert _found(one, empty)[0].size == 0 and _found(one, np.array([3, 2, 3]))[0].tolist() == [0, 2]


def test_hits_keep_the_items_and_their_order() -> None:
    """Several items' rows: the hits part after part, each part's in its row order."""
    rng = np.random.default_rng(8)
    values = rng.integers(0, 1 << 31, 2000)
    mine = replay._Values.of(values, np.arange(values.size))
    parts = [np.column_stack([rng.choice(values, n), rng.integers(0, 500, n)]) for n in (0, 300, 1)]
    parts[1][::3, 0] += 1  # most of these are not the call's
    hits = mine.hits(parts, [4, 2, 9])
    rows = np.concatenate(parts)
    ids = np.repeat([4, 2, 9], [len(p) for p in parts])
    keep = np.isin(rows[:, 0], values)
    assert np.array_equal(hits[:, :3], np.column_stack([rows[keep, 0], ids[keep], rows[keep, 1]]))
    assert np.array_equal(mine.distinct[hits[:, 3]], hits[:, 0])


def test_keyed_values_in_chunks_are_one_aes_pass_of_the_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The definition: the first 8 bytes of AES-256-ECB of (h, tweak), masked to 31 bits; values keyed
    a few blocks at a time, with one encryption context for all of them, are the same."""
    import hashlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    monkeypatch.setattr(replay, "_AES_BLOCKS", 7)
    hashes = np.random.default_rng(5).integers(0, 1 << 20, 1000)
    aes_key = hashlib.blake2b(KEY, digest_size=32, person=b"vc-fp-aes-1").digest()
    blocks = np.zeros((hashes.size, 2), dtype="<u8")
    blocks[:, 0], blocks[:, 1] = hashes, replay._KEYED_TWEAK
    sealed = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor().update(blocks.tobytes())
    want = (np.frombuffer(sealed, dtype="<u8")[::2] & np.uint64((1 << 31) - 1)).astype(np.int64)
    with FingerprintIndex(tmp_path / "k.sqlite", key=KEY) as idx:
        assert np.array_equal(idx._keyed(hashes), want)
        assert np.array_equal(idx._keyed(hashes[::-1]), want[::-1])  # the context is used again
        assert np.array_equal(idx._stored_values(hashes), want) and idx._keyed(hashes[:0]).size == 0


def _spans_by_definition(q: replay._Values, hits: np.ndarray, rule: replay.MatchRule, hop_s: float) -> list:
    """One item at a time: every hit paired with the call frames of its value; the item's best
    difference (most hits within tolerance, the smallest of equals); the items by those hits (fewer
    ids first among equals); each one's hits near its difference split at call gaps > max_gap_s, the
    first group with most hits."""
    pairs = []  # (item, item frame, call frame)
    for _, item, frame, v in hits.tolist():
        pairs += [(item, frame, c) for c in q.sorted_frames[q.first[v] : q.first[v] + q.count[v]].tolist()]
    best = []
    for item in sorted({p[0] for p in pairs}):
        deltas = [f - c for i, f, c in pairs if i == item]
        window = {d: sum(abs(e - d) <= rule.tolerance_frames for e in deltas) for d in sorted(set(deltas))}
        top = max(window.values())
        best.append((item, min(d for d, w in window.items() if w == top), top))
    best.sort(key=lambda b: -b[2])
    out = []
    for item, delta, _ in best[: rule.max_candidates]:
        near = sorted((c, f) for i, f, c in pairs if i == item and abs(f - c - delta) <= rule.tolerance_frames)
        gap = int(round(rule.max_gap_s / hop_s))
        groups = [[near[0]]]
        for prev, cur in zip(near, near[1:], strict=False):
            groups.append([cur]) if cur[0] - prev[0] > gap else groups[-1].append(cur)
        g = max(groups, key=len)
        item_frames = [f for _, f in g]
        span = replay._Span(g[0][0], g[-1][0], min(item_frames), max(item_frames), len({c for c, _ in g}), delta)
        out.append((item, span))
    return out


@pytest.mark.parametrize("trial", range(24))
def test_best_spans_are_the_definitions(trial: int) -> None:
    """Random hits of items interleaved (as a search over all items gives them); from trial 12 on, item
    ids far apart (up to 2**33: the compact keys' ranks stand for them) and a narrow range of item frames
    (many equal windows and groups)."""
    rng = np.random.default_rng(100 + trial)
    n = int(rng.integers(1, 300))
    values = rng.integers(0, [30, 3000][trial % 2], n)  # repeated values: several call frames each
    frames = np.sort(rng.integers(0, 2000, n)) if trial % 2 else rng.integers(0, 2000, n)
    q = replay._Values.of(values, frames)
    m = int(rng.integers(1, 400))
    pick = rng.integers(0, q.distinct.size, m)
    item_frames = rng.integers(0, [3000, 40][trial // 12], m)
    at = np.zeros(0, dtype=np.int64)
    if trial % 3 != 1:  # a replay in the first item: the call's own hashes 25 frames later, some missing
        at = np.flatnonzero(rng.random(n) < 0.7)
        pick = np.concatenate([pick, np.searchsorted(q.distinct, values[at])])
        item_frames = np.concatenate([item_frames, frames[at] + 25])
    ids = np.array([[1, 2, 3, 4], [3, 10**6, 10**6 + 1, 2**33]][trial // 12])
    items = np.concatenate([ids[rng.integers(0, 4, m)], np.full(pick.size - m, ids[0])])
    hits = np.column_stack([q.distinct[pick], items, item_frames, pick]).astype(np.int64)
    rule = replay.MatchRule(
        tolerance_frames=[0, 2, 9][trial % 3], max_gap_s=[0.05, 2.0][trial % 2], max_candidates=[3, 20][trial % 2]
    )
    got = replay._best_spans(q, hits, rule, 0.01)
    assert got == _spans_by_definition(q, hits, rule, 0.01)
    if trial < 12 and trial % 3 != 1 and at.size >= 50:  # the replay is found
        assert got[0][0] == ids[0] and abs(got[0][1].delta - 25) <= rule.tolerance_frames and got[0][1].hits > 1


def test_best_spans_of_equal_items_and_single_hits() -> None:
    """Two items with the same hits tie: the smaller id first; one hit pairs with its value's call
    frames and keeps the smallest of the equal differences (a span of one frame); a rule
    keeping one candidate keeps the first; no hit, no span."""
    q = replay._Values.of(np.array([5, 6, 5, 7]), np.array([10, 11, 12, 40]))
    rows = np.array([[5, 0, 30, 0], [6, 0, 31, 1], [7, 0, 59, 2]])  # value, item, frame, index in distinct
    hits = np.concatenate([rows + [0, 9, 0, 0], rows + [0, 4, 0, 0]])
    rule = replay.MatchRule(tolerance_frames=0, max_gap_s=0.2)
    got = replay._best_spans(q, hits, rule, 0.01)
    assert got == _spans_by_definition(q, hits, rule, 0.01) and [item for item, _ in got] == [4, 9]
    assert got[0][1] == replay._Span(10, 11, 30, 31, hits=2, delta=20)  # item 30-31 = call 10-11 + 20
    one = replay._best_spans(q, hits[:1], rule, 0.01)  # value 5 at call frames 10 and 12: differences 20, 18
    assert one == [(9, replay._Span(12, 12, 30, 30, hits=1, delta=18))] == _spans_by_definition(q, hits[:1], rule, 0.01)
    assert replay._best_spans(q, hits, replay.MatchRule(max_candidates=1), 0.01)[0][0] == 4
    assert replay._best_spans(q, hits[:0], rule, 0.01) == []


def test_owner_searches_are_searches_over_all_items_kept_to_the_owner(tmp_path: Path) -> None:
    """A borrower's matches (read from their items' own rows, with the names in ``before`` and
    ``exclude`` found among their items or, for another borrower's, in the index) are the matches of
    a search over all items (the table keyed by hash value) that are theirs; query() agrees, and the
    items counted are the borrower's."""
    x, rate = _clip(CLIP_A)
    with FingerprintIndex(tmp_path / "fp.sqlite", key=KEY) as idx:
        idx.add("enroll-a", fingerprint(x, rate), "enrollment", owner="a")
        idx.add("call-b", fingerprint(_phone(x, rate, seed=3), 8000), "call", owner="b")
        idx.add("call-a", fingerprint(_phone(x, rate, seed=4), 8000), "call", owner="a")
        idx.add("call-a2", fingerprint(_phone(x, rate, seed=6), 8000), "call", owner="a")
        call = fingerprint(_phone(x, rate, seed=5), 8000, params=QUERY_PARAMS)
        kws: list[dict] = [
            {},
            {"exclude": ("call-a",)},
            {"before": "call-a"},
            {"before": "call-b"},
            {"before": "nothing"},
            {"exclude": ("call-b", "x"), "before": "call-a2"},
            {"added_before": idx.added_at("call-a")},
        ]
        for kw in kws:
            found, items = idx.matches(call, "a", **kw)
            assert found == tuple(m for m in idx.query(call, **kw).matches if m.owner == "a"), kw
            assert found == idx.query(call, owner="a", **kw).matches and items == idx.count("a") == 3
        assert len(idx.matches(call, "a")[0]) == 3 and len(idx.matches(call, "a", before="call-b")[0]) == 1
