"""Benchmark of voicecheck.analysis on real speech through a simulated telephone channel.

What it measures (GE2E, every clip passed through voicecheck.channel.simulate_call_side: 300-3400 Hz,
8 kHz, noise at 10-30 dB SNR, G.711 mu-law; windows embedded with voicecheck.pipeline.Engine):

* takeovers: LibriSpeech speakers, enrolled on the first 5 s of their utterance; a genuine call is
  the rest of it; a takeover call is 5-7 s of the borrower then 5-8 s of another speaker, mixed
  as one recording. Flag rate of detect_speaker_change on takeovers, false flags on genuine calls.
* rings: borrowers (LibriSpeech) with one genuine call each (plus a second for some); impostor
  voices (speakers with several recordings: VCTK, Asterisk prompts, AMI, sherpa, picovoice, CMU,
  and some LibriSpeech speakers cut into pieces) each make calls for 2-4 borrowers. Precision and
  recall of find_rings at the call level and the voice level.
* voices per borrower: the same population seen per borrower; a borrower with an impostor call
  should split, one with only genuine calls should not.
* two speakers on one channel: AMI / pyannote conversations (RTTM beside each file), purity and
  coverage of split_two_speakers against the two main speakers; one-speaker calls wrongly split.

Speakers are split into TUNE and EVAL halves by a hash of their id; every threshold is chosen on
TUNE and reported on EVAL. Embeddings are cached in benchmarks/.cache/analysis.npz (--cache).

Usage: python benchmarks/analysis.py --speech ../shared/speech --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from voicecheck import analysis as A  # noqa: E402

RATE = 16000
ENROLL_S = 5.0
MULTI_SOURCES = {
    "vctk_autovc",
    "telephone_asterisk_prompts_debian",
    "ami_segments_pyannote_tests",
    "sherpa_sr-data",
    "picovoice_eagle_samples",
    "cmu_arctic_pyroomacoustics",
}


def speaker_key(source: str, speaker: str) -> str:
    if speaker.startswith("allison_smith"):
        speaker = "allison_smith"  # the same voice talent in two folders
    if source == "sherpa_sr-data" and speaker.startswith("3dspk_"):
        speaker = speaker.rsplit("_", 1)[0]  # same person in English and Mandarin
    return f"{source}/{speaker}"


def split_of(key: str) -> str:
    return "tune" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 0 else "eval"


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12], 16))


# --- embedding (cached) ---------------------------------------------------------------------------


class Embedder:
    def __init__(self) -> None:
        import torch

        from voicecheck.config import Settings
        from voicecheck.pipeline import Engine

        self.engine = Engine(Settings())
        torch.set_num_threads(1)

    def call(self, samples_16k: np.ndarray, seed: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """Telephone-simulate 16 kHz speech and embed it: (windows (n,d), times (n,2)) or None."""
        from voicecheck.channel import simulate_call_side
        from voicecheck.errors import InsufficientSpeechError
        from voicecheck.types import Audio

        narrow = simulate_call_side(samples_16k, RATE, rng_for(*seed))
        try:
            e = self.engine.embed_audio(Audio(narrow, 8000, file_sample_rate=8000, subtype="ULAW"))
        except InsufficientSpeechError:
            return None
        return e.windows.astype(np.float32), e.window_times_s.astype(np.float32)


def read(path: Path) -> np.ndarray:
    import soundfile as sf

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == RATE, path
    return x[:, 0]


def build_cache(speech: Path, cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        return dict(np.load(cache, allow_pickle=False))
    rows = list(csv.DictReader(open(speech / "MANIFEST.csv", encoding="utf-8")))
    emb = Embedder()
    out: dict[str, np.ndarray] = {}
    t0 = time.time()

    def put(name: str, got: tuple[np.ndarray, np.ndarray] | None) -> None:
        if got is not None:
            out[f"{name}|w"], out[f"{name}|t"] = got

    libri = [r for r in rows if r["source"].startswith("librispeech") and float(r["seconds"]) >= 12.0]
    libri.sort(key=lambda r: r["speaker"])
    audio = {r["speaker"]: read(speech / r["file"]) for r in libri}
    speakers = list(audio)
    for i, spk in enumerate(speakers):
        x = audio[spk]
        key = speaker_key(libri[0]["source"], spk)
        cut = int(ENROLL_S * RATE)
        put(f"enroll/{key}", emb.call(x[:cut], ("enroll", key)))
        put(f"genuine/{key}", emb.call(x[cut:], ("genuine", key)))
        # takeover: 5-7 s of the borrower, then 5-8 s of another speaker of the same half
        r = rng_for("takeover", key)
        same_half = [s for s in speakers if s != spk and split_of(speaker_key(libri[0]["source"], s)) == split_of(key)]
        other = same_half[int(r.integers(len(same_half)))]
        y = audio[other]
        own = x[cut : cut + int(r.uniform(5.0, 7.0) * RATE)]
        take = int(r.uniform(5.0, 8.0) * RATE)
        start = int(r.integers(0, max(1, len(y) - take)))
        gap = np.zeros(int(0.3 * RATE), np.float32)
        put(
            f"takeover/{key}|{other}|{len(own) / RATE:.3f}",
            emb.call(np.concatenate([own, gap, y[start : start + take]]), ("takeover", key)),
        )
        if i % 20 == 0:
            print(f"  libri {i}/{len(speakers)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    multi = [r for r in rows if r["source"] in MULTI_SOURCES]
    for i, r in enumerate(multi):
        key = speaker_key(r["source"], r["speaker"])
        put(f"multi/{key}/{r['utterance']}", emb.call(read(speech / r["file"]), ("multi", r["file"])))
        if i % 40 == 0:
            print(f"  multi {i}/{len(multi)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    for rttm in sorted(speech.glob("conversations_*/*/*.rttm")):
        flac = rttm.with_suffix(".flac")
        put(f"conv/{rttm.parent.parent.name}/{rttm.stem}", emb.call(read(flac), ("conv", str(flac))))
    print(f"  embedded {len(out) // 2} clips in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


# --- evaluation ----------------------------------------------------------------------------------


def unit(x: np.ndarray) -> np.ndarray:
    return A._unit(np.asarray(x, np.float32))


class Clips:
    """The cached windows, organised by role."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self.w = {k[:-2]: v for k, v in data.items() if k.endswith("|w")}
        self.t = {k: data[k + "|t"] for k in self.w}
        self.libri = sorted(
            k.split("/", 1)[1] for k in self.w if k.startswith("genuine/") and f"enroll/{k[8:]}" in self.w
        )
        self.takeovers = sorted(k for k in self.w if k.startswith("takeover/"))
        multi: dict[str, list[str]] = defaultdict(list)
        for k in sorted(self.w):
            if k.startswith("multi/"):
                _, src, spk, _ = k.split("/", 3)
                multi[f"{src}/{spk}"].append(k)
        self.multi = {spk: clips for spk, clips in multi.items() if len(clips) >= 2}
        self.conv = sorted(k for k in self.w if k.startswith("conv/"))

    def vector(self, name: str, sl: slice = slice(None)) -> np.ndarray:
        return unit(self.w[name][sl].mean(axis=0))


def eer_threshold(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    cands = np.unique(np.concatenate([genuine, impostor]))
    miss = np.array([np.mean(genuine < c) for c in cands])
    fa = np.array([np.mean(impostor >= c) for c in cands])
    i = int(np.argmin(np.abs(miss - fa)))
    return float(cands[i]), float((miss[i] + fa[i]) / 2)


def centred_score(mean: np.ndarray, enroll: np.ndarray):
    e = unit(enroll - mean)
    return lambda rows: unit(np.atleast_2d(rows) - mean) @ e


def takeover_sets(c: Clips, half: str, mean: np.ndarray, rng: np.random.Generator):
    """(genuine calls, takeover calls) of one half: dicts of windows, times, enroll, truth."""
    genuine, take = [], []
    for key in c.libri:
        if split_of(key) == half:
            genuine.append(
                dict(w=c.w[f"genuine/{key}"], t=c.t[f"genuine/{key}"], enroll=c.vector(f"enroll/{key}"), kind="libri")
            )
    for spk, clips in c.multi.items():  # long genuine calls: two other recordings of a voice back to back
        if split_of(spk) != half or len(clips) < 3:
            continue
        for _ in range(3):
            e, a, b = rng.choice(len(clips), 3, replace=False)
            w = np.concatenate([c.w[clips[a]], c.w[clips[b]]])
            t1 = c.t[clips[a]]
            t = np.concatenate([t1, c.t[clips[b]] + t1[-1, 1] + 0.5])
            genuine.append(dict(w=w, t=t, enroll=c.vector(clips[e]), kind="multi"))
    for name in c.takeovers:
        key, other, own_s = name.split("/", 1)[1].split("|")
        if split_of(key) == half and f"enroll/{key}" in c.w:
            take.append(dict(w=c.w[name], t=c.t[name], enroll=c.vector(f"enroll/{key}"), change_s=float(own_s) + 0.15))
    return genuine, take


def run_takeover(calls, mean, thr, margin, max_cos, min_seg=4.0):
    out = []
    for call in calls:
        fn = centred_score(mean, call["enroll"])
        out.append(A.detect_speaker_change(call["w"], call["t"], call["enroll"], fn, thr, min_seg, margin, max_cos))
    return out


def ring_population(c: Clips, half: str, seed: int):
    """Call vectors, ids, borrower ids and the impostor voice of each call (None for genuine)."""
    rng = np.random.default_rng(seed)
    libri = [k for k in c.libri if split_of(k) == half]
    rng.shuffle(libri)
    libri_imp, borrowers = libri[:5], libri[5:]
    vecs, ids, owners, voice = [], [], [], []

    def add(v, call_id, owner, who):
        vecs.append(v), ids.append(call_id), owners.append(owner), voice.append(who)

    for b in borrowers:
        add(c.vector(f"genuine/{b}"), f"{b}/genuine", b, None)
        if rng.random() < 0.5:
            add(c.vector(f"enroll/{b}"), f"{b}/second", b, None)
    impostors: dict[str, list[np.ndarray]] = {}
    for spk, clips in c.multi.items():
        if split_of(spk) == half:
            impostors[spk] = [c.vector(k) for k in clips]
    for k in libri_imp:  # one recording cut into pieces of >= 3.2 s
        w = c.w[f"genuine/{k}"]
        pieces = [unit(p.mean(axis=0)) for p in np.array_split(w, max(2, min(3, len(w) // 4)))]
        impostors[f"libri/{k}"] = pieces + [c.vector(f"enroll/{k}")]
    for spk, pieces in impostors.items():
        n = int(min(len(pieces), rng.integers(2, 5)))
        served = rng.choice(len(borrowers), n, replace=False)
        for j, (b, p) in enumerate(zip(served, rng.permutation(len(pieces))[:n])):
            add(pieces[p], f"{borrowers[b]}/by-{spk}-{j}", borrowers[b], spk)
    return np.array(vecs), ids, owners, voice


def ring_scores(rings, ids, owners, voice, min_b):
    by_voice: dict[str, set] = defaultdict(set)
    for o, v in zip(owners, voice, strict=True):
        if v is not None:
            by_voice[v].add(o)
    positive_voices = {v for v, bs in by_voice.items() if len(bs) >= min_b}
    pos = {i for i, v in zip(ids, voice, strict=True) if v in positive_voices}
    who = dict(zip(ids, voice, strict=True))
    flagged = {cid for r in rings for cid in r.calls}
    tp = len(flagged & pos)
    found = set()
    for r in rings:
        vs = [who[cid] for cid in r.calls]
        top = max(set(vs), key=vs.count)
        if top is not None:
            found.add(top)
    return tp, len(flagged), len(pos), len(found & positive_voices), len(positive_voices)


def rings_eval(c: Clips, half: str, mean: np.ndarray | None, thr: float, min_b: int, seeds=range(5)):
    tot = np.zeros(5)
    for seed in seeds:
        v, ids, owners, voice = ring_population(c, half, seed)
        x = v if mean is None else A.centre(v, mean)
        rings = A.find_rings(x, ids, owners, min_borrowers=min_b, link_threshold=thr, k=20)
        tot += ring_scores(rings, ids, owners, voice, min_b)
    tp, flagged, pos, vf, vp = tot
    return dict(
        precision=tp / flagged if flagged else 1.0,
        recall=tp / pos if pos else 1.0,
        voice_recall=vf / vp if vp else 1.0,
        positives=pos / len(seeds),
        flagged=flagged / len(seeds),
    )


def voices_population(c: Clips, half: str, seed: int):
    """Borrowers with several genuine calls; half of them with one more call in another voice."""
    rng = np.random.default_rng(seed)
    others = [f"genuine/{k}" for k in c.libri if split_of(k) == half]
    cases = []
    for spk, clips in c.multi.items():
        if split_of(spk) == half and len(clips) >= 3:
            own = [c.vector(k) for k in rng.choice(clips, 3, replace=False)]
            cases.append((own, False))
    for k in c.libri:
        if split_of(k) == half:
            cases.append(([c.vector(f"genuine/{k}"), c.vector(f"enroll/{k}")], False))
    out = []
    for own, _ in cases:
        out.append((own, False))
        intruder = others[int(rng.integers(len(others)))]
        out.append((own + [c.vector(intruder)], True))
    return out


def voices_eval(c, half, mean, thr, seeds=range(3)):
    flagged = {True: [], False: []}
    for seed in seeds:
        for calls, two in voices_population(c, half, seed):
            v = np.array(calls)
            x = v if mean is None else A.centre(v, mean)
            flagged[two].append(bool(A.voices_per_borrower(x, [str(i) for i in range(len(v))], thr)))
    return float(np.mean(flagged[True])), float(np.mean(flagged[False])), len(flagged[True])


def rttm_truth(path: Path, times: np.ndarray):
    segs = defaultdict(list)
    for line in open(path, encoding="utf-8"):
        f = line.split()
        if f and f[0] == "SPEAKER":
            segs[f[7]].append((float(f[3]), float(f[3]) + float(f[4])))
    main = sorted(segs, key=lambda s: -sum(b - a for a, b in segs[s]))[:2]
    truth = np.full(len(times), -1)
    for i, (a, b) in enumerate(times):
        cover = {s: sum(max(0.0, min(b, y) - max(a, x)) for x, y in segs[s]) for s in segs}
        best = max(cover, key=cover.get)
        others = sum(v for s, v in cover.items() if s != best)
        if best in main and cover[best] >= 0.5 * (b - a) and others < 0.25 * (b - a):
            truth[i] = main.index(best)
    return truth, len(segs)


def purity_coverage(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    keep = truth >= 0
    lab, tr = labels[keep], truth[keep]
    if len(tr) == 0:
        return float("nan"), float("nan")
    pur = sum(np.bincount(tr[lab == c]).max() for c in np.unique(lab)) / len(tr)
    cov = sum(np.bincount(lab[tr == s]).max() for s in np.unique(tr)) / len(tr)
    return float(pur), float(cov)


def synthetic_two(c: Clips, half: str, seed: int):
    """Two LibriSpeech voices in alternating turns of 3-6 windows (window-level mixing)."""
    rng = np.random.default_rng(seed)
    keys = [k for k in c.libri if split_of(k) == half]
    a, b = rng.choice(keys, 2, replace=False)
    src = [list(c.w[f"genuine/{a}"]) + list(c.w[f"enroll/{a}"]), list(c.w[f"genuine/{b}"]) + list(c.w[f"enroll/{b}"])]
    w, truth, who = [], [], 0
    while src[0] and src[1]:
        n = int(rng.integers(3, 7))
        take, src[who] = src[who][:n], src[who][n:]
        w += take
        truth += [who] * len(take)
        who = 1 - who
    return np.array(w), np.array(truth)


def split_eval(c: Clips, half: str, max_cos: float, n_two: int = 60):
    times = lambda n: np.stack([np.arange(n) * 0.8, np.arange(n) * 0.8 + 1.6], axis=1)  # noqa: E731
    one = []
    for k in c.libri:
        if split_of(k) == half:
            w = c.w[f"genuine/{k}"]
            one.append(bool(A.split_two_speakers(w, c.t[f"genuine/{k}"], max_cos).any()))
    pur, cov, split = [], [], []
    for seed in range(n_two):
        w, truth = synthetic_two(c, half, seed)
        lab = A.split_two_speakers(w, times(len(w)), max_cos)
        split.append(bool(lab.any()))
        p, q = purity_coverage(lab, truth)
        pur.append(p), cov.append(q)
    return float(np.mean(one)), float(np.mean(split)), float(np.mean(pur)), float(np.mean(cov))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", default="../shared/speech", type=Path)
    p.add_argument("--out", default=Path(__file__).parent / "results", type=Path)
    p.add_argument(
        "--cache",
        default=Path(__file__).parent / ".cache" / "analysis.npz",
        type=Path,
        help="embeddings cache (not to be committed)",
    )
    args = p.parse_args()
    t0 = time.time()
    c = Clips(build_cache(args.speech, args.cache))
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    n_tune = sum(split_of(k) == "tune" for k in c.libri) + sum(split_of(k) == "tune" for k in c.multi)
    n_eval = sum(split_of(k) == "eval" for k in c.libri) + sum(split_of(k) == "eval" for k in c.multi)
    say("# voicecheck.analysis benchmark (GE2E, simulated 8 kHz mu-law calls)")
    say("")
    say(
        f"{len(c.libri)} LibriSpeech speakers, {len(c.multi)} speakers with several recordings, "
        f"{len(c.conv)} conversations; speakers split TUNE {n_tune} / EVAL {n_eval} by hash. "
        "Thresholds chosen on TUNE, figures on EVAL unless marked. Scores: centred cosine (domain mean = "
        "mean of TUNE call vectors), the scale voicecheck's cosine mode uses once it has a cohort."
    )
    tune_vecs = [c.vector(f"genuine/{k}") for k in c.libri if split_of(k) == "tune"]
    tune_vecs += [c.vector(k) for s, ks in c.multi.items() if split_of(s) == "tune" for k in ks]
    mean = np.mean(tune_vecs, axis=0).astype(np.float32)

    # 1:1 threshold stand-in: EER threshold of full genuine calls vs other speakers' calls on TUNE
    def one_to_one(half):
        keys = [k for k in c.libri if split_of(k) == half]
        e = A.centre(np.array([c.vector(f"enroll/{k}") for k in keys]), mean)
        g = A.centre(np.array([c.vector(f"genuine/{k}") for k in keys]), mean)
        s = g @ e.T
        return np.diag(s), s[~np.eye(len(keys), dtype=bool)]

    thr, eer_t = eer_threshold(*one_to_one("tune"))
    g_e, i_e = one_to_one("eval")
    say("")
    say(
        f"## 1:1 check (context)\n\nthreshold (TUNE EER) {thr:.3f} centred cosine; TUNE EER {eer_t:.1%}; EVAL: genuine "
        f"below threshold {np.mean(g_e < thr):.1%}, other speakers at/above {np.mean(i_e >= thr):.1%}."
    )

    # --- takeovers
    rng = np.random.default_rng(1)
    gen_t, take_t = takeover_sets(c, "tune", mean, rng)
    gen_e, take_e = takeover_sets(c, "eval", mean, rng)
    best = None
    for margin in (0.0, 0.05, 0.1, 0.15, 0.2):
        for max_cos in np.arange(0.70, 0.951, 0.01):
            ff = np.mean([r is not None for r in run_takeover(gen_t, mean, thr, margin, max_cos)])
            hit = np.mean([r is not None for r in run_takeover(take_t, mean, thr, margin, max_cos)])
            key = (ff <= 0.02, hit, -ff, margin, -max_cos)
            if best is None or key > best[0]:
                best = (key, margin, max_cos, hit, ff)
    _, margin, max_cos, hit_t, ff_t = best
    res_take = run_takeover(take_e, mean, thr, margin, max_cos)
    res_gen = run_takeover(gen_e, mean, thr, margin, max_cos)
    whole = np.array([float(centred_score(mean, t["enroll"])(unit(t["w"].mean(axis=0)))[0]) for t in take_e])
    flagged = np.array([r is not None for r in res_take])
    errors = [abs(r.change_s - t["change_s"]) for r, t in zip(res_take, take_e, strict=True) if r is not None]
    later = np.mean([r.which == "later" for r in res_take if r is not None]) if flagged.any() else float("nan")
    gen_flag = np.array([r is not None for r in res_gen])
    kinds = np.array([g["kind"] for g in gen_e])
    say("")
    say("## Takeover within a call (detect_speaker_change, min_segment_s=4)")
    say("")
    say(
        f"chosen on TUNE: margin={margin:.2f} (centred-cosine scale), max_side_cosine={max_cos:.2f} (raw GE2E); "
        f"TUNE: takeovers flagged {hit_t:.1%}, genuine flagged {ff_t:.1%}"
    )
    say("")
    say("| EVAL | n | flagged |")
    say("|---|---:|---:|")
    say(f"| takeover calls (borrower 5-7 s, then another speaker 5-8 s) | {len(take_e)} | {flagged.mean():.1%} |")
    say(
        f"| - of which the whole-call 1:1 check already fails | {int((whole < thr).sum())} | "
        f"{flagged[whole < thr].mean() if (whole < thr).any() else float('nan'):.1%} |"
    )
    say(
        f"| - of which the 1:1 check passes (what this check adds) | {int((whole >= thr).sum())} | "
        f"{flagged[whole >= thr].mean() if (whole >= thr).any() else float('nan'):.1%} |"
    )
    say(f"| takeovers caught by 1:1 or speaker change | {len(take_e)} | {np.mean(flagged | (whole < thr)):.1%} |")
    say(f"| genuine calls, all | {len(gen_e)} | {gen_flag.mean():.1%} |")
    say(
        f"| - LibriSpeech 7-12 s, one recording | {int((kinds == 'libri').sum())} | {gen_flag[kinds == 'libri'].mean():.1%} |"
    )
    say(
        f"| - two recordings of one voice back to back | {int((kinds == 'multi').sum())} | "
        f"{gen_flag[kinds == 'multi'].mean() if (kinds == 'multi').any() else float('nan'):.1%} |"
    )
    say("")
    say(
        f"change time error on flagged takeovers: median {np.median(errors):.2f} s, 90th pct "
        f"{np.percentile(errors, 90):.2f} s; side reported 'later' in {later:.0%}."
    )

    # --- rings
    say("")
    say("## Rings (find_rings, k=20): impostor voices each speaking for 2-4 borrowers")
    say("")
    v, ids, owners, voice = ring_population(c, "eval", 0)
    say(
        f"one EVAL population: {len(ids)} calls, {len(set(owners))} borrowers, {sum(x is not None for x in voice)} impostor "
        f"calls from {len({x for x in voice if x})} voices; 5 random assignments per half."
    )
    say("")
    say("| scale | min_borrowers | link_threshold (TUNE) | precision | recall | voices found | TUNE P / R |")
    say("|---|---:|---:|---:|---:|---:|---|")
    chosen = {}
    for scale, m in (("centred", mean), ("raw", None)):
        grid = np.arange(0.30, 0.96, 0.025) if m is not None else np.arange(0.60, 0.991, 0.01)
        for min_b in (2, 3):
            best = None
            for thr_r in grid:
                r = rings_eval(c, "tune", m, float(thr_r), min_b, seeds=range(3))
                f1 = 2 * r["precision"] * r["recall"] / max(1e-9, r["precision"] + r["recall"])
                key = (r["precision"] >= 0.9, f1)
                if best is None or key > best[0]:
                    best = (key, float(thr_r), r)
            _, thr_r, rt = best
            re = rings_eval(c, "eval", m, thr_r, min_b)
            chosen[(scale, min_b)] = thr_r
            say(
                f"| {scale} | {min_b} | {thr_r:.3f} | {re['precision']:.2f} | {re['recall']:.2f} | "
                f"{re['voice_recall']:.2f} | {rt['precision']:.2f} / {rt['recall']:.2f} |"
            )

    # --- voices per borrower
    say("")
    say("## Voices per borrower (voices_per_borrower, average linkage)")
    say("")
    say(
        "| scale | threshold (TUNE) | EVAL: two-voice borrowers split | one-voice borrowers split | TUNE split / false |"
    )
    say("|---|---:|---:|---:|---|")
    for scale, m, grid in (("centred", mean, np.arange(0.1, 0.9, 0.025)), ("raw", None, np.arange(0.5, 0.99, 0.01))):
        best = None
        for th in grid:
            hit, false, _ = voices_eval(c, "tune", m, float(th), seeds=range(2))
            key = (false <= 0.05, hit - false)
            if best is None or key > best[0]:
                best = (key, float(th), hit, false)
        _, th, hit_t2, false_t = best
        hit, false, n = voices_eval(c, "eval", m, th)
        chosen[("voices", scale)] = th
        say(f"| {scale} | {th:.3f} | {hit:.1%} | {false:.1%} | {hit_t2:.1%} / {false_t:.1%} |")

    # --- two speakers on one channel
    say("")
    say("## Two speakers on one channel (split_two_speakers)")
    say("")
    best = None
    for mc in np.arange(0.6, 0.96, 0.025):
        one, split, pur, cov = split_eval(c, "tune", float(mc))
        key = (one <= 0.05, split + pur)
        if best is None or key > best[0]:
            best = (key, float(mc))
    mc = best[1]
    one, split, pur, cov = split_eval(c, "eval", mc)
    say(f"max_centroid_cosine chosen on TUNE: {mc:.3f}")
    say("")
    say("| EVAL data | n | split found | purity | coverage |")
    say("|---|---:|---:|---:|---:|")
    say(f"| one-speaker calls (LibriSpeech, 7-12 s) | {sum(split_of(k) == 'eval' for k in c.libri)} | {one:.1%} | | |")
    say(f"| two LibriSpeech voices, alternating turns of 2.4-4.8 s | 60 | {split:.1%} | {pur:.2f} | {cov:.2f} |")
    rows = []
    for name in c.conv:
        src = name.split("/")[1]
        rttm = args.speech / src / "mix" / f"{name.split('/')[2]}.rttm"
        truth, n_spk = rttm_truth(rttm, c.t[name])
        lab = A.split_two_speakers(c.w[name], c.t[name], mc)
        pr, cv = purity_coverage(lab, truth)
        rows.append((pr, cv, bool(lab.any()), n_spk, name))
    say(
        f"| AMI / pyannote conversations, 30 s, vs the 2 main RTTM speakers | {len(rows)} | "
        f"{np.mean([r[2] for r in rows]):.0%} | {np.nanmean([r[0] for r in rows]):.2f} | {np.nanmean([r[1] for r in rows]):.2f} |"
    )
    say("")
    say("Conversations (purity / coverage on windows with one main speaker; 'one' = kept as one voice):")
    say("")
    say(", ".join(f"{r[4].split('/')[-1]} ({r[3]} spk) {r[0]:.2f}/{r[1]:.2f}{'' if r[2] else ' one'}" for r in rows))
    say("")
    say(
        "Notes: calls here are short (genuine 7-12 s, impostor clips 1-17 s, enrollments 5 s) and GE2E at 8 kHz "
        "separates voices weakly at that length (1:1 EER above); a same-voice pair of clips from different "
        "recordings reaches the 99.9th percentile of different-voice pairs only about a third of the time, "
        "which bounds ring recall at ring-level precision >= 0.9. 'Two recordings back to back' genuine calls "
        "(different sessions, some in two languages) are a stress case for the takeover check. AMI meeting "
        "audio is far-field; after the telephone channel and VAD only 9 of 14 conversations had enough speech."
    )
    say("")
    say(f"Run time {time.time() - t0:.0f} s (embeddings cached in {args.cache}).")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "analysis.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
