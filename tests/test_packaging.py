"""``python -m build`` makes an sdist and a wheel that install into a fresh virtual environment and run ``textvae``.

The build runs without isolation (the ``test`` extra brings the setuptools ``[build-system]`` asks for), so
it needs no network; the wheel is built from the unpacked sdist, as ``python -m build`` does by default, so
a module the sdist lacks is missing from the wheel too; the sdist is also installed by pip itself (built
from source, as a user without the wheel installs it).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pyro_textvae", "inference", "evaluation")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _modules() -> set[str]:
    """Every module file of the three packages, as a path relative to the repository."""
    return {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


@pytest.mark.slow
def test_build_makes_an_sdist_and_a_wheel_of_this_version_holding_every_module(dist):
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    assert sdist.name == f"pyro_textvae-{VERSION}.tar.gz" and wheel.name == f"pyro_textvae-{VERSION}-py3-none-any.whl"
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if name.endswith(".py")}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if name.endswith(".py")}
    assert _modules() - in_sdist == set()
    assert _modules() - in_wheel == set()


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_textvae_help(dist, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, textvae = env_dir / "bin" / "python", env_dir / "bin" / "textvae"
    (wheel,) = dist.glob("*.whl")
    # --no-deps: `textvae --help` imports no dependency (the parser is built without torch or Pyro)
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp_path)
    help_text = _run([str(textvae), "--help"], cwd=tmp_path).stdout
    assert help_text.startswith("usage: textvae") and "experiment" in help_text
    where = "import importlib.metadata as m, pyro_textvae; print(m.version('pyro-textvae'), pyro_textvae.__file__)"
    version, location = _run([str(python), "-c", where], cwd=tmp_path).stdout.split()
    assert version == VERSION and Path(location).is_relative_to(env_dir)


@pytest.mark.slow
def test_the_sdist_itself_installs_and_runs_textvae_help(dist, tmp_path):
    """pip builds and installs the sdist (as a user without a wheel would); the copy it installs is the one run."""
    (sdist,) = dist.glob("*.tar.gz")
    prefix = tmp_path / "prefix"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation", "-q",
          "--prefix", str(prefix), str(sdist)], cwd=tmp_path)
    (site,) = prefix.glob("lib/python*/site-packages")
    assert _modules() - {p.relative_to(site).as_posix() for p in site.rglob("*.py")} == set()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(site)
    where = "import pyro_textvae.cli as cli; print(cli.__file__)"
    result = subprocess.run([sys.executable, "-c", where], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and Path(result.stdout.strip()).is_relative_to(site), result.stderr[-2000:]
    help_text = subprocess.run([str(prefix / "bin" / "textvae"), "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300).stdout
    assert help_text.startswith("usage: textvae") and "experiment" in help_text
