"""Train the shipped GE2E back-end and profile from the real-speech corpus.

Writes ``voicecheck/data/ge2e-backend.npz`` (LDA + WCCN trained on the TRAIN speakers of the
benchmark split, telephone augmented) and ``voicecheck/data/ge2e-profile.json`` (per scoring mode:
threshold at 5% genuine calls flagged and calibration, both from the TUNE speakers, scored by the
product's own ``voicecheck.scorer.Scorer`` with the TRAIN speakers' simulated calls as cohort).
The split, the call simulation and the back-end settings are the recipes' (``recipes/``), the same
as ``benchmarks/accuracy.py`` uses, so the EVAL speakers the benchmark reports on are never seen here.

Usage::

    python scripts/train_backend.py [--speech ../shared/speech] [--seed 0] [--precision fp32]

The shipped files were trained on float32 GE2E embeddings (``--precision fp32``, the default here);
the product's bf16 embeddings score the same within ~0.05 (``benchmarks/accuracy.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.backend import BACKEND, cohort_calls, lda_training_set, train_backend  # noqa: E402
from recipes.corpus import DEFAULT_SPEECH, FOLDS, ROOT, read_corpus, split_speakers  # noqa: E402
from recipes.embed_cache import DEFAULT_CACHE, MODEL_KEY, Embeddings  # noqa: E402
from recipes.machine import add_precision_option  # noqa: E402
from recipes.profile import FALSE_FLAG_TARGET, build_profile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the shipped GE2E back-end and profile.")
    parser.add_argument("--speech", default=str(DEFAULT_SPEECH), help="real-speech corpus folder (MANIFEST.csv)")
    parser.add_argument("--seed", type=int, default=0, help="speaker split and noise seed (0 = the shipped split)")
    parser.add_argument(
        "--cache",
        default=str(DEFAULT_CACHE),
        help="embedding cache (shared with the benchmark)",
    )
    parser.add_argument("--data", default=str(ROOT / "voicecheck" / "data"), help="where to write the files")
    add_precision_option(parser, "fp32", "; of the training embeddings, the shipped files' is fp32")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)

    speakers = read_corpus(args.speech)
    split = split_speakers(speakers, args.seed)
    embs = Embeddings(args.cache, args.seed, args.precision).all(speakers)
    X, _ = lda_training_set(embs, split["train"], BACKEND.views)
    cohort, _ = cohort_calls(embs, split["train"])
    command = "python scripts/train_backend.py " + " ".join(argv if argv is not None else sys.argv[1:])
    from voicecheck.embedders import model_spec

    spec = model_spec(MODEL_KEY, args.cache)
    windows = f"GE2E {spec.window_s:g} s windows every {spec.hop_s:g} s ({args.precision})"
    today = time.strftime("%Y-%m-%d")
    data = (
        f"shared/speech real speakers (LibriSpeech train-clean-100, VCTK, CMU ARCTIC, AMI, Asterisk prompts, ...; "
        f"recipes/corpus.py split seed {args.seed}: TRAIN {len(split['train'])} / TUNE {len(split['tune'])} / "
        f"EVAL {len(split['eval'])} speakers)"
    )
    backend_source = (
        f"LDA(dim={BACKEND.dim}, wccn={BACKEND.wccn}, shrink={BACKEND.shrink}) on {len(X)} "
        f"segment embeddings ({BACKEND.views}: wideband, band-limited, 2 simulated 8 kHz mu-law copies; {windows}) "
        f"of the {len(split['train'])} TRAIN speakers; mean = {BACKEND.mean} ({len(cohort)} TRAIN calls); "
        f"{data}; {today}; {command.strip()}"
    )
    backend = train_backend(embs, split["train"], BACKEND, source=backend_source)
    out = Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    backend_path = out / f"{MODEL_KEY}-backend.npz"
    backend.save(backend_path)

    profile_source = (
        f"thresholds at {100 * FALSE_FLAG_TARGET:g}% genuine calls flagged (threshold_at_false_flag) and "
        f"calibrations (fit_calibration, prior 0.5) from TUNE speakers: wideband enrollment (channel-matched) vs "
        f"simulated 8 kHz mu-law calls at 10-30 dB SNR, all call lengths ({windows}), scored by "
        f"voicecheck.scorer.Scorer with a "
        f"cohort of TRAIN calls ({len(cohort)} in the main split) and the shipped back-end; TUNE rotated over the "
        f"{FOLDS - 1} non-EVAL folds (each with the back-end of its own TRAIN speakers), scores pooled; "
        f"{data}; {today}; {command.strip()}"
    )
    profile = build_profile(embs, speakers, args.seed, backend, args.cache, profile_source)
    profile_path = out / f"{MODEL_KEY}-profile.json"
    if profile_path.is_file():  # the takeover limit is chosen by benchmarks/analysis.py, not here: keep it
        kept = json.loads(profile_path.read_text()).get("takeover")
        if kept:
            profile["takeover"] = kept
    profile_path.write_text(json.dumps(profile, indent=2) + "\n")
    print(f"wrote {backend_path} ({backend_path.stat().st_size} bytes) and {profile_path}")
    for mode, values in profile["modes"].items():
        print(
            f"  {mode:11s} threshold {values['threshold']:.4f}  calibration a={values['calibration']['a']:.3f} "
            f"b={values['calibration']['b']:.3f}  TUNE EER {100 * values['tune_eer']:.1f}%"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
