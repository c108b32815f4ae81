"""What benchmarks/analysis.py embeds: its clips and calls, simulated, embedded and cached.

Every clip goes through :func:`recipes.simulate.simulate_call_side` (300-3400 Hz, 8 kHz, noise at
10-30 dB SNR, G.711 mu-law) and the product's :class:`voicecheck.pipeline.Engine` (window
embeddings and their times). Four caches beside ``--cache`` (benchmarks/.cache/analysis-hop<hop>.npz):
the clips (LibriSpeech enrollment + call, recordings of multi-recording voices, conversations),
``-takeovers-v2`` (borrower then intruder), ``-calls-v2`` (the accuracy benchmark's calls, window by
window) and ``-longcalls-v1`` (ring calls of issue 3's length). Speakers are split as
``recipes/corpus.py`` splits them (seed 0); :func:`split_of` names a clip speaker's part.
"""

from __future__ import annotations

import csv
import hashlib
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recipes.corpus import load_utterances, read_corpus, split_speakers
from recipes.embed_cache import DEFAULT_CACHE, MODEL_KEY, Embeddings, precision_tag
from recipes.material import quiet_cut, speaker_material, telephone
from recipes.trials import product_cohort, scorer_settings
from voicecheck import analysis as A

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


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12], 16))


# --- embedding (cached) ---------------------------------------------------------------------------


class ClipEmbedder:
    """Simulates a 16 kHz clip's telephone channel and embeds its windows with the product's Engine,
    on the fine timeline (every call refined: windows every ``hop_s / 2`` when the model's windows go
    back to back). The product's coarse timeline is every other of those windows
    (:func:`voicecheck.embedders.base.coarse_of_fine`, exactly), so one cache serves both."""

    def __init__(self) -> None:
        import torch

        from voicecheck.config import Settings
        from voicecheck.pipeline import Engine

        self.engine = Engine(Settings())
        torch.set_num_threads(1)

    def embed(self, audio):  # noqa: ANN001, ANN201 - voicecheck.types.Audio -> CallEmbedding
        """``Engine.embed_audio`` with every call refined."""
        return self.engine.embed_audio(audio, refine=lambda emb: "benchmark")

    def call(self, samples_16k: np.ndarray, seed: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """Telephone-simulate 16 kHz speech and embed it: (windows (n,d), times (n,2)) or None."""
        from recipes.simulate import simulate_call_side
        from voicecheck.errors import InsufficientSpeechError
        from voicecheck.types import Audio

        narrow = simulate_call_side(samples_16k, RATE, rng_for(*seed))
        try:
            e = self.embed(Audio(narrow, 8000, file_sample_rate=8000, subtype="ULAW"))
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
    with open(speech / "MANIFEST.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    emb = ClipEmbedder()
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


# --- the split, shared with the back-end ----------------------------------------------------------

_PART: dict[str, str] = {}


def load_split(speech: Path, seed: int = 0) -> dict[str, list]:
    """The TRAIN / TUNE / EVAL split of recipes/corpus.py (the one the shipped LDA was trained on)."""
    speakers = read_corpus(speech)
    split = split_speakers(speakers, seed)
    _PART.clear()
    _PART.update({s.key: part for part, group in split.items() for s in group})
    return {"speakers": speakers, **split}


def split_of(key: str) -> str | None:
    """ "train", "tune" or "eval" for a speaker key of this benchmark; None when the split does not
    name the speaker (the sherpa English/Mandarin folders merged here but not there: left out)."""
    src, spk = key.split("/", 1)
    if src == "telephone_asterisk_prompts_debian" and spk == "allison_smith":
        spk = "allison_smith_en"
    return _PART.get(f"{src}/{spk}")


def build_takeovers(speech: Path, cache: Path, libri_keys: list[str], per_borrower: int = 3) -> dict[str, np.ndarray]:
    """Takeover calls of TUNE and EVAL LibriSpeech borrowers, the intruder from the same part.

    Each: 5-7 s of the borrower (right after the 5 s enrollment), 0.3 s of silence, 5-8 s of
    another speaker; ``per_borrower`` different intruders. Cached in ``cache``.
    """
    if cache.exists():
        return dict(np.load(cache, allow_pickle=False))
    with open(speech / "MANIFEST.csv", encoding="utf-8") as f:
        rows = {r["speaker"]: r for r in csv.DictReader(f) if r["source"].startswith("librispeech")}
    keys = [k for k in libri_keys if split_of(k) in ("tune", "eval")]
    audio = {k: read(speech / rows[k.split("/", 1)[1]]["file"]) for k in keys}
    emb = ClipEmbedder()
    out: dict[str, np.ndarray] = {}
    t0 = time.time()
    cut = int(ENROLL_S * RATE)
    for i, key in enumerate(keys):
        same = [k for k in keys if k != key and split_of(k) == split_of(key)]
        r = rng_for("takeover-v2", key)
        for other in r.choice(same, min(per_borrower, len(same)), replace=False):
            x, y = audio[key], audio[other]
            own = x[cut : cut + int(r.uniform(5.0, 7.0) * RATE)]
            take = int(r.uniform(5.0, 8.0) * RATE)
            start = int(r.integers(0, max(1, len(y) - take)))
            gap = np.zeros(int(0.3 * RATE), np.float32)
            got = emb.call(np.concatenate([own, gap, y[start : start + take]]), ("takeover-v2", key, other))
            if got is not None:
                name = f"takeover/{key}|{other.split('/', 1)[1]}|{len(own) / RATE:.3f}"
                out[f"{name}|w"], out[f"{name}|t"] = got
        if i % 10 == 0:
            print(f"  takeovers {i}/{len(keys)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


def build_calls(split: dict[str, list], cache: Path) -> dict[str, np.ndarray]:
    """Window embeddings of the TUNE and EVAL speakers' simulated calls (recipes/material.py).

    The same audio and noise as the accuracy benchmark's calls (so their mean vectors are that
    benchmark's call vectors); enrolled with the speaker's wideband enrollment, channel-matched
    (what the product stores), read from the accuracy cache. Cached in ``cache``.
    """
    if cache.exists():
        return dict(np.load(cache, allow_pickle=False))
    from voicecheck.errors import InsufficientSpeechError
    from voicecheck.types import Audio

    emb = ClipEmbedder()
    out: dict[str, np.ndarray] = {}
    for spk in split["tune"] + split["eval"]:
        _, calls = speaker_material(load_utterances(spk))
        for i, call in enumerate(calls):
            audio = Audio(telephone(call, 0, spk.key, "call", i), 8000, file_sample_rate=8000, subtype="ULAW")
            try:
                e = emb.embed(audio)
            except InsufficientSpeechError:
                continue
            out[f"call/{spk.key}/{i}|w"] = e.windows.astype(np.float32)
            out[f"call/{spk.key}/{i}|t"] = e.window_times_s.astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


def unit(x: np.ndarray) -> np.ndarray:
    from voicecheck.scoring import unit as unit_rows

    return unit_rows(np.asarray(x, np.float32))


def coarse(w: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The product's coarse timeline (windows back to back) of windows cached on the fine one."""
    from voicecheck.embedders.base import coarse_of_fine

    keep = coarse_of_fine(len(w))
    return w[keep], t[keep]


class Clips:
    """The cached windows, organised by role; speakers outside TUNE/EVAL are dropped.

    ``fine_w`` / ``fine_t`` hold the fine timeline as cached; ``w`` / ``t`` the timeline a clip's
    vector and the window-level analyses start from: the coarse one (``coarse=True``, the product at
    hop 1.6 s) or the fine one (the hop-0.8 reference). Net speech is always measured on the fine
    timeline, so both views draw the same populations.
    """

    def __init__(self, data: dict[str, np.ndarray], takeovers: dict[str, np.ndarray], coarse_view: bool = True) -> None:
        self.coarse_view = coarse_view
        self.fine_w = {k[:-2]: v for k, v in data.items() if k.endswith("|w") and not k.startswith("takeover/")}
        self.fine_w.update({k[:-2]: v for k, v in takeovers.items() if k.endswith("|w")})
        self.fine_t = {k: {**data, **takeovers}[k + "|t"] for k in self.fine_w}
        self.w, self.t = dict(self.fine_w), dict(self.fine_t)
        if coarse_view:
            for k in self.fine_w:
                self.w[k], self.t[k] = coarse(self.fine_w[k], self.fine_t[k])
        self.libri = sorted(
            k.split("/", 1)[1]
            for k in self.w
            if k.startswith("genuine/") and f"enroll/{k[8:]}" in self.w and split_of(k[8:]) in ("tune", "eval")
        )
        self.takeovers = sorted(k for k in self.w if k.startswith("takeover/"))
        multi: dict[str, list[str]] = defaultdict(list)
        for k in sorted(self.w):
            if k.startswith("multi/"):
                _, src, spk, _ = k.split("/", 3)
                if split_of(f"{src}/{spk}") in ("tune", "eval"):
                    multi[f"{src}/{spk}"].append(k)
        self.multi = {spk: clips for spk, clips in multi.items() if len(clips) >= 2}
        self.conv = sorted(k for k in self.w if k.startswith("conv/"))

    def vector(self, name: str, sl: slice = slice(None)) -> np.ndarray:
        """The call vector the 1:1 check scores: the mean of ``w`` (the coarse timeline in the product)."""
        return unit(self.w[name][sl].mean(axis=0))

    def vectors(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(what rings compare when the product refines the call: the mean of its windows every 0.8 s,
        :meth:`vector`)."""
        return unit(self.fine_w[name].mean(axis=0)), self.vector(name)

    def speech_s(self, name: str, n: int | None = None) -> float:
        """Net speech of a clip (or of its first ``n`` windows of ``w``), seconds, on the fine timeline."""
        if n is None:
            return A.net_speech_s(self.fine_t[name])
        return A.net_speech_s(self.t[name], n)


class Product:
    """The product's scoring pieces: Scorer (shipped back-end + profile, TRAIN calls as cohort) and
    the cross-call scoring space (voicecheck.crosscall.scoring_space).

    ``hop`` (seconds) builds the same pieces for another window hop instead of the shipped files: the
    back-end and profile trained in-process by the recipes (``scripts/train_backend.py``'s steps)
    on that hop's embedding cache; the hop-0.8 reference of the issue-16 comparison.
    """

    def __init__(self, speakers: list, train: list, workdir: Path, hop: float | None = None) -> None:
        from voicecheck.embedders import BUILTIN
        from voicecheck.scorer import Scorer, load_backend

        embs = Embeddings(DEFAULT_CACHE, 0, hop=hop).all(speakers, progress=False)
        self.enroll_matched = {k: e.enroll_matched for k, e in embs.items() if np.any(e.enroll_matched)}
        self.settings = scorer_settings(workdir)
        model = BUILTIN[MODEL_KEY].name
        if hop is None:
            self.backend = load_backend(self.settings, MODEL_KEY, model)
        else:  # saved where the settings name it: crosscall.scoring_space loads the back-end itself
            self.backend = trained_at(embs, speakers, train, workdir)
            self.backend.save(workdir / f"{MODEL_KEY}-backend.npz")
            self.settings = replace(self.settings, backend_file=str(workdir / f"{MODEL_KEY}-backend.npz"))
        cohort = product_cohort(embs, train)
        self.scorer = Scorer(self.settings, model, MODEL_KEY, self.backend, {"narrow": cohort})
        self.mode = self.scorer.mode("narrow")
        self.threshold = self.scorer.threshold("narrow").value
        self.cohort_size = len(cohort)

    @property
    def llr_slope(self) -> float:
        """The narrow-band mode's calibration slope (LLR per unit of product score)."""
        calibration = self.scorer.calibration("narrow")
        assert calibration is not None, "the shipped profile calibrates every mode"
        return calibration.a

    def score_fn(self, enroll: np.ndarray):
        e = np.asarray(enroll, np.float32)
        return lambda rows: self.scorer.scores(e, np.atleast_2d(rows).astype(np.float32), "narrow")[0]

    def space(self, vectors: np.ndarray) -> np.ndarray:
        from voicecheck.crosscall import scoring_space

        return scoring_space(self.settings, vectors)


def trained_at(embs: dict, speakers: list, train: list, workdir: Path):  # noqa: ANN201 - scoring.Backend
    """The back-end (returned) and profile (written to ``workdir``'s calibration file, where the
    Scorer reads it) that ``scripts/train_backend.py`` makes from ``embs``."""
    from recipes.backend import train_backend
    from recipes.profile import build_profile
    from voicecheck.embedders import BUILTIN
    from voicecheck.scorer import Profile

    backend = train_backend(embs, train)
    profile = build_profile(embs, speakers, 0, backend, workdir, "benchmarks/analysis.py reference")
    shipped = Profile.load(MODEL_KEY, workdir)
    for mode, values in profile["modes"].items():
        shipped.save_mode(MODEL_KEY, workdir, mode, values, f"{BUILTIN[MODEL_KEY].name} recipe at another hop")
    return backend


# --- rings on calls of issue 3's length (>= 6 s of net speech) -------------------------------------

LONG_MIN_S, LONG_MAX_S, PIECE_S, PAUSE_S = 6.0, 30.0, 3.5, 0.4
"""Rings on full-length calls: least net speech and most audio of a call (s), the piece a long
utterance is cut into before packing (s), and the pause put between joined pieces (s)."""


def net_speech_s(times_s: np.ndarray) -> float:
    """Net speech of a call from its window times (the measure of ``Clips.speech_s``), seconds."""
    return A.net_speech_s(times_s)


def long_pieces(utterances: list[np.ndarray]) -> list[np.ndarray]:
    """A voice's utterances, those longer than 2 * PIECE_S cut at quiet frames into ~PIECE_S pieces."""
    out = []
    for x in utterances:
        while len(x) > 2 * PIECE_S * RATE:
            at = quiet_cut(x, int(PIECE_S * RATE))
            out.append(x[:at])
            x = x[at:]
        out.append(x)
    return out


def pack_calls(emb: ClipEmbedder, pieces: list[np.ndarray], seed: tuple) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Disjoint calls of one voice: consecutive pieces joined with PAUSE_S pauses until the simulated
    call has >= LONG_MIN_S of net speech (at most LONG_MAX_S of audio). No piece is in two calls;
    pieces left over that cannot make one more such call are dropped. (windows, times, audio s) each."""
    gap = np.zeros(int(PAUSE_S * RATE), np.float32)

    def join(ps):
        return np.concatenate([y for p in ps for y in (gap, p)][1:]).astype(np.float32)

    calls, i = [], 0
    while i < len(pieces):
        j = i + 1
        while j < len(pieces) and sum(len(p) for p in pieces[i:j]) < LONG_MIN_S * RATE:
            j += 1
        while True:
            audio = join(pieces[i:j])
            if len(audio) > LONG_MAX_S * RATE:
                return calls
            got = emb.call(audio, ("long-v1", *seed, i, j))
            if got is not None and net_speech_s(got[1]) >= LONG_MIN_S:
                calls.append((got[0], got[1], len(audio) / RATE))
                i = j
                break
            if j == len(pieces):
                return calls
            j += 1
    return calls


def build_long_calls(split: dict[str, list], cache: Path) -> dict[str, np.ndarray]:
    """Full-length ring calls of every TUNE and EVAL speaker (no TRAIN speaker), cached in ``cache``.

    Per speaker: ``long/<part>/<key>/whole`` (all its audio as one call, when <= LONG_MAX_S; a
    borrower's genuine call) and ``long/<part>/<key>/imp<j>`` (its disjoint impostor calls from
    :func:`pack_calls`). Keys end in ``|w`` (windows), ``|t`` (times), ``|a`` (audio seconds).
    """
    if cache.exists():
        return dict(np.load(cache, allow_pickle=False))
    emb = ClipEmbedder()
    out: dict[str, np.ndarray] = {}
    t0 = time.time()

    def put(name, w, t, audio_s):
        out[f"{name}|w"], out[f"{name}|t"], out[f"{name}|a"] = w, t, np.array([audio_s], np.float32)

    for part in ("tune", "eval"):
        for spk in split[part]:
            utts = load_utterances(spk)
            whole = np.concatenate(utts).astype(np.float32)
            if len(whole) <= LONG_MAX_S * RATE:
                got = emb.call(whole, ("long-v1", spk.key, "whole"))
                if got is not None:
                    put(f"long/{part}/{spk.key}/whole", *got, len(whole) / RATE)
            for j, (w, t, a) in enumerate(pack_calls(emb, long_pieces(utts), (spk.key,))):
                put(f"long/{part}/{spk.key}/imp{j}", w, t, a)
        print(f"  long calls {part} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


class LongCalls:
    """The cached full-length calls by part: genuine ('whole') calls and impostor pools per voice."""

    def __init__(self, data: dict[str, np.ndarray], coarse_view: bool = True) -> None:
        self.whole: dict[str, dict[str, tuple]] = {"tune": {}, "eval": {}}
        self.pool: dict[str, dict[str, list]] = {"tune": defaultdict(list), "eval": defaultdict(list)}
        for k in sorted(x[:-2] for x in data if x.endswith("|w")):
            _, part, rest = k.split("/", 2)
            key, role = rest.rsplit("/", 1)
            w = coarse(data[k + "|w"], data[k + "|t"])[0] if coarse_view else data[k + "|w"]
            both = (unit(data[k + "|w"].mean(axis=0)), unit(w.mean(axis=0)))  # (refined, 1:1): see Clips.vectors
            item = (both, net_speech_s(data[k + "|t"]), float(data[k + "|a"][0]))
            if role == "whole":
                self.whole[part][key] = item
            else:
                self.pool[part][key].append(item)


class Inputs(NamedTuple):
    """Everything the sections read: the split, the cached clips and calls, the product's scoring."""

    split: dict[str, list]
    clips: Clips
    calls: dict[str, np.ndarray]
    long_calls: LongCalls
    prod: Product


def default_cache() -> Path:
    """benchmarks/.cache/analysis-hop<fine hop>[-<precision>].npz: window embeddings depend on the hop
    and (slightly) on the network's arithmetic, so one cache each. Clips are cached on the fine
    timeline (:class:`ClipEmbedder`): windows every 0.8 s for the default hop of 1.6 s."""
    from voicecheck.config import Settings
    from voicecheck.embedders import model_spec
    from voicecheck.embedders.base import refines
    from voicecheck.embedders.ge2e import resolve_precision

    spec = model_spec("ge2e", Settings().embeddings)
    hop = spec.hop_s / 2 if refines(spec.window_s, spec.hop_s) else spec.hop_s
    tag = precision_tag(resolve_precision(Settings().precision, "cpu"))
    return Path(__file__).parent / ".cache" / f"analysis-hop{hop:g}{tag}.npz"


REFERENCE_HOP = 0.8
"""The window hop the product ran at before issue 16, and the fine timeline it refines to now."""


def load_inputs(speech: Path, cache: Path, reference: bool = False) -> Inputs:
    """The split, every cached clip and call (embedded on the first run), and the product's Scorer.

    Args:
        reference: the hop-0.8 reference instead of the product: every clip on the fine timeline
            and the back-end and profile trained at hop 0.8 (:class:`Product` with ``hop``).
    """
    split = load_split(speech)
    data = build_cache(speech, cache)
    libri_keys = sorted(k[8:-2] for k in data if k.startswith("genuine/") and k.endswith("|w"))
    takeovers = build_takeovers(speech, cache.with_name(cache.stem + "-takeovers-v2.npz"), libri_keys)
    clips = Clips(data, takeovers, coarse_view=not reference)
    workdir = Path(tempfile.mkdtemp(prefix="vc-analysis-"))
    prod = Product(split["speakers"], split["train"], workdir, REFERENCE_HOP if reference else None)
    calls = build_calls(split, cache.with_name(cache.stem + "-calls-v2.npz"))
    long_data = build_long_calls(split, cache.with_name(cache.stem + "-longcalls-v1.npz"))
    return Inputs(split, clips, calls, LongCalls(long_data, coarse_view=not reference), prod)
