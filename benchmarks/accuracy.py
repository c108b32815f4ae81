"""Accuracy of voicecheck's scoring on simulated telephone calls of real speakers.

Speakers of the real-speech corpus are split (seeded) into TRAIN (LDA back-end + the in-domain
cohort), TUNE (back-end choices, thresholds, calibration) and EVAL (the reported figures only).
Each EVAL speaker enrolls with the first part of their speech, wideband (and, as a second
condition, through the telephone channel); the rest of their speech becomes simulated 8 kHz mu-law
calls. Target trials: a speaker's own calls; impostor trials: every other EVAL speaker's calls
answering as this borrower. The table adds one scoring step per row. See benchmarks/README.md.

Usage::

    python benchmarks/accuracy.py [--speech ../shared/speech] [--out bench-out] [--seed 0]

Embeddings are cached in ``--out``; a rerun takes seconds. Writes
``benchmarks/results/accuracy.md`` (unless ``--no-write``) and ``<out>/accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.backend import BACKEND, BackendConfig, cohort_calls, train_backend  # noqa: E402
from recipes.corpus import (  # noqa: E402
    DEFAULT_SPEECH,
    FOLDS,
    MIN_EVAL_SECONDS,
    ROOT,
    Speaker,
    portable,
    read_corpus,
    split_speakers,
)
from recipes.embed_cache import DEFAULT_CACHE, MODEL_KEY, Embeddings, SpeakerEmbeddings  # noqa: E402
from recipes.machine import add_precision_option, cpu_features  # noqa: E402
from recipes.profile import FALSE_FLAG_TARGET  # noqa: E402
from recipes.trials import (  # noqa: E402
    SYSTEMS,
    Trials,
    build_trials,
    product_cohort,
    score_matrix,
    scorer_for_mode,
    scorer_matrix,
    scorer_settings,
)

log = logging.getLogger("benchmarks")

MIN_CALL_SPEECH_S = 6.0
"""Calls with at least this much net speech are the reported condition."""

LABELS = {
    "raw": "raw cosine (no channel matching)",
    "matched": "+ channel matching (product mode `cosine`)",
    "centred": "+ centring on in-domain call mean",
    "asnorm": "+ AS-norm (product mode `asnorm`)",
    "lda": "LDA back-end, no cohort (product mode `lda`)",
    "lda+asnorm": "+ LDA (telephone-augmented) + AS-norm (product mode `lda+asnorm`)",
}
TEL_LABELS = {
    "raw": "raw cosine (product mode `cosine`)",
    **{k: v for k, v in LABELS.items() if k not in ("raw", "matched")},
}


def enrollment_for(trials: Trials, system: str, condition: str) -> np.ndarray:
    """Enrollment vectors a system compares: wideband as recorded only for the unmatched raw row."""
    if condition == "tel":
        return trials.enroll["tel"]
    return trials.enroll["wide"] if system == "raw" else trials.enroll["matched"]


def calibration_key(system: str, condition: str) -> str:
    """The TUNE (wideband-enrollment) system whose calibration and threshold a row uses.

    Telephone enrollments are scored in the same modes as channel-matched wideband ones, so they
    use the product's (wideband-fitted) calibration: the tel rows show what the product does.
    """
    return "matched" if (condition == "tel" and system == "raw") else system


class Fold:
    """Scores of every system on one split's TUNE and EVAL trials."""

    def __init__(
        self,
        embs: dict[str, SpeakerEmbeddings],
        split: dict[str, list[Speaker]],
        config: BackendConfig,
        top_n: int,
        systems: tuple[str, ...] = SYSTEMS,
        parts: tuple[str, ...] = ("tune", "eval"),
    ) -> None:
        self.backend = train_backend(embs, split["train"], config)
        self.cohort, _ = cohort_calls(embs, split["train"])
        self.trials = {p: build_trials(embs, split[p]) for p in parts}
        self.scores: dict[tuple[str, str, str], np.ndarray] = {}
        for p, cond, system in product(parts, ("wide", "tel"), systems):
            if cond == "tel" and system == "matched":
                continue
            t = self.trials[p]
            self.scores[p, cond, system] = score_matrix(
                system, enrollment_for(t, system, cond), t.calls, self.cohort, self.backend, top_n
            )

    def pairs(self, part: str, cond: str, system: str, min_speech_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(target scores, impostor scores) over calls with at least ``min_speech_s`` of speech."""
        t = self.trials[part]
        keep = t.call_speech_s >= min_speech_s
        S, mask = self.scores[part, cond, system][:, keep], t.target_mask[:, keep]
        return S[mask], S[~mask]


class Evaluation:
    """One EVAL fold, with TUNE rotated over every other fold (inner cross-validation).

    The first rotation is the main split (TUNE = the next fold; the shipped files come from
    EVAL fold 0's). Each rotation trains its own back-end and cohort on the speakers in neither
    its TUNE nor EVAL, so every TUNE score is of speakers unseen by the back-end that scored it.
    TUNE figures (calibration, thresholds, back-end choices) pool all rotations: ~4x the trials
    of one TUNE fold. EVAL speakers are in no rotation's TRAIN or TUNE.
    """

    def __init__(
        self,
        embs: dict[str, SpeakerEmbeddings],
        speakers: list[Speaker],
        seed: int,
        eval_fold: int,
        config: BackendConfig,
        top_n: int,
        systems: tuple[str, ...] = SYSTEMS,
        with_eval: bool = True,
        folds: int = FOLDS,
    ) -> None:
        tune_folds = [(eval_fold + 1 + i) % folds for i in range(folds - 1)]
        self.splits = [split_speakers(speakers, seed, eval_fold, folds, tune_fold=j) for j in tune_folds]
        self.folds = [
            Fold(embs, sp, config, top_n, systems, parts=("tune", "eval") if (with_eval and i == 0) else ("tune",))
            for i, sp in enumerate(self.splits)
        ]
        self.main = self.folds[0]

    def tune_pairs(self, cond: str, system: str) -> tuple[np.ndarray, np.ndarray]:
        """TUNE (target, impostor) scores pooled over the rotations (all calls)."""
        pairs = [f.pairs("tune", cond, system) for f in self.folds]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])

    def eval_pairs(self, cond: str, system: str, min_speech_s: float) -> tuple[np.ndarray, np.ndarray]:
        return self.main.pairs("eval", cond, system, min_speech_s)


def row_metrics(ev: Evaluation, cond: str, system: str, min_speech_s: float) -> dict:
    """EVAL figures of one system, with calibration and threshold taken from (pooled) TUNE."""
    from voicecheck.metrics import cllr, summary
    from voicecheck.scoring import fit_calibration, threshold_at_false_flag

    tar, non = ev.eval_pairs(cond, system, min_speech_s)
    t_tar, t_non = ev.tune_pairs("wide", calibration_key(system, cond))
    cal = fit_calibration(t_tar, t_non)
    threshold = threshold_at_false_flag(t_tar, FALSE_FLAG_TARGET)
    out = summary(tar, non)
    out["cllr"] = cllr(cal.llr(tar), cal.llr(non))
    out["llr"] = (cal.llr(tar), cal.llr(non))
    out["ff_at_tune_threshold"] = float(np.mean(tar < threshold))
    out["detect_at_tune_threshold"] = float(np.mean(non < threshold))
    out["n_ff"], out["n_det"] = int(np.sum(tar < threshold)), int(np.sum(non < threshold))
    return out


def tune_criterion(ev: Evaluation, system: str = "lda+asnorm") -> tuple[float, float]:
    """(mean EER, mean minDCF(0.05)) on pooled TUNE over both enrollment conditions: lower is better."""
    from voicecheck.metrics import eer, min_dcf

    eers, dcfs = [], []
    for cond in ("wide", "tel"):
        tar, non = ev.tune_pairs(cond, system)
        eers.append(eer(tar, non)[0])
        dcfs.append(min_dcf(tar, non, 0.05))
    return float(np.mean(eers)), float(np.mean(dcfs))


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = [
        "| system | EER | minDCF(0.01) | minDCF(0.05) | Cllr | impostors flagged @1% FF | @5% FF | "
        "TUNE threshold: genuine flagged | TUNE threshold: impostors flagged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m in rows:
        lines.append(
            f"| {label} | {pct(m['eer'])} | {m['min_dcf_0.01']:.3f} | {m['min_dcf_0.05']:.3f} | {m['cllr']:.3f} | "
            f"{pct(m['detect_at_1pct_ff'])} | {pct(m['detect_at_5pct_ff'])} | {pct(m['ff_at_tune_threshold'])} | "
            f"{pct(m['detect_at_tune_threshold'])} |"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", default=str(DEFAULT_SPEECH), help="real-speech corpus folder (MANIFEST.csv)")
    parser.add_argument("--out", default=str(DEFAULT_CACHE.parent), help="cache and outputs folder")
    parser.add_argument("--seed", type=int, default=0, help="speaker split and noise seed")
    parser.add_argument("--folds", type=int, default=FOLDS, help="folds for the pooled cross-check (0: skip)")
    parser.add_argument("--no-grid", action="store_true", help="skip the back-end search on TUNE")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/accuracy.md")
    add_precision_option(parser, more=". Other than fp32, the float32 embeddings are computed too and compared")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from voicecheck.config import Settings

    top_n = Settings().cohort_top_n
    folds = args.folds or FOLDS

    speakers = read_corpus(args.speech)
    split = split_speakers(speakers, args.seed)
    sizes = {k: len(v) for k, v in split.items()}
    print(f"speakers: {len(speakers)}; split (seed {args.seed}): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    cache = Embeddings(out / "cache", args.seed, args.precision)
    embs = cache.all(speakers)
    t_embed = time.time() - started

    evaluation = Evaluation(embs, speakers, args.seed, 0, BACKEND, top_n, folds=folds)
    counts = trial_counts(evaluation)
    print(counts)
    results: dict = {"split": sizes, "seed": args.seed, "backend": asdict(BACKEND), "top_n": top_n, "rows": {}}
    md = eval_tables(evaluation, results["rows"])
    print("\n".join(md))
    md += shown("Product check", product_check(embs, split, evaluation.main, out, cache.precision))
    if cache.precision != "fp32":
        reference = Embeddings(out / "cache", args.seed, "fp32").all(speakers)
        same = precision_check(embs, reference, split, out, cache.precision)
        title = f"{cache.precision} against float32 (the same EVAL trials, shipped back-end and profile)"
        md += shown(title, same)
    if not args.no_grid:
        grid = search(embs, speakers, args.seed, folds, top_n)
        md += shown("Back-end choices searched on TUNE (EVAL not looked at)", grid)
    if args.folds > 1:
        pooled = pooled_folds(embs, speakers, args.seed, args.folds, top_n)
        md += shown(f"Cross-check: EVAL rotated over {args.folds} folds, figures pooled", pooled)

    elapsed = time.time() - started
    head = header(args, argv, len(speakers), sizes, counts, (elapsed, t_embed), top_n, cache.precision)
    write_outputs(out, results, "\n".join(head + md), args.no_write)
    print(f"total {elapsed:.0f} s")
    return 0


def shown(title: str, lines: list[str]) -> list[str]:
    """Print ``lines`` and return them as a markdown section under ``### title``."""
    print("\n".join(lines))
    return [f"### {title}", "", *lines, ""]


def trial_counts(evaluation: Evaluation) -> str:
    """One paragraph: EVAL and TUNE speakers, calls and trials, and the cohort size."""
    fold = evaluation.main
    ev = fold.trials["eval"]
    n_e = len(ev.speakers)
    long = ev.call_speech_s >= MIN_CALL_SPEECH_S
    tune_t = [f.trials["tune"] for f in evaluation.folds]
    return (
        f"EVAL: {n_e} speakers, {len(ev.calls)} calls ({int(long.sum())} with >= {MIN_CALL_SPEECH_S:g} s net speech; "
        f"median {np.median(ev.call_speech_s):.1f} s); trials with >= {MIN_CALL_SPEECH_S:g} s: "
        f"{int(ev.target_mask[:, long].sum())} target, {int((~ev.target_mask[:, long]).sum())} impostor. "
        f"TUNE (main split): {len(tune_t[0].speakers)} speakers, {len(tune_t[0].calls)} calls; pooled over the "
        f"{len(tune_t)} inner rotations: {sum(len(t.speakers) for t in tune_t)} speakers, "
        f"{sum(int(t.target_mask.sum()) for t in tune_t)} target and "
        f"{sum(int((~t.target_mask).sum()) for t in tune_t)} impostor trials (all calls). "
        f"Cohort: {len(fold.cohort)} TRAIN calls."
    )


def eval_tables(evaluation: Evaluation, rows_out: dict) -> list[str]:
    """The two EVAL tables (wideband and telephone enrollment), one row per scoring system.

    Each row's figures (without the LLRs) also go into ``rows_out`` under "<condition>/<system>".
    """
    md: list[str] = []
    groups = [
        ("wide", "Wideband enrollment (16 kHz) vs 8 kHz mu-law call", LABELS),
        ("tel", "Telephone enrollment (through the same channel) vs call", TEL_LABELS),
    ]
    for cond, title, labels in groups:
        rows = []
        for system in SYSTEMS:
            if system not in labels:
                continue
            m = row_metrics(evaluation, cond, system, MIN_CALL_SPEECH_S)
            rows_out[f"{cond}/{system}"] = {k: v for k, v in m.items() if k != "llr"}
            rows.append((labels[system], m))
        md += [f"### {title} — EVAL speakers, calls with >= {MIN_CALL_SPEECH_S:g} s speech", "", *table(rows), ""]
        if cond == "wide":
            m_all = row_metrics(evaluation, cond, "lda+asnorm", 0.0)
            rows_out["wide/lda+asnorm/all-calls"] = {k: v for k, v in m_all.items() if k != "llr"}
            md[-1:-1] = table([("lda+asnorm, all EVAL calls (incl. < 6 s)", m_all)])[2:]
    return md


def header(
    args: argparse.Namespace,
    argv: list[str] | None,
    n_speakers: int,
    sizes: dict[str, int],
    counts: str,
    times_s: tuple[float, float],
    top_n: int,
    precision: str,
) -> list[str]:
    """The top of accuracy.md: command, corpus and split, trial counts, what the columns mean.

    ``times_s``: (whole run, embedding) in seconds.
    """
    elapsed, t_embed = times_s
    cmd = "python benchmarks/accuracy.py " + " ".join(portable(a) for a in (argv if argv is not None else sys.argv[1:]))
    return [
        "# Accuracy on simulated telephone calls (GE2E, Resemblyzer 0.1.4)",
        "",
        f"Command: `{cmd.strip()}` — {time.strftime('%Y-%m-%d')}, {elapsed:.0f} s "
        f"({t_embed:.0f} s embedding, cached after the first run).",
        "",
        "Corpus: `shared/speech` (real speakers; `conversations_*` left out; Asterisk en/es_MX merged). "
        f"Speakers {n_speakers}; split (seed {args.seed}): TRAIN {sizes['train']} "
        f"(LDA + cohort; includes the narrowband Asterisk voices and speakers with < {MIN_EVAL_SECONDS:g} s), "
        f"TUNE {sizes['tune']} (back-end choices, thresholds, calibration), EVAL {sizes['eval']} (these figures only). "
        "No speaker is in two sets.",
        "",
        counts,
        "",
        "Calls: the speech after the enrollment part, 300–3400 Hz, 8 kHz, G.711 mu-law, pink noise at 10–30 dB "
        "SNR (`recipes.simulate.simulate_call_side`); embedded by the product's `Engine` (silero VAD, 1.6 s "
        "windows, GE2E). Columns: EER; minDCF at target prior 0.01 / 0.05; Cllr after the calibration fitted on "
        "TUNE (the product's `fit_calibration`); impostors flagged when the threshold lets 1% / 5% of EVAL "
        f"genuine calls be flagged (oracle threshold); and at the threshold chosen on TUNE at "
        f"{pct(FALSE_FLAG_TARGET)} genuine flagged (what the shipped profile does): the share of EVAL "
        "genuine calls flagged and of impostors flagged.",
        f"Back-end: {BACKEND}; AS-norm top-N {top_n}. GE2E arithmetic: {precision} (`--precision {args.precision}`); "
        f"CPU: {cpu_features()}.",
        "",
    ]


def write_outputs(out: Path, results: dict, text: str, no_write: bool) -> None:
    """``<out>/accuracy.json`` always; ``benchmarks/results/accuracy.md`` unless ``no_write``."""
    (out / "accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    if not no_write:
        dest = ROOT / "benchmarks" / "results" / "accuracy.md"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        print(f"wrote {dest}")


def product_check(embs, split, fold: Fold, out: Path, embs_precision: str = "fp32") -> list[str]:  # noqa: ANN001
    """Does the product's Scorer reproduce the benchmark's numbers, with the shipped files?"""
    from voicecheck.config import Settings
    from voicecheck.embedders import BUILTIN
    from voicecheck.metrics import eer
    from voicecheck.scorer import Scorer, load_backend

    lines = []
    settings = scorer_settings(out)
    cohort = product_cohort(embs, split["train"])
    ev = fold.trials["eval"]
    long = ev.call_speech_s >= MIN_CALL_SPEECH_S
    mask = ev.target_mask[:, long]
    # 1) same maths: Scorer with the benchmark's own back-end
    for mode, system in (("cosine", "matched"), ("asnorm", "asnorm"), ("lda", "lda"), ("lda+asnorm", "lda+asnorm")):
        scorer = scorer_for_mode(mode, settings, fold.backend, cohort)
        S = scorer_matrix(scorer, ev.enroll["matched"], ev.calls)
        diff = float(np.max(np.abs(S - fold.scores["eval", "wide", system])))
        lines.append(
            f"- Scorer mode `{mode}` vs benchmark row `{system}`: max |score difference| {diff:.1e} "
            f"over {S.size} trials."
        )
    # 2) the shipped back-end and profile, as Scorer.build loads them
    shipped = ROOT / "voicecheck" / "data" / f"{MODEL_KEY}-backend.npz"
    if not shipped.is_file():
        lines.append(f"- {shipped.relative_to(ROOT)} is missing: run scripts/train_backend.py.")
        return lines
    backend = load_backend(Settings(embeddings=str(out), backend_file="auto"), MODEL_KEY, BUILTIN[MODEL_KEY].name)
    same = (
        backend is not None
        and np.allclose(backend.projection, fold.backend.projection, atol=1e-6)
        and np.allclose(backend.mean, fold.backend.mean, atol=1e-6)
    )
    if embs_precision == "fp32":
        lines.append(
            f"- shipped back-end equals the one trained here on TRAIN: {'yes' if same else 'NO (retrain it)'}."
        )
    else:  # the shipped back-end is trained on float32 embeddings (scripts/train_backend.py --precision fp32)
        lines.append(
            f"- shipped back-end (trained on float32 embeddings) vs the one trained here on {embs_precision} "
            f"embeddings: {'equal' if same else 'slightly different, as expected'} (the precision check below "
            "compares the decisions)."
        )
    scorer = Scorer(settings, BUILTIN[MODEL_KEY].name, MODEL_KEY, backend, {"narrow": cohort})
    S = scorer_matrix(scorer, ev.enroll["matched"], ev.calls)[:, long]
    tar, non = S[mask], S[~mask]
    thr = scorer.threshold("narrow").value
    cal = scorer.calibration("narrow")
    from voicecheck.metrics import cllr

    lines.append(
        f"- product Scorer (shipped back-end + profile, TRAIN calls as cohort), mode `{scorer.mode('narrow')}`, "
        f"EVAL >= {MIN_CALL_SPEECH_S:g} s: EER {pct(eer(tar, non)[0])}; at the shipped threshold {thr:.3f}: "
        f"genuine flagged {pct(float(np.mean(tar < thr)))}, impostors flagged {pct(float(np.mean(non < thr)))}; "
        f"Cllr with the shipped calibration {cllr(cal.llr(tar), cal.llr(non)) if cal else float('nan'):.3f}; "
        f"profile source: {scorer.profile.source[:120]}..."
    )
    return lines


def precision_check(embs, reference, split, out: Path, precision: str) -> list[str]:  # noqa: ANN001
    """How far embeddings at ``precision`` are from float32 ones (``reference``), as vectors and as the
    product's decisions: the shipped back-end and profile, each side with its own TRAIN cohort; and a
    store enrolled in float32 whose calls are then checked at ``precision`` (a lender moving its batch
    to a CPU with AMX), with the cohort of ``precision``."""
    from voicecheck.config import Settings
    from voicecheck.embedders import BUILTIN
    from voicecheck.metrics import eer
    from voicecheck.scorer import Scorer, load_backend

    settings = scorer_settings(out)
    model = BUILTIN[MODEL_KEY].name
    backend = load_backend(Settings(embeddings=str(out), backend_file="auto"), MODEL_KEY, model)
    result = {}
    for name, e in (("low", embs), ("fp32", reference)):
        trials = build_trials(e, split["eval"])
        scorer = Scorer(settings, model, MODEL_KEY, backend, {"narrow": product_cohort(e, split["train"])})
        long = trials.call_speech_s >= MIN_CALL_SPEECH_S
        scores = scorer_matrix(scorer, trials.enroll["matched"], trials.calls)[:, long]
        result[name] = (trials, scores, trials.target_mask[:, long], scorer.threshold("narrow").value, scorer)
    (t_low, s_low, mask, thr, scorer_low), (t_32, s_32, mask_32, _, _) = result["low"], result["fp32"]
    assert t_low.speakers == t_32.speakers and np.array_equal(mask, mask_32)
    long = t_low.call_speech_s >= MIN_CALL_SPEECH_S
    s_mix = scorer_matrix(scorer_low, t_32.enroll["matched"], t_low.calls)[:, long]

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    cos_calls = np.sum(unit(t_low.calls) * unit(t_32.calls), axis=1)
    cos_enroll = np.sum(unit(t_low.enroll["matched"]) * unit(t_32.enroll["matched"]), axis=1)
    diff = np.abs(s_low - s_32)
    flips = int(np.sum((s_low < thr) != (s_32 < thr)))
    mix_flips = int(np.sum((s_mix < thr) != (s_32 < thr)))
    return [
        f"- cosine between {precision} and float32 vectors of the same audio: EVAL calls min "
        f"{cos_calls.min():.5f}, median {np.median(cos_calls):.5f} ({len(cos_calls)}); channel-matched "
        f"enrollments min {cos_enroll.min():.5f} ({len(cos_enroll)}).",
        f"- product score (mode `lda+asnorm`, threshold {thr:.3f}) on {s_low.size} EVAL trials (calls >= "
        f"{MIN_CALL_SPEECH_S:g} s): |difference| median {np.median(diff):.4f}, max {diff.max():.4f}; decisions that "
        f"change at the shipped threshold: {flips}; EER {pct(eer(s_low[mask], s_low[~mask])[0])} "
        f"({precision}) vs {pct(eer(s_32[mask], s_32[~mask])[0])} (float32).",
        f"- voiceprints in float32, calls and cohort in {precision}: |difference| from float32 max "
        f"{np.abs(s_mix - s_32).max():.4f}; decisions that change: {mix_flips}; EER "
        f"{pct(eer(s_mix[mask], s_mix[~mask])[0])}.",
    ]


def search_configs() -> list[BackendConfig]:
    """The back-end settings compared: the shipped one, then one change at a time (duplicates dropped)."""
    configs: list[BackendConfig] = [BACKEND]
    configs += [replace(BACKEND, dim=d) for d in (32, 48, 64, 96, 128)]
    configs += [replace(BACKEND, wccn=not BACKEND.wccn)]
    configs += [replace(BACKEND, shrink=x) for x in (0.1, 0.3, 0.5, 0.7, 0.9)]
    configs += [
        replace(BACKEND, views=v)
        for v in ("wide,band,tel", "wide,band,tel,tel2", "band,tel,tel2", "band,tel", "wide,tel", "tel")
    ]
    configs += [replace(BACKEND, mean=m) for m in ("tel", "train")]
    return list(dict.fromkeys(configs))


def search(embs, speakers, seed: int, folds: int, top_n: int) -> list[str]:  # noqa: ANN001
    """Back-end choices compared by inner cross-validation on the non-EVAL speakers.

    EVAL (fold 0) is set aside; TUNE rotates over the other ``folds - 1`` folds, each time with a
    back-end trained on the remaining non-EVAL speakers. Figures are means over those rotations
    and over both enrollment conditions, so no EVAL speaker is looked at.
    """
    rows = []
    for cfg in search_configs():
        ev = Evaluation(
            embs, speakers, seed, 0, cfg, top_n, systems=("lda", "lda+asnorm"), with_eval=False, folds=folds
        )
        rows.append((cfg, *tune_criterion(ev, "lda+asnorm"), *tune_criterion(ev, "lda")))
    for n in (25, 50, 100, 400):
        ev = Evaluation(embs, speakers, seed, 0, BACKEND, n, systems=("lda+asnorm",), with_eval=False, folds=folds)
        rows.append(
            (f"AS-norm top-N {n} (shipped back-end)", *tune_criterion(ev, "lda+asnorm"), float("nan"), float("nan"))
        )
    rows.append(fusion_row(embs, speakers, seed, folds, top_n))
    return search_table(rows, folds, top_n)


def fusion_row(embs, speakers, seed: int, folds: int, top_n: int) -> tuple:  # noqa: ANN001
    """Wideband and channel-matched enrollment scored against the call (both lda+asnorm), averaged.

    Not a product mode (the Scorer scores one enrollment vector per band): a search row only.
    """
    ev = Evaluation(embs, speakers, seed, 0, BACKEND, top_n, systems=("lda+asnorm",), with_eval=False, folds=folds)
    tar_f, non_f = [], []
    for f in ev.folds:
        t = f.trials["tune"]
        wide = score_matrix("lda+asnorm", t.enroll["wide"], t.calls, f.cohort, f.backend, top_n)
        fused = 0.5 * (wide + f.scores["tune", "wide", "lda+asnorm"])
        tar_f.append(fused[t.target_mask])
        non_f.append(fused[~t.target_mask])
    from voicecheck.metrics import eer, min_dcf

    tar_f, non_f = np.concatenate(tar_f), np.concatenate(non_f)
    return (
        "fusion of wideband and matched enrollment scores (wide condition only; not in the product)",
        eer(tar_f, non_f)[0],
        min_dcf(tar_f, non_f, 0.05),
        float("nan"),
        float("nan"),
    )


def search_table(rows: list[tuple], folds: int, top_n: int) -> list[str]:
    """The search rows as markdown: (config or label, EER, minDCF of lda+asnorm, EER, minDCF of lda)."""
    best = min((r for r in rows if not isinstance(r[0], str)), key=lambda r: r[1] + r[2] / 10)
    lines = [
        f"Inner cross-validation: EVAL set aside, TUNE rotated over the other {folds - 1} folds (back-end trained "
        "on the rest each time); mean over rotations and both enrollment conditions. Shipped: "
        + ", ".join(f"{k}={v}" for k, v in asdict(BACKEND).items())
        + f", AS-norm top-N {top_n}. Criterion: EER + minDCF/10 of lda+asnorm (**lowest** marked); with ~120 "
        "TUNE targets per condition one trial moves the EER by ~0.8 points, so smaller gaps are noise and the "
        "shipped choice is kept unless clearly beaten.",
        "",
        "| change from shipped | EER lda+asnorm | minDCF(0.05) lda+asnorm | EER lda | minDCF(0.05) lda |",
        "|---|---|---|---|---|",
    ]
    fmt = lambda x, p: "–" if np.isnan(x) else (pct(x) if p else f"{x:.3f}")  # noqa: E731
    for cfg, e1, d1, e0, d0 in rows:
        name = (
            cfg
            if isinstance(cfg, str)
            else (", ".join(f"{k}={v}" for k, v in asdict(cfg).items() if getattr(BACKEND, k) != v) or "(shipped)")
        )
        mark = " **lowest**" if cfg is best[0] else ""
        lines.append(f"| {name}{mark} | {fmt(e1, 1)} | {fmt(d1, 0)} | {fmt(e0, 1)} | {fmt(d0, 0)} |")
    return lines


def pooled_folds(embs, speakers, seed: int, folds: int, top_n: int) -> list[str]:  # noqa: ANN001
    """Every fold's EVAL scored with that fold's TRAIN back-end and TUNE calibration, LLRs pooled."""
    from voicecheck.metrics import cllr, eer, summary

    pooled: dict[tuple[str, str], list] = {}
    per_fold: dict[str, list[float]] = {}

    for k in range(folds):
        ev = Evaluation(embs, speakers, seed, k, BACKEND, top_n, folds=folds)
        for cond, system in product(("wide", "tel"), SYSTEMS):
            if (cond, system) == ("tel", "matched"):
                continue
            m = row_metrics(ev, cond, system, MIN_CALL_SPEECH_S)
            acc = pooled.setdefault((cond, system), [[], [], 0, 0, 0])
            acc[0].append(m["llr"][0])
            acc[1].append(m["llr"][1])
            acc[2] += m["n_ff"]
            acc[3] += m["n_det"]
            if system == "lda+asnorm":
                per_fold.setdefault(cond, []).append(m["eer"])
    lines = [
        "| enrollment | system | EER | minDCF(0.01) | minDCF(0.05) | Cllr | impostors flagged @1% FF | @5% FF | "
        "TUNE threshold: genuine flagged | impostors flagged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (cond, system), (t, n, ff, det, _) in pooled.items():
        tar, non = np.concatenate(t), np.concatenate(n)
        m = summary(tar, non)
        lines.append(
            f"| {cond} | {system} | {pct(m['eer'])} | {m['min_dcf_0.01']:.3f} | {m['min_dcf_0.05']:.3f} | "
            f"{cllr(tar, non):.3f} | {pct(m['detect_at_1pct_ff'])} | {pct(m['detect_at_5pct_ff'])} | "
            f"{pct(ff / tar.size)} | {pct(det / non.size)} |"
        )
    tar_n = sum(len(x) for x in pooled["wide", "raw"][0])
    non_n = sum(len(x) for x in pooled["wide", "raw"][1])
    rng = np.random.default_rng(seed)
    intervals = []
    for cond in ("wide", "tel"):
        tar = np.concatenate(pooled[cond, "lda+asnorm"][0])
        non = np.concatenate(pooled[cond, "lda+asnorm"][1])
        boot = [eer(rng.choice(tar, tar.size), rng.choice(non, non.size))[0] for _ in range(300)]
        lo, hi = np.percentile(boot, [5, 95])
        intervals.append(f"{cond} {pct(lo)}–{pct(hi)}")
    lines += [
        "",
        f"Pooled: {tar_n} target and {non_n} impostor trials (calls >= {MIN_CALL_SPEECH_S:g} s); scores pooled as "
        "calibrated LLRs (each fold's pooled-TUNE calibration). lda+asnorm EER per fold: "
        + "; ".join(f"{c}: " + ", ".join(pct(x) for x in v) for c, v in per_fold.items())
        + ". Bootstrap 90% interval of the pooled lda+asnorm EER (trials resampled, not speakers: too narrow if "
        "anything): " + ", ".join(intervals) + ". Caveat: the back-end choices were searched with fold 0 as EVAL, "
        "so folds 1-4's EVAL speakers took part in that search as TUNE (the dimension, shrinkage and views only; "
        "their thresholds and calibrations are their own folds').",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
