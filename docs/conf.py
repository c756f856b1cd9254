"""Sphinx configuration of the pyro-textvae documentation site (MyST Markdown, furo, autodoc, sphinx-argparse).

Build it with ``sphinx-build -W --keep-going docs docs/_build/html`` (``pip install -e '.[docs]'``); the
tutorial notebooks run during the build, at smoke-test size when ``CI`` is set (tests/test_site.py sets it).
"""
from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the three packages of this checkout, not an installed copy
# The notebooks' kernels inherit this environment: figures inline even where the suite runs with MPLBACKEND=Agg
# (.ci/run does), which would leave every picture out of the tutorials.
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

project = "pyro-textvae"
author = "the pyro-textvae authors"
copyright = "2026, the pyro-textvae authors"
release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]  # one source: pyproject.toml
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "sphinx-mathjax-offline",  # MathJax copied into the site (_static/mathjax), so formulas render offline
]

smartquotes_action = "qe"  # quotes and ellipses only: "--epochs" in help texts stays two hyphens
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

# The docstrings use reStructuredText fields (:param x:), which autodoc reads as they are.
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # Pyro's own docstrings (and their cross-references) stay in Pyro's docs

highlight_language = "none"  # docstring formula blocks are plain text; code blocks name their language
html_theme = "furo"
html_title = f"pyro-textvae {release}"
html_static_path = ["_static"]
html_css_files = ["tables.css"]


INLINE_LITERAL = re.compile(r"(``.*?``)")
DOCS_CITATION = re.compile(r"``docs/([\w-]+)\.md(#[\w-]+)?``|(?<![\w/])docs/([\w-]+)\.md(#[\w-]+)?")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_lines(lines: list[str]) -> list[bool]:
    """Which lines are literal blocks. The docstrings set formulas apart as an indented block after a blank
    line, as plain text reads them; the paragraph before such a block gets reStructuredText's `` ::``
    (shown as nothing), so the block renders as it is written, in a fixed-width font."""
    literal, previous, index = [False] * len(lines), None, 0
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        opens_block = previous is not None and not lines[index - 1].strip()
        if opens_block and _indent(lines[index]) > _indent(lines[previous]):
            if not lines[previous].rstrip().endswith("::"):
                lines[previous] = lines[previous].rstrip() + " ::"
            base = _indent(lines[previous])
            while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > base):
                literal[index] = bool(lines[index].strip())
                previous = index if lines[index].strip() else previous
                index += 1
            continue
        previous, index = index, index + 1
    return literal


def _link(match: re.Match) -> str:
    """A citation ``docs/maths.md#section`` as a link to that section of the site (the API pages sit in api/)."""
    page, anchor = match.group(1) or match.group(3), match.group(2) or match.group(4) or ""
    return f"`docs/{page}.md{anchor} <../{page}.html{anchor}>`__"


def plain_text_as_rst(app, what, name, obj, options, lines: list[str]) -> None:
    """Read the docstrings' plain-text conventions as reStructuredText: indented formula blocks are literal
    blocks, a bar outside a literal (a norm or a set size, ``|B|``, which reStructuredText would read as
    a substitution) is a bar, and a citation of ``docs/maths.md`` or ``docs/metrics.md`` links to its page."""
    literal = literal_lines(lines)
    for index, line in enumerate(lines):
        if not literal[index]:
            parts = INLINE_LITERAL.split(line)
            line = "".join(p if p.startswith("``") else p.replace("|", r"\|") for p in parts)
            lines[index] = DOCS_CITATION.sub(_link, line)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", plain_text_as_rst)
