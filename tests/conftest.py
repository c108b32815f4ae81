"""Shared fixtures: isolated working directory, the fake model/VAD, real models loaded once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # ``tests.fakes`` must import here and in spawned workers
    sys.path.insert(0, str(REPO))
os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub from a test

from tests.fakes import NO_REPLAY, EnergyVad, FakeEmbedder, workspace  # noqa: E402
from voicecheck.cli import app  # noqa: E402
from voicecheck.config import Settings, load_settings  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own empty directory with no VOICECHECK_* settings from outside."""
    for var in [v for v in os.environ if v.startswith("VOICECHECK_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


TEST_KEY = ""
"""A random encryption key for the session (base64), set in VOICECHECK_KEY for every test."""


@pytest.fixture(scope="session", autouse=True)
def _session_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The session's key in VOICECHECK_KEY (and a config folder of its own) from the start, so that
    module-scoped fixtures, which run before the per-test fixtures, have a key too."""
    import base64

    from voicecheck.crypto import new_key

    global TEST_KEY
    TEST_KEY = base64.b64encode(new_key()).decode("ascii")
    os.environ["VOICECHECK_KEY"] = TEST_KEY
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))


@pytest.fixture(autouse=True)
def _key(_isolated: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test has the encryption key (VOICECHECK_KEY, also seen by spawned workers) and a per-user
    config folder of its own, so no test reads or writes the developer's real key."""
    monkeypatch.setenv("VOICECHECK_KEY", TEST_KEY)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture()
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture()
def energy_vad() -> EnergyVad:
    return EnergyVad()


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings for the fake model in a fresh workspace (no cohort, explicit threshold, no replay check)."""
    emb = workspace(tmp_path / "ws")
    return load_settings(
        None,
        store=str(tmp_path / "ws" / "store"),
        embeddings=str(emb),
        model="fake",
        thresholds={"cosine": 0.9},
        cohort=False,
        replay=False,
    )


@pytest.fixture(scope="session")
def silero():
    from voicecheck.vad import SileroVad

    return SileroVad()


@pytest.fixture(scope="session")
def ge2e(tmp_path_factory: pytest.TempPathFactory):
    from voicecheck.embedders import load_embedder

    return load_embedder("ge2e", tmp_path_factory.mktemp("ge2e-ws"))


@pytest.fixture(scope="session")
def ge2e_settings_factory():
    def make(root: Path, **overrides: object) -> Settings:
        return Settings(store=str(root / "store"), embeddings=str(root / "embeddings"), **overrides)  # type: ignore[arg-type]

    return make


@pytest.fixture()
def vc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke the CLI in-process: fake model (voicecheck.toml in the working dir), energy VAD."""
    emb = workspace(tmp_path)
    (tmp_path / "voicecheck.toml").write_text(  # one worker: a batch runs in-process, where the VAD is patched
        f'model = "fake"\nstore = "{tmp_path / "store"}"\nembeddings = "{emb}"\nworkers = 1\n{NO_REPLAY}',
        encoding="utf-8",
    )
    monkeypatch.setattr("voicecheck.pipeline.SileroVad", lambda **kw: EnergyVad())
    runner = CliRunner()

    def invoke(*args: object):
        argv = [str(a) for a in args]
        if "enroll" in argv[:2] and "--consent" not in argv:
            argv += ["--consent", "test consent"]
        return runner.invoke(app, argv)

    return invoke


def _hide_lazy_modules() -> None:
    """hypothesis reads ``__file__`` of every loaded module to collect constants; speechbrain's lazy
    modules raise ImportError on any attribute (k2 and other optional integrations are not
    installed). Mark them as already seen so hypothesis skips them."""
    from hypothesis.internal.conjecture import providers

    for module in list(sys.modules.values()):
        if type(module).__name__ in ("LazyModule", "DeprecatedModuleRedirect"):
            providers._seen_modules.add(id(module))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems() -> None:
    _hide_lazy_modules()


@pytest.fixture()
def no_lazy_modules() -> None:
    """For hypothesis tests: run after speechbrain may have been imported by earlier tests."""
    _hide_lazy_modules()
