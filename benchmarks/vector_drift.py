"""Did a front-end change move the accuracy benchmark's vectors? Re-embed and compare with its cache.

Re-embeds each speaker's enrollment (wideband, channel-matched, telephone) and simulated calls
(``recipes.material``, the accuracy benchmark's own material and seed) with the product as it is now,
and compares them with the vectors cached in ``benchmarks/.cache/accuracy/cache`` by an earlier
version: the largest 1 - cosine, the largest change of net speech, and the vectors that moved at all.
When nothing moved, no 1:1 score, threshold or verdict of accuracy.py / analysis.py / transfer.py can
have moved either (they are computed from these vectors alone).

    .venv/bin/python benchmarks/vector_drift.py [--speakers N]    # all 193 speakers: ~70 s CPU
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from recipes.corpus import DEFAULT_SPEECH, load_utterances, read_corpus  # noqa: E402
from recipes.embed_cache import DEFAULT_CACHE, Embeddings  # noqa: E402
from recipes.material import MATERIAL_KEY  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--speakers", type=int, default=None, help="only the first N speakers the cache holds (default all)")
    a = p.parse_args(argv)
    cached = Embeddings(a.cache)
    if not cached.path.is_file():
        raise SystemExit(f"no accuracy cache at {cached.path}: run benchmarks/accuracy.py first")
    fresh = Embeddings(Path(tempfile.mkdtemp(prefix="vc-drift-")))
    worst_cos, worst_speech, moved, vectors, speakers = 0.0, 0.0, 0, 0, 0
    t = time.process_time()
    for spk in read_corpus(a.speech):
        prefix = f"{spk.key}|{MATERIAL_KEY}|"
        if prefix + "calls" not in cached._cache or (a.speakers is not None and speakers >= a.speakers):
            continue
        speakers += 1
        now = fresh._material(spk, load_utterances(spk))
        for name, speech in (("enroll", "enroll_speech_s"), ("calls", "call_speech_s")):
            before, after = cached._cache[prefix + name].reshape(-1, 256), now[name].reshape(-1, 256)
            if before.shape != after.shape:
                print(f"{spk.key} {name}: {len(before)} vectors cached, {len(after)} now (too little speech moved)")
                moved += abs(len(before) - len(after))
                continue
            cos = np.sum(before * after, axis=1)
            worst_cos = max(worst_cos, float(np.max(1 - cos, initial=0.0)))
            moved += int(np.sum(1 - cos > 1e-5))
            vectors += len(cos)
            gap = np.abs(np.atleast_1d(cached._cache[prefix + speech]) - np.atleast_1d(now[speech]))
            worst_speech = max(worst_speech, float(np.max(gap, initial=0.0)))
    print(
        f"{speakers} speakers, {vectors} vectors (enrollments and calls) re-embedded in "
        f"{time.process_time() - t:.0f} s CPU: largest 1 - cosine {worst_cos:.2g}, largest change of net "
        f"speech {worst_speech:.3f} s, vectors moved (1 - cosine > 1e-5 or gone/new) {moved}"
    )


if __name__ == "__main__":
    main()
