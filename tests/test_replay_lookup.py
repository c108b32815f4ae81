"""The batch parent's cheaper replay look-up computes what the plain one did: the radix argsort, the
values' hash table, keyed values in chunks, the best spans of all candidates at once, and matches() (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_fingerprint import CLIP_A, KEY, _clip, _phone
from voicecheck import replay
from voicecheck.fingerprint import QUERY_PARAMS, fingerprint, stable_order
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


def _slot(value: int, bits: int) -> int:
    """A value's first slot in a table of 2**bits (the definition: top bits of value * multiplier mod 2**64)."""
    return ((value * replay._HASH_MULTIPLIER) % (1 << 64)) >> (64 - bits)


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_values_colliding_in_the_table_are_found(n: int) -> None:
    """Every value starts at the table's last slot (the probes wrap round to the first): each is found
    along the chain, and values absent but starting there too are not."""
    bits = max(1, (2 * n - 1).bit_length())
    same = [v for v in range(1, 200_000) if _slot(v, bits) == (1 << bits) - 1]
    values = np.array(same[:n], dtype=np.int64)
    mine = replay._Values.of(values[::-1], np.arange(n))
    assert mine.table.size == 1 << bits and np.count_nonzero(mine.table) == n
    stored = np.array(same[: n + 3] + [0, *values.tolist(), 2**40 + 1], dtype=np.int64)
    at, pos = mine.find(stored)
    assert np.array_equal(at, np.flatnonzero(np.isin(stored, values)))
    assert np.array_equal(mine.distinct[pos], stored[at])


def test_values_of_nothing_find_nothing() -> None:
    empty = np.zeros(0, dtype=np.int64)
    mine = replay._Values.of(empty, empty)
    assert mine.distinct.size == mine.first.size == mine.count.size == 0
    at, pos = mine.find(np.array([0, 5], dtype=np.int64))
    assert at.size == pos.size == 0 and mine.find(empty)[0].size == 0


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


@pytest.mark.parametrize("trial", range(12))
def test_best_spans_are_the_definitions(trial: int) -> None:
    rng = np.random.default_rng(100 + trial)
    n = int(rng.integers(1, 300))
    values = rng.integers(0, [30, 3000][trial % 2], n)  # repeated values: several call frames each
    frames = np.sort(rng.integers(0, 2000, n)) if trial % 2 else rng.integers(0, 2000, n)
    q = replay._Values.of(values, frames)
    m = int(rng.integers(1, 400))
    pick = rng.integers(0, q.distinct.size, m)
    item_frames = rng.integers(0, 3000, m)
    at = np.zeros(0, dtype=np.int64)
    if trial % 3 != 1:  # a replay in item 1: the call's own hashes 25 frames later, some missing
        at = np.flatnonzero(rng.random(n) < 0.7)
        pick = np.concatenate([pick, np.searchsorted(q.distinct, values[at])])
        item_frames = np.concatenate([item_frames, frames[at] + 25])
    items = np.concatenate([rng.integers(1, 5, m), np.ones(pick.size - m, dtype=np.int64)])
    hits = np.column_stack([q.distinct[pick], items, item_frames, pick]).astype(np.int64)
    rule = replay.MatchRule(
        tolerance_frames=[0, 2, 9][trial % 3], max_gap_s=[0.05, 2.0][trial % 2], max_candidates=[3, 20][trial % 2]
    )
    got = replay._best_spans(q, hits, rule, 0.01)
    assert got == _spans_by_definition(q, hits, rule, 0.01)
    if trial % 3 != 1 and at.size >= 50:  # the replay is found
        assert got[0][0] == 1 and abs(got[0][1].delta - 25) <= rule.tolerance_frames and got[0][1].hits > 1


def test_matches_are_querys_matches(tmp_path: Path) -> None:
    x, rate = _clip(CLIP_A)
    with FingerprintIndex(tmp_path / "fp.sqlite", key=KEY, all_items=False) as idx:
        idx.add("enroll-a", fingerprint(x, rate), "enrollment", owner="a")
        idx.add("call-a", fingerprint(_phone(x, rate, seed=4), 8000), "call", owner="a")
        call = fingerprint(_phone(x, rate, seed=5), 8000, params=QUERY_PARAMS)
        for kw in ({}, {"exclude": ("call-a",)}, {"before": "call-a"}, {"exclude": ("x",), "before": "call-a"}):
            want = idx.query(call, owner="a", **kw).matches  # type: ignore[arg-type]
            assert idx.matches(call, "a", **kw) == want  # type: ignore[arg-type]
        assert len(idx.matches(call, "a")) == 2
