"""Build samples/: a few real recordings, borrower enrollments and simulated stereo calls.

Two steps:

1. Copy the few recordings the samples need from the shared speech collection (``--speech``,
   default ``../shared/speech`` beside the repo) into ``samples/speech/<source>/<speaker>/``,
   unchanged, with their manifest rows (``samples/speech/MANIFEST.csv``) and ``samples/SOURCES.md``.
   Skipped when the collection is not there or with ``--from-samples``.
2. From the copies only, write ``samples/enroll.csv`` (wideband enrollment recordings),
   ``samples/calls/*.wav`` (stereo 8 kHz G.711 mu-law: collector on channel 0, customer on
   channel 1), ``samples/calls.csv`` and ``samples/calls_truth.csv``.

Step 2 is deterministic (fixed seed), so a clone without the shared collection can rebuild the
same calls::

    python scripts/make_samples.py --from-samples

``calls_truth.csv`` says who really speaks in each call; it is for people and tests, never read
by voicecheck itself.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import importlib
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

simulate = importlib.import_module("recipes.simulate")

log = logging.getLogger("make_samples")

SEED = 20240611
TARGET_LEVEL_DB = -26.0  # active speech level of each side before the channel, dBov
PAUSE_RANGE_S = (0.3, 0.6)  # between utterances of one speaker
SILENT_CUSTOMER_S = 8.0
TAKEOVER_S = 8.0  # how much of the second speaker a takeover call keeps

VCTK = "vctk_autovc"
SHERPA = "sherpa_sr-data"
PICOVOICE = "picovoice_eagle_samples"
ASTERISK = "telephone_asterisk_prompts_debian"


@dataclass(frozen=True)
class Utterance:
    source: str
    speaker: str
    utterance: str

    @property
    def relative(self) -> str:
        return f"{self.source}/{self.speaker}/{self.utterance}.flac"

    @property
    def who(self) -> str:
        return f"{self.source}/{self.speaker}"


def utts(source: str, speaker: str, *names: str) -> tuple[Utterance, ...]:
    return tuple(Utterance(source, speaker, name) for name in names)


# Borrowers: enrollment recordings (wideband, used as copied). Never reused in their own calls.
ENROLL: dict[str, tuple[Utterance, ...]] = {
    "B1001": utts(VCTK, "p225", "p225_003", "p225_011"),
    "B1002": utts(VCTK, "p226", "p226_005", "p226_011"),
    "B1003": utts(SHERPA, "fangjun", "enroll-fangjun-sr-2"),
    "B1004": utts(PICOVOICE, "speaker_1", "speaker_1_utt_1"),
}

# The collector (agent) is a voice no borrower has: Asterisk's English IVR prompts (Allison
# Smith), real 8 kHz telephone-band recordings.
COLLECTOR_PROMPTS = utts(
    ASTERISK,
    "allison_smith_en",
    "en-US_vm-whichbox",
    "en-US_privacy-prompt",
    "en-US_followme_options",
    "en-US_vm-newpassword",
)


@dataclass(frozen=True)
class CallPlan:
    call_id: str
    borrower_id: str
    truth: str  # genuine | impostor | silent | takeover
    customer: tuple[Utterance, ...]  # empty: silent customer line
    takeover: tuple[Utterance, ...] = ()  # who takes over after ``customer``
    note: str = ""


CALLS: tuple[CallPlan, ...] = (
    CallPlan(
        "C001",
        "B1001",
        "genuine",
        utts(VCTK, "p225", "p225_021", "p225_022"),
        note="English, F",
    ),
    CallPlan("C002", "B1002", "genuine", utts(VCTK, "p226", "p226_023"), note="English, M"),
    CallPlan(
        "C003",
        "B1003",
        "genuine",
        utts(
            SHERPA,
            "fangjun",
            "test-fangjun-test-sr-1",
            "test-fangjun-test-sr-2",
            "enroll-fangjun-sr-1",
        ),
        note="Mandarin",
    ),
    CallPlan("C004", "B1004", "genuine", utts(PICOVOICE, "speaker_1", "speaker_1_test_utt")),
    CallPlan(
        "C005",
        "B1002",
        "impostor",
        utts(VCTK, "p227", "p227_023"),
        note="another English man (not enrolled) answers as B1002",
    ),
    CallPlan(
        "C006",
        "B1003",
        "impostor",
        utts(SHERPA, "3dspk_speaker1_cn", "speaker1_a_cn_16k", "speaker1_b_cn_16k"),
        note="another Mandarin speaker (not enrolled) answers as B1003",
    ),
    CallPlan("C007", "B1004", "silent", (), note="customer line carries only line noise"),
    CallPlan(
        "C008",
        "B1001",
        "takeover",
        utts(VCTK, "p225", "p225_023"),  # recordings no other call or enrollment uses: calls that share
        takeover=utts(VCTK, "p227", "p227_021"),  # audio are replays (voicecheck/replaycheck.py)
        note="the borrower answers, then another speaker takes the phone",
    ),
)


def needed_utterances() -> list[Utterance]:
    seen: dict[str, Utterance] = {}
    groups = [*ENROLL.values(), COLLECTOR_PROMPTS]
    groups += [plan.customer + plan.takeover for plan in CALLS]
    for group in groups:
        for utt in group:
            seen.setdefault(utt.relative, utt)
    return sorted(seen.values(), key=lambda u: u.relative)


# --- step 1: copy ------------------------------------------------------------------------------


def copy_recordings(speech_dir: Path, samples_dir: Path) -> None:
    """Copy the needed FLACs unchanged and write their manifest rows and SOURCES.md."""
    with open(speech_dir / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = {row["file"]: row for row in reader}
    wanted = needed_utterances()
    missing = [u.relative for u in wanted if u.relative not in rows]
    if missing:
        raise SystemExit(f"not in {speech_dir / 'MANIFEST.csv'}: {', '.join(missing)}")

    out_dir = samples_dir / "speech"
    for utt in wanted:
        source = speech_dir / utt.relative
        target = out_dir / utt.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target.exists() and filecmp.cmp(source, target, shallow=False)):
            shutil.copyfile(source, target)
            log.info("copied %s", utt.relative)

    with open(out_dir / "MANIFEST.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for utt in wanted:
            writer.writerow(rows[utt.relative])


def read_manifest(samples_dir: Path) -> list[dict[str, str]]:
    with open(samples_dir / "speech" / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_sources(samples_dir: Path, manifest: list[dict[str, str]]) -> None:
    lines = [
        "# Sources of the sample recordings",
        "",
        "Every file under `speech/` is a real recording copied unchanged (16 kHz mono FLAC) from",
        "the project's shared speech collection, which gathered them from the public repositories",
        "and Debian packages named below. `speech/MANIFEST.csv` has the full manifest rows.",
        "",
        "The calls in `calls/` are derived from these recordings by `scripts/make_samples.py`",
        "(telephone band 300-3400 Hz at 8 kHz, G.711 mu-law, added noise): each call carries the",
        "licences of the recordings it was made from (see `calls_truth.csv` for who speaks in",
        "which call). The collector voice in every call is Allison Smith's Asterisk prompts",
        "(CC-BY-SA-3.0), so the call files are shared under CC-BY-SA-3.0 as well.",
        "",
        "Speaker ids are those of the original data sets; they are unique only within a source.",
        "",
        "| file | source | original repository | path in repository | speaker " + "| seconds | language | licence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in manifest:
        lines.append(
            f"| speech/{row['file']} | {row['source']} | {row['repo']} | {row['path_in_repo']} "
            f"| {row['speaker']} | {float(row['seconds']):.2f} | {row['language']} "
            f"| {row['license']} |"
        )
    lines += [
        "",
        "Licences in short (see each source for the full terms):",
        "",
        "- `vctk_autovc`: VCTK corpus, CC BY 4.0 (CSTR, University of Edinburgh), via the",
        "  auspicious3000/autovc repository (MIT).",
        "- `sherpa_sr-data`: csukuangfj/sr-data repository, Apache-2.0; the audio's own",
        "  provenance is not documented there.",
        "- `picovoice_eagle_samples`: Picovoice/eagle repository, Apache-2.0.",
        "- `telephone_asterisk_prompts_debian`: Debian package asterisk-core-sounds-en-wav,",
        "  Asterisk core sound prompts recorded by Allison Smith, CC-BY-SA-3.0.",
        "",
    ]
    (samples_dir / "SOURCES.md").write_text("\n".join(lines), encoding="utf-8")


# --- step 2: enrollments and calls ---------------------------------------------------------------


def load(samples_dir: Path, utt: Utterance) -> tuple[np.ndarray, int]:
    path = samples_dir / "speech" / utt.relative
    if not path.exists():
        raise SystemExit(f"missing {path}: run once with --speech pointing at the shared speech collection")
    samples, sample_rate = sf.read(str(path), dtype="float32")
    if samples.ndim != 1:
        raise SystemExit(f"{path} is not mono")
    return samples, int(sample_rate)


def to_level(samples: np.ndarray, level_db: float = TARGET_LEVEL_DB) -> np.ndarray:
    """Scale to the given active speech level (like a phone's AGC), never clipping."""
    power = simulate.active_power(samples)
    if power <= 0.0:
        return samples
    scaled = samples * np.sqrt(10.0 ** (level_db / 10.0) / power)
    peak = float(np.max(np.abs(scaled)))
    if peak > 0.95:
        scaled *= 0.95 / peak
    return scaled.astype(np.float32)


def concatenate(samples_dir: Path, group: tuple[Utterance, ...], rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One speaker's utterances joined with short pauses, at a common level and rate."""
    pieces: list[np.ndarray] = []
    rate = 0
    for index, utt in enumerate(group):
        samples, sample_rate = load(samples_dir, utt)
        if rate and sample_rate != rate:
            raise SystemExit(f"{utt.relative}: {sample_rate} Hz, expected {rate} Hz")
        rate = sample_rate
        if index:
            pieces.append(np.zeros(int(rng.uniform(*PAUSE_RANGE_S) * rate), dtype=np.float32))
        pieces.append(samples)
    return to_level(np.concatenate(pieces)), rate


def quiet_cut(samples: np.ndarray, sample_rate: int, near_s: float) -> int:
    """Index of the quietest 20 ms within 0.5 s after ``near_s``: where to end a speaker."""
    frame = int(0.02 * sample_rate)
    start = int(near_s * sample_rate)
    stop = min(samples.size - frame, start + sample_rate // 2)
    if stop <= start:
        return samples.size
    starts = np.arange(start, stop, frame)
    energy = [float(np.mean(samples[s : s + frame] ** 2)) for s in starts]
    return int(starts[int(np.argmin(energy))]) + frame // 2


SAMPLE_CONSENT = "public corpus recording, published under the licence in samples/SOURCES.md (no consent form)"
"""The consent reference of the sample enrollments: they are public-corpus recordings, not customers."""


def build(samples_dir: Path, seed: int) -> None:
    calls_dir = samples_dir / "calls"
    calls_dir.mkdir(parents=True, exist_ok=True)

    with open(samples_dir / "enroll.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["borrower_id", "audio", "consent"])
        for borrower_id, group in ENROLL.items():
            for utt in group:
                load(samples_dir, utt)  # fail early on a missing copy
                writer.writerow([borrower_id, f"speech/{utt.relative}", SAMPLE_CONSENT])

    call_rows: list[list[str]] = []
    truth_rows: list[list[str]] = []
    for index, plan in enumerate(CALLS):
        rng = np.random.default_rng([seed, index])
        enrolled = ENROLL[plan.borrower_id]
        used = {u.relative for u in plan.customer + plan.takeover}
        if used & {u.relative for u in enrolled}:
            raise SystemExit(f"{plan.call_id}: a call must not reuse enrollment recordings")
        if plan.truth == "impostor" and {u.who for u in plan.customer} & {enrolled[0].who}:
            raise SystemExit(f"{plan.call_id}: an impostor must not be the borrower")
        collector, rate = concatenate(samples_dir, (COLLECTOR_PROMPTS[index % len(COLLECTOR_PROMPTS)],), rng)
        takeover_at = -1
        if plan.customer:
            customer, customer_rate = concatenate(samples_dir, plan.customer, rng)
            if plan.takeover:
                second, _ = concatenate(samples_dir, plan.takeover, rng)
                second = second[: quiet_cut(second, customer_rate, TAKEOVER_S)]
                pause = np.zeros(int(rng.uniform(*PAUSE_RANGE_S) * customer_rate), np.float32)
                takeover_at = customer.size + pause.size
                customer = np.concatenate([customer, pause, second])
        else:
            customer_rate = rate
            customer = np.zeros(int(SILENT_CUSTOMER_S * rate), dtype=np.float32)
        if customer_rate != rate:
            raise SystemExit(f"{plan.call_id}: customer and collector rates differ")

        stereo, turns = simulate.make_call_with_turns(customer, collector, rate, rng, customer_channel=1)
        audio = f"calls/{plan.call_id}.wav"
        simulate.write_call(samples_dir / audio, stereo)
        log.info("wrote %s (%.1f s)", audio, stereo.shape[0] / simulate.CALL_SAMPLE_RATE)

        takeover_s = ""
        if takeover_at >= 0:
            at_s = takeover_at / rate
            for turn in turns:
                length = turn.end_s - turn.start_s
                if turn.role == "customer" and turn.source_start_s <= at_s < turn.source_start_s + length:
                    takeover_s = f"{turn.start_s + at_s - turn.source_start_s:.2f}"
        customer_speech_s = sum(turn.end_s - turn.start_s for turn in turns if turn.role == "customer")
        speakers = ";".join(dict.fromkeys(u.who for u in plan.customer + plan.takeover))
        call_rows.append([plan.call_id, plan.borrower_id, audio, "1"])
        truth_rows.append(
            [
                plan.call_id,
                plan.borrower_id,
                plan.truth,
                enrolled[0].who,
                speakers,
                takeover_s,
                f"{customer_speech_s if plan.customer else 0.0:.1f}",
                plan.note,
            ]
        )

    with open(samples_dir / "calls.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["call_id", "borrower_id", "audio", "customer_channel"])
        writer.writerows(call_rows)
    with open(samples_dir / "calls_truth.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            [
                "call_id",
                "borrower_id",
                "truth",
                "borrower_speaker",
                "customer_speakers",
                "takeover_s",
                "customer_audio_s",
                "note",
            ]
        )
        writer.writerows(truth_rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--speech",
        type=Path,
        default=REPO.parent / "shared" / "speech",
        help="shared speech collection to copy the originals from (default: ../shared/speech)",
    )
    parser.add_argument(
        "--from-samples",
        action="store_true",
        help="do not copy; rebuild enrollments and calls from the copies in samples/speech",
    )
    parser.add_argument("--out", type=Path, default=REPO / "samples", help="samples folder")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the call simulation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    samples_dir: Path = args.out
    samples_dir.mkdir(parents=True, exist_ok=True)
    if not args.from_samples and (args.speech / "MANIFEST.csv").exists():
        copy_recordings(args.speech, samples_dir)
    elif not args.from_samples:
        log.info("%s not found: using the copies in %s", args.speech, samples_dir / "speech")
    write_sources(samples_dir, read_manifest(samples_dir))
    build(samples_dir, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
