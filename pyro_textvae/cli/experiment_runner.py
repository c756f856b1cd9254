"""A comparison of objectives in one command: train each, evaluate each, one results folder.

``textvae experiment CONFIG.toml`` reads the file (:mod:`pyro_textvae.cli.experiment_file`) and
writes ``out/experiment.toml`` (a copy of the file), ``out/runs/<method>-seed<s>/`` (ordinary run
folders), ``out/results.md`` and ``out/results.csv`` (a row per method, mean +- std over seeds of
every metric of :data:`evaluation.tables.COLUMNS`, :func:`evaluation.tables.write_results`),
``out/mi_vs_joint_kl.png`` (collapse on one axis, holes on the other, one point per method),
``out/curves.png`` (the validation curves of every run's ``metrics.jsonl``, :func:`evaluation.curves.plot_curves`),
``out/training.md`` and ``out/training.csv`` (a row per run: epochs, kept epoch, halvings, why it stopped, time;
:func:`evaluation.training_table.write_training_table`), ``out/targets.md`` where the file has ``[targets]``
(each method's means against the stated bounds, :func:`evaluation.targets.write_targets`)
and ``out/holes.png`` (the hole pictures side by side, of the runs whose ``best.pt`` is still there). A run whose
``eval.json`` was made with the file's [evaluate] settings is skipped on a rerun (one made with
other settings is evaluated again, and left out of a ``--report-only`` table), and an interrupted
run resumes from its ``last.pt``, both only if the folder's ``config.json`` agrees with the file
(otherwise the run is named, not reused);
``--seed S [S ...]`` trains only those seeds (so seeds can run in separate processes), and the
table covers every evaluated run of the file's seeds and those; ``--method NAME`` (repeatable)
keeps only those methods, ``--out DIR`` writes into another results folder; ``--report-only`` writes the
table and pictures of the runs evaluated so far. Each run folder is locked while it trains and
while it is evaluated, the results folder only while its own files are written (waiting up to
:data:`RESULTS_WAIT` seconds for another process's), so several seeds or methods can run in
separate processes into one results folder at once. The tables, scatter and curves need only each run's
small files (``config.json``, ``metrics.jsonl``, ``eval.json``), which is what ``results/*/runs/`` keeps
in git (.gitignore); checkpoints stay out.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluation.curves import curve_metrics, plot_curves, read_histories
from evaluation.figures import save_figure
from evaluation.report import complete_evaluation, evaluate_run, evaluation_settings
from evaluation.scatter import plot_collapse_against_holes
from evaluation.tables import eval_filename, load_evaluation, write_results
from evaluation.targets import check_targets, write_targets
from evaluation.training_table import write_training_table
from inference.objective_configs import config_class
from inference.run import check_run_config, new_trainer, remove_temporaries, resume_trainer
from inference.train_config import TrainConfig
from pyro_textvae.errors import CheckpointError
from pyro_textvae.io import atomic_write_bytes, dataclass_from_dict, load_json
from pyro_textvae.lock import FolderInUseError, FolderLock
from pyro_textvae.run_folder import load_corpus, open_run

from .experiment_file import check_method_name

RESULTS_WAIT = 1800.0  # seconds to wait for another process's table and pictures (holes.png encodes every method)


def run_experiment(
    config: dict[str, Any], progress: bool = True, seeds: list[int] | None = None
) -> dict[str, list[dict]]:
    """Train (or resume, or skip) and evaluate every method for ``seeds`` (default: the file's);
    after each run, write the table and pictures of every evaluated run so far. First every
    existing run folder is checked against the file, then the file (``config`` from
    :func:`pyro_textvae.cli.experiment_file.load_experiment`) is copied to ``out/experiment.toml``, so a refused
    file is not recorded."""
    seeds = config["seeds"] if seeds is None else seeds
    out = Path(config["out"])
    runs = [(method, seed, out / "runs" / f"{method['name']}-seed{seed}")
            for method in config["methods"] for seed in seeds]
    for method, _, run_dir in runs:
        check_method_name(Path(config["out"]), method["name"])
        if run_dir.resolve().parent != (out / "runs").resolve():
            raise ValueError(f"method {method['name']!r}: its run folder {run_dir} is not inside {out / 'runs'}")
    for method, seed, run_dir in runs:
        if (run_dir / "config.json").exists():
            _check_run_matches(run_dir, method, config["data"], *_run_options(config, method, seed))
    load_corpus(config["data"], where="experiment [data]")  # a missing or bad corpus: nothing written yet
    with results_lock(out):
        atomic_write_bytes(out / "experiment.toml", config["source"])
    for method, seed, run_dir in runs:
        _train_and_evaluate(config, method, seed, run_dir, progress)
        with results_lock(out):
            write_results(out, _evaluated_runs(config, seeds))
    with results_lock(out):
        return _write_report(config, seeds)


def report_experiment(config: dict[str, Any], seeds: list[int] | None = None) -> dict[str, list[dict]]:
    """Tables and pictures from the runs of the file's seeds (and ``seeds``) already evaluated,
    written holding the results folder's lock."""
    if not _evaluated_runs(config, seeds or []):
        raise ValueError(f"no evaluated run under {Path(config['out']) / 'runs'} yet")
    with results_lock(Path(config["out"])):
        return _write_report(config, seeds)


@contextlib.contextmanager
def results_lock(out: Path, wait: float = RESULTS_WAIT) -> Iterator[FolderLock]:
    """Hold the results folder's lock, waiting up to ``wait`` seconds while another process writes its
    table and pictures; the temporaries of a write killed halfway are removed first."""
    deadline = time.monotonic() + wait
    while True:
        try:
            lock = FolderLock(out)
            break
        except FolderInUseError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
    with lock:
        remove_temporaries(out)
        yield lock


def _write_report(config: dict[str, Any], seeds: list[int] | None) -> dict[str, list[dict]]:
    out = Path(config["out"])
    results = _evaluated_runs(config, seeds or [])
    if not results:
        raise ValueError(f"no evaluated run under {out / 'runs'} yet")
    histories = read_histories({name: [_run_dir(out, name, r["seed"]) for r in runs] for name, runs in results.items()})
    write_results(out, results)
    save_figure(plot_collapse_against_holes(results), out / "mi_vs_joint_kl.png")
    save_figure(plot_curves(histories), out / "curves.png")
    seeded = {name: list(zip([r["seed"] for r in runs], histories[name])) for name, runs in results.items()}
    write_training_table(out, seeded)
    if "targets" in config:
        write_targets(out, results, check_targets(config["targets"]))
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
    evaluation = load_evaluation(path)
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
        split = config.get("evaluate", {}).get("split", "test")
        if complete_evaluation(run_dir, split, evaluation):  # a kill between eval.json and eval.md
            print(f"{run_dir / eval_filename(split, 'md')}: rewritten from {eval_filename(split)} (its evaluation "
                  "was stopped between the two)", file=sys.stderr)
        return evaluation
    if (run_dir / "last.pt").exists():
        trainer = resume_trainer(run_dir)
        trainer.config.progress = progress
        trainer.epoch_metrics += _curve_hooks(trainer.config.curve_samples)
        trainer.fit(resume=True)
    else:
        train = dataclass_from_dict(TrainConfig, {**train_options, "progress": progress}, "experiment [train]")
        trainer = new_trainer(run_dir, config["data"], model, method["objective"], method.get("params", {}),
                              train, overwrite=True)
        trainer.epoch_metrics += _curve_hooks(train.curve_samples)
        trainer.fit()
    options = config.get("evaluate", {})
    device = train_options.get("device", "cpu")
    with FolderLock(run_dir):
        remove_temporaries(run_dir)
        run = open_run(run_dir, device=device, check=check_run_config)
        return evaluate_run(run, progress=progress, seed=seed, checkpoint="best", device=device, **options)


def _curve_hooks(samples: int) -> list:
    """The validation curves' hook of ``samples`` prior draws (the run's ``curve_samples``); none for 0."""
    return [curve_metrics(samples)] if samples else []


def _check_run_matches(run_dir: Path, method: dict, data: dict, model: dict, train: dict) -> None:
    """Refuse to reuse a run folder whose stored config disagrees with the experiment file: its
    objective, the file's params, model and train options, and every data option (a key missing on
    either side counts as None; the corpus path as :func:`pyro_textvae.cli.experiment_file.load_experiment`
    resolved it). Parameters are compared by their current names, so an old spelling on either side
    matches the new one."""
    stored = load_json(run_dir / "config.json")  # checked in full when the run is resumed or opened
    if not isinstance(stored, dict):
        raise CheckpointError(f"{run_dir / 'config.json'}: not a pyro-textvae run config (a JSON object)")
    stored_data = stored.get("data") if isinstance(stored.get("data"), dict) else {}
    expected = {("objective", "name"): method["objective"]}
    expected |= {("data", k): data.get(k) for k in sorted(set(data) | set(stored_data))}
    canonical = config_class(method["objective"]).canonical
    if isinstance(stored.get("objective"), dict) and stored["objective"].get("name") == method["objective"]:
        params = stored["objective"].get("params", {})
        stored["objective"]["params"] = {canonical(k, method["objective"]): v for k, v in params.items()}
    expected |= {("objective", "params", canonical(k, method["objective"])): v
                 for k, v in method.get("params", {}).items()}
    expected |= {("model", k): v for k, v in model.items()}
    expected |= {("train", k): v for k, v in train.items()}
    for keys, value in expected.items():
        found = stored
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if found != value:
            raise ValueError(f"{run_dir / 'config.json'}: {'.'.join(keys)} is {found!r} but the experiment asks "
                             f"for {value!r}; move the run folder away or restore the experiment's setting")


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
    panels = [(name, encode_split(open_run(run_dir, check=check_run_config), split=split))
              for name, run_dir in chosen.items() if run_dir]
    if panels:
        figure = plot_hole_comparison(panels, label_names=config.get("plots", {}).get("label_names"))
        save_figure(figure, out / "holes.png")
