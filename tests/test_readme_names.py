"""Every name README tells a user to import or call is importable from its package's top level.

README is read when the test runs, so a rewritten README is checked as it stands: each ``from X import
a, b`` of its code, each backticked ``package.name``, and each backticked name that one of the three
packages defines at a module's top level (a class, function or constant) must be an attribute of its
package (``evaluation.sentence_log_likelihood``, not only ``evaluation.sentence_likelihood``'s).
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pyro_textvae", "inference", "evaluation")
DOCSTRING_NAMES = {  # names the docstrings of exported functions send a user to
    "evaluation": ["encode_split", "dimension_statistics", "SplitPosteriors", "save_figure", "collect_posteriors",
                   "latent_prior", "shared_active_dims", "sentence_log_likelihood"],
    "pyro_textvae": ["open_run"],
}


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _defined_names() -> dict[str, str]:
    """Public top-level names of the library modules (the command line left out) -> the package that
    exports them (a subpackage such as ``pyro_textvae.data`` for its own modules)."""
    names: dict[str, str] = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "cli" in parts:
                continue
            package = ".".join(parts[:2]) if len(parts) > 2 else top
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    found = [node.name]
                else:
                    found = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
                names.update({name: package for name in found if not name.startswith("_")})
    return names


def _imports(text: str) -> list[tuple[str, str]]:
    """``(module, name)`` of every ``from module import a, b`` (parenthesised too) in README's code."""
    pairs, statement = [], r"^from ([\w.]+) import (?:\(([^)]*)\)|([\w, ]+))"
    for module, grouped, names in re.findall(statement, text, flags=re.MULTILINE):
        pairs += [(module, name.strip()) for name in (grouped or names).replace("\n", ",").split(",") if name.strip()]
    return pairs


def _pointed_names(text: str, defined: dict[str, str]) -> list[tuple[str, str]]:
    """``(package, dotted name)`` of every backticked name of one of the packages."""
    pairs = []
    for span in set(re.findall(r"`([^`\n]+)`", text)):
        name = re.match(r"[A-Za-z_][\w.]*", span)
        first = name and name.group().split(".")[0]
        if first in PACKAGES:
            pairs.append((first, name.group().partition(".")[2]))
        elif first in defined:
            pairs.append((defined[first], first))
    return sorted(pairs)


def _resolve(package: str, dotted: str) -> object:
    """``package.dotted``: an attribute path, or a submodule (``evaluation.plots``)."""
    try:
        return importlib.import_module(f"{package}.{dotted}")
    except ImportError:
        value: object = importlib.import_module(package)
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


def test_readmes_imports_are_importable():
    pairs = _imports(_readme())
    assert pairs  # README shows how to import the library
    for module, name in pairs:
        assert hasattr(importlib.import_module(module), name), f"from {module} import {name}"


def test_every_backticked_name_readme_points_at_is_exported_by_its_package():
    pairs = _pointed_names(_readme(), _defined_names())
    missing = []
    for package, dotted in pairs:
        try:
            _resolve(package, dotted) if dotted else None
        except AttributeError:
            missing.append(f"{package}.{dotted}")
    assert not missing, f"README names these, but their package does not export them: {missing}"


def test_the_names_readme_points_at_are_found():
    """The scan finds what the issue named (so an empty list cannot pass by accident)."""
    text = "`sentence_log_likelihood`, `save_figure(fig, path, dpi)`, `inference.Trainer`, `SVI.step`, `flock`"
    expected = [("evaluation", "save_figure"), ("evaluation", "sentence_log_likelihood"), ("inference", "Trainer")]
    assert _pointed_names(text, _defined_names()) == expected


@pytest.mark.parametrize("package", sorted(DOCSTRING_NAMES))
def test_names_the_docstrings_send_users_to_are_exported(package):
    module = importlib.import_module(package)
    for name in DOCSTRING_NAMES[package]:
        assert name in module.__all__ and getattr(module, name).__name__ == name
