"""Every embedding the benchmarks use, computed once by the product's Engine and cached on disk.

Each speaker's material (``recipes/material.py``) is embedded through the product's own
:class:`voicecheck.pipeline.Engine` (VAD + windows + GE2E): the wideband enrollment, its
channel-matched twin (:func:`voicecheck.pipeline.to_narrow`), the enrollment and the calls through
the simulated call channel, and the LDA segments in four views. Vectors are cached in one ``.npz``
per (cache version, window hop, GE2E arithmetic, seed); keys carry the material parameters, so a
changed recipe is embedded anew and nothing else.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recipes.corpus import ROOT, SAMPLE_RATE, Speaker, load_utterances
from recipes.material import MATERIAL_KEY, SEGMENT_KEY, segments, speaker_material, telephone

MODEL_KEY = "ge2e"
"""The model (``voicecheck.embedders.BUILTIN`` key) every recipe embeds with."""

CACHE_VERSION = "v2"
DIM = 256
"""GE2E embedding size."""

DEFAULT_CACHE = ROOT / "benchmarks" / ".cache" / "accuracy" / "cache"
"""The embedding cache shared by the benchmarks and ``scripts/train_backend.py`` (git-ignored)."""

log = logging.getLogger(__name__)


@dataclass
class SpeakerEmbeddings:
    """Every embedding the benchmarks use for one speaker (unit-norm rows of the model's dimension).

    Attributes:
        key: speaker key.
        enroll_wide: wideband enrollment, (d,).
        enroll_matched: the same enrollment through ``to_narrow`` (channel matching), (d,).
        enroll_tel: the enrollment through the simulated call channel, (d,).
        enroll_speech_s: net speech of the wideband enrollment (s).
        calls: simulated calls, (n_calls, d).
        call_speech_s: net speech of each call (s), (n_calls,).
        seg_wide / seg_band / seg_tel: LDA segments wideband / band-limited / telephone, (n_seg, d).
        seg_tel2: a second telephone copy of the segments (other noise and SNR draw), (n_seg', d).
    """

    key: str
    enroll_wide: np.ndarray
    enroll_matched: np.ndarray
    enroll_tel: np.ndarray
    enroll_speech_s: float
    calls: np.ndarray
    call_speech_s: np.ndarray
    seg_wide: np.ndarray
    seg_band: np.ndarray
    seg_tel: np.ndarray
    seg_tel2: np.ndarray


def precision_tag(precision: str) -> str:
    """The file-name suffix of vectors (and results) made at GE2E ``precision`` ("fp32" or "bf16"): "" for
    float32, the names every cache had before the arithmetic was a setting, else "-<precision>"."""
    return "" if precision == "fp32" else f"-{precision}"


class Embeddings:
    """Embeds speakers' material with the product's Engine; caches vectors in ``cache_dir``.

    Args:
        cache_dir: folder for ``embeddings-<version>.npz`` (created).
        seed: seed mixed into the call simulation noise.
        hop: GE2E window hop in seconds; None: the model's (``models.toml`` in ``cache_dir``, else the
            built-in). ``benchmarks/analysis.py`` reads the hop-0.8 vectors this way beside the default's.
    """

    def __init__(self, cache_dir: str | Path, seed: int = 0, precision: str = "auto", hop: float | None = None) -> None:
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        from voicecheck.embedders import model_spec
        from voicecheck.embedders.ge2e import resolve_precision

        # vectors depend on the window hop and (slightly) on the network's arithmetic: one cache each
        self.hop = model_spec(MODEL_KEY, self.dir).hop_s if hop is None else float(hop)
        hop = self.hop
        self.precision = resolve_precision(precision, "cpu")
        self.path = self.dir / f"embeddings-{CACHE_VERSION}-hop{hop:g}{precision_tag(self.precision)}-seed{seed}.npz"
        self._cache: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as data:
                self._cache = {k: data[k] for k in data.files}
        self._dirty = 0
        self._engine = None

    @property
    def engine(self):  # noqa: ANN201 - voicecheck.pipeline.Engine, imported lazily
        if self._engine is None:
            import torch

            from voicecheck.config import Settings
            from voicecheck.pipeline import Engine

            self._engine = Engine(Settings(embeddings=str(self.dir), precision=self.precision))
            self._engine.embedder.hop_s = self.hop  # type: ignore[misc]  # the window hop this cache holds
            torch.set_num_threads(1)
        return self._engine

    @property
    def model(self) -> str:
        from voicecheck.embedders import model_spec

        return model_spec(MODEL_KEY, self.dir).name

    def save(self) -> None:
        if self._dirty:
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, **self._cache)  # type: ignore[arg-type]  # numpy's stub types **kwds as its bool flag
            tmp.replace(self.path)
            self._dirty = 0

    def embed_call(self, samples: np.ndarray, rate: int):  # noqa: ANN201 - voicecheck.types.CallEmbedding
        """The product's ``Engine.embed_audio`` of mono ``samples`` at ``rate`` (8000 Hz: mu-law coded).

        Raises:
            InsufficientSpeechError: less net speech than the model needs.
        """
        from voicecheck.types import Audio

        audio = Audio(samples=samples, sample_rate=rate, subtype="ULAW" if rate == 8000 else "PCM_16")
        return self.engine.embed_audio(audio)

    def _embed(self, samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray | None, float]:
        """(vector, channel-matched vector or None, net speech s) via Engine.embed_audio."""
        emb = self.embed_call(samples, rate)
        return emb.vector, emb.narrow_vector, emb.speech_seconds

    def cached(self, prefix: str, names: tuple[str, ...], compute) -> dict[str, np.ndarray]:  # noqa: ANN001
        """Arrays ``prefix + name`` for each of ``names``: from the cache, or ``compute()`` (then cached).

        For material other benchmarks add (e.g. ``benchmarks/transfer.py``'s extra calls): put
        everything that changes the vectors into ``prefix`` so a changed recipe is embedded anew.

        Args:
            prefix: cache key prefix, e.g. ``"source/speaker|t1-...|"``.
            names: the arrays ``compute`` returns.
            compute: () -> {name: array}, called only when one of ``names`` is missing.
        """
        if not self._cached(prefix, names):
            values = compute()
            self._cache.update({prefix + n: np.asarray(values[n]) for n in names})
            self._dirty += 1
            if self._dirty >= 10:
                self.save()
        return {n: self._cache[prefix + n] for n in names}

    def _material(self, spk: Speaker, utts: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Enrollment (wide, matched, telephone) and call embeddings of one speaker."""
        from voicecheck.errors import InsufficientSpeechError

        enroll, calls = speaker_material(utts)
        c: dict[str, np.ndarray] = {}
        try:
            wide, matched, speech_s = self._embed(enroll, SAMPLE_RATE)
            assert matched is not None, "a wideband enrollment always has its channel-matched vector"
            tel, _, _ = self._embed(telephone(enroll, self.seed, spk.key, "enroll"), 8000)
            c["enroll"] = np.stack([wide, matched, tel])
            c["enroll_speech_s"] = np.array(speech_s)
        except InsufficientSpeechError:
            c["enroll"] = np.zeros((0, DIM), np.float32)
            c["enroll_speech_s"] = np.array(0.0)
        rows, secs = [], []
        for i, call in enumerate(calls):
            try:
                v, _, s = self._embed(telephone(call, self.seed, spk.key, "call", i), 8000)
            except InsufficientSpeechError:
                continue
            rows.append(v)
            secs.append(s)
        c["calls"] = np.array(rows, np.float32).reshape(len(rows), DIM)
        c["call_speech_s"] = np.array(secs)
        return c

    def _segments(self, spk: Speaker, utts: list[np.ndarray]) -> dict[str, np.ndarray]:
        """LDA segment embeddings of one speaker: wideband, band-limited and telephone views."""
        from voicecheck.errors import InsufficientSpeechError

        seg: dict[str, list[np.ndarray]] = {"wide": [], "band": [], "tel": []}
        for i, piece in enumerate(segments(utts)):
            try:
                v, m, _ = self._embed(piece, SAMPLE_RATE)
                t, _, _ = self._embed(telephone(piece, self.seed, spk.key, "seg", i), 8000)
            except InsufficientSpeechError:
                continue
            assert m is not None, "a wideband segment always has its band-limited vector"
            seg["wide"].append(v)
            seg["band"].append(m)
            seg["tel"].append(t)
        return {f"seg_{name}": np.array(vs, np.float32).reshape(len(vs), DIM) for name, vs in seg.items()}

    def _segments_tel2(self, spk: Speaker, utts: list[np.ndarray]) -> dict[str, np.ndarray]:
        """A second telephone copy of every LDA segment (independent noise)."""
        from voicecheck.errors import InsufficientSpeechError

        rows = []
        for i, piece in enumerate(segments(utts)):
            try:
                rows.append(self._embed(telephone(piece, self.seed, spk.key, "seg2", i), 8000)[0])
            except InsufficientSpeechError:
                continue
        return {"seg_tel2": np.array(rows, np.float32).reshape(len(rows), DIM)}

    def _cached(self, prefix: str, names: tuple[str, ...]) -> bool:
        return all(prefix + n in self._cache for n in names)

    def speaker(self, spk: Speaker) -> SpeakerEmbeddings | None:
        """All embeddings of one speaker (computed once, then read from the cache).

        Returns None when the speaker has neither an enrollment, a call nor a segment.
        """
        mat = f"{spk.key}|{MATERIAL_KEY}|"
        seg = f"{spk.key}|{SEGMENT_KEY}|"
        need_mat = not self._cached(mat, ("enroll", "enroll_speech_s", "calls", "call_speech_s"))
        need_seg = not self._cached(seg, ("seg_wide", "seg_band", "seg_tel"))
        need_tel2 = not self._cached(seg, ("seg_tel2",))
        if need_mat or need_seg or need_tel2:
            utts = load_utterances(spk)
            if need_mat:
                self._cache.update({mat + n: v for n, v in self._material(spk, utts).items()})
            if need_seg:
                self._cache.update({seg + n: v for n, v in self._segments(spk, utts).items()})
            if need_tel2:
                self._cache.update({seg + n: v for n, v in self._segments_tel2(spk, utts).items()})
            self._dirty += 1
            if self._dirty >= 10:
                self.save()
        enroll = self._cache[mat + "enroll"]
        calls = self._cache[mat + "calls"].reshape(-1, DIM)
        segs = {v: self._cache[seg + f"seg_{v}"].reshape(-1, DIM) for v in ("wide", "band", "tel", "tel2")}
        if enroll.size == 0 and len(calls) == 0 and len(segs["wide"]) == 0:
            return None
        empty = np.zeros(DIM, np.float32)
        return SpeakerEmbeddings(
            key=spk.key,
            enroll_wide=empty if enroll.size == 0 else enroll[0],
            enroll_matched=empty if enroll.size == 0 else enroll[1],
            enroll_tel=empty if enroll.size == 0 else enroll[2],
            enroll_speech_s=float(self._cache[mat + "enroll_speech_s"]),
            calls=calls,
            call_speech_s=self._cache[mat + "call_speech_s"],
            seg_wide=segs["wide"],
            seg_band=segs["band"],
            seg_tel=segs["tel"],
            seg_tel2=segs["tel2"],
        )

    def is_cached(self, spk: Speaker) -> bool:
        return self._cached(f"{spk.key}|{MATERIAL_KEY}|", ("calls",)) and self._cached(
            f"{spk.key}|{SEGMENT_KEY}|", ("seg_tel", "seg_tel2")
        )

    def all(self, speakers: list[Speaker], progress: bool = True) -> dict[str, SpeakerEmbeddings]:
        """Embeddings of every speaker that has any (cached ones are instant)."""
        out = {}
        start = time.time()
        todo = sum(1 for s in speakers if not self.is_cached(s))
        done = 0
        for s in speakers:
            fresh = not self.is_cached(s)
            e = self.speaker(s)
            if fresh:
                done += 1
                if progress and (done % 10 == 0 or done == todo):
                    log.info("embedded %d/%d speakers (%.0f s)", done, todo, time.time() - start)
            if e is not None:
                out[s.key] = e
        self.save()
        return out
