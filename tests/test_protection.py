"""Encryption at rest: sealed blobs, the key (init, file checks, wrong or missing key), stores that
refuse the other mode, rotation, migration of older stores, and private files under umask 0."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import assert_error
from tests.test_cli_more import _manifest, voice_file
from voicecheck import callstore, enrollment
from voicecheck.callstore import CallStore
from voicecheck.config import Settings
from voicecheck.crypto import Cipher, Keyring, create_key_file, new_key, read_key_file
from voicecheck.enrollment import VoiceprintStore
from voicecheck.errors import StoreError, UsageError
from voicecheck.types import CallEmbedding, SpeechRegion

RNG = np.random.default_rng(7)


def _unit(d: int = 16) -> np.ndarray:
    v = RNG.standard_normal(d).astype(np.float32)
    return v / np.linalg.norm(v)


def _cipher(*keys: bytes) -> Cipher:
    return Cipher(Keyring.of(list(keys) or [new_key()], "test keys"))


def _emb(content_hash: str = "h1", d: int = 16, windows: int = 5) -> CallEmbedding:
    w = np.stack([_unit(d) for _ in range(windows)])
    return CallEmbedding(
        content_hash=content_hash,
        model="m",
        band="narrow",
        channel=1,
        vector=_unit(d),
        windows=w,
        window_times_s=np.stack([np.arange(windows), np.arange(windows) + 1.0], axis=1),
        speech_seconds=5.0,
        duration_s=9.0,
        regions=(SpeechRegion(0.5, 5.5),),
        channels=2,
    )


def _raw(folder: Path) -> bytes:
    """Every byte of every file in ``folder`` (databases, -wal, -shm, the audit log...)."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# -- sealed blobs -------------------------------------------------------------------------------------


def test_seal_round_trip_and_blob_layout() -> None:
    c = _cipher()
    blob = c.seal(b"voice", ("t", "col", "B1"))
    assert blob[:4] == b"VCE1" and blob[4:12].hex() == c.keyring.current and len(blob) == 4 + 8 + 12 + 5 + 16
    assert c.open(blob, ("t", "col", "B1"), "x") == b"voice"
    assert c.seal(b"voice", ("t", "col", "B1")) != blob  # a fresh nonce every time


@pytest.mark.parametrize("where", [0, 5, 14, 30, -1])
def test_a_tampered_blob_is_a_store_error(where: int) -> None:
    c = _cipher()
    blob = bytearray(c.seal(b"0123456789", ("t", "col", "B1")))
    blob[where] ^= 0x01
    with pytest.raises(StoreError):
        c.open(bytes(blob), ("t", "col", "B1"), "blob")


def test_a_blob_moved_to_another_row_fails_authentication() -> None:
    c = _cipher()
    blob = c.seal(b"vector of B1", ("recordings", "narrow", "B1"))
    with pytest.raises(StoreError, match="moved from another row"):
        c.open(blob, ("recordings", "narrow", "B2"), "blob")
    with pytest.raises(StoreError):
        c.open(blob, ("recordings", "wide", "B1"), "blob")


def test_another_key_is_named_as_the_wrong_key() -> None:
    blob = _cipher().seal(b"x", ("c",))
    other = _cipher()
    with pytest.raises(StoreError, match="wrong key") as e:
        other.open(blob, ("c",), "blob")
    assert blob[4:12].hex() in str(e.value)


def test_plaintext_where_ciphertext_belongs_is_refused() -> None:
    with pytest.raises(StoreError, match="not an encrypted blob"):
        _cipher().open(np.ones(16, "<f4").tobytes(), ("c",), "blob")


def test_tampered_vector_in_the_store_fails_closed(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "store", _cipher(k := new_key()))
    store.add_recording("B1", "m", "a.wav", "h1", "narrow", 5.0, {"narrow": _unit()}, consent="c")
    store.add_recording("B2", "m", "b.wav", "h2", "narrow", 5.0, {"narrow": _unit()}, consent="c")
    store.close()
    db = sqlite3.connect(tmp_path / "store" / enrollment.DB_NAME)
    with db:  # swap the two voiceprints' blobs: each is valid ciphertext, of the other row
        (a,), (b,) = db.execute("SELECT narrow FROM recordings ORDER BY owner_id").fetchall()
        db.execute("UPDATE recordings SET narrow=? WHERE owner_id='B1'", (b,))
        db.execute("UPDATE recordings SET narrow=? WHERE owner_id='B2'", (a,))
    db.close()
    store = VoiceprintStore(tmp_path / "store", _cipher(k))
    with pytest.raises(StoreError, match="authentication"):
        store.get("B1", "m")
    store.close()


def test_tampered_call_embedding_fails_closed(tmp_path: Path) -> None:
    k = new_key()
    calls = CallStore(tmp_path / "emb", _cipher(k))
    calls.put(_emb(), content_hash="h1", channel=1, model="m")
    calls.close()
    db = sqlite3.connect(tmp_path / "emb" / callstore.DB_NAME)
    with db:
        (w,) = db.execute("SELECT windows FROM embeddings").fetchone()
        db.execute("UPDATE embeddings SET windows=?", (w[:-1] + bytes([w[-1] ^ 1]),))
    db.close()
    calls = CallStore(tmp_path / "emb", _cipher(k))
    with pytest.raises(StoreError, match="authentication"):
        calls.lookup("h1", 1, "m")
    calls.close()


def test_call_embedding_round_trip_through_the_sealed_store(tmp_path: Path) -> None:
    calls = CallStore(tmp_path / "emb", _cipher())
    emb = _emb()
    calls.put(emb, content_hash="h1", channel=1, model="m")
    stored = calls.lookup("h1", 1, "m")
    got, speech = stored.embedding, stored.speech_seconds
    np.testing.assert_array_equal(got.vector, emb.vector)
    np.testing.assert_allclose(got.windows, emb.windows, atol=1e-3)  # stored as float16
    np.testing.assert_array_equal(got.window_times_s, emb.window_times_s)
    assert got.regions == emb.regions and speech == 5.0
    calls.close()
    raw = _raw(tmp_path / "emb")
    assert emb.vector.astype("<f4").tobytes()[:16] not in raw
    assert emb.windows.astype("<f2").tobytes()[:16] not in raw


# -- the key ------------------------------------------------------------------------------------------


def test_no_key_names_key_init(vc, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    for args in (("store", "list"), ("check", tmp_path / "x.wav", "--borrower", "B1"), ("audit", "verify")):
        assert_error(vc(*args), 2, "no encryption key", "voicecheck key init")
    with pytest.raises(UsageError, match="voicecheck key init"):
        VoiceprintStore(tmp_path / "lib-store")


def test_key_init_then_the_commands_work(vc, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    old = os.umask(0)
    try:
        res = vc("key", "init")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    path = tmp_path / "xdg-config" / "voicecheck" / "key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    ring = read_key_file(path)
    assert ring.current in res.output and base64.b64encode(ring.keys[ring.current]).decode() not in res.output
    assert vc("store", "list").exit_code == 0
    assert ring.current in vc("key", "show").output
    before = path.read_bytes()
    assert_error(vc("key", "init"), 2, "never overwrites")
    assert path.read_bytes() == before


def test_key_init_refuses_a_path_inside_the_data_folders(vc, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    monkeypatch.setenv("VOICECHECK_KEY_FILE", str(tmp_path / "store" / "key"))
    assert_error(vc("key", "init"), 2, "inside the store folder")
    assert not (tmp_path / "store" / "key").exists()
    monkeypatch.setenv("VOICECHECK_KEY", base64.b64encode(new_key()).decode())
    assert_error(vc("key", "init"), 2, "VOICECHECK_KEY is set")


def test_a_key_file_in_the_data_folder_or_readable_by_others_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    inside = tmp_path / "emb" / "key"
    inside.parent.mkdir()
    create_key_file(inside)
    with pytest.raises(UsageError, match="inside the embeddings folder"):
        CallStore(tmp_path / "emb", Cipher(read_key_file(inside)))
    outside = tmp_path / "keys" / "key"
    create_key_file(outside)
    os.chmod(outside, 0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        read_key_file(outside)


def test_bad_keys_are_clear_errors(vc, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOICECHECK_KEY", "not base64!")
    assert_error(vc("store", "list"), 2, "VOICECHECK_KEY", "base64")
    monkeypatch.setenv("VOICECHECK_KEY", base64.b64encode(b"short").decode())
    assert_error(vc("store", "list"), 2, "32 bytes")
    monkeypatch.delenv("VOICECHECK_KEY")
    bad = tmp_path / "keys" / "key"
    bad.parent.mkdir()
    bad.write_text("{}")
    os.chmod(bad, 0o600)
    monkeypatch.setenv("VOICECHECK_KEY_FILE", str(bad))
    assert_error(vc("store", "list"), 2, "not a voicecheck key file")


def test_the_wrong_key_is_a_clear_error(vc, monkeypatch, tmp_path: Path) -> None:
    assert vc("store", "list").exit_code == 0  # creates the store under the session key
    monkeypatch.setenv("VOICECHECK_KEY", base64.b64encode(new_key()).decode())
    assert_error(vc("store", "list"), 2, "wrong key")


# -- explicit opt-out, and no mixing ------------------------------------------------------------------


def test_unencrypted_only_when_asked_and_never_mixed(tmp_path: Path, caplog) -> None:
    plain = VoiceprintStore(tmp_path / "store", Cipher(None))
    v = _unit()
    plain.add_recording("B1", "m", "a.wav", "h1", "narrow", 5.0, {"narrow": v}, consent="c")
    plain.close()
    assert "UNENCRYPTED" in caplog.text
    assert v.astype("<f4").tobytes() in _raw(tmp_path / "store")
    with pytest.raises(StoreError, match="store migrate"):
        VoiceprintStore(tmp_path / "store", _cipher())
    sealed = CallStore(tmp_path / "emb", _cipher())
    sealed.close()
    with pytest.raises(StoreError, match="encrypted"):
        CallStore(tmp_path / "emb", Cipher(None))


def test_an_unencrypted_batch_says_so(vc, tmp_path: Path) -> None:
    (tmp_path / "voicecheck.toml").write_text(
        (tmp_path / "voicecheck.toml").read_text() + "encryption = false\n", encoding="utf-8"
    )
    manifest = _manifest(tmp_path, [("K1", "B1", "A")])
    res = vc("batch", manifest, "--out", tmp_path / "out", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    assert "UNENCRYPTED" in res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["encryption"].startswith("none") and summary["settings"]["encryption"] is False


# -- rotation -----------------------------------------------------------------------------------------


def _populated(vc, tmp_path: Path) -> None:
    enroll = voice_file(tmp_path / "enroll" / "b1.wav", "A", 8.0, stereo_call=False)
    assert vc("enroll", "B1", enroll, "--channel", "0").exit_code == 0
    manifest = _manifest(tmp_path, [("K1", "B1", "A"), ("K2", "B2", "B")])
    res = vc("batch", manifest, "--out", tmp_path / "out", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    assert vc("watchlist", "add", "P1", "--call", "K2").exit_code == 0


def _everything(settings: Settings, cipher: Cipher) -> dict[str, np.ndarray]:
    store = VoiceprintStore(settings.store, cipher)
    calls = CallStore(settings.embeddings, cipher)
    try:
        out = {"B1": store.get("B1", "fake-bands").vectors["narrow"], "P1": store.watch_list()[0].vector}
        for c in calls.calls("fake-bands"):
            out[c.call_id] = c.embedding.windows
    finally:
        store.close()
        calls.close()
    return out


def test_rotation_keeps_everything_readable_with_the_new_key_only(vc, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    key = tmp_path / "keys" / "key"
    create_key_file(key)
    monkeypatch.setenv("VOICECHECK_KEY_FILE", str(key))
    _populated(vc, tmp_path)
    settings = Settings(store=str(tmp_path / "store"), embeddings=str(tmp_path / "embeddings"))
    old = read_key_file(key)
    before = _everything(settings, Cipher(old))
    res = vc("key", "rotate")
    assert res.exit_code == 0, res.output
    new = read_key_file(key)
    assert list(new.keys) == [new.current] and new.current != old.current and new.current in res.output
    after = _everything(settings, Cipher(new))
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    with pytest.raises(StoreError, match="wrong key"):
        VoiceprintStore(settings.store, Cipher(old))
    with pytest.raises(StoreError, match="wrong key"):
        CallStore(settings.embeddings, Cipher(old))
    res = vc("audit", "verify")
    assert res.exit_code == 0, res.output
    assert "key.rotate" in (tmp_path / "store" / "audit.log").read_text()


def test_rotation_keep_old_and_env_key(vc, tmp_path, monkeypatch) -> None:
    assert_error(vc("key", "rotate"), 2, "VOICECHECK_KEY")
    monkeypatch.delenv("VOICECHECK_KEY")
    key = tmp_path / "keys" / "key"
    first = create_key_file(key)
    monkeypatch.setenv("VOICECHECK_KEY_FILE", str(key))
    _populated(vc, tmp_path)
    assert vc("key", "rotate", "--keep-old").exit_code == 0
    ring = read_key_file(key)
    assert len(ring.keys) == 2 and first in ring.keys and ring.current != first
    assert "older keys kept" in vc("key", "show").output


def test_rotation_refuses_a_broken_audit_log_and_changes_nothing(vc, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    key = tmp_path / "keys" / "key"
    create_key_file(key)
    monkeypatch.setenv("VOICECHECK_KEY_FILE", str(key))
    _populated(vc, tmp_path)
    log = tmp_path / "store" / "audit.log"
    log.write_text(log.read_text().replace('"verdict":"match"', '"verdict":"mismatch"', 1))
    before = key.read_bytes()
    assert_error(vc("key", "rotate"), 2, "audit log", "line")
    assert key.read_bytes() == before


# -- migration of older stores ------------------------------------------------------------------------

V1_VOICEPRINTS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE recordings (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, owner_id TEXT NOT NULL, model TEXT NOT NULL,
    dimension INTEGER NOT NULL, audio TEXT NOT NULL, content_hash TEXT NOT NULL, band TEXT NOT NULL,
    speech_seconds REAL NOT NULL, wide BLOB, narrow BLOB NOT NULL, added_at TEXT NOT NULL,
    UNIQUE (kind, owner_id, model, content_hash));
CREATE TABLE watchlist (id INTEGER PRIMARY KEY, label TEXT NOT NULL, source TEXT NOT NULL, added_on TEXT NOT NULL,
    model TEXT NOT NULL, dimension INTEGER NOT NULL, vector BLOB NOT NULL, UNIQUE (label, model));
INSERT INTO meta VALUES ('schema_version', '1');
"""
V2_CALLS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE embeddings (content_hash TEXT NOT NULL, channel INTEGER NOT NULL, model TEXT NOT NULL,
    status TEXT NOT NULL, band TEXT NOT NULL, dimension INTEGER NOT NULL, speech_seconds REAL NOT NULL,
    duration_s REAL NOT NULL, vector BLOB, narrow_vector BLOB, windows BLOB, window_times BLOB,
    regions TEXT NOT NULL, channels INTEGER NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (content_hash, channel, model));
CREATE TABLE calls (call_id TEXT NOT NULL, model TEXT NOT NULL, borrower_id TEXT NOT NULL, audio TEXT NOT NULL,
    content_hash TEXT NOT NULL, channel INTEGER NOT NULL, seen_at TEXT NOT NULL, PRIMARY KEY (call_id, model));
INSERT INTO meta VALUES ('schema_version', '2');
"""


def _old_stores(root: Path) -> dict[str, np.ndarray]:
    """A schema-1 voiceprint store and a schema-2 call store, as earlier versions wrote them (plaintext)."""
    v = {"narrow": _unit(), "wide": _unit(), "watch": _unit(), "call": _unit(), "windows": np.stack([_unit()] * 3)}
    (root / "store").mkdir(parents=True)
    db = sqlite3.connect(root / "store" / enrollment.DB_NAME)
    db.executescript(V1_VOICEPRINTS)
    with db:
        db.execute(
            "INSERT INTO recordings VALUES (1,'borrower','B1','m',16,'a.wav','h1','wide',6.0,?,?,'2024-01-01')",
            (v["wide"].tobytes(), v["narrow"].tobytes()),
        )
        db.execute("INSERT INTO watchlist VALUES (1,'P1','x','2024-01-01','m',16,?)", (v["watch"].tobytes(),))
    db.close()
    (root / "emb").mkdir()
    db = sqlite3.connect(root / "emb" / callstore.DB_NAME)
    db.executescript(V2_CALLS)
    with db:
        db.execute(
            "INSERT INTO embeddings VALUES ('h9',1,'m','ok','narrow',16,4.0,8.0,?,NULL,?,?,'[[0.5, 4.5]]',2,"
            "'2024-01-01')",
            (v["call"].tobytes(), v["windows"].astype("<f2").tobytes(), np.zeros((3, 2), "<f4").tobytes()),
        )
        db.execute("INSERT INTO calls VALUES ('K9','m','B1','k9.wav','h9',1,'2024-01-01')")
    db.close()
    return v


def test_older_stores_are_refused_with_the_way_out_then_migrated_encrypted(vc, tmp_path) -> None:
    v = _old_stores(tmp_path)
    settings = Settings(store=str(tmp_path / "store"), embeddings=str(tmp_path / "emb"))
    with pytest.raises(StoreError, match="store migrate"):
        VoiceprintStore(settings.store)
    with pytest.raises(StoreError, match="store migrate"):
        CallStore(settings.embeddings)
    res = vc("store", "migrate", "--store", settings.store, "--embeddings", settings.embeddings)
    assert res.exit_code == 0, res.output
    assert "schema 1 -> 2" in res.output and "schema 2 -> 3" in res.output
    raw = _raw(tmp_path / "store") + _raw(tmp_path / "emb")
    for name, vec in v.items():
        plain = vec.astype("<f2" if name == "windows" else "<f4").tobytes()
        assert plain[:16] not in raw, name
    store, calls = VoiceprintStore(settings.store), CallStore(settings.embeddings)
    try:
        vp = store.get("B1", "m")
        np.testing.assert_allclose(vp.vectors["narrow"], v["narrow"], atol=1e-6)
        assert store.recordings("B1")[0]["consent"].startswith("not recorded")
        np.testing.assert_array_equal(store.watch_list("m")[0].vector, v["watch"])
        (call,) = list(calls.calls("m"))
        np.testing.assert_array_equal(call.embedding.vector, v["call"])
        assert call.embedding.regions == (SpeechRegion(0.5, 4.5),)
    finally:
        store.close()
        calls.close()
    again = vc("store", "migrate", "--store", settings.store, "--embeddings", settings.embeddings)
    assert again.output.count("up to date") == 2


def test_an_unencrypted_store_is_encrypted_by_migrate(tmp_path: Path) -> None:
    from voicecheck.protection import migrate_stores

    settings = Settings(store=str(tmp_path / "store"), embeddings=str(tmp_path / "emb"), encryption=False)
    calls = CallStore(settings.embeddings, Cipher(None))
    emb = _emb()
    calls.put(emb, content_hash="h1", channel=1, model="m")
    calls.close()
    assert emb.vector.tobytes() in _raw(tmp_path / "emb")
    lines = migrate_stores(replace(settings, encryption=True))
    assert any("blob(s) encrypted" in line for line in lines)
    assert emb.vector.tobytes() not in _raw(tmp_path / "emb")
    calls = CallStore(settings.embeddings)
    np.testing.assert_array_equal(calls.lookup("h1", 1, "m").embedding.vector, emb.vector)
    calls.close()


# -- private files ------------------------------------------------------------------------------------


def test_everything_voicecheck_creates_is_private_under_umask_0(vc, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        _populated(vc, tmp_path)
        assert vc("watchlist", "export", tmp_path / "exports" / "watch.json").exit_code == 0
        call = voice_file(tmp_path / "c.wav", "A")
        res = vc("check", call, "--borrower", "B1", "--threshold", "cosine=0.5", "--plot", tmp_path / "p.png")
        assert res.exit_code == 0, res.output
        from voicecheck.report import write_csv, write_json
        from voicecheck.scorer import Profile

        live = CallStore(tmp_path / "embeddings")  # while a store is open its -wal and -shm exist: 0600 too
        live.put(_emb("h-live"), content_hash="h-live", channel=1, model="m")
        sides = [tmp_path / "embeddings" / f"calls.sqlite{x}" for x in ("-wal", "-shm")]
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in sides)
        live.close()
        write_csv(tmp_path / "exports" / "t.csv", [{"a": 1}], ["a"])
        write_json(tmp_path / "exports" / "t.json", {"a": 1})
        Profile("m", "s").save_mode("fake", tmp_path / "embeddings", "cosine", {"threshold": 0.5}, "test")
    finally:
        os.umask(old)
    made = [tmp_path / d for d in ("store", "embeddings", "out", "exports")] + [tmp_path / "p.png"]
    files = [p for d in made for p in ([d] if d.is_file() else d.rglob("*"))]
    assert any(p.name == "audit.log" for p in files) and any(p.name == "calls.sqlite" for p in files)
    for p in files:
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.name == "models.toml":  # written by the test, not by voicecheck
            continue
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p}: {mode:o}"
    for d in made[:-1]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_a_store_folder_of_its_own_is_tightened_a_shared_one_left_alone(tmp_path: Path, caplog) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "README.md").write_text("store")
    os.chmod(own, 0o755)
    VoiceprintStore(own, _cipher()).close()
    assert stat.S_IMODE(own.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("someone else's")
    os.chmod(shared, 0o755)
    VoiceprintStore(shared, _cipher()).close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755 and "leaves its mode alone" in caplog.text
    assert stat.S_IMODE((shared / "voiceprints.sqlite").stat().st_mode) == 0o600


def test_an_unfinished_rotation_keeps_both_keys_and_a_second_run_finishes(vc, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VOICECHECK_KEY")
    key = tmp_path / "keys" / "key"
    first = create_key_file(key)
    monkeypatch.setenv("VOICECHECK_KEY_FILE", str(key))
    _populated(vc, tmp_path)
    settings = Settings(store=str(tmp_path / "store"), embeddings=str(tmp_path / "embeddings"))
    before = _everything(settings, Cipher(read_key_file(key)))
    with monkeypatch.context() as m:  # the call store keeps blobs under the old key, as a concurrent run would
        m.setattr(CallStore, "reseal", lambda self, new, chunk=500: 0)
        assert_error(vc("key", "rotate"), 2, "not finished", "again")
    ring = read_key_file(key)
    assert len(ring.keys) == 2 and first in ring.keys and ring.current != first
    for k, v in _everything(settings, Cipher(ring)).items():
        np.testing.assert_array_equal(v, before[k])
    assert vc("key", "rotate").exit_code == 0
    ring = read_key_file(key)
    assert len(ring.keys) == 1 and first not in ring.keys
    for k, v in _everything(settings, Cipher(ring)).items():
        np.testing.assert_array_equal(v, before[k])
    assert vc("audit", "verify").exit_code == 0
