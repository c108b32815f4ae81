"""Replay checks in the product (issue 15): batch, check and rescore end to end with the fake model
and speech-like generated signals; erasure, retention, key rotation; the record fields."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import EnergyVad, counted, noise, stereo, syllables, tone, workspace, write
from voicecheck.batch import rescore, run_batch
from voicecheck.callstore import CallStore
from voicecheck.config import Settings, load_settings
from voicecheck.crypto import cipher_for
from voicecheck.erasure import erase, purge
from voicecheck.errors import UsageError
from voicecheck.pipeline import check_one, enroll_recordings
from voicecheck.replay import FingerprintIndex, MatchRule, ReplayMatch
from voicecheck.replaycheck import (
    Indexes,
    Ledger,
    Prints,
    ReplayOutcome,
    call_item,
    enrollment_item,
    index_paths,
    judge_replay,
)
from voicecheck.report import RESULTS, read_jsonl
from voicecheck.types import CallResult

RATE = 16000


def _phone(x: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """A telephone line: 300-3400 Hz at 8 kHz with noise (the file is then written mu-law)."""
    from recipes.simulate import simulate_call_side

    return simulate_call_side(x, rate, np.random.default_rng(seed), snr_db=25.0, codec="none")


def _call(path: Path, customer_8k: np.ndarray) -> Path:
    """A stereo 8 kHz mu-law call: the collector's line noise on channel 0, the customer on channel 1."""
    return write(path, stereo(noise(len(customer_8k) / 8000, 8000, 0.001, seed=9), customer_8k), 8000, "ULAW")


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """B1 enrolled with 12 s of wideband "speech"; calls: H (B1 speaking live), R (B1's enrollment
    replayed down the line between live speech), R2 (call H replayed for B1), N (B2, not enrolled,
    live); replay checks on (the default)."""
    monkeypatch.setattr("voicecheck.pipeline.SileroVad", lambda **kw: EnergyVad())
    counter = tmp_path / "embeds.txt"
    settings = load_settings(
        None,
        store=str(tmp_path / "store"),
        embeddings=str(workspace(tmp_path, counter)),
        model="fake",
        thresholds={"cosine": 0.5},
        cohort=False,
        workers=1,  # the batch runs in-process, where the VAD is patched
    )
    assert settings.replay and settings.replay_min_hits == 15
    enrollment = syllables(12.0, seed=1, rate=RATE)
    write(tmp_path / "enroll.wav", enrollment, RATE)
    assert enroll_recordings([("B1", str(tmp_path / "enroll.wav"))], settings, consent="test") == 0
    live = {n: syllables(4.0, seed=10 + n, rate=RATE) for n in range(4)}
    honest = _phone(np.concatenate([live[0], syllables(6.0, seed=20, rate=RATE), live[1]]), RATE, seed=1)
    replayed = _phone(np.concatenate([live[2], enrollment[2 * RATE : 9 * RATE] * 0.7, live[3]]), RATE, seed=2)
    again = _phone(np.concatenate([syllables(3.0, seed=30, rate=8000), honest[8000 : 9 * 8000]]), 8000, seed=3)
    calls = {
        "H": _call(tmp_path / "H.wav", honest),
        "R": _call(tmp_path / "R.wav", replayed),
        "R2": _call(tmp_path / "R2.wav", again),
        "N": _call(tmp_path / "N.wav", _phone(syllables(8.0, seed=40, rate=RATE), RATE, seed=4)),
    }
    manifest = tmp_path / "calls.csv"
    rows = [("H", "B1"), ("R", "B1"), ("R2", "B1"), ("N", "B2")]
    manifest.write_text(
        "call_id,borrower_id,audio\n" + "".join(f"{c},{b},{calls[c]}\n" for c, b in rows), encoding="utf-8"
    )
    return settings, calls, manifest, counter


def _records(out: Path) -> dict[str, dict]:
    return {r["call_id"]: r for r in read_jsonl(out / RESULTS)}


def _hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_batch_flags_replays_and_passes_honest_calls(world, tmp_path: Path) -> None:
    settings, calls, manifest, _ = world
    run_batch(manifest, tmp_path / "out", settings)
    got = _records(tmp_path / "out")
    h, r, r2, n = got["H"], got["R"], got["R2"], got["N"]
    assert (h["verdict"], h["reason"], h["replay_checked"], h["replay_of"]) == ("match", None, True, [])
    assert (r["verdict"], r["reason"], r["replay_checked"]) == ("mismatch", "replay", True)
    assert r["score"] >= r["threshold"]  # the voice itself passes: only the replay check catches it
    m = r["replay_of"][0]
    enroll_hash = _hash(tmp_path / "enroll.wav")
    assert (m["item"], m["kind"], m["owner"]) == (enrollment_item("B1", enroll_hash), "enrollment", "B1")
    # 7 s of the enrollment (from its 2 s) were played after 4 s of live speech
    assert 3.0 <= m["call_start_s"] <= 5.0 and 9.5 <= m["call_end_s"] <= 11.5
    assert 1.0 <= m["item_start_s"] <= 3.0 and m["matched_s"] >= 5.0 and m["hits"] >= 13
    assert (r2["verdict"], r2["reason"]) == ("mismatch", "replay")
    assert r2["replay_of"][0]["item"] == call_item(_hash(calls["H"])) and r2["replay_of"][0]["kind"] == "call"
    # B2 has no voiceprint and no earlier call: looked up, nothing found
    assert (n["verdict"], n["reason"], n["replay_checked"], n["replay_of"]) == (
        "inconclusive",
        "not_enrolled",
        True,
        [],
    )
    store = CallStore(settings.embeddings, cipher_for(settings))
    try:
        assert store.replay_outcome(_hash(calls["H"]), 1, "B1") is not None  # kept for rescore
        assert store.replay_outcome(_hash(calls["H"]), 1, "B2") is None
    finally:
        store.close()


def test_rescore_applies_the_stored_checks_and_the_rule_of_the_day(world, tmp_path: Path) -> None:
    settings, _, manifest, _ = world
    run_batch(manifest, tmp_path / "out", settings)
    rescore(tmp_path / "again", settings, manifest)
    first, again = _records(tmp_path / "out"), _records(tmp_path / "again")
    assert {c: (r["verdict"], r["reason"], r["replay_of"]) for c, r in again.items()} == {
        c: (r["verdict"], r["reason"], r["replay_of"]) for c, r in first.items()
    }
    strict = replace(settings, replay_min_hits=100_000)  # no audio is decoded: the stored spans are judged anew
    rescore(tmp_path / "strict", strict, manifest)
    got = _records(tmp_path / "strict")
    assert (got["R"]["verdict"], got["R"]["replay_checked"], got["R"]["replay_of"]) == ("match", True, [])


def test_check_looks_a_call_up_among_what_came_before_it(world, tmp_path: Path) -> None:
    settings, calls, manifest, _ = world
    r = check_one(calls["R"], "B1", settings)
    assert (r.verdict, r.reason, r.replay_checked) == ("mismatch", "replay", True)
    assert r.replay_of[0]["kind"] == "enrollment"
    run_batch(manifest, tmp_path / "out", settings)
    # H is stored; R2 (stored after it) replays it, but H is no replay of what came later
    h = check_one(calls["H"], "B1", settings)
    assert (h.verdict, h.replay_checked, h.replay_of) == ("match", True, [])
    r2 = check_one(calls["R2"], "B1", settings)
    assert r2.verdict == "mismatch" and r2.replay_of[0]["item"] == call_item(_hash(calls["H"]))
    # another borrower's calls are not searched per call
    assert check_one(calls["R2"], "B2", settings).replay_of == []


def test_the_cli_prints_the_replay_and_exits_as_a_mismatch(world, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from voicecheck.cli import app

    settings, calls, _, _ = world
    (tmp_path / "voicecheck.toml").write_text(
        f'model = "fake"\nstore = "{settings.store}"\nembeddings = "{settings.embeddings}"\ncohort = false\n'
        "[thresholds]\ncosine = 0.5\n",
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, ["check", str(calls["R"]), "--borrower", "B1"])
    assert res.exit_code == 1, res.output
    assert "MISMATCH (replay)" in res.output and "replay     " in res.output and "of enrollment" in res.output


def test_audio_that_cannot_be_fingerprinted_is_never_a_match(world, tmp_path: Path) -> None:
    """A steady tone enrolled and called: the voices match, but a tone has no landmark pairs."""
    settings, _, _, _ = world
    lines: list[str] = []
    write(tmp_path / "tone_enroll.wav", tone(440, 8.0, RATE), RATE)
    enroll_recordings([("B3", str(tmp_path / "tone_enroll.wav"))], settings, report=lines.append, consent="test")
    assert "NOT fingerprinted" in lines[0]
    call = _call(tmp_path / "tone.wav", tone(440, 8.0, 8000))
    r = check_one(call, "B3", settings)
    assert (r.verdict, r.reason, r.replay_checked) == ("inconclusive", "replay_not_checked", False)
    assert r.score is not None and r.score >= r.threshold and "landmarks" in (r.replay_problem or "")
    manifest = tmp_path / "tone.csv"
    manifest.write_text(f"call_id,borrower_id,audio\nT1,B3,{call}\n", encoding="utf-8")
    run_batch(manifest, tmp_path / "out", settings)
    t1 = _records(tmp_path / "out")["T1"]
    assert (t1["verdict"], t1["reason"], t1["replay_checked"]) == ("inconclusive", "replay_not_checked", False)


@pytest.mark.parametrize(
    ("verdict", "reason", "outcome", "want"),
    [
        ("match", None, ReplayOutcome(False, "no landmarks"), ("inconclusive", "replay_not_checked")),
        ("match", None, None, ("inconclusive", "replay_not_checked")),  # nothing stored for it
        ("mismatch", "voice_mismatch", ReplayOutcome(False, "x"), ("mismatch", "voice_mismatch")),
        ("inconclusive", "weak_evidence", ReplayOutcome(False, "x"), ("inconclusive", "weak_evidence")),
        ("inconclusive", "insufficient_speech", None, ("inconclusive", "insufficient_speech")),
        ("error", "internal_error: x", None, ("error", "internal_error: x")),
        ("mismatch", "speaker_change", "replay", ("mismatch", "replay")),
        ("match", None, "replay", ("mismatch", "replay")),
        ("match", None, "short", ("match", None)),
    ],
)
def test_judge_replay_fails_closed(verdict: str, reason: str | None, outcome: object, want: tuple) -> None:
    span = ReplayMatch("call:x", "call", "B1", 1.0, 6.0, 2.0, 7.0, 5.0, 40, 1.0, True)
    if outcome == "replay":
        outcome = ReplayOutcome(True, "", (span,), 3)
    elif outcome == "short":
        outcome = ReplayOutcome(True, "", (replace(span, hits=12),), 3)
    result = CallResult("C", "B1", verdict, reason=reason)  # type: ignore[arg-type]
    judge_replay(result, outcome, MatchRule(min_hits=13, min_matched_s=1.0))  # type: ignore[arg-type]
    assert (result.verdict, result.reason) == want
    if want[1] == "replay":
        assert result.replay_of[0]["item"] == "call:x" and result.replay_of[0]["matched_s"] == 5.0
    if want[1] == "replay_not_checked":
        assert result.replay_checked is False and result.replay_problem


def test_calls_are_looked_up_in_manifest_order_whatever_order_they_finish_in(tmp_path: Path) -> None:
    """Two calls sharing audio: the later row is the replay, even when its result arrives first."""
    from tests.fakes import syllables as speech
    from voicecheck.fingerprint import fingerprints
    from voicecheck.manifest import Row
    from voicecheck.workers import Embedded

    settings = Settings(store=str(tmp_path / "s"), embeddings=str(tmp_path / "e"))
    cipher = cipher_for(settings)
    x = speech(10.0, seed=5)
    prints = Prints(*fingerprints(x, 8000))
    calls = CallStore(settings.embeddings, cipher)
    indexes = Indexes.open(settings, cipher)
    try:
        ledger = Ledger(indexes, calls)
        rows = [Row(1, "first", "B1", "a.wav", 1), Row(2, "second", "B1", "b.wav", 1)]
        for r in rows:
            ledger.expect(r.row)
        found = {
            r.row: Embedded(r, "ok", content_hash=h, channel=1, prints=prints)
            for r, h in zip(rows, ("a" * 64, "b" * 64), strict=True)
        }
        ledger.arrive(found[2])  # the later row finishes first: held
        assert calls.replay_outcome("b" * 64, 1, "B1") is None
        ledger.arrive(found[1])
        ledger.finish()
        first = ReplayOutcome.from_json(calls.replay_outcome("a" * 64, 1, "B1") or "")
        second = ReplayOutcome.from_json(calls.replay_outcome("b" * 64, 1, "B1") or "")
        assert first.checked and first.candidates == ()
        assert second.candidates[0].item == call_item("a" * 64) and second.candidates[0].hits >= 13
    finally:
        indexes.close()
        calls.close()


def test_a_call_stored_before_replay_checks_is_fingerprinted_not_embedded_again(world, tmp_path: Path) -> None:
    settings, _, manifest, counter = world
    run_batch(manifest, tmp_path / "off", replace(settings, replay=False))
    embedded = counted(counter)
    rescore(tmp_path / "unchecked", settings, manifest)  # replay on: nothing stored for these calls yet
    unchecked = _records(tmp_path / "unchecked")
    assert (unchecked["H"]["verdict"], unchecked["H"]["reason"]) == ("inconclusive", "replay_not_checked")
    assert "run the batch" in unchecked["H"]["replay_problem"]
    run_batch(manifest, tmp_path / "on", settings)
    assert counted(counter) == embedded  # stored embeddings reused; only the fingerprints were made
    got = _records(tmp_path / "on")
    assert (got["H"]["verdict"], got["R"]["reason"], got["R2"]["reason"]) == ("match", "replay", "replay")


def test_the_same_audio_for_another_borrower_is_checked_for_that_borrower(world, tmp_path: Path) -> None:
    settings, calls, _, counter = world
    manifest = tmp_path / "dup.csv"
    manifest.write_text(f"call_id,borrower_id,audio\nR,B1,{calls['R']}\nR-B2,B2,{calls['R']}\n", encoding="utf-8")
    before = counted(counter)
    run_batch(manifest, tmp_path / "out", replace(settings, calls_per_task=1))
    got = _records(tmp_path / "out")
    assert got["R"]["reason"] == "replay" and got["R-B2"]["replay_checked"] is True
    assert got["R-B2"]["replay_of"] == []  # B1's enrollment is not B2's: searched per borrower
    assert counted(counter) - before == 1  # embedded once


def test_erasure_removes_the_borrowers_fingerprints_and_checks(world, tmp_path: Path) -> None:
    settings, calls, manifest, _ = world
    run_batch(manifest, tmp_path / "out", settings)
    paths = index_paths(settings)
    with FingerprintIndex(paths["enrollment"], cipher=cipher_for(settings)) as idx:
        assert idx.count("B1") == 1
    with FingerprintIndex(paths["call"], cipher=cipher_for(settings)) as idx:
        assert idx.count("B1") == 3 and idx.count("B2") == 1
    counts = erase(settings, "B1")
    assert counts["replay_items"] == 4
    for kind, path in paths.items():
        with FingerprintIndex(path, cipher=cipher_for(settings)) as idx:
            assert idx.count("B1") == 0
            assert idx.count("B2") == (1 if kind == "call" else 0)
        assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    store = CallStore(settings.embeddings, cipher_for(settings))
    try:
        assert store.replay_outcome(_hash(calls["R"]), 1, "B1") is None
        assert store.replay_outcome(_hash(calls["N"]), 1, "B2") is not None
    finally:
        store.close()
    audit = (Path(settings.store) / "audit.log").read_text()
    assert '"replay_items":4' in audit.replace(" ", "")


def test_retention_removes_old_calls_from_the_index_not_enrollments(world, tmp_path: Path, monkeypatch) -> None:
    settings, _, manifest, _ = world
    run_batch(manifest, tmp_path / "out", settings)
    monkeypatch.setattr("voicecheck.erasure.cutoff", lambda days: "9999-01-01T00:00:00+00:00")  # all is older
    counts = purge(settings, 0)
    assert counts["replay_items"] == 4
    paths = index_paths(settings)
    with FingerprintIndex(paths["call"], cipher=cipher_for(settings)) as idx:
        assert len(idx) == 0
    with FingerprintIndex(paths["enrollment"], cipher=cipher_for(settings)) as idx:
        assert len(idx) == 1


def test_the_index_is_private_keyed_and_follows_a_key_rotation(world, tmp_path: Path, monkeypatch) -> None:
    from voicecheck.protection import rotate_key

    settings, calls, manifest, _ = world
    paths = index_paths(settings)
    assert paths["enrollment"].parent == Path(settings.store)
    assert paths["call"].parent == Path(settings.embeddings)
    # move the session key into a key file (rotation rewrites a file)
    key_file = tmp_path / "keys" / "key"
    from voicecheck.crypto import key_file_text, keyring_for

    old = keyring_for(settings)
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(key_file_text(list(old.keys.values())))
    os.chmod(key_file, 0o600)
    monkeypatch.delenv("VOICECHECK_KEY")
    settings = replace(settings, key_file=str(key_file))
    run_batch(manifest, tmp_path / "out", settings)
    for path in paths.values():
        assert os.stat(path).st_mode & 0o777 == 0o600
        with sqlite3.connect(path) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            assert meta["keyed"] == "1" and meta["key_id"] == old.current
            assert db.execute("SELECT COUNT(*) FROM items WHERE sealed IS NULL").fetchone()[0] == 0
    done = rotate_key(settings)
    new = keyring_for(settings)
    assert done["dropped_old"] and list(new.keys) == [done["new"]]
    for path in paths.values():
        with sqlite3.connect(path) as db:
            assert dict(db.execute("SELECT key, value FROM meta").fetchall())["key_id"] == done["new"]
    r = check_one(calls["R"], "B1", settings)  # the re-keyed index still finds the replay
    assert r.reason == "replay" and r.replay_of[0]["kind"] == "enrollment"
    assert check_one(calls["H"], "B1", settings).verdict == "match"


def test_store_migrate_keys_an_index_made_without_encryption(tmp_path: Path, monkeypatch) -> None:
    from voicecheck.protection import migrate_stores

    monkeypatch.setattr("voicecheck.pipeline.SileroVad", lambda **kw: EnergyVad())
    plain = load_settings(
        None,
        store=str(tmp_path / "store"),
        embeddings=str(workspace(tmp_path)),
        model="fake",
        thresholds={"cosine": 0.5},
        cohort=False,
        encryption=False,
    )
    x = syllables(10.0, seed=3, rate=RATE)
    write(tmp_path / "e.wav", x, RATE)
    assert enroll_recordings([("B1", str(tmp_path / "e.wav"))], plain, consent="test") == 0
    call = _call(tmp_path / "c.wav", _phone(x, RATE, seed=5))
    assert check_one(call, "B1", plain).reason == "replay"
    keyed = replace(plain, encryption=True)
    lines = migrate_stores(keyed)
    assert any("replay index" in line and "keyed and sealed" in line for line in lines)
    assert check_one(call, "B1", keyed).reason == "replay"


def test_too_identical_is_a_warning_field_only(world, tmp_path: Path, monkeypatch) -> None:
    settings, calls, _, _ = world
    monkeypatch.setitem(__import__("voicecheck.liveness").liveness.TOO_IDENTICAL_COSINE, "fake-bands", 0.5)
    r = check_one(calls["H"], "B1", settings)
    near = r.too_identical
    assert near is not None and near["warn"] is True and near["threshold"] == 0.5
    assert near["recording"] == _hash(tmp_path / "enroll.wav") and 0.5 <= near["max_cosine"] <= 1.0
    assert r.verdict == "match"  # no verdict rests on the warning
    monkeypatch.setitem(__import__("voicecheck.liveness").liveness.TOO_IDENTICAL_COSINE, "fake-bands", 1.0)
    assert check_one(calls["H"], "B1", settings).too_identical["warn"] is False  # type: ignore[index]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("replay_min_hits", 4, r"replay.min.hits.*\[5, 100000\]"),
        ("replay_min_matched_s", -1.0, r"replay.min.matched.s.*\[0, 600\]"),
        ("replay_min_matched_s", float("nan"), "replay.min.matched.s"),
        ("replay", "maybe", "true or false"),
    ],
)
def test_replay_settings_are_validated(key: str, value: object, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        load_settings(None, **{key: value})


def test_records_carry_replay_fields_into_results_and_the_flagged_csv(world, tmp_path: Path) -> None:
    from voicecheck.report import FLAGGED, flagged_rows

    settings, _, manifest, _ = world
    run_batch(manifest, tmp_path / "out", settings)
    flagged = {r["call_id"]: r for r in flagged_rows(tmp_path / "out" / RESULTS)}
    assert "enrollment:B1:" in flagged["R"]["replay_of"] and "s at" in flagged["R"]["replay_of"]
    assert FLAGGED  # the CSV's columns include replay_of
    line = json.dumps(_records(tmp_path / "out")["R"])
    assert '"replay_checked": true' in line


def test_a_recording_enrolled_before_replay_checks_is_fingerprinted_by_enrolling_it_again(
    world, tmp_path: Path
) -> None:
    settings, calls, _, _ = world
    off = replace(settings, store=str(tmp_path / "store-off"), replay=False)
    assert enroll_recordings([("B1", str(tmp_path / "enroll.wav"))], off, consent="test") == 0
    assert not index_paths(off)["enrollment"].exists()  # replay off: nothing fingerprinted
    on = replace(off, replay=True)
    assert check_one(calls["R"], "B1", on).reason != "replay"  # the replayed enrollment is not in the index
    lines: list[str] = []
    assert enroll_recordings([("B1", str(tmp_path / "enroll.wav"))], on, consent="test", report=lines.append) == 0
    assert any("already enrolled, skipped" in line for line in lines)  # the voiceprint is unchanged
    with FingerprintIndex(index_paths(on)["enrollment"], cipher=cipher_for(on)) as idx:
        assert idx.count("B1") == 1
    r = check_one(calls["R"], "B1", on)
    assert r.reason == "replay" and r.replay_of[0]["kind"] == "enrollment"


def test_worker_and_enrollment_fingerprint_the_same_padded_regions(world, tmp_path: Path, monkeypatch) -> None:
    """Every path that fingerprints stores the VAD's regions as they are and widens the query by the one
    shipped pad (and closes the same gaps), so stored enrollments and looked-up calls agree."""
    import voicecheck.replaycheck as rc
    from voicecheck.fingerprint import padded_regions

    settings, calls, manifest, _ = world
    monkeypatch.setattr("voicecheck.fingerprint.REGION_PAD_S", 0.5)
    monkeypatch.setattr("voicecheck.fingerprint.REGION_BRIDGE_S", 1.0)
    seen: list[tuple[int, bool]] = []  # (sample rate, query regions differ from the VAD's own)
    real = rc.fingerprints

    def spy(samples: np.ndarray, sample_rate: int, regions: list, *args: object, **kwargs: object):
        vad = EnergyVad().regions(samples, sample_rate)
        wider = args[2] if len(args) > 2 else kwargs["query_regions"]
        assert regions == vad  # the stored fingerprint: the VAD's regions as they are
        assert wider == padded_regions(vad, 0.5, len(samples) / sample_rate, 1.0)
        seen.append((sample_rate, wider != vad))
        return real(samples, sample_rate, regions, *args, **kwargs)

    monkeypatch.setattr(rc, "fingerprints", spy)
    quiet = np.concatenate([np.zeros(RATE), syllables(6.0, seed=50, rate=RATE), np.zeros(RATE)])
    write(tmp_path / "enroll2.wav", quiet, RATE)
    assert enroll_recordings([("B3", str(tmp_path / "enroll2.wav"))], settings, consent="test") == 0
    run_batch(manifest, tmp_path / "out", settings)
    assert {rate for rate, _ in seen} == {RATE, 8000}  # the enrollment and the batch's calls
    assert any(moved for rate, moved in seen if rate == RATE) and any(moved for rate, moved in seen if rate == 8000)
