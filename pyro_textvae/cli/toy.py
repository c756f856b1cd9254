"""The ``textvae toy`` sub-command (register with :func:`add_toy_command`).

``textvae toy --out DIR`` trains the 2-D toy (:mod:`evaluation.toy`) under each objective and
writes ``toy_grid.png`` (one row per objective, columns at increasing steps), ``toy_kl.csv``, its
options in ``config.json`` (``objectives``, their ``params`` and every :class:`evaluation.toy.ToyConfig`
field: ``steps``, ``seed``, ...) and the numbers of ``toy_kl.csv`` in ``metrics.json``
(``{"kl": [record, ...]}``, :func:`evaluation.toy.toy_kl_records`).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .options import at_least


def add_toy_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``toy`` on ``subparsers`` (with ``set_defaults(func=...)``)."""
    toy = subparsers.add_parser("toy", help="the 2-D toy of collapse and holes under several objectives",
                                description="Train the 2-D toy under each objective and draw its aggregated "
                                            "posteriors against the prior.")
    toy.add_argument("--out", required=True, metavar="DIR",
                     help="folder for toy_grid.png, toy_kl.csv, config.json, metrics.json")
    toy.add_argument("--objectives", default=None, metavar="NAME,...",
                     help="comma list of objectives (default: elbo,ae,aae,wae-mmd,dg)")
    toy.add_argument("--steps", type=at_least(1), default=300, help="training steps per objective")
    toy.add_argument("--dpi", type=at_least(1), default=100, help="resolution of the picture")
    toy.add_argument("--seed", type=at_least(0), default=0, help="seed of the data and the training")
    toy.set_defaults(func=toy_command)


def toy_command(args: argparse.Namespace) -> None:
    """``textvae toy``: train the toy under each objective, draw the grid, write the KL table and
    the ``config.json`` and ``metrics.json`` of the module docstring."""
    from inference.objective_configs import config_class

    objectives = None if not args.objectives else tuple(n.strip() for n in args.objectives.split(","))
    try:
        for name in objectives or ():
            config_class(name)
    except ValueError as error:
        raise ValueError(f"--objectives: {error}") from None
    import matplotlib

    from evaluation.plots import plot_toy_grid, save_figure
    from evaluation.toy import (
        TOY_KL_COLUMNS,
        TOY_OBJECTIVES,
        TOY_PARAMS,
        ToyConfig,
        toy_kl_records,
        train_toy_objectives,
    )
    from pyro_textvae.io import save_json

    from .explore import write_csv

    matplotlib.use("Agg")
    objectives = objectives or TOY_OBJECTIVES
    config = ToyConfig(steps=args.steps, seed=args.seed)
    runs = train_toy_objectives(objectives, config)
    out = Path(args.out)
    params = {name: TOY_PARAMS.get(name, {}) for name in objectives}
    save_json(out / "config.json", {"objectives": list(objectives), "params": params, "dpi": args.dpi,
                                    **dataclasses.asdict(config)})
    save_figure(plot_toy_grid(runs), out / "toy_grid.png", args.dpi)
    records = toy_kl_records(runs)
    for name in runs:
        last = [record for record in records if record["objective"] == name][-1]
        print(f"{name:10s} KL(q_D || p) = {last['kl_aggregate_prior']:.3f}   "
              f"KL(p || q_D) = {last['kl_prior_aggregate']:.3f}")
    write_csv(out / "toy_kl.csv", TOY_KL_COLUMNS, [[record[key] for key in TOY_KL_COLUMNS] for record in records])
    save_json(out / "metrics.json", {"kl": records})
    print(f"toy grid -> {out / 'toy_grid.png'}")
