"""Tests for recipes.corpus (speakers, the split) and recipes.material (enrollment, calls, segments).

A small generated MANIFEST.csv stands in for shared/speech (no audio is read); material is cut
from generated signals.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from recipes import corpus, material

RATE = corpus.SAMPLE_RATE


def write_manifest(root: Path, rows: list[tuple[str, str, str, float, int]]) -> Path:
    """MANIFEST.csv with (source, speaker, file, seconds, sample_rate_original) rows."""
    with (root / "MANIFEST.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "speaker", "file", "seconds", "sample_rate_original"])
        w.writerows(rows)
    return root


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    rows = [("librispeech", f"s{i:02d}", f"librispeech/s{i:02d}/a.flac", 12.0 + i, 16000) for i in range(23)]
    rows += [
        ("librispeech", "s00", "librispeech/s00/b.flac", 3.0, 16000),
        ("librispeech", "short", "librispeech/short/a.flac", 6.0, 16000),
        ("telephone_asterisk_prompts_debian", "allison_smith_en", "ast/en/a.flac", 20.0, 8000),
        ("telephone_asterisk_prompts_debian", "allison_smith_esMX", "ast/es/a.flac", 20.0, 8000),
        ("conversations_ami", "mix", "conv/mix/a.flac", 30.0, 16000),
    ]
    return write_manifest(tmp_path, rows)


def test_read_corpus_merges_one_voice_and_drops_conversations(speech: Path) -> None:
    speakers = corpus.read_corpus(speech)
    keys = [s.key for s in speakers]
    assert keys == sorted(keys)
    assert not any(k.startswith("conversations_") for k in keys)
    allison = [s for s in speakers if "allison" in s.key]
    assert [s.key for s in allison] == ["telephone_asterisk_prompts_debian/allison_smith_en"]
    assert len(allison[0].files) == 2 and allison[0].seconds == pytest.approx(40.0)
    s00 = next(s for s in speakers if s.key == "librispeech/s00")
    assert s00.seconds == pytest.approx(15.0) and len(s00.files) == 2
    # narrowband originals and short speakers cannot be TUNE or EVAL speakers
    assert not allison[0].evaluable
    assert not next(s for s in speakers if s.key == "librispeech/short").evaluable


def test_split_is_disjoint_complete_and_deterministic(speech: Path) -> None:
    speakers = corpus.read_corpus(speech)
    split = corpus.split_speakers(speakers, seed=0)
    sets = {part: {s.key for s in group} for part, group in split.items()}
    assert not (sets["train"] & sets["tune"] or sets["train"] & sets["eval"] or sets["tune"] & sets["eval"])
    assert sets["train"] | sets["tune"] | sets["eval"] == {s.key for s in speakers}
    assert all(s.evaluable for s in split["tune"] + split["eval"])
    assert {s.key for s in speakers if not s.evaluable} <= sets["train"]
    assert corpus.split_speakers(speakers, seed=0) == split
    assert corpus.split_speakers(speakers, seed=1) != split


def test_every_evaluable_speaker_is_eval_in_exactly_one_fold(speech: Path) -> None:
    speakers = corpus.read_corpus(speech)
    seen: list[str] = []
    for fold in range(corpus.FOLDS):
        seen += [s.key for s in corpus.split_speakers(speakers, seed=0, fold=fold)["eval"]]
    assert sorted(seen) == sorted(s.key for s in speakers if s.evaluable)


def test_tune_rotations_keep_eval_and_rotate_tune(speech: Path) -> None:
    speakers = corpus.read_corpus(speech)
    rotations = corpus.tune_rotations(speakers, seed=0)
    assert len(rotations) == corpus.FOLDS - 1
    assert rotations[0] == corpus.split_speakers(speakers, seed=0)
    evals = {tuple(s.key for s in r["eval"]) for r in rotations}
    assert len(evals) == 1
    tunes = [{s.key for s in r["tune"]} for r in rotations]
    assert all(not (a & b) for i, a in enumerate(tunes) for b in tunes[i + 1 :])
    with pytest.raises(ValueError, match="EVAL fold"):
        corpus.split_speakers(speakers, seed=0, fold=2, tune_fold=2)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts with short pauses, float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal(int(seconds * RATE)).astype(np.float32)
    x[np.arange(x.size) % (RATE // 2) < RATE // 20] = 0.0  # 50 ms pause every 0.5 s
    return x


def test_one_long_utterance_gives_an_enrollment_and_one_call() -> None:
    utt = speechlike(14.0, 0)
    enroll, calls = material.speaker_material([utt])
    assert len(calls) == 1
    assert len(enroll) >= material.ENROLL_MIN_S * RATE
    assert abs(len(calls[0]) - material.CALL_TARGET_S * RATE) <= 0.7 * RATE  # cut within +-0.6 s, at a pause
    assert len(enroll) + len(calls[0]) == len(utt)


def test_many_utterances_give_whole_utterance_calls_within_limits() -> None:
    utts = [speechlike(3.0, i) for i in range(20)]
    enroll, calls = material.speaker_material(utts)
    assert material.MULTI_ENROLL_S * RATE <= len(enroll) < (material.MULTI_ENROLL_S + 3.0 + 3 * material.GAP_S) * RATE
    assert 1 <= len(calls) <= material.CALLS_PER_SPEAKER
    assert all(material.CALL_MIN_S * RATE <= len(c) <= material.CALL_MAX_S * RATE for c in calls)
    assert material.speaker_material(utts)[1][0].tobytes() == calls[0].tobytes()  # deterministic


def test_segments_cover_the_speech_with_overlap() -> None:
    utts = [speechlike(7.0, 1), speechlike(6.0, 2)]
    joined = material.join_utterances(utts)
    assert len(joined) == 13 * RATE + int(material.GAP_S * RATE)
    pieces = material.segments(utts)
    assert all(len(p) == material.SEGMENT_S * RATE for p in pieces)
    assert len(pieces) >= (len(joined) - material.SEGMENT_S * RATE) // (material.SEGMENT_HOP_S * RATE)
    win, hop = int(material.SEGMENT_S * RATE), int(material.SEGMENT_HOP_S * RATE)
    last = (len(pieces) - 1) * hop
    if not np.array_equal(pieces[-1], joined[last : last + win]):
        last = len(joined) - win  # an extra segment flush with the end
    assert np.array_equal(pieces[-1], joined[last : last + win])
    assert last + win >= len(joined) - hop // 2  # at most half a hop left uncovered at the end
    short = speechlike(3.0, 3)
    assert [len(p) for p in material.segments([short])] == [len(short)]


def test_telephone_is_seeded_by_its_parts() -> None:
    x = speechlike(2.0, 4)
    a, b = material.telephone(x, 0, "spk", "call", 0), material.telephone(x, 0, "spk", "call", 0)
    c = material.telephone(x, 0, "spk", "call", 1)
    assert a.dtype == np.float32 and abs(a.size - 2 * 8000) <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_results_file_records_no_path_of_the_machine(tmp_path: Path) -> None:
    beside = corpus.ROOT.parent / "shared" / "speech"  # the default speech folder, given as an absolute path
    assert corpus.portable(str(beside)) == str(Path("..", "shared", "speech"))
    elsewhere = corpus.portable(str(tmp_path / "speech"))
    assert not Path(elsewhere).is_absolute() and (corpus.ROOT / elsewhere).resolve() == (tmp_path / "speech").resolve()
    assert corpus.portable("--seed") == "--seed"  # anything else as given
    assert corpus.portable("../shared/speech") == "../shared/speech"
