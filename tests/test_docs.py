"""The maths in docs/ is what the code cites: every citation names a file and a section that exist, nothing
cites a document outside the repository, and every dotted reference in a docstring names something real."""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pyro_textvae", "inference", "evaluation")
CITED = ("benchmarks", "examples", "tests", *PACKAGES)
DOC_CITATION = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
ROLE = re.compile(r":(?:class|func|mod|meth|data|attr|exc):`~?([A-Za-z_][\w.]*)`")
DOTTED = re.compile(r"(?<![\w./])((?:pyro_textvae|inference|evaluation)(?:\.[A-Za-z_]\w*)+)")


def _sources() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in CITED:
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ".toml", ".md"))
    return files


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in doc.read_text().splitlines() if line.startswith("#")}


def _docstrings(path: Path) -> str:
    nodes = ast.walk(ast.parse(path.read_text()))
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return "\n".join(ast.get_docstring(n) or "" for n in nodes if isinstance(n, documented))


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _resolves(name: str, module) -> bool:
    """``name`` is an importable dotted path, or an attribute path from ``module`` or one of its classes
    (an instance attribute counts when a method of the class assigns ``self.<name>``)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return _walk(found, parts[cut:])
    owners = [module, *(v for v in vars(module).values() if inspect.isclass(v))]
    return any(_walk(owner, parts) for owner in owners)


def _walk(owner, parts: list[str]) -> bool:
    for index, part in enumerate(parts):
        if hasattr(owner, part):
            owner = getattr(owner, part)
            continue
        if index < len(parts) - 1 or not inspect.isclass(owner):
            return False
        try:
            return re.search(rf"self\.{part}\s*[:=]", inspect.getsource(owner)) is not None
        except (OSError, TypeError):
            return False
    return True


def test_github_anchor_matches_githubs_rule():
    assert github_anchor(" Rec, KL and ELBO") == "rec-kl-and-elbo"
    assert github_anchor("Density-gap estimator") == "density-gap-estimator"


def test_every_docs_citation_names_an_existing_file_and_section():
    wrong = []
    for path in _sources():
        for match in DOC_CITATION.finditer(path.read_text()):
            doc = ROOT / "docs" / match.group(1)
            if not doc.exists() or (match.group(2) and match.group(2) not in _anchors(doc)):
                wrong.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not wrong, wrong


def test_docstrings_cite_the_docs_in_the_repository_only():
    outside = [str(p.relative_to(ROOT)) for p in _sources() if re.search(r"dg-vae\.md|pyro-notes\.md", p.read_text())]
    assert not outside, outside


def test_the_docs_define_every_registered_objective():
    from inference.objectives import OBJECTIVES

    baselines = (ROOT / "docs" / "maths.md").read_text().split("## Baselines", 1)[1].split("\n## ", 1)[0]
    assert [name for name in OBJECTIVES if f"`{name}`" not in baselines] == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_dotted_reference_in_a_docstring_resolves(package):
    wrong = []
    for path in sorted(p for p in (ROOT / package).rglob("*.py") if p.name != "__main__.py"):
        module = importlib.import_module(_module_name(path))
        text = _docstrings(path)
        names = [m.group(1) for m in ROLE.finditer(text)] + [m.group(1) for m in DOTTED.finditer(text)]
        wrong += [f"{path.relative_to(ROOT)}: {name}" for name in names if not _resolves(name, module)]
    assert not wrong, wrong
