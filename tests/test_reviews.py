"""QA reviews in the call store: bound to the call's audio, sealed at rest, audited, erasable, re-keyed,
exported and imported as CSV (formula cells escaped), and offered to calibration."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from voicecheck import reviews
from voicecheck.audit import audit_path, entries, verify
from voicecheck.callstore import DB_NAME, CallStore, Review
from voicecheck.config import Settings
from voicecheck.crypto import Cipher, Keyring, cipher_for, new_key
from voicecheck.erasure import STEPS, erase
from voicecheck.errors import StoreError, UsageError
from voicecheck.types import CallEmbedding, SpeechRegion

NOTE = "second voice after 40 s, sounded like the agent from case 12"


def _emb(content_hash: str, seed: int) -> CallEmbedding:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((4, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return CallEmbedding(
        content_hash=content_hash,
        model="fake-bands",
        band="narrow",
        channel=1,
        vector=v[0],
        windows=v,
        window_times_s=np.array([[0, 1], [1, 2], [2, 3], [3, 4]], dtype=np.float64),
        speech_seconds=4.0,
        duration_s=6.0,
        regions=(SpeechRegion(0.0, 4.0),),
        channels=2,
    )


def _call(settings: Settings, call_id: str, borrower: str, content_hash: str, seed: int = 0) -> None:
    """A call as the batch leaves it in the call store: embedding and link."""
    calls = CallStore(settings.embeddings, cipher_for(settings))
    try:
        calls.put(_emb(content_hash, seed), content_hash=content_hash, channel=1, model="fake-bands")
        calls.link(call_id, borrower, f"/calls/{call_id}.wav", content_hash, 1, "fake-bands")
    finally:
        calls.close()


@pytest.fixture()
def store(settings: Settings) -> Settings:
    _call(settings, "C1", "B1", "a" * 64, 1)
    _call(settings, "C2", "B1", "b" * 64, 2)
    _call(settings, "C3", "B2", "c" * 64, 3)
    return settings


def test_a_review_is_bound_to_the_call_sealed_and_audited(store: Settings) -> None:
    done = reviews.record(store, " C1 ", "Impostor", NOTE, reason="voice_mismatch: score 0.3")
    assert (done.call_id, done.borrower_id, done.content_hash, done.label) == ("C1", "B1", "a" * 64, "impostor")
    assert done.reason == "voice_mismatch" and done.note == NOTE and done.reviewer and done.reviewed_at
    assert reviews.stored(store) == [done]
    raw = (Path(store.embeddings) / DB_NAME).read_bytes() + b"".join(
        p.read_bytes() for p in Path(store.embeddings).glob(DB_NAME + "-*")
    )
    assert NOTE.encode() not in raw and b"impostor" not in raw  # label and note sealed at rest
    found = [e for e in entries(audit_path(store), "B1") if e["event"] == "review"]
    assert len(found) == 1 and found[0]["call_id"] == "C1" and found[0]["label"] == "impostor"
    assert found[0]["user"] == done.reviewer and found[0]["note"] is True
    assert NOTE not in audit_path(store).read_text()  # the note never goes to the audit log
    assert verify(audit_path(store), cipher_for(store)).ok
    again = reviews.record(store, "C1", "genuine")  # the latest decision wins; both are in the audit log
    assert reviews.stored(store) == [again] and again.note == ""
    assert len([e for e in entries(audit_path(store), "B1") if e["event"] == "review"]) == 2


@pytest.mark.parametrize(
    ("call_id", "label", "note", "needle"),
    [
        ("C1", "maybe", "", "not one of genuine, impostor, unsure"),
        ("NOPE", "genuine", "", "not in the call store"),
        ("", "genuine", "", "must not be empty"),
        ("C1", "genuine", "x" * 2001, "2001 characters"),
        ("C1", "genuine", "bell\x07", "control characters"),
    ],
)
def test_bad_reviews_are_refused(store: Settings, call_id: str, label: str, note: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        reviews.record(store, call_id, label, note)
    assert reviews.stored(store) == []


def test_a_review_holds_for_its_audio_only(store: Settings) -> None:
    reviews.record(store, "C1", "impostor")
    calls = CallStore(store.embeddings, cipher_for(store))
    try:
        review = calls.review("C1")
        assert reviews.of_audio(review, "a" * 64) == review and reviews.of_audio(review, None) == review
        assert reviews.of_audio(review, "d" * 64) is None  # the call id now names other audio
    finally:
        calls.close()
    with pytest.raises(UsageError, match="reused for other audio"):
        reviews.record(store, "C1", "genuine", content_hash="d" * 64)
    with pytest.raises(UsageError, match="belongs to borrower 'B1'"):
        reviews.record(store, "C1", "genuine", borrower_id="B9")
    # a call only checked (not in the call store) is reviewed with what the check knew of it
    done = reviews.record(store, "ONE-OFF", "unsure", borrower_id="B3", content_hash="e" * 64, source="check")
    assert (done.borrower_id, done.content_hash) == ("B3", "e" * 64)
    assert reviews.record(store, "ONE-OFF", "genuine").borrower_id == "B3"  # later: the earlier review's binding


def test_a_tampered_review_is_a_store_error(store: Settings) -> None:
    reviews.record(store, "C1", "impostor", NOTE)
    db = sqlite3.connect(Path(store.embeddings) / DB_NAME)
    with db:
        db.execute("UPDATE reviews SET call_id='C2'")  # moved to another call: its seal no longer fits
    db.close()
    with pytest.raises(StoreError, match="authentication"):
        reviews.stored(store)


def test_csv_round_trip_escapes_formulas_and_imports_all_or_nothing(store: Settings, tmp_path: Path) -> None:
    reviews.record(store, "C1", "impostor", '=HYPERLINK("http://x")')
    reviews.record(store, "C3", "genuine", "fine")
    path = tmp_path / "reviews.csv"
    assert reviews.export_csv(store, path) == 2
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and "\n=" not in text and ",=" not in text  # inert in a spreadsheet
    assert text.splitlines()[0] == ",".join(reviews.CSV_COLUMNS)
    rows = dict((r["call_id"], r) for _n, r in reviews.read_csv(path))
    assert rows["C1"]["note"] == '=HYPERLINK("http://x")'  # unescaped when read back
    edited = text.replace("impostor", "unsure")
    path.write_text(edited, encoding="utf-8")
    assert reviews.import_csv(store, path) == 2
    assert {r.call_id: r.label for r in reviews.stored(store)} == {"C1": "unsure", "C3": "genuine"}
    assert reviews.stored(store)[0].note == '=HYPERLINK("http://x")'
    bad = tmp_path / "bad.csv"
    bad.write_text("call_id,label\nC2,impostor\nC3,perhaps\nNOPE,genuine\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"2 row\(s\) cannot be imported, nothing was recorded: line 3: .*perhaps"):
        reviews.import_csv(store, bad)
    assert "C2" not in {r.call_id for r in reviews.stored(store)}
    (tmp_path / "nolabel.csv").write_text("call_id,verdict\nC2,mismatch\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no label column"):
        reviews.import_csv(store, tmp_path / "nolabel.csv")


def test_listing_needs_a_run_for_unreviewed(store: Settings, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--results"):
        reviews.listing(store, unreviewed=True)
    run = tmp_path / "run"
    run.mkdir()
    records = [
        {
            "call_id": "C1",
            "borrower_id": "B1",
            "verdict": "mismatch",
            "reason": "voice_mismatch",
            "content_hash": "a" * 64,
        },
        {"call_id": "C2", "borrower_id": "B1", "verdict": "match", "reason": None, "content_hash": "b" * 64},
        {
            "call_id": "C3",
            "borrower_id": "B2",
            "verdict": "mismatch",
            "reason": "speaker_change",
            "content_hash": "c" * 64,
        },
    ]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    reviews.record(store, "C3", "impostor")
    rows = reviews.listing(store, run)
    assert [(r["call_id"], r["label"]) for r in rows] == [("C1", ""), ("C3", "impostor")]
    assert [r["call_id"] for r in reviews.listing(store, run, unreviewed=True)] == ["C1"]
    assert [r["call_id"] for r in reviews.listing(store, run, reason="speaker_change")] == ["C3"]
    assert [r["call_id"] for r in reviews.listing(store)] == ["C3"]
    with pytest.raises(UsageError, match="does not exist"):
        reviews.listing(store, tmp_path / "nowhere")


def test_erasure_removes_the_borrowers_reviews(store: Settings) -> None:
    assert ("reviews", dict(STEPS)["reviews"]) in STEPS
    reviews.record(store, "C1", "impostor", NOTE)
    reviews.record(store, "C2", "genuine", NOTE + " again")
    reviews.record(store, "C3", "genuine")
    counts = erase(store, "B1")
    assert counts["reviews"] == 2
    assert [r.call_id for r in reviews.stored(store)] == ["C3"]
    db = sqlite3.connect(Path(store.embeddings) / DB_NAME)
    assert db.execute("SELECT call_id FROM reviews").fetchall() == [("C3",)]
    db.close()
    assert [r["call_id"] for r in reviews.listing(store)] == ["C3"]


def test_rotation_reseals_reviews(store: Settings) -> None:
    old = cipher_for(store)
    reviews.record(store, "C1", "impostor", NOTE)
    new = Cipher(Keyring.of([new_key()], "new key"))
    calls = CallStore(store.embeddings, old)
    try:
        blobs = calls.reseal(new)
        assert blobs >= 2 and calls.verify_all() >= 2
    finally:
        calls.close()
    calls = CallStore(store.embeddings, new)
    try:
        assert [(r.label, r.note) for r in calls.reviews()] == [("impostor", NOTE)]
    finally:
        calls.close()


def test_reviewed_calls_are_labelled_trials_for_calibration(store: Settings) -> None:
    reviews.record(store, "C1", "impostor")
    reviews.record(store, "C2", "genuine")
    reviews.record(store, "C3", "unsure")  # no label for calibration
    reviews.record(store, "ONE-OFF", "genuine", borrower_id="B3", content_hash="e" * 64)  # no stored embedding
    got = reviews.reviewed_calls(store, "fake-bands")
    assert [(c.call_id, c.borrower_id, c.genuine) for c in got] == [("C1", "B1", False), ("C2", "B1", True)]
    assert got[0].embedding.content_hash == "a" * 64 and got[0].embedding.vector.shape == (32,)
    assert any(e["event"] == "review.read" for e in entries(audit_path(store)))


def test_review_record_field_never_holds_the_note() -> None:
    r = Review("C1", "B1", "a" * 64, "impostor", NOTE, "voice_mismatch", "qa1", "2026-11-30T10:00:00+00:00")
    field = reviews.in_record(r)
    assert field == {
        "label": "impostor",
        "reason": "voice_mismatch",
        "reviewer": "qa1",
        "reviewed_at": "2026-11-30T10:00:00+00:00",
        "note": True,
    }
    assert reviews.in_record(None) is None and reviews.in_record(dataclasses.replace(r, note=""))["note"] is False


def test_retention_purges_old_reviews(store: Settings) -> None:
    from voicecheck.erasure import purge

    reviews.record(store, "C1", "impostor", NOTE)
    assert purge(store, 1.0)["reviews"] == 0  # recorded just now: kept
    calls = CallStore(store.embeddings, cipher_for(store))
    try:
        old = dataclasses.replace(calls.review("C1"), reviewed_at="2020-01-01T00:00:00+00:00")
        calls.put_reviews([old])
    finally:
        calls.close()
    assert purge(store, 1.0)["reviews"] == 1 and reviews.stored(store) == []
