"""The audit log: every access lands there (library and CLI), no vectors or scores, a chain that shows
edits, removals and a rewrite without the key, and one valid chain from two processes appending."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from tests.fakes import assert_error
from tests.test_cli_more import _manifest, voice_file
from voicecheck.audit import AuditLog, _canonical, entries, verify
from voicecheck.crypto import Cipher, Keyring, new_key
from voicecheck.pipeline import check_one

ALLOWED = {
    "seq", "time", "user", "host", "pid", "program", "event", "prev", "hash", "alg", "kid",
    "borrower_id", "borrower_ids", "call_id", "call_ids", "content_hash", "audio", "verdict", "reason",
    "kind", "source", "consent", "outcome", "forced", "replace", "label", "recordings", "counts", "manifest",
    "out", "calls", "verdicts", "file", "model", "labels", "trigger", "old_key_ids", "new_key_id",
    "dropped_old", "results",
}  # fmt: skip


def _log(tmp_path: Path) -> Path:
    return tmp_path / "store" / "audit.log"


def _lines(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in _log(tmp_path).read_text().splitlines()]


@pytest.fixture()
def history(vc, tmp_path: Path):
    """Enroll, check, batch, watchlist add/export/import/remove, erase: one of each event."""
    rec = voice_file(tmp_path / "enroll" / "b1.wav", "A", 8.0, stereo_call=False)
    assert vc("enroll", "B1", rec, "--channel", "0").exit_code == 0
    assert (
        vc("enroll", "B2", voice_file(tmp_path / "enroll" / "b2.wav", "B", 8.0, False), "--channel", "0").exit_code == 0
    )
    call = voice_file(tmp_path / "c.wav", "A")
    assert vc("check", call, "--borrower", "B1", "--threshold", "cosine=0.9").exit_code == 0
    manifest = _manifest(tmp_path, [("K1", "B1", "A"), ("K2", "B2", "X")])
    assert vc("batch", manifest, "--out", tmp_path / "out", "--threshold", "cosine=0.9", "--quiet").exit_code == 0
    assert vc("watchlist", "add", "P1", "--call", "K2").exit_code == 0
    assert vc("watchlist", "export", tmp_path / "w.json").exit_code == 0
    assert vc("watchlist", "remove", "P1").exit_code == 0
    assert vc("watchlist", "import", tmp_path / "w.json").exit_code == 0
    assert vc("erase", "B2").exit_code == 0
    return vc


def test_every_access_is_audited_without_vectors_or_scores(history, tmp_path: Path) -> None:
    lines = _lines(tmp_path)
    events = [e["event"] for e in lines]
    for event in ("enroll", "check", "batch.call", "batch", "watchlist.add", "watchlist.export",
                  "watchlist.remove", "watchlist.import", "erase"):  # fmt: skip
        assert event in events, event
    assert events.count("batch.call") == 2 and events.count("batch") == 1
    for e in lines:
        assert set(e) <= ALLOWED, set(e) - ALLOWED
        assert e["alg"] == "hmac-sha256" and e["time"].endswith("Z") and e["user"] and e["host"]
    calls = {e["call_id"]: e for e in lines if e["event"] == "batch.call"}
    assert calls["K1"]["verdict"] == "match" and calls["K2"]["verdict"] == "mismatch"
    assert calls["K2"]["reason"] == "voice_mismatch"
    assert [e["borrower_ids"] for e in lines if e["event"] == "watchlist.add"] == [["B2"]]
    text = _log(tmp_path).read_text()
    assert "score" not in text and "vector" not in text


def test_verify_passes_then_names_the_first_edited_line(history, tmp_path: Path) -> None:
    res = history("audit", "verify")
    assert res.exit_code == 0 and "chain intact" in res.output, res.output
    lines = _log(tmp_path).read_text().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if '"verdict":"mismatch"' in line)
    lines[n] = lines[n].replace('"verdict":"mismatch"', '"verdict":"match"')
    _log(tmp_path).write_text("".join(lines))
    assert_error(history("audit", "verify"), 1, f"line {n + 1}", "edited")


def test_a_removed_line_breaks_the_chain_there(history, tmp_path: Path) -> None:
    lines = _log(tmp_path).read_text().splitlines(keepends=True)
    del lines[3]
    _log(tmp_path).write_text("".join(lines))
    assert_error(history("audit", "verify"), 1, "line 4")


def test_an_editor_without_the_key_cannot_rechain(history, tmp_path: Path) -> None:
    """Recomputing the plain SHA-256 chain after an edit (all an editor without the key can do) fails."""
    import hashlib

    prev, out = "0" * 64, []
    for e in _lines(tmp_path):
        e = {k: v for k, v in e.items() if k not in ("hash", "kid")}
        e.update(prev=prev, alg="sha256", verdict="match" if "verdict" in e else None)
        e = {k: v for k, v in e.items() if v is not None}
        e["hash"] = prev = hashlib.sha256(_canonical(e)).hexdigest()
        out.append(_canonical(e) + b"\n")
    _log(tmp_path).write_bytes(b"".join(out))
    assert_error(history("audit", "verify"), 1, "line 1", "not keyed")


def test_audit_show_lists_one_borrowers_history(history, tmp_path: Path) -> None:
    res = history("audit", "show", "--borrower", "B2", "--json")
    assert res.exit_code == 0, res.output
    found = json.loads(res.output)
    assert {e["event"] for e in found} == {"enroll", "batch.call", "watchlist.add", "erase"}
    assert all(e.get("borrower_id") == "B2" or "B2" in e.get("borrower_ids", []) for e in found)
    text = history("audit", "show", "--borrower", "B2").output
    assert "erase" in text and "enroll" in text and "K1" not in text  # K1 is B1's call
    assert "no audited event concerns NOBODY" in history("audit", "show", "--borrower", "NOBODY").output


def test_library_calls_are_audited(settings, tmp_path: Path) -> None:
    from tests.fakes import tone, write

    r = check_one(write(tmp_path / "x.wav", tone(440, 3.0), 16000), "B9", settings)
    (entry,) = list(entries(Path(settings.store) / "audit.log"))
    assert entry["event"] == "check" and entry["borrower_id"] == "B9" and entry["verdict"] == r.verdict


def test_without_a_key_the_chain_is_plain_sha256(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", Cipher(None))
    log.record("check", borrower_id="B1", verdict="match")
    log.record("check", borrower_id="B2", verdict="mismatch")
    assert verify(tmp_path / "audit.log", Cipher(None)).ok
    assert {e["alg"] for e in entries(tmp_path / "audit.log")} == {"sha256"}
    keyed = Cipher(Keyring.of([new_key()], "k"))
    assert not verify(tmp_path / "audit.log", keyed).ok  # an encrypted store's log must be keyed


def test_a_torn_last_line_is_cut_off_on_the_next_append(tmp_path: Path) -> None:
    cipher = Cipher(Keyring.of([new_key()], "k"))
    log = AuditLog(tmp_path / "audit.log", cipher)
    log.record("check", borrower_id="B1")
    with (tmp_path / "audit.log").open("ab") as f:
        f.write(b'{"seq":2,"time":"2')  # a writer killed mid-line
    assert not verify(tmp_path / "audit.log", cipher).ok
    log.record("check", borrower_id="B2")
    result = verify(tmp_path / "audit.log", cipher)
    assert result.ok and result.lines == 2


def _append_many(path: str, key: bytes, who: str, n: int) -> None:
    log = AuditLog(path, Cipher(Keyring.of([key], "k")))
    for i in range(n):
        if i % 10 == 9:
            log.write([{"event": "batch.call", "borrower_id": who, "call_id": f"{who}-{i}-{j}"} for j in range(5)])
        else:
            log.record("check", borrower_id=who, call_id=f"{who}-{i}")


def test_two_processes_appending_keep_one_valid_chain(tmp_path: Path) -> None:
    key = new_key()
    path = str(tmp_path / "audit.log")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, key, who, 100)) for who in ("P", "Q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    result = verify(path, Cipher(Keyring.of([key], "k")))
    assert result.ok, (result.bad_line, result.problem)
    got = list(entries(path))
    assert result.lines == len(got) == 2 * (90 + 10 * 5)
    assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
    assert {e["pid"] for e in got} == {p.pid for p in procs}


def test_audit_verify_of_no_log_is_fine(vc) -> None:
    res = vc("audit", "verify")
    assert res.exit_code == 0 and "0 line(s)" in res.output


def test_cross_call_analyses_and_store_show_are_audited(history, tmp_path: Path) -> None:
    assert history("consistency").exit_code == 0
    assert history("rings", "--min-borrowers", "2").exit_code == 0
    assert history("store", "show", "B1").exit_code == 0
    events = {e["event"]: e for e in _lines(tmp_path)}
    assert {"consistency", "rings", "store.show"} <= set(events)
    assert events["store.show"]["borrower_id"] == "B1" and events["rings"]["counts"]["calls"] >= 1
    assert history("audit", "verify").exit_code == 0
