"""README agrees with what CI runs, with the repository and with the results it quotes."""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs import github_anchor

ROOT = Path(__file__).resolve().parents[1]
CPU_TORCH = "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0"


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)]


def test_ci_runs_the_readme_test_command_literally():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (command,) = [block for block in _bash_blocks(readme) if "pytest" in block and block.startswith("python3 -m venv")]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci_lines
    assert "-rs" in command.split() and CPU_TORCH in command


def test_the_cpu_set_up_line_takes_torch_from_pytorchs_cpu_index_before_the_project():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setups = [block for block in _bash_blocks(readme) if block.startswith("python3 -m venv") and "pytest" not in block]
    assert setups and all(block.index(CPU_TORCH) < block.index("pip install -e") for block in setups)


def test_readme_is_short_and_every_relative_link_names_a_file_and_heading_of_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200  # the rest is on the documentation site (docs/)
    wrong = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path
        lines = file.read_text(encoding="utf-8").splitlines() if file.suffix == ".md" and file.is_file() else []
        anchors = {github_anchor(line.lstrip("#")) for line in lines if line.startswith("#")}
        if not file.is_file() or (anchor and anchor not in anchors):
            wrong.append(target)
    assert wrong == []


def test_the_headline_table_is_the_one_results_table_prints_from_the_results_csv():
    from evaluation.tables import table_from_results_csv

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"`python examples/results_table\.py (results/\S+\.csv) (.*?)`", readme, flags=re.DOTALL)
    columns = re.findall(r'"([^"]+)"|(\S+)', command.group(2).replace("\n", " "))
    table = table_from_results_csv(ROOT / command.group(1), [quoted or bare for quoted, bare in columns])
    assert table in readme


@pytest.mark.slow
def test_the_readme_python_snippet_runs_in_well_under_a_minute_of_cpu(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.findall(r"^epoch (\d): loss \d+\.\d\d a sentence$", result.stdout, flags=re.MULTILINE) == ["1", "2"]
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 60  # paper sizes: ~50 min
