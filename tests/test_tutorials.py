"""The tutorial notebooks of ``docs/tutorials`` run end to end at smoke-test size and their checks hold.

Each notebook is executed with nbclient in a fresh kernel whose environment has ``CI=1`` (the
notebooks' ``smoke_test`` switch) and this checkout first on ``PYTHONPATH``. A failing cell, the
final cell's assertions of the claims the notebook makes included, fails the test; the test then
checks that every code cell ran, that the pictures the notebook draws came out, and that the
notebooks are committed without outputs (the site executes them at build time).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the test extra (nbclient)")
nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the test extra")
pytest.importorskip("ipykernel", reason="ipykernel comes with the test extra")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
# notebook: the pictures it draws at least (each a PNG output)
NOTEBOOKS = {"swap_elbo.ipynb": 1, "importance_sampling.ipynb": 2, "explore_posteriors.ipynb": 9}
TIMEOUT_S = 300


def _kernel_environment() -> dict[str, str]:
    """The test process's environment with the smoke-test switch on and this checkout importable first;
    no MPLBACKEND, so the kernel draws inline as in Jupyter and in the site's build."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env["CI"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _execute(path: Path, tmp_path: Path):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=_kernel_environment())
    return notebook


def test_every_notebook_is_listed_and_in_the_toctree():
    assert sorted(p.name for p in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)
    index = (TUTORIALS / "index.md").read_text(encoding="utf-8")
    toctree = index.split("```{toctree}")[1].split("```")[0].split()
    assert [f"{Path(name).stem}" for name in NOTEBOOKS] == [entry for entry in toctree if not entry.startswith(":")]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "smoke_test = \"CI\" in os.environ" in "\n".join(cell.source for cell in code)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_and_its_checks_hold(name, tmp_path):
    notebook = _execute(TUTORIALS / name, tmp_path)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), "a code cell did not run"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    pictures = sum("image/png" in output.get("data", {}) for output in outputs)
    assert pictures >= NOTEBOOKS[name], f"{name} drew {pictures} pictures, expected {NOTEBOOKS[name]}"
    final = "".join(output.get("text", "") for output in code[-1].outputs if output.output_type == "stream")
    assert final.startswith("checks passed"), f"the final cell of {name} printed {final!r}"
