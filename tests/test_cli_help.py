"""Every command's --help: plain text with its options' bracketed notes intact and no type on flags, and
the settings options a command takes defined once (SETTING_OPTIONS) with the same help everywhere."""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.testing import CliRunner

from voicecheck.cli import SETTING_OPTIONS, app


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group under ``group`` with its path (typer's groups are click commands with
    a ``commands`` mapping)."""
    found: list[tuple[tuple[str, ...], Any]] = [(path, group)]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def test_every_help_page_is_clean() -> None:
    runner = CliRunner()
    root = typer.main.get_command(app)
    pages = _commands(root)
    assert len(pages) >= 40  # 32 commands in 8 groups
    for path, _command in pages:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        text = res.output
        assert "<bool>" not in text, path  # a flag takes no value
        assert not re.search(r" \.$", text, flags=re.M), (path, text)  # no note eaten by markup
        assert "Traceback" not in text


def test_settings_options_read_the_same_in_every_command() -> None:
    runner = CliRunner()
    text = " ".join(runner.invoke(app, ["check", "--help"]).output.split())
    assert "[env VOICECHECK_STORE; default ./enrollment]" in text
    assert "[env VOICECHECK_EMBEDDINGS; default ./embeddings]" in text
    assert "[env VOICECHECK_CONFIG; default ./voicecheck.toml]" in text
    root = typer.main.get_command(app)
    seen: dict[str, set[str]] = {}
    for _path, command in _commands(root):
        for param in command.params:
            if param.name in SETTING_OPTIONS and param.param_type_name == "option":
                seen.setdefault(param.name, set()).add(param.help or "")
    assert set(seen) == set(SETTING_OPTIONS) and all(len(helps) == 1 for helps in seen.values()), seen
