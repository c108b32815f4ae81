"""Erasure on request and retention: nothing of an erased borrower's vectors is left in the raw database
files (-wal and -shm included), and no plaintext vector is ever on disk when encryption is on."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.fakes import assert_error
from tests.test_cli_more import _manifest, voice_file
from voicecheck import callstore
from voicecheck.callstore import CallStore
from voicecheck.config import load_settings
from voicecheck.crypto import cipher_for
from voicecheck.enrollment import VoiceprintStore, recording_context
from voicecheck.report import RESULTS, read_jsonl

ERASED, KEPT = "LOAN-ERASE-0001", "LOAN-KEEP-0002"
"""Borrower ids long enough that finding one in a database file is no coincidence of vector bytes."""


def _plaintext(vc_path: Path) -> None:
    """Switch the vc workspace's settings to the explicit unencrypted opt-out."""
    toml = vc_path / "voicecheck.toml"
    toml.write_text(toml.read_text() + "encryption = false\n", encoding="utf-8")


def _setup(vc, tmp_path: Path) -> None:
    """ERASED (voice A, two recordings) and KEPT (voice B) enrolled; calls K1, K2 of ERASED and K3 of KEPT
    checked; watchlist P1 made from ERASED's call K2, P2 from KEPT's call K3."""
    for n, (who, voice) in enumerate(((ERASED, "A"), (ERASED, "A"), (KEPT, "B"))):
        rec = voice_file(tmp_path / "enroll" / f"{who}-{n}.wav", voice, 8.0 + n, stereo_call=False)
        res = vc("enroll", who, rec, "--channel", "0", "--threshold", "cosine=0.9")
        assert res.exit_code == 0, res.output
    manifest = _manifest(tmp_path, [("K1", ERASED, "A"), ("K2", ERASED, "X"), ("K3", KEPT, "B")])
    res = vc("batch", manifest, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet")
    assert res.exit_code == 0, res.output
    assert vc("watchlist", "add", "P1", "--call", "K2").exit_code == 0
    assert vc("watchlist", "add", "P2", "--call", "K3").exit_code == 0


def _vectors(tmp_path: Path, borrower: str) -> list[bytes]:
    """The byte strings of every vector stored for ``borrower``, as they are encoded on disk when unencrypted:
    recordings (wide, narrow), call vectors, narrow vectors and each window embedding; plus the watchlist
    vectors made from the borrower's calls."""
    settings = load_settings()
    cipher = cipher_for(settings)
    out: list[bytes] = []
    db = sqlite3.connect(Path(settings.store) / "voiceprints.sqlite")
    rows = db.execute(
        "SELECT kind, owner_id, model, content_hash, dimension, wide, narrow FROM recordings WHERE owner_id=?",
        (borrower,),
    ).fetchall()
    db.close()
    for kind, owner, model, h, dim, wide, narrow in rows:
        for col, blob in (("wide", wide), ("narrow", narrow)):
            if blob is not None:
                out.append(cipher.open(blob, recording_context(col, kind, owner, model, h, dim), "test"))
    calls = CallStore(settings.embeddings, cipher)
    for c in calls.calls("fake-bands", borrower):
        e = c.embedding
        out.append(e.vector.astype("<f4").tobytes())
        out += [w.astype("<f2").tobytes() for w in e.windows]
    calls.close()
    store = VoiceprintStore(settings.store, cipher)
    sources = {w.label: store.watch_sources(w.label) for w in store.watch_list()}
    out += [
        w.vector.astype("<f4").tobytes()
        for w in store.watch_list()
        if any(s.borrower_id == borrower for s in sources[w.label])
    ]
    store.close()
    return out


def _raw(tmp_path: Path) -> bytes:
    """Every byte of every file in the store and embeddings folders (databases, -wal, -shm, journals),
    except the audit log (which keeps ids by design, never vectors)."""
    files = [
        p
        for d in ("store", "embeddings")
        for p in sorted((tmp_path / d).rglob("*"))
        if p.is_file() and p.name != "audit.log"
    ]
    assert any(p.name.endswith(".sqlite") for p in files)
    return b"".join(p.read_bytes() for p in files)


def test_erase_leaves_no_trace_of_the_vectors_in_the_raw_files(vc, tmp_path: Path) -> None:
    _plaintext(tmp_path)
    _setup(vc, tmp_path)
    b1, b2 = _vectors(tmp_path, ERASED), _vectors(tmp_path, KEPT)
    assert len(b1) > 10 and len(b2) > 5
    raw = _raw(tmp_path)
    assert all(v in raw for v in b1 + b2)  # unencrypted: the search finds every vector before erasure

    # a reader holding the store open keeps its snapshot; erasure must still leave no copy behind once done
    res = vc("erase", ERASED)
    assert res.exit_code == 0, res.output
    assert f"erased {ERASED}: 2 enrollment recording(s), 2 call(s), 2 call embedding(s), 1 watchlist" in res.output
    assert "P1" in res.output

    raw = _raw(tmp_path)
    left = [n for n, v in enumerate(b1) if v in raw]
    assert not left, f"{len(left)} of {len(b1)} vectors of B1 still on disk"
    assert ERASED.encode() not in raw  # no id, path or link of the erased borrower left in the databases
    assert KEPT.encode() in raw and all(v in raw for v in b2)  # the other borrower untouched
    for folder, name in (("embeddings", callstore.DB_NAME), ("store", "voiceprints.sqlite")):
        wal = tmp_path / folder / (name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0

    assert json.loads(vc("watchlist", "list", "--json").output)[0]["label"] == "P2"
    assert vc("store", "show", ERASED).exit_code == 3
    res = vc("rescore", "--out", tmp_path / "again", "--threshold", "cosine=0.9")
    assert res.exit_code == 0, res.output
    assert {r["call_id"] for r in read_jsonl(tmp_path / "again" / RESULTS)} == {"K3"}
    audit = [json.loads(line) for line in (tmp_path / "store" / "audit.log").read_text().splitlines()]
    erased = [e for e in audit if e["event"] == "erase"]
    assert erased[0]["borrower_id"] == ERASED and erased[0]["counts"]["calls"] == 2
    assert erased[0]["call_ids"] == ["K1", "K2"]


def test_with_encryption_no_plaintext_vector_is_ever_on_disk(vc, tmp_path: Path) -> None:
    _setup(vc, tmp_path)
    vectors = _vectors(tmp_path, ERASED) + _vectors(tmp_path, KEPT)
    assert len(vectors) > 15
    raw = _raw(tmp_path) + b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    found = [n for n, v in enumerate(vectors) if v in raw]
    assert not found


def test_erase_of_an_unknown_borrower_removes_nothing(vc, tmp_path: Path) -> None:
    _setup(vc, tmp_path)
    res = vc("erase", "B404", "--json")
    assert res.exit_code == 0, res.output
    counts = json.loads(res.output)
    assert counts["recordings"] == counts["calls"] == counts["embeddings"] == counts["watchlist_entries"] == 0
    assert_error(vc("erase", " "), 2, "id")


def test_erase_also_removes_embeddings_of_the_enrollment_audio_and_shared_audio(vc, tmp_path: Path) -> None:
    _setup(vc, tmp_path)
    # B1's enrollment recording was also embedded in the call store, as a cohort entry
    enroll = tmp_path / "enroll" / f"{ERASED}-0.wav"
    (tmp_path / "cohort.csv").write_text(f"audio,customer_channel\n{enroll},0\n", encoding="utf-8")
    assert vc("cohort", "build", tmp_path / "cohort.csv").exit_code == 0
    settings = load_settings()
    calls = CallStore(settings.embeddings)
    before = calls.count("fake-bands")
    calls.close()
    res = vc("erase", ERASED, "--json")
    c = json.loads(res.output)
    assert c["embeddings"] == 3  # two calls + the enrollment audio stored as a cohort entry
    calls = CallStore(settings.embeddings)
    assert calls.count("fake-bands") == before - 3
    calls.close()


def test_store_remove_keeps_calls_and_says_how_to_erase(vc, tmp_path: Path) -> None:
    _setup(vc, tmp_path)
    res = vc("store", "remove", ERASED)
    assert res.exit_code == 0 and f"voicecheck erase {ERASED}" in res.output


# -- retention ----------------------------------------------------------------------------------------


def _age(tmp_path: Path, call_ids: list[str], when: str = "2001-01-01T00:00:00+00:00") -> None:
    db = sqlite3.connect(tmp_path / "embeddings" / callstore.DB_NAME)
    with db:
        for call_id in call_ids:
            (h,) = db.execute("SELECT content_hash FROM calls WHERE call_id=?", (call_id,)).fetchone()
            db.execute("UPDATE embeddings SET created_at=? WHERE content_hash=?", (when, h))
            db.execute("UPDATE calls SET seen_at=? WHERE call_id=?", (when, call_id))
    db.close()


def test_purge_removes_call_embeddings_past_retention(vc, tmp_path: Path) -> None:
    _plaintext(tmp_path)
    _setup(vc, tmp_path)
    old = [v for v in _vectors(tmp_path, ERASED) if len(v) == 64]  # window embeddings of B1's calls (float16)
    _age(tmp_path, ["K1", "K2"])
    res = vc("purge", "--older-than", "90d")
    assert res.exit_code == 0, res.output
    assert "purged 2 call embedding(s) and 2 call link(s) older than 90 days" in res.output
    raw = _raw(tmp_path)
    assert not [v for v in old if v in raw]
    res = vc("rescore", "--out", tmp_path / "again", "--threshold", "cosine=0.9")
    assert {r["call_id"] for r in read_jsonl(tmp_path / "again" / RESULTS)} == {"K3"}
    assert vc("purge", "--older-than", "90d").output.startswith("purged 0")
    assert "purge" in (tmp_path / "store" / "audit.log").read_text()


@pytest.mark.parametrize("bad", ["-3d", "soon", "nan", "inf"])
def test_purge_refuses_a_bad_age(vc, bad: str) -> None:
    assert_error(vc("purge", "--older-than", bad), 2, "--older-than")


def test_the_batch_applies_retention_days_first(vc, tmp_path: Path) -> None:
    _setup(vc, tmp_path)
    _age(tmp_path, ["K3"])
    toml = tmp_path / "voicecheck.toml"
    toml.write_text(toml.read_text() + "retention_days = 30\n", encoding="utf-8")
    manifest = _manifest(tmp_path, [("K4", ERASED, "A")], name="tonight.csv")
    res = vc("batch", manifest, "--out", tmp_path / "tonight", "--threshold", "cosine=0.9", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "tonight" / "summary.json").read_text())
    assert summary["retention_purged"]["embeddings"] == 1 and summary["retention_purged"]["calls"] == 1
    calls = CallStore(load_settings().embeddings)
    assert sorted(c.call_id for c in calls.calls("fake-bands")) == ["K1", "K2", "K4"]
    calls.close()
