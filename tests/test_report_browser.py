"""report.html as a QA agent uses it, in a real headless browser (Debian's chromium, driven by Playwright):
the queue renders, every audio excerpt loads from the file:// page, the filters and the search work, a
decision is clicked, the decisions download as CSV, and ``voicecheck review import`` reads that file.

Chromium comes from the system (``apt-get install chromium``; scripts/test.sh installs it when it can);
Playwright never downloads a browser here. Without a browser the test is skipped and says how to get one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.browser import CHROMIUM_FLAGS, chromium_path
from tests.test_cli_more import _manifest, voice_file
from tests.test_review_cli import _takeover
from voicecheck.report import RESULTS, read_jsonl


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: scripts/install.sh")
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium to drive: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does this "
            "when apt-get is available) or point VOICECHECK_CHROMIUM at a Chromium binary"
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def report(vc, tmp_path: Path) -> Path:
    """A batch with the fake model: K1 matches, K2 and K3 are someone else (mismatches)."""
    for who, voice in (("B1", "A"), ("B2", "B")):
        rec = voice_file(tmp_path / "enroll" / f"{who}.wav", voice, 8.0, stereo_call=False)
        assert vc("enroll", who, rec, "--channel", "0").exit_code == 0
    manifest = _manifest(tmp_path, [("K1", "B1", "A"), ("K2", "B2", "A"), ("K3", "B1", "B"), ("K4", "B1", "C")])
    takeover = _takeover(tmp_path / "calls" / "k5.wav")  # B1 answers, someone else takes over
    manifest.write_text(manifest.read_text() + f"K5,B1,calls/{takeover.name}\n", encoding="utf-8")
    res = vc("batch", manifest, "--out", tmp_path / "night", "--threshold", "cosine=0.5", "--quiet")
    assert res.exit_code == 0, res.output
    return tmp_path / "night" / "report.html"


def test_a_qa_agent_decides_in_the_page_and_imports_the_csv(browser, report: Path, vc, tmp_path: Path) -> None:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(report.as_uri())
    page.wait_for_function("() => window.voicecheckQueue !== undefined")
    flagged = [r for r in read_jsonl(report.parent / RESULTS) if r["reason"] == "voice_mismatch"]
    strongest_first = [r["call_id"] for r in sorted(flagged, key=lambda r: r["score"])]
    assert sorted(strongest_first) == ["K2", "K3", "K4"]
    shown = page.eval_on_selector_all("article.card", "cards => cards.map(c => c.dataset.id)")
    assert shown == [*strongest_first, "K5"]  # by reason, strongest evidence first

    # every excerpt loads (metadata at least) from the file:// page, none fails
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error !== null)",
        timeout=15000,
    )
    audio = page.eval_on_selector_all(
        "audio", "els => els.map(a => ({state: a.readyState, error: a.error && a.error.code, seconds: a.duration}))"
    )
    assert len(audio) == 4 and all(a["state"] >= 1 and a["error"] is None for a in audio), audio
    assert all(0 < a["seconds"] <= 12.01 for a in audio)
    assert page.locator("svg.timeline").count() == 4

    # search by id and filter by reason
    page.fill("#f-search", "k3")
    assert page.eval_on_selector_all("article.card", "cs => cs.map(c => c.dataset.id)") == ["K3"]
    card = page.locator('article.card[data-id="K3"]')
    assert "Other calls of B1 in this run: K1 match" in card.inner_text()
    card.locator('button[data-label="impostor"]').click()
    card.locator("input.note").fill("=1+1 agent took over")
    assert card.locator('button[data-label="impostor"]').get_attribute("aria-pressed") == "true"
    command = card.locator("code.cmd").inner_text()
    assert command.startswith("voicecheck review K3 --label impostor --note '=1+1 agent took over' --store ")
    page.fill("#f-search", "")
    page.select_option("#f-state", "undecided")
    undecided = [c for c in shown if c != "K3"]
    assert page.eval_on_selector_all("article.card", "cs => cs.map(c => c.dataset.id)") == undecided
    page.select_option("#f-state", "")
    page.select_option("#f-reason", "speaker_change")
    assert page.eval_on_selector_all("article.card", "cs => cs.map(c => c.dataset.id)") == ["K5"]
    assert "voice changes at" in page.locator('article.card[data-id="K5"] ul.evidence').inner_text()
    page.fill("#f-search", "nothing-like-this")
    assert page.locator("article.card").count() == 0 and page.inner_text("#shown") == "no call matches"
    page.fill("#f-search", "")
    page.select_option("#f-reason", "voice_mismatch")
    assert page.locator("article.card").count() == 3

    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "decisions.csv"
    download.value.save_as(saved)
    with saved.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["call_id"], r["borrower_id"], r["label"], r["reason"]) for r in rows] == [
        ("K3", "B1", "impostor", "voice_mismatch")
    ]
    assert rows[0]["note"] == "'=1+1 agent took over" and len(rows[0]["content_hash"]) == 64  # escaped formula

    # the decision survives a reload (kept in the browser until it is imported)
    page.reload()
    page.wait_for_function("() => window.voicecheckQueue !== undefined")
    assert page.locator("#decided-count").inner_text() == "1 decided"
    assert problems == []  # no script error, no blocked resource (the page's policy allows what it uses)
    context.close()

    res = vc("review", "import", saved)
    assert res.exit_code == 0 and "recorded 1 decision(s)" in res.output, res.output
    (row,) = json.loads(vc("review", "list", "--json").output)
    assert (row["call_id"], row["label"], row["note"], row["reason"]) == (
        "K3",
        "impostor",
        "=1+1 agent took over",
        "voice_mismatch",
    )
