"""Issue 12's reproductions, one test each: no input may turn a mismatch into a match or stop checking.

Fake model (tone "voices"), energy VAD; the CLI in-process through the ``vc`` fixture (conftest).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import assert_error as _error
from tests.fakes import chord, silence, stereo, write
from voicecheck.files import FolderLock
from voicecheck.report import FLAGGED, RESULTS, read_jsonl

VOICES = {"A": (220.0, 660.0, 1500.0), "B": (350.0, 1100.0, 2700.0)}


def call_file(path: Path, voice: str, seconds: float = 6.0) -> Path:
    x = np.concatenate([silence(0.5), chord(VOICES[voice], seconds), silence(0.5)])
    return write(path, stereo(silence(len(x) / 16000), x), 16000)


def manifest(path: Path, rows: list[tuple[str, str, Path]]) -> Path:
    path.write_text("call_id,borrower_id,audio\n" + "".join(f"{c},{b},{a}\n" for c, b, a in rows), encoding="utf-8")
    return path


@pytest.fixture()
def b1(vc, tmp_path: Path):
    """Borrower B1 enrolled with voice A."""
    x = np.concatenate([silence(0.5), chord(VOICES["A"], 8.0), silence(0.5)])
    res = vc("enroll", "B1", write(tmp_path / "enroll" / "b1.wav", x, 16000), "--channel", "0")
    assert res.exit_code == 0, res.output
    return vc


def test_new_audio_under_a_reused_call_id_is_embedded_and_scored(b1, tmp_path: Path) -> None:
    genuine = call_file(tmp_path / "calls" / "genuine.wav", "A")
    impostor = call_file(tmp_path / "calls" / "impostor.wav", "B", 6.3)
    first = manifest(tmp_path / "night1.csv", [("X1", "B1", genuine)])
    assert b1("batch", first, "--out", tmp_path / "n1", "--threshold", "cosine=0.9", "--quiet").exit_code == 0
    (r1,) = read_jsonl(tmp_path / "n1" / RESULTS)
    second = manifest(tmp_path / "night2.csv", [("X1", "B1", impostor)])
    assert b1("batch", second, "--out", tmp_path / "n2", "--threshold", "cosine=0.9", "--quiet").exit_code == 0
    (r2,) = read_jsonl(tmp_path / "n2" / RESULTS)
    assert r1["verdict"] == "match"
    assert r2["verdict"] == "mismatch" and r2["reason"] == "voice_mismatch"
    assert r2["content_hash"] != r1["content_hash"] and r2["score"] < r1["score"]


def _export(path: Path, entries: object, dimension: object = 32, model: str = "fake-bands") -> Path:
    data = {"format": "voicecheck-watchlist", "version": 1, "model": model, "dimension": dimension}
    path.write_text(json.dumps({**data, "entries": entries}), encoding="utf-8")
    return path


GOOD = list(np.full(32, 1 / np.sqrt(32)))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"label": "A1", "vector": [0.5, 0.5, 0.7]}], "has 3 values"),
        ([{"label": "A1", "vector": [True] * 32}], "list of numbers"),
        ([{"label": "A1", "vector": ["1e3"] * 32}], "list of numbers"),
        ([{"label": "A1", "vector": [1e38] * 32}], "norm"),
        ([{"label": "A1", "vector": [0.0] * 32}], "norm"),
        ([{"label": "A1", "vector": [[0.1] * 32]}], "list of numbers"),
        ({"label": "A1", "vector": GOOD}, "must be a list"),
        ([["A1", GOOD]], "must be an object"),
        ([{"label": "", "vector": GOOD}], "must not be empty"),
        ([{"vector": GOOD}], "lacks a text label"),
    ],
)
def test_a_bad_watchlist_file_is_refused_and_checking_goes_on(b1, tmp_path: Path, entries, message: str) -> None:
    good = {"label": "OK-0", "vector": GOOD}  # the good entry is not stored either: all or nothing
    bad = entries if not isinstance(entries, list) else [good, *entries]
    _error(b1("watchlist", "import", _export(tmp_path / "w.json", bad)), 2, message)
    assert json.loads(b1("watchlist", "list", "--json").output) == []
    res = b1("check", call_file(tmp_path / "c.wav", "A"), "--borrower", "B1", "--threshold", "cosine=0.9")
    assert res.exit_code == 0, res.output


def test_watchlist_file_structure_size_and_nan(b1, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.json"
    path.write_text(
        '{"format": "voicecheck-watchlist", "model": "fake-bands", "entries": [{"label": "A", "vector": ['
        + ", ".join(["NaN"] * 32)
        + "]}]}"
    )
    _error(b1("watchlist", "import", path), 2, "not valid JSON")
    path.write_text("[" * 100000 + "]" * 100000)
    _error(b1("watchlist", "import", path), 2, "watchlist")
    path.write_bytes(b"\xff\xfe not utf-8")
    _error(b1("watchlist", "import", path), 2, "not valid JSON")
    monkeypatch.setattr("voicecheck.enrollment.MAX_WATCHLIST_BYTES", 100)
    _error(b1("watchlist", "import", _export(path, [{"label": "A", "vector": GOOD}])), 2, "byte limit")
    _error(b1("watchlist", "import", "/dev/zero"), 2, "not a regular file")


@pytest.mark.parametrize("value", ["nan", "inf", "-1000", "1.5"])
def test_a_threshold_that_is_not_finite_or_off_its_scale_is_refused(b1, tmp_path: Path, value: str) -> None:
    call = call_file(tmp_path / "c.wav", "B")
    _error(b1("check", call, "--borrower", "B1", "--threshold", f"cosine={value}"), 2, "cosine threshold")
    with (tmp_path / "voicecheck.toml").open("a", encoding="utf-8") as f:
        f.write(f"[thresholds]\ncosine = {value}\n")
    _error(b1("check", call, "--borrower", "B1"), 2, "cosine threshold")


def test_a_threshold_must_name_its_scoring_mode(b1, tmp_path: Path) -> None:
    call = call_file(tmp_path / "c.wav", "B")
    _error(b1("check", call, "--borrower", "B1", "--threshold", "0.5"), 2, "which scoring mode", "MODE=VALUE")
    _error(b1("check", call, "--borrower", "B1", "--threshold", "plda+asnorm=0.5"), 2, "unknown scoring mode")
    with (tmp_path / "voicecheck.toml").open("a", encoding="utf-8") as f:
        f.write("threshold = 0.5\n")
    _error(b1("check", call, "--borrower", "B1"), 2, "not used any more", "[thresholds]")


def test_the_model_manifest_imports_no_code_it_names(b1, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nclass s: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    emb = tmp_path / "embeddings"
    with (emb / "models.toml").open("a", encoding="utf-8") as f:
        f.write('\n[evil]\nbackend = "evil:s"\nname = "evil"\n')
    _error(b1("check", call_file(tmp_path / "c.wav", "A"), "--borrower", "B1", "--model", "evil"), 2, "registered")
    assert not marker.exists()


def test_one_writer_per_out_folder(b1, tmp_path: Path) -> None:
    rows = manifest(tmp_path / "m.csv", [("K1", "B1", call_file(tmp_path / "calls" / "k1.wav", "A"))])
    with FolderLock(tmp_path / "out", "batch"):
        _error(b1("batch", rows, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet"), 2, "in use")
    assert b1("batch", rows, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet").exit_code == 0


def test_another_manifest_into_the_same_out_is_refused_not_skipped(b1, tmp_path: Path) -> None:
    first = manifest(tmp_path / "a.csv", [("K1", "B1", call_file(tmp_path / "calls" / "k1.wav", "A"))])
    second = manifest(tmp_path / "b.csv", [("K9", "B1", call_file(tmp_path / "calls" / "k9.wav", "B"))])
    assert b1("batch", first, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet").exit_code == 0
    _error(
        b1("batch", second, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet"), 2, "another manifest"
    )
    assert [r["call_id"] for r in read_jsonl(tmp_path / "out" / RESULTS)] == ["K1"]
    res = b1("batch", first, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet")
    assert res.exit_code == 0 and len(list(read_jsonl(tmp_path / "out" / RESULTS))) == 1  # resumed, not redone


def test_devices_pipes_and_oversized_audio_are_errors_at_once(b1, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.wav")
    for path, needle in (("/dev/zero", "not a regular file"), (tmp_path / "pipe.wav", "not a regular file")):
        start = time.monotonic()
        _error(b1("check", path, "--borrower", "B1", "--threshold", "cosine=0.9"), 2, needle)
        assert time.monotonic() - start < 30  # answered, not hung or reading forever
    long_call = call_file(tmp_path / "long.wav", "A", 20.0)
    with (tmp_path / "voicecheck.toml").open("a", encoding="utf-8") as f:
        f.write("max_audio_s = 10.0\n")
    _error(b1("check", long_call, "--borrower", "B1", "--threshold", "cosine=0.9"), 2, "10 s limit")
    with (tmp_path / "voicecheck.toml").open("a", encoding="utf-8") as f:
        f.write("max_audio_bytes = 2000\n")
    _error(b1("check", long_call, "--borrower", "B1", "--threshold", "cosine=0.9"), 2, "2000-byte limit")


def test_a_manifest_that_is_not_utf8_csv_is_one_clear_error(b1, tmp_path: Path) -> None:
    bad = tmp_path / "gbk.csv"
    bad.write_bytes("call_id,borrower_id,audio\nK1,借款人,a.wav\n".encode("gbk"))
    _error(b1("batch", bad, "--out", tmp_path / "out", "--quiet"), 2, "not UTF-8")
    _error(b1("batch", tmp_path, "--out", tmp_path / "out2", "--quiet"), 2, "not a regular file")


def test_plot_and_out_paths_are_checked_before_any_work(b1, tmp_path: Path) -> None:
    call = call_file(tmp_path / "c.wav", "A")
    _error(
        b1("check", call, "--borrower", "B1", "--threshold", "cosine=0.9", "--plot", tmp_path / "no" / "t.png"),
        2,
        "does not exist",
    )
    _error(b1("check", call, "--borrower", "B1", "--threshold", "cosine=0.9", "--plot", tmp_path), 2, "folder")
    (tmp_path / "afile").write_text("")
    rows = manifest(tmp_path / "m.csv", [("K1", "B1", call)])
    _error(b1("batch", rows, "--out", tmp_path / "afile", "--quiet"), 2, "is a file, not a folder")


def test_results_never_go_through_a_planted_symlink(b1, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / RESULTS).symlink_to(victim)
    rows = manifest(tmp_path / "m.csv", [("K1", "B1", call_file(tmp_path / "c.wav", "A"))])
    _error(b1("batch", rows, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet"), 2, "symbolic link")
    assert victim.read_text() == "keep"


def test_ids_that_a_spreadsheet_would_run_are_escaped_in_flagged_csv(b1, tmp_path: Path) -> None:
    rows = manifest(
        tmp_path / "m.csv",
        [
            ("=HYPERLINK(1)", "B1", call_file(tmp_path / "c.wav", "B")),
            ("@SUM(2)", "-B2", call_file(tmp_path / "d.wav", "A", 6.2)),
        ],
    )
    assert b1("batch", rows, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet").exit_code == 0
    text = (tmp_path / "out" / FLAGGED).read_text(encoding="utf-8")
    assert "'=HYPERLINK(1)" in text and "'@SUM(2)" in text and "'-B2" in text
    assert "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text


def test_ids_are_the_same_with_or_without_surrounding_spaces(b1, tmp_path: Path) -> None:
    call = call_file(tmp_path / "c.wav", "A")
    assert b1("check", call, "--borrower", " B1 ", "--threshold", "cosine=0.9").exit_code == 0
    rows = manifest(tmp_path / "m.csv", [(" K1 ", "  B1", call)])
    assert b1("batch", rows, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet").exit_code == 0
    (r,) = read_jsonl(tmp_path / "out" / RESULTS)
    assert (r["call_id"], r["borrower_id"], r["verdict"]) == ("K1", "B1", "match")
    _error(b1("enroll", "B\x07", call, "--channel", "1"), 2, "printable")


def test_too_little_speech_never_reads_as_enough(b1, tmp_path: Path) -> None:
    short = write(tmp_path / "short.wav", np.concatenate([silence(0.3), chord(VOICES["A"], 0.97), silence(0.3)]), 16000)
    res = b1("enroll", "B7", short, "--channel", "0")
    assert res.exit_code == 2
    said = [line for line in res.output.splitlines() if "speech found" in line][0]
    found, needed = (float(t.split(" s")[0].split()[-1]) for t in said.split("needs at least"))
    assert found < needed
