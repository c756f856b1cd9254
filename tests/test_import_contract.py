"""The layers of pyproject.toml's ``[tool.importlinter]`` contracts: pyro_textvae <- inference <-
evaluation <- the application room pyro_textvae.cli, checked by import-linter on the repository and
shown to catch a wrong import (module level or inside a function) in a copy of it."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pyro_textvae", "inference", "evaluation")
LINT = ("import sys\nfrom importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))\n")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages and pyproject.toml under ``root`` (found first on the path)."""
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_the_repository_keeps_every_import_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copy(ROOT / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _add_import(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + line + "\n", encoding="utf-8")


WRONG = [  # (module, the line appended to it, the contract it breaks, the import reported)
    ("pyro_textvae.model", "def _up():\n    import inference.elbo", "only downward",
     "pyro_textvae.model -> inference.elbo"),
    ("inference.elbo", "from evaluation.generation import decode", "only downward",
     "inference.elbo -> evaluation.generation"),
    ("evaluation.generation", "def _train():\n    from inference.trainer import Trainer", "never imports training",
     "evaluation.generation -> inference.trainer"),
    ("evaluation.tables", "from pyro_textvae.cli.options import Parser", "Nothing imports the application room",
     "evaluation.tables -> pyro_textvae.cli.options"),
    ("pyro_textvae.io", "def _up():\n    from pyro_textvae.cli.options import at_least",
     "Nothing imports the application room", "pyro_textvae.io -> pyro_textvae.cli.options"),
]


@pytest.mark.parametrize(("module", "line", "contract", "reported"), WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_import_breaks_its_contract(copy, tmp_path, module, line, contract, reported):
    root = tmp_path / "repo"
    shutil.copytree(copy, root)
    _add_import(root, module, line)
    result = _lint(root)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [text for text in result.stdout.splitlines() if text.endswith("BROKEN") or " BROKEN (" in text]
    assert len(broken) == 1 and contract in broken[0], result.stdout
    assert re.search(rf"^-\s+{re.escape(reported)} \(l\.", result.stdout, re.M), result.stdout
