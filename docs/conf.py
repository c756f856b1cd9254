"""Sphinx configuration of the pyro-textvae documentation site (MyST Markdown, furo, autodoc, sphinx-argparse).

Build it with ``sphinx-build -W --keep-going docs docs/_build/html`` (``pip install -e '.[docs]'``); the
tutorial notebooks run during the build, at smoke-test size when ``CI`` is set (tests/test_site.py sets it).
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the three packages of this checkout, not an installed copy

project = "pyro-textvae"
author = "the pyro-textvae authors"
copyright = "2026, the pyro-textvae authors"
release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]  # one source: pyproject.toml
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]

# MyST: `[text](page.md#heading)` links resolve to headings down to level 3; $...$ maths in notebooks.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath", "colon_fence"]

# Notebooks run at every build (with outputs committed nowhere), and a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # Pyro's own docstrings (and their cross-references) stay in Pyro's docs
napoleon_google_docstring = False
napoleon_numpy_docstring = True

html_theme = "furo"
html_title = f"pyro-textvae {release}"
html_static_path: list[str] = []


LITERAL = re.compile(r"(``.*?``)")


def escape_bars(app, what, name, obj, options, lines: list[str]) -> None:
    """The docstrings write norms and set sizes as ``|B|``, which reStructuredText reads as a substitution:
    a bar outside an inline literal is taken literally."""
    for index, line in enumerate(lines):
        parts = LITERAL.split(line)
        lines[index] = "".join(p if p.startswith("``") else p.replace("|", r"\|") for p in parts)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", escape_bars)
