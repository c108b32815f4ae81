"""voicecheck.batch with the fake model (real silero on the sample calls): one record per row,
summary, resumability, torn-line repair, and 2 spawned workers agreeing with 1."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes import SAMPLES, counted, workspace
from voicecheck.audio import load
from voicecheck.batch import run_batch
from voicecheck.config import Settings, load_settings
from voicecheck.errors import UsageError
from voicecheck.manifest import call_rows, read_rows
from voicecheck.pipeline import enroll_recordings
from voicecheck.report import RESULTS, SUMMARY, read_jsonl

CALLS = SAMPLES / "calls"
GOOD = [f"C00{i}" for i in range(1, 9)]
ERROR_ROWS = {"C901", "", "C001#dup", "C903", "C904", "C905"}


def _manifest(tmp_path: Path) -> Path:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_text("this is not audio\n" * 50)
    truth = {r["call_id"]: r for _, r in read_rows(SAMPLES / "calls.csv", ())}
    lines = ["call_id,borrower_id,audio,customer_channel"]
    lines += [f"{c},{truth[c]['borrower_id']},{CALLS / (c + '.wav')},1" for c in GOOD]
    lines += [
        f"C901,B1001,{tmp_path / 'missing.wav'},1",  # missing file
        f"C902,B1001,{corrupt},",  # corrupt file (default channel)
        f",B1001,{CALLS / 'C001.wav'},1",  # empty call_id
        f"C001,B1001,{CALLS / 'C001.wav'},1",  # duplicate call_id
        f"C903,B1001,{CALLS / 'C001.wav'},left",  # bad customer_channel
        f"C904,B1001,{CALLS / 'C001.wav'},5",  # channel the file does not have
        f"C905,B9999,{CALLS / 'C002.wav'},1",  # same audio as C002, borrower never enrolled
    ]
    path = tmp_path / "calls.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _settings(root: Path, counter: Path | None = None, **kw: object) -> Settings:
    """One worker unless ``kw`` says otherwise (the default is one per CPU): two workers may both embed
    audio that two rows share before either has stored it, which the embedding counts below exclude."""
    emb = workspace(root, counter)
    kw = {"workers": 1, **kw}
    return load_settings(
        None, store=str(root / "store"), embeddings=str(emb), model="fake", thresholds={"cosine": 0.8}, **kw
    )


@pytest.fixture()
def enrolled(tmp_path: Path) -> tuple[Settings, Path, Path]:
    counter = tmp_path / "embed_calls.txt"
    settings = _settings(tmp_path / "ws", counter)
    items = [(f["borrower_id"], f["audio"]) for _, f in read_rows(SAMPLES / "enroll.csv", ("borrower_id", "audio"))]
    assert enroll_recordings(items, settings, report=lambda _: None, consent="test consent") == 0
    return settings, counter, _manifest(tmp_path)


def _records(out: Path) -> list[dict]:
    return list(read_jsonl(out / RESULTS))


def test_call_rows_flags_problems(tmp_path: Path) -> None:
    rows = list(call_rows(_manifest(tmp_path), 1))
    assert [r.row for r in rows] == list(range(1, 16))
    problems = {r.row: r.problem for r in rows if r.problem}
    assert set(problems) == {11, 12, 13}
    assert "empty call_id" in problems[11] and "more than once" in problems[12] and "left" in problems[13]
    assert rows[9].channel == 1  # empty customer_channel: the default
    assert Path(rows[0].audio).is_absolute()


def test_manifest_audio_is_relative_to_the_csv(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    m = tmp_path / "sub" / "m.csv"
    m.write_text("call_id,borrower_id,audio\nC1,B1,a/b.wav\n")
    assert [r.audio for r in call_rows(m, 0)] == [str(tmp_path / "sub" / "a" / "b.wav")]


@pytest.mark.parametrize("text", ["call_id,audio\nC1,a.wav\n", ""])
def test_manifest_without_required_columns(tmp_path: Path, text: str) -> None:
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(UsageError, match="borrower_id"):
        list(call_rows(m, 1))
    with pytest.raises(UsageError, match="cannot be opened"):
        list(call_rows(tmp_path / "none.csv", 1))


def test_batch_one_record_per_row_and_summary(enrolled, tmp_path: Path) -> None:
    settings, counter, manifest = enrolled
    before = counted(counter)
    out = tmp_path / "out"
    summary = run_batch(manifest, out, settings)
    records = _records(out)
    assert sorted(r["row"] for r in records) == list(range(1, 16))
    by_row = {r["row"]: r for r in records}
    for row in range(9, 15):
        assert by_row[row]["verdict"] == "error", by_row[row]
        assert by_row[row]["model"] == "fake-bands"
    assert by_row[9]["reason"].startswith("unreadable_audio") and "missing.wav" in by_row[9]["reason"]
    assert by_row[10]["reason"].startswith("unreadable_audio") and "corrupt.wav" in by_row[10]["reason"]
    assert all(by_row[r]["reason"].startswith("usage_error") for r in (11, 12, 13, 14))
    assert "channel 5" in by_row[14]["reason"]
    assert by_row[7]["call_id"] == "C007" and (by_row[7]["verdict"], by_row[7]["reason"]) == (
        "inconclusive",
        "insufficient_speech",
    )
    assert (by_row[15]["verdict"], by_row[15]["reason"]) == ("inconclusive", "not_enrolled")
    for row in (1, 2, 3, 4, 5, 6, 8):
        r = by_row[row]
        assert r["verdict"] in ("match", "mismatch") and r["score"] is not None and r["threshold"] == 0.8
        assert r["model"] == "fake-bands" and r["band"] == "narrow" and r["speech_seconds"] > 3
    # the same audio (C002 and C905) is embedded once; C007 has no speech to embed
    assert counted(counter) - before == 7

    assert json.loads((out / SUMMARY).read_text()) == summary
    assert summary["calls"] == 15 and sum(summary["verdicts"].values()) == 15
    assert summary["verdicts"]["error"] == 6 and summary["verdicts"]["inconclusive"] == 2
    audio_s = sum(load(CALLS / f"{c}.wav").duration_s for c in GOOD) + load(CALLS / "C002.wav").duration_s
    assert summary["audio_seconds"] == pytest.approx(audio_s, abs=0.5)
    assert summary["wall_seconds"] > 0 and summary["model"] == "fake-bands"


def test_second_run_does_no_repeated_work(enrolled, tmp_path: Path) -> None:
    settings, counter, manifest = enrolled
    out = tmp_path / "out"
    first = run_batch(manifest, out, settings)
    records, work = _records(out), counted(counter)
    second = run_batch(manifest, out, settings)
    assert _records(out) == records
    assert counted(counter) == work
    assert second["verdicts"] == first["verdicts"] and second["calls"] == 15


def test_new_out_dir_reuses_stored_embeddings(enrolled, tmp_path: Path) -> None:
    settings, counter, manifest = enrolled
    run_batch(manifest, tmp_path / "night1", settings)
    work = counted(counter)
    run_batch(manifest, tmp_path / "night2", settings)
    assert counted(counter) == work
    strip = lambda rs: [{k: v for k, v in r.items() if k != "timings_s"} for r in rs]  # noqa: E731
    assert strip(_records(tmp_path / "night2")) == strip(_records(tmp_path / "night1"))


def test_torn_last_line_is_repaired_and_rewritten_once(enrolled, tmp_path: Path) -> None:
    settings, counter, manifest = enrolled
    out = tmp_path / "out"
    run_batch(manifest, out, settings)
    data = (out / RESULTS).read_bytes()
    lines = data.splitlines(keepends=True)
    last = json.loads(lines[-1])
    (out / RESULTS).write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # killed mid-write
    work = counted(counter)
    summary = run_batch(manifest, out, settings)
    records = _records(out)
    assert len(records) == 15 and sorted(r["row"] for r in records) == list(range(1, 16))
    assert records[-1]["row"] == last["row"] and records[-1]["verdict"] == last["verdict"]
    assert records[-1]["score"] == last["score"]
    assert counted(counter) == work  # its embedding was already stored
    assert summary["calls"] == 15


def test_calls_per_task_changes_no_result(enrolled, tmp_path: Path) -> None:
    """One call per task or every row in one task (errors, silence and a repeated audio among them):
    the same records, and the repeated audio is embedded once either way."""
    settings, _, manifest = enrolled
    results = {}
    for size in (1, 15):
        counter = tmp_path / f"count{size}.txt"
        run = replace(settings, calls_per_task=size, embeddings=str(workspace(tmp_path / f"w{size}", counter)))
        run_batch(manifest, tmp_path / f"out{size}", run)
        assert counted(counter) == 7
        results[size] = {r["row"]: (r["verdict"], r["score"], r["reason"]) for r in _records(tmp_path / f"out{size}")}
    assert results[1] == results[15] and len(results[1]) == 15


@pytest.mark.slow
def test_two_spawned_workers_agree_with_one(enrolled, tmp_path: Path) -> None:
    """Same store, a fresh embeddings workspace per run, so both runs embed every call."""
    settings, _, manifest = enrolled
    results = {}
    for workers in (1, 2):
        run = replace(settings, workers=workers, embeddings=str(workspace(tmp_path / f"w{workers}")))
        summary = run_batch(manifest, tmp_path / f"out{workers}", run)
        assert summary["workers"] == workers
        results[workers] = {
            r["row"]: (r["call_id"], r["verdict"], r["score"], (r["reason"] or "").split(":")[0])
            for r in _records(tmp_path / f"out{workers}")
        }
    assert results[1] == results[2]
    assert len(results[2]) == 15


def test_a_scheduled_retrain_is_reported_and_a_refusal_is_no_error(enrolled, tmp_path: Path) -> None:
    settings, _, manifest = enrolled
    summary = run_batch(manifest, tmp_path / "out", replace(settings, adapt_every_days=7))
    trained = summary["backend_training"]
    assert trained["status"] == "not trained" and "operating point" in trained["reason"]
    assert summary["verdicts"]["error"] == 6  # the run itself is the same
    assert run_batch(manifest, tmp_path / "out2", settings)["backend_training"] is None  # off by default


@pytest.mark.parametrize("verdict", ["match", "mismatch"])
def test_record_keeps_timeline_and_regions_only_when_not_a_match(verdict: str) -> None:
    """results.jsonl keeps a call's timeline and regions for the review queue, a match's not; the
    result itself is left whole, and the record shares no list with it."""
    from voicecheck.batch import record_of
    from voicecheck.types import CallResult

    timeline = [{"start_s": 0.0, "end_s": 1.6, "score": 0.8}]
    result = CallResult("C1", "B1", verdict, timeline=timeline, speech_regions=[[0.0, 1.6]])  # type: ignore[arg-type]
    record = record_of(result)
    assert record["call_id"] == "C1" and record["verdict"] == verdict
    if verdict == "match":
        assert record["timeline"] is None and record["speech_regions"] is None
    else:
        assert record["timeline"] == timeline and record["speech_regions"] == [[0.0, 1.6]]
        record["timeline"][0]["score"] = 0.0
    assert result.timeline == [{"start_s": 0.0, "end_s": 1.6, "score": 0.8}]
    assert result.speech_regions == [[0.0, 1.6]]
