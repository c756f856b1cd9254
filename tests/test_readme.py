"""README's set-up and test commands agree with what CI runs."""
from __future__ import annotations

import re
from pathlib import Path

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
