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

from benchmarks import common  # noqa: E402
from benchmarks.common import BACKEND, SYSTEMS, BackendConfig  # noqa: E402

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
TEL_LABELS = {"raw": "raw cosine (product mode `cosine`)", **{k: v for k, v in LABELS.items() if k not in ("raw", "matched")}}


def enrollment_for(trials: common.Trials, system: str, condition: str) -> np.ndarray:
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
        embs: dict[str, common.SpeakerEmbeddings],
        split: dict[str, list[common.Speaker]],
        config: BackendConfig,
        top_n: int,
        systems: tuple[str, ...] = SYSTEMS,
        parts: tuple[str, ...] = ("tune", "eval"),
    ) -> None:
        self.backend = common.train_backend(embs, split["train"], config)
        self.cohort, _ = common.cohort_calls(embs, split["train"])
        self.trials = {p: common.build_trials(embs, split[p]) for p in parts}
        self.scores: dict[tuple[str, str, str], np.ndarray] = {}
        for p, cond, system in product(parts, ("wide", "tel"), systems):
            if cond == "tel" and system == "matched":
                continue
            t = self.trials[p]
            self.scores[p, cond, system] = common.score_matrix(
                system, enrollment_for(t, system, cond), t.calls, self.cohort, self.backend, top_n
            )

    def pairs(self, part: str, cond: str, system: str, min_speech_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(target scores, impostor scores) over calls with at least ``min_speech_s`` of speech."""
        t = self.trials[part]
        keep = t.call_speech_s >= min_speech_s
        S, mask = self.scores[part, cond, system][:, keep], t.target_mask[:, keep]
        return S[mask], S[~mask]


def row_metrics(fold: Fold, cond: str, system: str, min_speech_s: float) -> dict:
    """EVAL figures of one system, with calibration and threshold taken from TUNE."""
    from voicecheck.metrics import cllr, summary
    from voicecheck.scoring import fit_calibration, threshold_at_false_flag

    tar, non = fold.pairs("eval", cond, system, min_speech_s)
    key = calibration_key(system, cond)
    t_tar, t_non = fold.pairs("tune", "wide", key)
    cal = fit_calibration(t_tar, t_non)
    threshold = threshold_at_false_flag(t_tar, common.FALSE_FLAG_TARGET)
    out = summary(tar, non)
    out["cllr"] = cllr(cal.llr(tar), cal.llr(non))
    out["ff_at_tune_threshold"] = float(np.mean(tar < threshold))
    out["detect_at_tune_threshold"] = float(np.mean(non < threshold))
    return out


def tune_criterion(fold: Fold, system: str = "lda+asnorm") -> tuple[float, float]:
    """(mean EER, mean minDCF(0.05)) on TUNE over both enrollment conditions: lower is better."""
    from voicecheck.metrics import eer, min_dcf

    eers, dcfs = [], []
    for cond in ("wide", "tel"):
        tar, non = fold.pairs("tune", cond, system)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", default=str(common.DEFAULT_SPEECH), help="real-speech corpus folder (MANIFEST.csv)")
    parser.add_argument("--out", default=str(common.ROOT / "bench-out" / "accuracy"), help="cache and outputs folder")
    parser.add_argument("--seed", type=int, default=0, help="speaker split and noise seed")
    parser.add_argument("--folds", type=int, default=common.FOLDS, help="folds for the pooled cross-check (0: skip)")
    parser.add_argument("--no-grid", action="store_true", help="skip the back-end search on TUNE")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/accuracy.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from voicecheck.config import Settings

    top_n = Settings().cohort_top_n

    speakers = common.read_corpus(args.speech)
    split = common.split_speakers(speakers, args.seed)
    sizes = {k: len(v) for k, v in split.items()}
    print(f"speakers: {len(speakers)}; split (seed {args.seed}): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    embs = common.Embeddings(out / "cache", args.seed).all(speakers)
    t_embed = time.time() - started

    fold = Fold(embs, split, BACKEND, top_n)
    md: list[str] = []
    ev = fold.trials["eval"]
    n_e = len(ev.speakers)
    long = ev.call_speech_s >= MIN_CALL_SPEECH_S
    tune = fold.trials["tune"]
    counts = (
        f"EVAL: {n_e} speakers, {len(ev.calls)} calls ({int(long.sum())} with >= {MIN_CALL_SPEECH_S:g} s net speech; "
        f"median {np.median(ev.call_speech_s):.1f} s); trials with >= {MIN_CALL_SPEECH_S:g} s: "
        f"{int(ev.target_mask[:, long].sum())} target, {int((~ev.target_mask[:, long]).sum())} impostor. "
        f"TUNE: {len(tune.speakers)} speakers, {len(tune.calls)} calls, {int(tune.target_mask.sum())} target and "
        f"{int((~tune.target_mask).sum())} impostor trials (all calls). Cohort: {len(fold.cohort)} TRAIN calls."
    )
    print(counts)

    results: dict = {"split": sizes, "seed": args.seed, "backend": asdict(BACKEND), "top_n": top_n, "rows": {}}
    groups = [("wide", "Wideband enrollment (16 kHz) vs 8 kHz mu-law call", LABELS),
              ("tel", "Telephone enrollment (through the same channel) vs call", TEL_LABELS)]
    for cond, title, labels in groups:
        rows = []
        for system in SYSTEMS:
            if system not in labels:
                continue
            m = row_metrics(fold, cond, system, MIN_CALL_SPEECH_S)
            results["rows"][f"{cond}/{system}"] = m
            rows.append((labels[system], m))
        md += [f"### {title} — EVAL speakers, calls with >= {MIN_CALL_SPEECH_S:g} s speech", "", *table(rows), ""]
        if cond == "wide":
            m_all = row_metrics(fold, cond, "lda+asnorm", 0.0)
            results["rows"]["wide/lda+asnorm/all-calls"] = m_all
            md[-1:-1] = table([("lda+asnorm, all EVAL calls (incl. < 6 s)", m_all)])[2:]
    print("\n".join(md))

    # ---- the product's Scorer on the same EVAL trials ---------------------------------------
    check = product_check(embs, split, fold, out)
    md += ["### Product check", "", *check, ""]
    print("\n".join(check))

    # ---- back-end search on TUNE --------------------------------------------------------------
    if not args.no_grid:
        grid = search(embs, split, top_n)
        md += ["### Back-end choices searched on TUNE (EVAL not looked at)", "", *grid, ""]
        print("\n".join(grid))

    # ---- pooled cross-check over folds ----------------------------------------------------------
    if args.folds > 1:
        pooled = pooled_folds(embs, speakers, args.seed, args.folds, top_n)
        md += [f"### Cross-check: EVAL rotated over {args.folds} folds, figures pooled", "", *pooled, ""]
        print("\n".join(pooled))

    elapsed = time.time() - started
    cmd = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    head = [
        "# Accuracy on simulated telephone calls (GE2E, Resemblyzer 0.1.4)",
        "",
        f"Command: `{cmd.strip()}` — {time.strftime('%Y-%m-%d')}, {elapsed:.0f} s "
        f"({t_embed:.0f} s embedding, cached after the first run).",
        "",
        f"Corpus: `shared/speech` (real speakers; `conversations_*` left out; Asterisk en/es_MX and sherpa "
        f"speakerN cn/en merged). Speakers {len(speakers)}; split (seed {args.seed}): TRAIN {sizes['train']} "
        f"(LDA + cohort; includes the narrowband Asterisk voices and speakers with < {common.MIN_EVAL_SECONDS:g} s), "
        f"TUNE {sizes['tune']} (back-end choices, thresholds, calibration), EVAL {sizes['eval']} (these figures only). "
        "No speaker is in two sets.",
        "",
        counts,
        "",
        "Calls: the speech after the enrollment part, 300–3400 Hz, 8 kHz, G.711 mu-law, pink noise at 10–30 dB "
        "SNR (`voicecheck.channel.simulate_call_side`); embedded by the product's `Engine` (silero VAD, 1.6 s "
        "windows, GE2E). Columns: EER; minDCF at target prior 0.01 / 0.05; Cllr after the calibration fitted on "
        "TUNE (the product's `fit_calibration`); impostors flagged when the threshold lets 1% / 5% of EVAL "
        f"genuine calls be flagged (oracle threshold); and at the threshold chosen on TUNE at "
        f"{pct(common.FALSE_FLAG_TARGET)} genuine flagged (what the shipped profile does): the share of EVAL "
        "genuine calls flagged and of impostors flagged.",
        f"Back-end: {BACKEND}; AS-norm top-N {top_n}.",
        "",
    ]
    text = "\n".join(head + md)
    (out / "accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_write:
        dest = common.ROOT / "benchmarks" / "results" / "accuracy.md"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        print(f"wrote {dest}")
    print(f"total {elapsed:.0f} s")
    return 0


def product_check(embs, split, fold: Fold, out: Path) -> list[str]:  # noqa: ANN001
    """Does the product's Scorer reproduce the benchmark's numbers, with the shipped files?"""
    from voicecheck.config import Settings
    from voicecheck.embedders import BUILTIN
    from voicecheck.metrics import eer
    from voicecheck.scorer import Scorer, load_backend

    lines = []
    settings = common.scorer_settings(out)
    cohort = common.product_cohort(embs, split["train"])
    ev = fold.trials["eval"]
    long = ev.call_speech_s >= MIN_CALL_SPEECH_S
    mask = ev.target_mask[:, long]
    # 1) same maths: Scorer with the benchmark's own back-end
    for mode, system in (("cosine", "matched"), ("asnorm", "asnorm"), ("lda", "lda"), ("lda+asnorm", "lda+asnorm")):
        scorer = common.scorer_for_mode(mode, settings, fold.backend, cohort)
        S = common.scorer_matrix(scorer, ev.enroll["matched"], ev.calls)
        diff = float(np.max(np.abs(S - fold.scores["eval", "wide", system])))
        lines.append(f"- Scorer mode `{mode}` vs benchmark row `{system}`: max |score difference| {diff:.1e} over {S.size} trials.")
    # 2) the shipped back-end and profile, as Scorer.build loads them
    shipped = common.ROOT / "voicecheck" / "data" / f"{common.MODEL_KEY}-backend.npz"
    if not shipped.is_file():
        lines.append(f"- {shipped.relative_to(common.ROOT)} is missing: run scripts/train_backend.py.")
        return lines
    backend = load_backend(Settings(embeddings=str(out), backend_file="auto"), common.MODEL_KEY, BUILTIN[common.MODEL_KEY].name)
    same = backend is not None and np.allclose(backend.projection, fold.backend.projection, atol=1e-6) and np.allclose(
        backend.mean, fold.backend.mean, atol=1e-6
    )
    lines.append(f"- shipped back-end equals the one trained here on TRAIN: {'yes' if same else 'NO (retrain it)'}.")
    scorer = Scorer(settings, BUILTIN[common.MODEL_KEY].name, common.MODEL_KEY, backend, {"narrow": cohort})
    S = common.scorer_matrix(scorer, ev.enroll["matched"], ev.calls)[:, long]
    tar, non = S[mask], S[~mask]
    thr = scorer.threshold("narrow")
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


def search(embs, split, top_n: int) -> list[str]:  # noqa: ANN001
    """Back-end choices compared on TUNE (mean over both enrollment conditions)."""
    from voicecheck.metrics import eer

    rows = []
    configs = [replace(BACKEND, dim=d) for d in (24, 32, 48, 64, 96, 126)]
    configs += [replace(BACKEND, wccn=False), replace(BACKEND, shrink=0.02), replace(BACKEND, shrink=0.3)]
    configs += [replace(BACKEND, views=v) for v in ("wide,tel", "band,tel", "tel", "wide")]
    configs += [replace(BACKEND, mean="train")]
    seen = set()
    for cfg in configs:
        if cfg in seen:
            continue
        seen.add(cfg)
        f = Fold(embs, split, cfg, top_n, systems=("lda", "lda+asnorm"), parts=("tune",))
        e1, d1 = tune_criterion(f, "lda+asnorm")
        e0, d0 = tune_criterion(f, "lda")
        rows.append((cfg, e1, d1, e0, d0))
    for n in (50, 100):
        f = Fold(embs, split, BACKEND, n, systems=("lda+asnorm",), parts=("tune",))
        e1, d1 = tune_criterion(f, "lda+asnorm")
        rows.append((f"top-N {n} (shipped config)", e1, d1, float("nan"), float("nan")))
    # score fusion of the wideband and channel-matched enrollment (LDA + AS-norm on both sides)
    f = Fold(embs, split, BACKEND, top_n, systems=("lda+asnorm",), parts=("tune",))
    t = f.trials["tune"]
    wide = common.score_matrix("lda+asnorm", t.enroll["wide"], t.calls, f.cohort, f.backend, top_n)
    fused = 0.5 * (wide + f.scores["tune", "wide", "lda+asnorm"])
    m = t.target_mask
    rows.append(("fusion: wideband + matched enrollment, lda+asnorm (wide condition only)", eer(fused[m], fused[~m])[0],
                 float("nan"), float("nan"), float("nan")))
    best = min(rows, key=lambda r: (round(r[1], 4), r[2]))
    lines = ["| back-end | TUNE EER lda+asnorm | TUNE minDCF(0.05) lda+asnorm | TUNE EER lda | TUNE minDCF(0.05) lda |",
             "|---|---|---|---|---|"]
    for cfg, e1, d1, e0, d0 in rows:
        name = cfg if isinstance(cfg, str) else ", ".join(
            f"{k}={v}" for k, v in asdict(cfg).items() if getattr(BACKEND, k) != v) or "shipped: " + str(asdict(cfg))
        fmt = lambda x, p: "–" if np.isnan(x) else (pct(x) if p else f"{x:.3f}")  # noqa: E731
        lines.append(f"| {name}{' **best**' if cfg is best[0] else ''} | {fmt(e1, 1)} | {fmt(d1, 0)} | {fmt(e0, 1)} | {fmt(d0, 0)} |")
    return lines


def pooled_folds(embs, speakers, seed: int, folds: int, top_n: int) -> list[str]:  # noqa: ANN001
    """Every fold's EVAL scored with that fold's TRAIN back-end and TUNE calibration, LLRs pooled."""
    from voicecheck.metrics import cllr, summary
    from voicecheck.scoring import fit_calibration, threshold_at_false_flag

    pooled: dict[tuple[str, str], list] = {}
    per_fold: dict[str, list[float]] = {}
    from voicecheck.metrics import eer

    for k in range(folds):
        split = common.split_speakers(speakers, seed, fold=k, folds=folds)
        f = Fold(embs, split, BACKEND, top_n)
        for cond, system in product(("wide", "tel"), SYSTEMS):
            if (cond, system) == ("tel", "matched"):
                continue
            tar, non = f.pairs("eval", cond, system, MIN_CALL_SPEECH_S)
            t_tar, t_non = f.pairs("tune", "wide", calibration_key(system, cond))
            cal = fit_calibration(t_tar, t_non)
            thr = threshold_at_false_flag(t_tar, common.FALSE_FLAG_TARGET)
            acc = pooled.setdefault((cond, system), [[], [], 0, 0, 0])
            acc[0].append(cal.llr(tar))
            acc[1].append(cal.llr(non))
            acc[2] += int(np.sum(tar < thr))
            acc[3] += int(np.sum(non < thr))
            if system == "lda+asnorm":
                per_fold.setdefault(cond, []).append(eer(tar, non)[0])
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
    lines += [
        "",
        f"Pooled: {tar_n} target and {non_n} impostor trials (calls >= {MIN_CALL_SPEECH_S:g} s); scores pooled as "
        "calibrated LLRs (each fold's TUNE calibration). lda+asnorm EER per fold: "
        + "; ".join(f"{c}: " + ", ".join(pct(x) for x in v) for c, v in per_fold.items()) + ".",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
