"""voicecheck.config: defaults < voicecheck.toml < environment < CLI options; bad input -> UsageError."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from voicecheck.cli import app
from voicecheck.config import Settings, load_settings
from voicecheck.errors import UsageError


def test_defaults_without_file_or_env() -> None:
    s = load_settings()
    assert s == Settings()
    assert (s.store, s.embeddings, s.model, s.channel, s.thresholds) == ("enrollment", "embeddings", "ge2e", 1, {})


def test_precedence_defaults_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("voicecheck.toml").write_text('store = "from-file"\nembeddings = "emb-file"\nchannel = 0\nworkers = 3\n')
    s = load_settings()
    assert (s.store, s.embeddings, s.channel, s.workers) == ("from-file", "emb-file", 0, 3)
    assert s.model == "ge2e"  # untouched keys keep their defaults
    monkeypatch.setenv("VOICECHECK_STORE", "from-env")
    s = load_settings()
    assert (s.store, s.embeddings) == ("from-env", "emb-file")
    s = load_settings(None, store="from-cli", channel=None, workers=2)
    assert (s.store, s.channel, s.workers) == ("from-cli", 0, 2)  # None options pass through unset


def test_config_path_argument_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("voicecheck.toml").write_text("workers = 3\n")
    other = tmp_path / "other.toml"
    other.write_text("workers = 5\n[thresholds]\ncosine = 0.8\n")
    assert load_settings(other).workers == 5
    monkeypatch.setenv("VOICECHECK_CONFIG", str(other))
    s = load_settings()
    assert (s.workers, s.thresholds) == (5, {"cosine": 0.8})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modle = 'ge2e'\n", "unknown setting 'modle'"),
        ("workers = 'many'\n", "'workers'.*int"),
        ("[thresholds]\ncosine = 'high'\n", "'thresholds'.*number"),
        ("cohort = 'maybe'\n", "'cohort'.*true or false"),
        ("workers = [\n", "cannot be read"),
    ],
)
def test_bad_config_file_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        load_settings(path)
    assert "bad.toml" in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_bad_override_type() -> None:
    with pytest.raises(UsageError, match="--channel"):
        load_settings(None, channel="left")
    with pytest.raises(UsageError, match="unknown setting"):
        load_settings(None, colour="blue")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("0", False), ("off", False), (True, True)])
def test_bool_spellings(value: object, expected: bool) -> None:
    assert load_settings(None, cohort=value).cohort is expected


def test_cli_flag_beats_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("voicecheck.toml").write_text('store = "from-file"\n')
    monkeypatch.setenv("VOICECHECK_STORE", "from-env")
    runner = CliRunner()
    res = runner.invoke(app, ["store", "list"])
    assert res.exit_code == 0 and "from-env" in res.output
    res = runner.invoke(app, ["store", "list", "--store", str(tmp_path / "from-cli")])
    assert res.exit_code == 0 and "from-cli" in res.output


def test_cli_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("workerz = 2\n")
    res = CliRunner().invoke(app, ["store", "list", "--config", str(bad)])
    assert res.exit_code == 2
    assert "unknown setting 'workerz'" in res.output
    assert "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_backend_settings_are_validated() -> None:
    from voicecheck.config import Settings

    assert Settings(backend_file="adapted", backend_scoring="plda").backend_scoring == "plda"
    assert load_settings(None, thresholds={"plda": -12.5}).thresholds == {"plda": -12.5}
    with pytest.raises(UsageError, match="backend_scoring"):
        Settings(backend_scoring="lda")
    with pytest.raises(UsageError, match="unknown scoring mode 'plda\\+asnorm'"):
        load_settings(None, thresholds={"plda+asnorm": 1.0})
    with pytest.raises(UsageError, match="adapt_min_borrowers"):
        Settings(adapt_min_borrowers=1)
    with pytest.raises(UsageError, match="adapt_max_false_accept"):
        Settings(adapt_max_false_accept=0.5)
    with pytest.raises(UsageError, match="adapt_every_days"):
        Settings(adapt_every_days=-1)
