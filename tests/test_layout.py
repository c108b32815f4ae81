"""The package layout: voicecheck/ holds what a deployment runs and never reaches for experiment code.

Imports are read from the source (ast), so lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_PACKAGES = ("recipes", "benchmarks", "scripts", "tests")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, at any depth (relative imports left out)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top_level_imports(package: str) -> dict[str, set[str]]:
    """{file relative to the repo: top-level packages it imports} for every module of ``package``."""
    return {
        str(path.relative_to(ROOT)): {name.split(".")[0] for name in imported_modules(path)}
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def test_imported_modules_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom . import sibling\n\n\ndef f():\n"
        "    from recipes.simulate import make_call\n    import benchmarks.accuracy\n"
    )
    assert imported_modules(sample) == {"os", "recipes.simulate", "benchmarks.accuracy"}


def test_voicecheck_never_imports_experiment_code() -> None:
    offenders = {
        path: sorted(names & set(EXPERIMENT_PACKAGES))
        for path, names in top_level_imports("voicecheck").items()
        if names & set(EXPERIMENT_PACKAGES)
    }
    assert offenders == {}


def test_recipes_never_import_benchmarks_or_scripts() -> None:
    offenders = {
        path: sorted(names & {"benchmarks", "scripts", "tests"})
        for path, names in top_level_imports("recipes").items()
        if names & {"benchmarks", "scripts", "tests"}
    }
    assert offenders == {}


@pytest.mark.parametrize("script", ["scripts/train_backend.py", "scripts/make_samples.py"])
def test_scripts_use_recipes_not_benchmarks(script: str) -> None:
    source = (ROOT / script).read_text(encoding="utf-8")
    names = {name.split(".")[0] for name in imported_modules(ROOT / script)}
    assert "benchmarks" not in names
    assert "recipes" in names or '"recipes.' in source  # make_samples imports through importlib


def test_wheel_ships_voicecheck_only() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = config["tool"]["setuptools"]["packages"]
    assert all(p == "voicecheck" or p.startswith("voicecheck.") for p in packages)
    assert "voicecheck" in packages
