"""The documentation site: it builds with warnings as errors (tutorials executed at smoke-test size), its API
reference has an entry for every public name, its command-line reference shows every command and option
of the parser, and every picture or TOML example a page shows is real."""
from __future__ import annotations

import html
import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC = ("pyro_textvae", "pyro_textvae.data", "inference", "evaluation")
API_ENTRY = re.compile(r"^\.\. (?:auto(?:class|function|exception|data)|py:\w+):: ([\w.]+)", flags=re.MULTILINE)
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def _public_names() -> set[str]:
    return {f"{package}.{name}" for package in PUBLIC for name in importlib.import_module(package).__all__}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as CI builds it: ``sphinx-build -W --keep-going`` with ``CI`` set (notebooks at smoke size)."""
    out = tmp_path_factory.mktemp("site")
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # the notebooks' kernels import this checkout
    env = {**os.environ, "CI": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path}
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out / "html")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert result.returncode == 0, "\n".join(warnings) or result.stderr[-3000:]
    return out / "html"


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors_and_has_its_pages(site):
    pages = ["index", "getting-started", "tutorials/index", "guide/objectives", "results/paper-schedule",
             "benchmarks", "maths", "metrics", "api/inference", "cli", "changelog"]
    assert [page for page in pages if not (site / f"{page}.html").is_file()] == []


@pytest.mark.slow
def test_the_formulas_render_from_the_site_itself_without_a_network(site):
    """Every page that loads MathJax loads the copy inside the site (a CDN script shows raw TeX offline)."""
    scripts = {page.relative_to(site): re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page.read_text())
               for page in site.rglob("*.html")}
    loading = {page: srcs for page, srcs in scripts.items() if srcs}
    assert Path("tutorials/swap_elbo.html") in loading  # a notebook with $...$ formulas
    for page, srcs in loading.items():
        for src in srcs:
            assert "://" not in src, (page, src)
            assert (site / page).parent.joinpath(src.split("?")[0]).resolve().is_file(), (page, src)


def test_the_api_pages_have_an_entry_for_every_public_name():
    entries = {m.group(1) for page in (DOCS / "api").glob("*.md") for m in API_ENTRY.finditer(page.read_text())}
    assert sorted(_public_names() - entries) == []


@pytest.mark.slow
def test_every_public_name_is_documented_in_the_built_api_reference(site):
    from sphinx.util.inventory import InventoryFile

    with open(site / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    documented = {name for kind, names in inventory.items() if kind.startswith("py:") for name in names}
    assert sorted(_public_names() - documented) == []


@pytest.mark.slow
def test_the_cli_reference_shows_every_command_and_option_of_the_parser(site):
    from pyro_textvae.cli import build_parser

    text = html.unescape(re.sub(r"<[^>]+>", " ", (site / "cli.html").read_text()))
    (commands,) = [a for a in build_parser()._actions if a.dest == "command"]
    missing = [name for name in commands.choices if name not in text]
    for name, parser in commands.choices.items():
        missing += [f"{name} {flag}" for a in parser._actions for flag in a.option_strings if flag not in text]
    assert missing == []


def test_every_picture_in_readme_and_the_site_is_a_file_of_the_repository():
    missing = []
    for page in [ROOT / "README.md", *_pages()]:
        for target in IMAGE.findall(page.read_text()):
            if not (page.parent / target).resolve().is_file():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert missing == []


def test_every_toml_example_in_readme_and_the_site_parses():
    pages = [ROOT / "README.md", *_pages()]
    blocks = [block for page in pages for block in re.findall(r"```toml\n(.*?)```", page.read_text(), flags=re.DOTALL)]
    assert blocks  # the experiment file of guide/experiments.md at least
    for block in blocks:
        tomllib.loads(block)  # a TOMLDecodeError names the line
