"""The experiment file of ``textvae experiment``: read, checked and resolved before anything runs.

``textvae experiment CONFIG.toml`` reads a TOML file (paths in it are relative to the file), of the
form :data:`pyro_textvae.cli.experiment.EXAMPLE` shows (and ``textvae experiment --help`` prints):
``out``, ``seeds``, the tables ``[data]``, ``[model]`` (:class:`~pyro_textvae.model.TextVAEConfig` options
shared by every method), ``[schedule]`` (optional, :func:`inference.protocol.named_schedule`), ``[train]``
(:class:`~inference.train_config.TrainConfig` options), ``[evaluate]`` (options of
:func:`evaluation.report.evaluate_run`), ``[plots]`` (``label_names``), ``[targets]`` (optional bounds on
result columns, :mod:`evaluation.targets`) and one ``[[methods]]`` table a method
(``name``, ``objective``, optional ``params``, ``model`` and ``train`` overrides).

Every method's options are checked when the file is read (:func:`load_experiment`), not when its
turn comes; :func:`select_methods` keeps the methods ``--method`` names.
"""
from __future__ import annotations

import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from evaluation.report import evaluation_settings
from evaluation.targets import check_targets
from inference.objectives import get_objective
from inference.protocol import named_schedule
from inference.train_config import TrainConfig
from pyro_textvae.io import dataclass_from_dict
from pyro_textvae.model import TextVAEConfig
from pyro_textvae.run_folder import check_data_options

SECTIONS = {"out", "seeds", "data", "model", "schedule", "train", "evaluate", "methods", "plots", "targets"}
METHOD_KEYS = {"name", "objective", "params", "model", "train"}


def load_experiment(path: str | Path) -> dict[str, Any]:
    """Read and check an experiment TOML file; relative paths are resolved against its folder, and
    the file's bytes are kept under ``"source"`` (:func:`pyro_textvae.cli.experiment_runner.run_experiment`
    copies them to ``out``)."""
    path = Path(path)
    try:
        source = path.read_bytes()
        config = tomllib.loads(source.decode("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: experiment file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    unknown = sorted(set(config) - SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; valid: {sorted(SECTIONS)}")
    methods = config.get("methods")
    if not isinstance(methods, list) or not methods:
        raise ValueError(f"{path}: needs at least one [[methods]] entry with name and objective")
    names = [m.get("name") for m in methods]
    if any(not isinstance(m.get("objective"), str) or not isinstance(m.get("name"), str) for m in methods):
        raise ValueError(f"{path}: every [[methods]] entry needs a string name and objective")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: method names must be unique, got {names}")
    _check_distinct_folders(path, names)
    config = _apply_schedule(path, config)
    for method in config["methods"]:
        check_method_name(path, method["name"])
        _check_method(path, config, method)
    if not isinstance(config.get("evaluate", {}), dict):
        raise ValueError(f"{path}: evaluate must be a table")
    if {"seed", "checkpoint"} & set(config.get("evaluate", {})):
        raise ValueError(f"{path}: [evaluate]: seed and checkpoint are the experiment's (each run's seed, best.pt)")
    try:
        evaluation_settings(**config.get("evaluate", {}))
    except ValueError as error:
        raise ValueError(f"{path}: [evaluate]: {error}") from None
    check_data_options(config.get("data", {}), f"{path}: [data]")
    _check_plots(path, config.get("plots", {}))
    if "targets" in config:
        check_targets(config["targets"], f"{path}: [targets]")
    root = path.resolve().parent
    data = dict(config.get("data", {}))
    if data.get("path"):
        data["path"] = str((root / data["path"]).resolve())
    seeds = config.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds) or not seeds:
        raise ValueError(f"{path}: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    out = str(root / config.get("out", "results"))
    return {**config, "out": out, "seeds": seeds, "data": data, "source": source}


def _apply_schedule(path: Path, config: dict) -> dict:
    """A ``[schedule]`` (:func:`inference.protocol.named_schedule`: ``name`` and overrides) sets the
    [train] plateau options and every method's ``warmup_epochs`` where the objective has one;
    [train], a method's ``train`` and ``params`` override it. Without the section nothing changes."""
    if "schedule" not in config:
        return config
    schedule = named_schedule(config["schedule"], f"{path}: [schedule]")
    methods = []
    for method in config["methods"]:
        try:
            defaults = get_objective(method["objective"]).config_class.defaults()
        except ValueError as error:
            raise ValueError(f"{path}: method {method['name']!r}: {error}") from None
        params = method.get("params", {})
        methods.append({**method, "params": {**schedule.objective_params(defaults), **params}}
                       if isinstance(params, dict) else method)
    train = config.get("train", {})
    train = {**schedule.train_options(), **train} if isinstance(train, dict) else train
    return {**config, "train": train, "methods": methods}


def _check_plots(path: Path, plots: Any) -> None:
    """``[plots]`` holds only ``label_names``, a table of corpus label -> name shown in the hole pictures."""
    names = plots.get("label_names", {}) if isinstance(plots, dict) else None
    if names is None or set(plots) - {"label_names"}:
        raise ValueError(f"{path}: [plots] takes only label_names = {{\"0\" = \"negative\", ...}}, got {plots!r}")
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise ValueError(f"{path}: [plots] label_names must map labels to names, got {names!r}")


MAX_NAME = 240  # bytes of UTF-8: a run folder's name adds "-seed<s>" (at most 15) within a file system's 255


def _folder_key(name: str) -> str:
    """What a method's run folder looks like: its name in NFC, without surrounding spaces, case folded
    (NFC and NFD spellings of "café" print alike, and a case-insensitive file system merges "VAE" and "vae")."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def _check_distinct_folders(path: Path, names: list[str]) -> None:
    """Refuse two method names whose run folders would look the same (:func:`_folder_key`)."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(_folder_key(name), name)
        if other != name:
            raise ValueError(f"{path}: method names {other!r} and {name!r} differ only in Unicode normalisation, "
                             "case or surrounding spaces; their run folders would look the same")


def check_method_name(path: Path, name: str) -> None:
    """A method's name is the start of its run folder's name under ``out/runs``: refuse a name that
    is not one plain folder name (a path separator, ``.`` or ``..``, a leading dot, a control
    character, too long), so nothing is written outside ``out``."""
    bad = (not name.strip() or name.startswith(".") or "/" in name or "\\" in name
           or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME
           or any(unicodedata.category(char)[0] == "C" for char in name))
    if bad:
        raise ValueError(f"{path}: method name {name!r} cannot name a folder under out/runs (no '/' or '\\', no "
                         f"leading '.', no control character, at most {MAX_NAME} bytes in UTF-8)")


def _check_method(path: Path, config: dict, method: dict) -> None:
    """Every method's options are checked when the file is read, not when its turn comes."""
    where = f"{path}: method {method['name']!r}"
    unknown = sorted(set(method) - METHOD_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; valid: {sorted(METHOD_KEYS)}")
    for key in ("params", "model", "train"):
        if not isinstance(method.get(key, {}), dict):
            raise ValueError(f"{where}: {key} must be a table, got {method[key]!r}")
    try:
        latent = {**config.get("model", {}), **method.get("model", {})}.get("latent")
        get_objective(method["objective"]).configure(method.get("params", {}), latent=latent)
        dataclass_from_dict(TrainConfig, {**config.get("train", {}), **method.get("train", {})}, "[train]")
        model = {"vocab_size": 5, **config.get("model", {}), **method.get("model", {})}  # the corpus sets it
        dataclass_from_dict(TextVAEConfig, model, "[model]")
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def select_methods(config: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``config`` with only the methods called ``names`` (in the file's order); an unknown name
    raises ``ValueError`` listing the file's."""
    known = [method["name"] for method in config["methods"]]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"--method: no method {unknown} in the file; its methods: {known}")
    return {**config, "methods": [method for method in config["methods"] if method["name"] in names]}
