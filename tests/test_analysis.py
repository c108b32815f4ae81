"""voicecheck.analysis on synthetic embeddings with known structure.

Voices are random unit centres in 128 dimensions (cosine between two centres ~ N(0, 0.09)); a
window or call of a voice is its centre plus Gaussian noise of total norm ``noise * 8``,
renormalised. With noise 0.1 a sample's cosine to its own centre is about 0.78, to another
sample of its voice about 0.6, and to other voices about 0, which is easy on purpose: these tests check the
algorithms, benchmarks/analysis.py measures them on real speech.
"""

from __future__ import annotations

import numpy as np
import pytest

from voicecheck import analysis as A
from voicecheck.errors import UsageError

D = 128


def centres(n: int, rng: np.random.Generator) -> np.ndarray:
    c = rng.standard_normal((n, D))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def samples(centre: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.08) -> np.ndarray:
    x = centre[None, :] + noise * np.sqrt(64 / D) * rng.standard_normal((n, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def window_times(n: int, window_s: float = 1.6, hop_s: float = 0.8, gap_after: int | None = None) -> np.ndarray:
    starts = np.arange(n) * hop_s
    if gap_after is not None:
        starts[gap_after:] += 2.0  # a pause in the recording
    return np.stack([starts, starts + window_s], axis=1)


def cosine_fn(enroll: np.ndarray):
    e = enroll / np.linalg.norm(enroll)
    return lambda rows: np.asarray(rows) @ e / np.linalg.norm(rows, axis=1)


# --- speaker change -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_takeover_found_at_the_change(seed):
    rng = np.random.default_rng(seed)
    borrower, impostor = centres(2, rng)
    n_before = int(rng.integers(8, 14))
    windows = np.concatenate([samples(borrower, n_before, rng), samples(impostor, 12, rng)])
    times = window_times(len(windows))
    enroll = samples(borrower, 1, rng, noise=0.03)[0]
    change = A.detect_speaker_change(windows, times, enroll, cosine_fn(enroll), threshold=0.5)
    assert change is not None
    assert change.which == "later"
    assert change.before_score >= 0.5 > change.after_score
    assert abs(change.change_s - times[n_before, 0]) <= 0.8 + 1e-9
    assert change.side_cosine < 0.5


def test_takeover_earlier_side():
    rng = np.random.default_rng(10)
    borrower, impostor = centres(2, rng)
    windows = np.concatenate([samples(impostor, 10, rng), samples(borrower, 10, rng)])
    enroll = samples(borrower, 1, rng, noise=0.03)[0]
    change = A.detect_speaker_change(windows, window_times(20), enroll, cosine_fn(enroll), threshold=0.5)
    assert change is not None and change.which == "earlier"


@pytest.mark.parametrize("seed", range(5))
def test_no_change_on_one_speaker(seed):
    rng = np.random.default_rng(100 + seed)
    (borrower,) = centres(1, rng)
    windows = samples(borrower, 30, rng, noise=0.12)
    enroll = samples(borrower, 1, rng, noise=0.03)[0]
    assert A.detect_speaker_change(windows, window_times(30), enroll, cosine_fn(enroll), threshold=0.4) is None


def test_change_needs_a_side_below_the_threshold():
    rng = np.random.default_rng(3)
    borrower, other = centres(2, rng)
    windows = np.concatenate([samples(borrower, 10, rng), samples(other, 10, rng)])
    enroll = samples(borrower, 1, rng, noise=0.03)[0]
    # both sides "match" on a scale where everything scores high: no takeover
    assert A.detect_speaker_change(windows, window_times(20), enroll, lambda r: np.ones(len(r)), threshold=0.5) is None
    # two voices but sides alike enough for the limit: no takeover
    assert (
        A.detect_speaker_change(windows, window_times(20), enroll, cosine_fn(enroll), 0.5, max_side_cosine=-1.0) is None
    )


def test_too_short_for_two_sides():
    rng = np.random.default_rng(4)
    borrower, impostor = centres(2, rng)
    windows = np.concatenate([samples(borrower, 4, rng), samples(impostor, 4, rng)])  # 7.2 s of speech: 3.6 s a side
    enroll = samples(borrower, 1, rng)[0]
    assert A.change_point(windows, window_times(8), min_segment_s=4.0) is None
    assert A.detect_speaker_change(windows, window_times(8), enroll, cosine_fn(enroll), threshold=0.5) is None
    assert A.change_point(windows, window_times(8), min_segment_s=3.5)[0] == 4


def test_net_speech_counts_windows_as_a_side_does():
    times = window_times(8)  # 1.6 s windows every 0.8 s
    assert A.net_speech_s(times) == pytest.approx(7 * 0.8 + (1.6 + 0.8) / 2)
    assert A.net_speech_s(times, 8) == pytest.approx(A.net_speech_s(times))
    assert A.net_speech_s(times, 0) == 0.0
    # the two sides of any split add up to the speech the windows span (7 hops + one window)
    for k in range(1, 8):
        assert A.net_speech_s(times, k) + A.net_speech_s(times, 8 - k) == pytest.approx(7 * 0.8 + 1.6)
    # 3.6 s a side: too short for min_segment_s=4 (test_too_short_for_two_sides), enough for 3.5
    assert A.net_speech_s(times, 4) == pytest.approx(3.6)
    # pauses in the recording are not speech
    assert A.net_speech_s(window_times(8, gap_after=4)) == pytest.approx(A.net_speech_s(times))
    assert A.net_speech_s(np.zeros((0, 2))) == 0.0


def test_change_point_with_a_pause_reports_recording_time():
    rng = np.random.default_rng(5)
    borrower, impostor = centres(2, rng)
    windows = np.concatenate([samples(borrower, 10, rng), samples(impostor, 10, rng)])
    times = window_times(20, gap_after=10)
    enroll = samples(borrower, 1, rng, noise=0.03)[0]
    change = A.detect_speaker_change(windows, times, enroll, cosine_fn(enroll), threshold=0.5)
    assert change is not None and change.change_s == pytest.approx(times[10, 0])


def test_timeline_drops_after_the_change():
    rng = np.random.default_rng(6)
    borrower, impostor = centres(2, rng)
    windows = np.concatenate([samples(borrower, 12, rng), samples(impostor, 12, rng)])
    times = window_times(24)
    enroll = samples(borrower, 1, rng, noise=0.03)[0]
    line = A.similarity_timeline(windows, times, enroll, cosine_fn(enroll), span_s=4.0)
    assert len(line) >= 4
    assert [p["start_s"] for p in line] == sorted(p["start_s"] for p in line)
    assert line[0]["start_s"] == pytest.approx(times[0, 0]) and line[-1]["end_s"] == pytest.approx(times[-1, 1])
    assert all(p["end_s"] - p["start_s"] == pytest.approx(4.0, abs=0.9) for p in line)
    assert line[0]["score"] > 0.5 > line[-1]["score"]
    short = A.similarity_timeline(windows[:3], times[:3], enroll, cosine_fn(enroll), span_s=4.0)
    assert len(short) == 1


def test_bad_shapes_raise():
    rng = np.random.default_rng(7)
    (c,) = centres(1, rng)
    w = samples(c, 10, rng)
    with pytest.raises(UsageError, match="times_s"):
        A.detect_speaker_change(w, window_times(9), c, cosine_fn(c), 0.5)
    with pytest.raises(UsageError, match="dimension"):
        A.detect_speaker_change(w, window_times(10), c[:10], cosine_fn(c), 0.5)


# --- two speakers on one channel ------------------------------------------------------------------


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    return sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(labels)


@pytest.mark.parametrize("seed", range(5))
def test_split_two_speakers_purity(seed):
    rng = np.random.default_rng(200 + seed)
    a, b = centres(2, rng)
    truth, windows = [], []
    for turn in range(8):  # alternating turns of 3-8 windows, the collector (a) first
        who = turn % 2
        n = int(rng.integers(3, 9))
        windows.append(samples((a, b)[who], n, rng, noise=0.12))
        truth += [who] * n
    w, t = np.concatenate(windows), np.array(truth)
    labels = A.split_two_speakers(w, window_times(len(w)))
    assert set(np.unique(labels)) == {0, 1}
    assert labels[0] == 0
    assert purity(labels, t) >= 0.9
    mask = A.customer_windows(w, window_times(len(w)))  # no collector voiceprints: the opener is the collector
    assert np.mean(t[mask] == 1) >= 0.9 and mask.sum() >= 0.8 * (t == 1).sum()


@pytest.mark.parametrize("seed", range(5))
def test_split_keeps_one_speaker_whole(seed):
    rng = np.random.default_rng(300 + seed)
    (a,) = centres(1, rng)
    w = samples(a, 40, rng, noise=0.12)
    assert not A.split_two_speakers(w, window_times(40)).any()
    assert A.customer_windows(w, window_times(40)).all()


def test_customer_windows_with_a_collector_voiceprint():
    rng = np.random.default_rng(8)
    agent, customer, other_agent = centres(3, rng)
    # the customer speaks first here, so only the voiceprint can tell who is who
    w = np.concatenate(
        [samples(customer, 8, rng), samples(agent, 6, rng), samples(customer, 8, rng), samples(agent, 6, rng)]
    )
    truth = np.array([1] * 8 + [0] * 6 + [1] * 8 + [0] * 6)
    prints = np.stack([samples(other_agent, 1, rng, 0.03)[0], samples(agent, 1, rng, 0.03)[0]])
    mask = A.customer_windows(w, window_times(len(w)), prints, agent_threshold=0.5)
    assert np.array_equal(mask, truth == 1)
    # a recording of the collector alone has no customer speech
    alone = samples(agent, 20, rng)
    assert not A.customer_windows(alone, window_times(20), prints, agent_threshold=0.5).any()


# --- voices per borrower -------------------------------------------------------------------------


def test_voices_per_borrower_splits_two_voices():
    rng = np.random.default_rng(9)
    a, b = centres(2, rng)
    v = np.concatenate([samples(a, 5, rng, 0.1), samples(b, 2, rng, 0.1)])
    ids = [f"a{i}" for i in range(5)] + ["b0", "b1"]
    groups = A.voices_per_borrower(v, ids, threshold=0.4)
    assert groups == [[f"a{i}" for i in range(5)], ["b0", "b1"]]
    assert A.voices_per_borrower(v, ids, threshold=0.4, min_calls=3) == []


@pytest.mark.parametrize("seed", range(5))
def test_voices_per_borrower_keeps_one_voice(seed):
    rng = np.random.default_rng(400 + seed)
    (a,) = centres(1, rng)
    v = samples(a, 8, rng, 0.1)
    assert A.voices_per_borrower(v, [str(i) for i in range(8)], threshold=0.4) == []
    assert A.voices_per_borrower(v[:1], ["0"], threshold=0.4) == []


# --- rings --------------------------------------------------------------------------------------


def ring_world(rng: np.random.Generator, n_borrowers: int = 150, n_impostors: int = 6):
    voices = centres(n_borrowers + n_impostors, rng)
    vectors, calls, borrowers, truth = [], [], [], {}
    for b in range(n_borrowers):
        for c in range(int(rng.integers(1, 4))):
            vectors.append(samples(voices[b], 1, rng, 0.1)[0])
            calls.append(f"b{b}-c{c}")
            borrowers.append(f"b{b}")
    for i in range(n_impostors):
        served = rng.choice(n_borrowers, size=int(rng.integers(3, 6)), replace=False)
        for b in served:
            vectors.append(samples(voices[n_borrowers + i], 1, rng, 0.1)[0])
            calls.append(f"imp{i}-for-b{b}")
            borrowers.append(f"b{b}")
            truth[calls[-1]] = i
    return np.array(vectors), calls, borrowers, truth


@pytest.mark.parametrize("seed", range(3))
def test_rings_recovered(seed):
    rng = np.random.default_rng(500 + seed)
    v, calls, borrowers, truth = ring_world(rng)
    rings = A.find_rings(v, calls, borrowers, min_borrowers=3, link_threshold=4.0, k=10)
    flagged = {c for r in rings for c in r.calls}
    assert flagged == set(truth)  # precision and recall 1.0
    assert len(rings) == len(set(truth.values()))
    for r in rings:
        assert len({truth[c] for c in r.calls}) == 1
        assert len(r.borrowers) == len(r.calls) >= 3
        assert 0.4 <= r.cohesion <= 1.0


def test_no_ring_when_every_voice_serves_one_borrower():
    rng = np.random.default_rng(600)
    v, calls, borrowers, _ = ring_world(rng, n_impostors=0)
    assert A.find_rings(v, calls, borrowers, min_borrowers=2, link_threshold=4.0, k=10) == []


def test_rings_through_the_hnsw_path_match_the_exact_path(monkeypatch):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(700)
    v, calls, borrowers, truth = ring_world(rng, n_borrowers=300, n_impostors=5)
    monkeypatch.setattr(A, "EXACT_SEARCH_MAX", 10)
    approx = A.find_rings(v, calls, borrowers, link_threshold=4.0, k=10)
    assert {c for r in approx for c in r.calls} == set(truth)


def test_knn_exact_blocks_agree_with_brute_force():
    rng = np.random.default_rng(800)
    x = samples(centres(1, rng)[0], 50, rng, noise=0.5)
    sims, idx = A.knn(x, 5, block=7)
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    expect = np.argsort(-full, axis=1)[:, :5]
    assert np.array_equal(idx, expect)
    assert np.allclose(sims, np.take_along_axis(full, expect, axis=1), atol=1e-5)
    assert not (idx == np.arange(50)[:, None]).any()


def test_large_component_is_split_not_materialised():
    rng = np.random.default_rng(900)
    v, calls, borrowers, truth = ring_world(rng, n_borrowers=120, n_impostors=3)
    rings = A.find_rings(v, calls, borrowers, link_threshold=4.0, k=10, max_component=5)
    assert {c for r in rings for c in r.calls} <= set(truth)


def test_find_rings_validates():
    with pytest.raises(UsageError, match="one per row"):
        A.find_rings(np.eye(3, dtype=np.float32), ["a", "b"], ["x", "y", "z"])
    with pytest.raises(UsageError, match="min_borrowers"):
        A.find_rings(np.eye(3, dtype=np.float32), ["a", "b", "c"], ["x", "y", "z"], min_borrowers=1)


def test_cohort_stats_leave_out_the_calls_own_borrower():
    rng = np.random.default_rng(950)
    x = samples(centres(1, rng)[0], 12, rng, noise=0.6)
    owners = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g", "h", "i"]
    mean, sd, count = A.cohort_stats(x, owners, block=5)
    cos = x.astype(np.float64) @ x.T.astype(np.float64)
    for i, me in enumerate(owners):
        others = [j for j, o in enumerate(owners) if o != me]
        assert count[i] == len(others)
        assert mean[i] == pytest.approx(cos[i, others].mean(), abs=1e-5)
        assert sd[i] == pytest.approx(cos[i, others].std(), abs=1e-5)
    # at most cohort_max calls, an even spread: rows 0, 3, 6, 9
    mean4, _, count4 = A.cohort_stats(x, owners, cohort_max=4)
    assert count4[2] == 4 and count4[0] == count4[1] == 3  # calls 0 and 1 share borrower "a" with row 0
    assert mean4[2] == pytest.approx(cos[2, [0, 3, 6, 9]].mean(), abs=1e-5)
    assert mean4[1] == pytest.approx(cos[1, [3, 6, 9]].mean(), abs=1e-5)


def test_link_scores_are_in_standard_deviations_of_each_calls_cohort():
    got = A.link_scores(np.array([0.5, 0.2]), np.array([0.1, 0.1]), np.array([0.2, 0.2]), 0.3, 0.1)
    assert np.allclose(got, [0.5 * (2.0 + 2.0), 0.5 * (0.5 - 1.0)])


def test_short_clips_of_one_voice_ring_while_long_look_alikes_do_not():
    """Short noisy clips have every cosine shrunk (by a factor ``a`` here): their ring mates score
    ``a**2``, below three long calls of different voices that merely sound alike (0.5). No cosine
    threshold separates them; the link score, measured against each call's own cohort, does."""
    rng = np.random.default_rng(960)
    sub, d, a = 16, 48, 0.7
    long_calls = np.zeros((80, d))
    long_calls[:, :sub] = rng.standard_normal((80, sub))
    long_calls /= np.linalg.norm(long_calls, axis=1, keepdims=True)
    alike = np.zeros((3, d))  # three voices, pairwise cosine 0.5: a shared part and their own
    alike[:, 0] = np.sqrt(0.5)
    alike[:, 1:4] = np.sqrt(0.5) * np.eye(3)
    w = np.zeros(d)
    w[4:sub] = rng.standard_normal(sub - 4)
    w /= np.linalg.norm(w)
    clips = a * w + np.sqrt(1 - a**2) * np.eye(d)[sub : sub + 3]  # noise orthogonal to every voice
    v = np.concatenate([long_calls, alike, clips]).astype(np.float32)
    owners = [f"b{i}" for i in range(80)] + ["x0", "x1", "x2"] + ["y0", "y1", "y2"]
    calls = owners[:83] + ["clip0", "clip1", "clip2"]
    cos = v @ v.T
    assert cos[83, 84] == pytest.approx(a**2, abs=1e-5) and cos[80, 81] == pytest.approx(0.5, abs=1e-5)
    assert cos[83, 84] < cos[80, 81]  # by cosine the look-alikes come first
    rings = A.find_rings(v, calls, owners, min_borrowers=3, link_threshold=2.3, k=10)
    assert [sorted(r.calls) for r in rings] == [["clip0", "clip1", "clip2"]]
    assert rings[0].cohesion == pytest.approx(a**2, abs=1e-3)  # cohesion stays a mean cosine


def test_a_chain_of_look_alikes_is_not_one_voice():
    """A sounds like B and B like C, but A only a little like C: every pair of a ring must link
    (average linkage would join C to A and B: the mean of its two link scores clears the bar)."""
    rng = np.random.default_rng(970)
    background = samples(centres(1, rng)[0], 60, rng, noise=3.0)  # near-random directions
    e = np.eye(D, dtype=np.float32)
    chain = np.stack([np.cos(t) * e[0] + np.sin(t) * e[1] for t in np.deg2rad([0.0, 35.0, 70.0])])
    v = np.concatenate([background, chain])
    owners = [f"b{i}" for i in range(60)] + ["A", "B", "C"]
    calls = owners[:60] + ["a", "b", "c"]
    mean, sd, _ = A.cohort_stats(v, owners)
    z = A.link_scores(v[60:] @ v[60:].T, mean[60:, None], sd[60:, None], mean[60:], sd[60:])
    assert min(z[0, 1], z[1, 2]) > 4.5 and z[0, 2] < 3.0 and (z[0, 2] + z[1, 2]) / 2 > 3.5
    assert A.find_rings(v, calls, owners, min_borrowers=3, link_threshold=3.5, k=10) == []
    pairs = A.find_rings(v, calls, owners, min_borrowers=2, link_threshold=3.5, k=10)
    assert len(pairs) == 1 and sorted(pairs[0].calls) in (["a", "b"], ["b", "c"])


def test_default_link_is_stricter_for_pairs_than_for_three_borrowers():
    """Three calls that all link at a score between the two defaults are a ring of three borrowers,
    but no two of them are reported as a pair ring (min_borrowers 2 asks for a stronger link)."""
    assert A.ring_link_threshold(2) == A.RING_PAIR_LINK_THRESHOLD > A.ring_link_threshold(3) == A.RING_LINK_THRESHOLD
    e = np.eye(D, dtype=np.float32)
    u = (e[1] + e[2] + e[3]) / np.sqrt(3.0)  # other borrowers' calls lean a little towards or away from the three
    alpha = np.where(np.arange(60) % 2 == 0, 0.15, -0.15)[:, None]
    background = alpha * u + np.sqrt(1 - alpha**2) * e[4:64]
    owners = [f"b{i}" for i in range(60)] + ["A", "B", "C"]
    calls = owners[:60] + ["a", "b", "c"]
    for share in np.linspace(0.05, 0.95, 91):  # three calls with a common part of this weight
        trio = np.sqrt(share) * e[0] + np.sqrt(1 - share) * e[1:4]
        v = np.concatenate([background, trio]).astype(np.float32)
        mean, sd, _ = A.cohort_stats(v, owners)
        z = A.link_scores(v[60:] @ v[60:].T, mean[60:, None], sd[60:, None], mean[60:], sd[60:])
        pair_z = z[np.triu_indices(3, 1)]
        if pair_z.min() > A.RING_LINK_THRESHOLD + 0.1 and pair_z.max() < A.RING_PAIR_LINK_THRESHOLD - 0.1:
            break
    else:
        pytest.fail("no trio with link scores between the two defaults")
    trios = A.find_rings(v, calls, owners, min_borrowers=3, k=10)
    assert [sorted(r.calls) for r in trios] == [["a", "b", "c"]]
    assert A.find_rings(v, calls, owners, min_borrowers=2, k=10) == []


# --- watchlist ----------------------------------------------------------------------------------


def test_centre_gives_unit_rows():
    rng = np.random.default_rng(1100)
    x = samples(centres(1, rng)[0], 20, rng)
    c = A.centre(x)
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    assert abs(float((c @ c.T).mean())) < 0.1


# --- cross-call scoring space -------------------------------------------------------------------


def _raw_calls(n: int, rng: np.random.Generator, d: int = 256) -> np.ndarray:
    x = np.abs(rng.standard_normal((n, d))) + 0.5  # GE2E-like: all-positive rows, a large shared mean
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_scoring_space_uses_the_shipped_backend_recentred_on_the_calls(tmp_path):
    from voicecheck.config import Settings
    from voicecheck.crosscall import scoring_space
    from voicecheck.scorer import load_backend
    from voicecheck.scoring import with_domain_mean

    settings = Settings(embeddings=str(tmp_path), model="ge2e")
    rng = np.random.default_rng(0)
    x = _raw_calls(60, rng)
    backend = load_backend(settings, "ge2e", "ge2e-resemblyzer-0.1.4")
    assert backend is not None, "GE2E ships a back-end"
    y = scoring_space(settings, x, block=7)  # several blocks
    assert y.shape == (60, backend.output_dimension) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(y, with_domain_mean(backend, x).transform(x), atol=1e-5)
    # a channel offset shared by every call is removed with the domain mean
    shifted = scoring_space(settings, x + 0.3 * x.mean(axis=0))
    np.testing.assert_allclose(shifted, y, atol=1e-4)


def test_scoring_space_keeps_the_shipped_mean_for_a_few_calls(tmp_path):
    from voicecheck.config import Settings
    from voicecheck.crosscall import scoring_space
    from voicecheck.scorer import load_backend

    settings = Settings(embeddings=str(tmp_path), model="ge2e")
    x = _raw_calls(2, np.random.default_rng(1))
    y = scoring_space(settings, x)
    np.testing.assert_allclose(y, load_backend(settings, "ge2e", "ge2e-resemblyzer-0.1.4").transform(x), atol=1e-5)
    assert float(y[0] @ y[1]) > -0.9  # two calls centred on their own mean would be antipodal


def test_scoring_space_without_a_backend_centres(tmp_path):
    from voicecheck.config import Settings
    from voicecheck.crosscall import scoring_space

    settings = Settings(embeddings=str(tmp_path), model="ge2e", backend_file="")
    x = _raw_calls(40, np.random.default_rng(2))
    y = scoring_space(settings, x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, A.centre(x), atol=1e-5)
    with pytest.raises(UsageError):
        scoring_space(settings, x[0])


def test_ineligible_calls_join_no_ring_but_the_rest_still_do():
    rng = np.random.default_rng(1000)
    v, calls, borrowers, truth = ring_world(rng)
    out = calls.index(next(c for c in truth if truth[c] == 0))  # one call of voice 0 is verified
    eligible = np.ones(len(calls), dtype=bool)
    eligible[out] = False
    rings = A.find_rings(v, calls, borrowers, min_borrowers=2, link_threshold=4.0, k=10, eligible=eligible)
    flagged = {c for r in rings for c in r.calls}
    assert flagged == set(truth) - {calls[out]}
    every = np.ones(len(calls), dtype=bool)
    all_in = A.find_rings(v, calls, borrowers, min_borrowers=2, link_threshold=4.0, k=10, eligible=every)
    assert {c for r in all_in for c in r.calls} == set(truth)
    none = np.zeros(len(calls), dtype=bool)
    none[:1] = True
    assert A.find_rings(v, calls, borrowers, min_borrowers=2, link_threshold=4.0, k=10, eligible=none) == []
    with pytest.raises(UsageError, match="one flag per call"):
        A.find_rings(v, calls, borrowers, eligible=eligible[:-1])
