"""Lint: ``ruff check`` with pyproject.toml's ``[tool.ruff]`` finds nothing in the repository, and that
configuration does fail on what it is there to catch (an unused import, imports out of order, a long line)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def ruff_installed():
    if subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode != 0:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")


def test_the_repository_passes_ruff_check(ruff_installed):
    result = _ruff(".", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "source, rule",
    [
        ("import os\n", "F401"),
        ("import torch\nimport os\n\nprint(os, torch)\n", "I001"),
        (f"x = {'1 + ' * 40}1\n", "E501"),
        ("def f():\n    return undefined_name\n", "F821"),
    ],
)
def test_the_configuration_refuses_what_it_is_for(ruff_installed, tmp_path, source, rule):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "pyro_textvae").mkdir()
    (tmp_path / "pyro_textvae" / "bad.py").write_text(source)
    result = _ruff(".", cwd=tmp_path)
    assert result.returncode == 1 and rule in result.stdout, result.stdout + result.stderr
