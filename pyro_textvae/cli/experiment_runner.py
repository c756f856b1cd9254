"""A comparison of objectives in one command: train each, evaluate each, one results folder.

``textvae experiment CONFIG.toml`` reads a TOML file (paths in it are relative to the file)::

    out = "results/short_yelp"              # the results folder
    seeds = [0, 1]
    [data]      path = "../../shared/data/short_yelp"   # or: synthetic = {num_train = 2000}
    [model]     hidden_dim = 512            # TextVAEConfig options shared by every method
    [schedule]  name = "paper"; max_epochs = 40   # optional: inference.protocol.named_schedule
    [train]     epochs = 10                 # TrainConfig options shared by every method
    [evaluate]  iw_samples = 500            # options of evaluation.report.evaluate_run
    [[methods]] name = "DG-VAE"; objective = "dg"; params = {mode = "marginal"}
                train = {batch_size = 128}  # optional per-method [train] and [model] overrides
    [plots]     label_names = {"0" = "negative", "1" = "positive"}   # label names in holes.png

and writes ``out/experiment.toml`` (a copy of the file), ``out/runs/<method>-seed<s>/`` (ordinary
run folders), ``out/results.md`` and
``out/results.csv`` (a row per method, mean +- std over seeds of every metric of
:data:`evaluation.report.COLUMNS`), ``out/mi_vs_joint_kl.png`` (collapse on one axis, holes on the
other, one point per method), ``out/curves.png`` (the validation curves of every run's
``metrics.jsonl``, :func:`evaluation.curves.plot_curves`) and ``out/holes.png`` (the hole pictures
side by side, of the runs whose ``best.pt`` is still there). A run whose
``eval.json`` was made with the file's [evaluate] settings is skipped on a rerun (one made with
other settings is evaluated again, and left out of a ``--report-only`` table), and an interrupted
run resumes from its ``last.pt``, both only if the folder's ``config.json`` agrees with the file
(otherwise the run is named, not reused);
``--seed S [S ...]`` trains only those seeds (so seeds can run in separate processes), and the
table covers every evaluated run of the file's seeds and those; ``--method NAME`` (repeatable)
keeps only those methods, ``--out DIR`` writes into another results folder; ``--report-only`` writes the
table and pictures of the runs evaluated so far. The table, scatter and curves need only each run's
small files (``config.json``, ``metrics.jsonl``, ``eval.json``), which is what ``results/*/runs/`` keeps
in git (.gitignore); checkpoints stay out.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
import sys
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from evaluation.curves import curve_metrics, plot_curves, read_histories
from evaluation.figures import save_figure
from evaluation.report import evaluate_run, evaluation_settings
from evaluation.scatter import plot_collapse_against_holes
from evaluation.tables import (
    COLUMNS,
    eval_filename,
    format_mean_std,
    markdown_table,
    metric_value,
)
from inference.objectives import get_objective
from inference.protocol import named_schedule
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.io import atomic_write_bytes, dataclass_from_dict, load_json
from pyro_textvae.lock import FolderLock
from pyro_textvae.model import TextVAEConfig
from pyro_textvae.run_folder import check_data_options, load_corpus, open_run

SECTIONS = {"out", "seeds", "data", "model", "schedule", "train", "evaluate", "methods", "plots"}
METHOD_KEYS = {"name", "objective", "params", "model", "train"}


def load_experiment(path: str | Path) -> dict[str, Any]:
    """Read and check an experiment TOML file; relative paths are resolved against its folder, and
    the file's bytes are kept under ``"source"`` (:func:`run_experiment` copies them to ``out``)."""
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
    config = _apply_schedule(path, config)
    for method in config["methods"]:
        _check_method_name(path, method["name"])
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
            defaults = get_objective(method["objective"]).defaults
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


MAX_NAME = 200  # characters: a run folder's name adds "-seed<s>" within a file system's 255 bytes


def _check_method_name(path: Path, name: str) -> None:
    """A method's name is the start of its run folder's name under ``out/runs``: refuse a name that
    is not one plain folder name (a path separator, ``.`` or ``..``, a leading dot, a control
    character, too long), so nothing is written outside ``out``."""
    bad = (not name.strip() or name.startswith(".") or "/" in name or "\\" in name or len(name) > MAX_NAME
           or any(unicodedata.category(char)[0] == "C" for char in name))
    if bad:
        raise ValueError(f"{path}: method name {name!r} cannot name a folder under out/runs (no '/' or '\\', no "
                         f"leading '.', no control character, at most {MAX_NAME} characters)")


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
        get_objective(method["objective"]).resolve(method.get("params", {}))
        dataclass_from_dict(TrainConfig, {**config.get("train", {}), **method.get("train", {})}, "[train]")
        model = {"vocab_size": 5, **config.get("model", {}), **method.get("model", {})}  # the corpus sets it
        dataclass_from_dict(TextVAEConfig, model, "[model]")
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def run_experiment(
    config: dict[str, Any], progress: bool = True, seeds: list[int] | None = None
) -> dict[str, list[dict]]:
    """Train (or resume, or skip) and evaluate every method for ``seeds`` (default: the file's);
    after each run, write the table and pictures of every evaluated run so far. First every
    existing run folder is checked against the file, then the file (``config`` from
    :func:`load_experiment`) is copied to ``out/experiment.toml``, so a refused file is not recorded."""
    seeds = config["seeds"] if seeds is None else seeds
    out = Path(config["out"])
    runs = [(method, seed, out / "runs" / f"{method['name']}-seed{seed}")
            for method in config["methods"] for seed in seeds]
    for method, _, run_dir in runs:
        _check_method_name(Path(config["out"]), method["name"])
        if run_dir.resolve().parent != (out / "runs").resolve():
            raise ValueError(f"method {method['name']!r}: its run folder {run_dir} is not inside {out / 'runs'}")
    for method, seed, run_dir in runs:
        if (run_dir / "config.json").exists():
            _check_run_matches(run_dir, method, config["data"], *_run_options(config, method, seed))
    load_corpus(config["data"], where="experiment [data]")  # a missing or bad corpus: nothing written yet
    with FolderLock(out):  # one experiment writes a results folder at a time
        atomic_write_bytes(out / "experiment.toml", config["source"])
        for method, seed, run_dir in runs:
            _train_and_evaluate(config, method, seed, run_dir, progress)
            write_results(out, _evaluated_runs(config, seeds))
        return _write_report(config, seeds)


def report_experiment(config: dict[str, Any], seeds: list[int] | None = None) -> dict[str, list[dict]]:
    """Tables and pictures from the runs of the file's seeds (and ``seeds``) already evaluated,
    written holding the results folder's lock."""
    if not _evaluated_runs(config, seeds or []):
        raise ValueError(f"no evaluated run under {Path(config['out']) / 'runs'} yet")
    with FolderLock(config["out"]):
        return _write_report(config, seeds)


def _write_report(config: dict[str, Any], seeds: list[int] | None) -> dict[str, list[dict]]:
    out = Path(config["out"])
    results = _evaluated_runs(config, seeds or [])
    if not results:
        raise ValueError(f"no evaluated run under {out / 'runs'} yet")
    write_results(out, results)
    save_figure(plot_collapse_against_holes(results), out / "mi_vs_joint_kl.png")
    histories = read_histories({name: [_run_dir(out, name, r["seed"]) for r in runs] for name, runs in results.items()})
    save_figure(plot_curves(histories), out / "curves.png")
    _hole_pictures(out, config, results)
    return results


def _run_dir(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / f"{method}-seed{seed}"


def _evaluated_runs(config: dict[str, Any], seeds: list[int]) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    for method in config["methods"]:
        for seed in sorted(set(config["seeds"]) | set(seeds)):
            evaluation = _current_evaluation(config, method, seed, "left out of the table")
            if evaluation is not None:
                results.setdefault(method["name"], []).append(evaluation)
    return results


def _current_evaluation(config: dict[str, Any], method: dict, seed: int, if_stale: str) -> dict | None:
    """The run's evaluation if it was made with the file's [evaluate] settings, else None; a stale
    one is named on stderr with the settings that differ and what happens to it (``if_stale``)."""
    options = config.get("evaluate", {})
    path = Path(config["out"]) / "runs" / f"{method['name']}-seed{seed}" / eval_filename(options.get("split", "test"))
    if not path.exists():
        return None
    evaluation = load_json(path)
    wanted = evaluation_settings(**options, seed=seed, checkpoint="best")
    stored = evaluation.get("settings") or {}
    changed = [f"{key} {stored.get(key)!r} -> {value!r}" for key, value in wanted.items() if stored.get(key) != value]
    if changed:
        print(f"{path}: made with other [evaluate] settings ({', '.join(changed)}); {if_stale}", file=sys.stderr)
        return None
    return evaluation


def _run_options(config: dict, method: dict, seed: int) -> tuple[dict, dict]:
    """The model and train options of one run: the file's, the method's over them, and the seed."""
    model = {**config.get("model", {}), **method.get("model", {})}
    return model, {**config.get("train", {}), **method.get("train", {}), "seed": seed}


def _train_and_evaluate(config: dict, method: dict, seed: int, run_dir: Path, progress: bool) -> dict:
    """Evaluate a run trained to the end, resume an interrupted one, or train a new one (then
    evaluate it on the [train] device); a folder that disagrees with the file was refused by
    :func:`run_experiment` before any of them."""
    model, train_options = _run_options(config, method, seed)
    evaluation = _current_evaluation(config, method, seed, "evaluating again")
    if evaluation is not None:
        print(f"{method['name']} seed {seed}: trained and evaluated with the file's settings, skipped "
              f"({run_dir})", flush=True)
        return evaluation
    if (run_dir / "last.pt").exists():
        trainer = resume_trainer(run_dir)
        trainer.config.progress = progress
        trainer.epoch_metrics.append(curve_metrics())
        trainer.fit(resume=True)
    else:
        train = dataclass_from_dict(TrainConfig, {**train_options, "progress": progress}, "experiment [train]")
        trainer = new_trainer(run_dir, config["data"], model, method["objective"], method.get("params", {}),
                              train, overwrite=True)
        trainer.epoch_metrics.append(curve_metrics())
        trainer.fit()
    options = config.get("evaluate", {})
    device = train_options.get("device", "cpu")
    with FolderLock(run_dir):
        return evaluate_run(open_run(run_dir, device=device), progress=progress, seed=seed, checkpoint="best",
                            device=device, **options)


def _check_run_matches(run_dir: Path, method: dict, data: dict, model: dict, train: dict) -> None:
    """Refuse to reuse a run folder whose stored config disagrees with the experiment file: its
    objective, the file's params, model and train options, and every data option (a key missing on
    either side counts as None; the corpus path as :func:`load_experiment` resolved it)."""
    stored = load_json(run_dir / "config.json")
    stored_data = stored.get("data") if isinstance(stored.get("data"), dict) else {}
    expected = {("objective", "name"): method["objective"]}
    expected |= {("data", k): data.get(k) for k in sorted(set(data) | set(stored_data))}
    expected |= {("objective", "params", k): v for k, v in method.get("params", {}).items()}
    expected |= {("model", k): v for k, v in model.items()}
    expected |= {("train", k): v for k, v in train.items()}
    for keys, value in expected.items():
        found = stored
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if found != value:
            raise ValueError(f"{run_dir / 'config.json'}: {'.'.join(keys)} is {found!r} but the experiment asks "
                             f"for {value!r}; move the run folder away or restore the experiment's setting")


def _mean_std(values: list[Any]) -> tuple[float | None, float | None]:
    """Mean and sample std of the numbers among ``values`` (std None for one); NaN for the mean
    when any of them is not finite (a diverged run)."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers:
        return None, None
    if not all(math.isfinite(number) for number in numbers):
        return math.nan, None
    return statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None


def results_table(results: dict[str, list[dict]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows: a row per method, ``(mean, std)`` over its seeds for every metric."""
    columns = ["method", "objective", "seeds"] + [name for name, _ in COLUMNS]
    rows = []
    for name, runs in results.items():
        cells = [_mean_std([metric_value(r, keys) for r in runs]) for _, keys in COLUMNS]
        rows.append([name, runs[0].get("objective"), len(runs), *cells])
    return columns, rows


def write_results(out: Path, results: dict[str, list[dict]]) -> None:
    """``results.md`` (mean ± std) and ``results.csv`` (mean and std columns) in ``out``."""
    columns, rows = results_table(results)
    table = markdown_table(columns, [[format_mean_std(column, *cell) if isinstance(cell, tuple) else cell
                                      for column, cell in zip(columns, row)] for row in rows])
    atomic_write_bytes(out / "results.md", table.encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns[:3] + [f"{c} {part}" for c in columns[3:] for part in ("mean", "std")])
    for row in rows:
        writer.writerow(row[:3] + ["" if v is None else v for cell in row[3:] for v in cell])
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode())


def _hole_pictures(out: Path, config: dict, results: dict[str, list[dict]]) -> None:
    """``holes.png``: a panel per method, from the first seed whose run folder still has its
    ``best.pt``; methods without one (small files only) are left out and named on stderr, and
    with none at all ``holes.png`` is not written."""
    from evaluation.arviz_data import encode_split
    from evaluation.plots import plot_hole_comparison

    split = config.get("evaluate", {}).get("split", "test")
    chosen = {name: next((_run_dir(out, name, r["seed"]) for r in runs
                          if (_run_dir(out, name, r["seed"]) / "best.pt").exists()), None)
              for name, runs in results.items()}
    missing = [name for name, run_dir in chosen.items() if run_dir is None]
    if missing:
        print(f"{out / 'holes.png'}: no best.pt for {missing}; left out of the hole pictures", file=sys.stderr)
    panels = [(name, encode_split(open_run(run_dir), split=split)) for name, run_dir in chosen.items() if run_dir]
    if panels:
        figure = plot_hole_comparison(panels, label_names=config.get("plots", {}).get("label_names"))
        save_figure(figure, out / "holes.png")


def select_methods(config: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``config`` with only the methods called ``names`` (in the file's order); an unknown name
    raises ``ValueError`` listing the file's."""
    known = [method["name"] for method in config["methods"]]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"--method: no method {unknown} in the file; its methods: {known}")
    return {**config, "methods": [method for method in config["methods"] if method["name"] in names]}
