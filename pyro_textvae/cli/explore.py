"""The ``textvae explore`` sub-command (register with :func:`add_explore_commands`).

``textvae explore RUN --out DIR`` writes into DIR the pictures of :mod:`evaluation.plots`
(``hole.png``, ``posteriors.png``, ``forest.png``, ``dimensions.png``, ``ppc_length.png``), the
posterior summary ``summary.csv`` (``az.summary``, statistics only) and the per-dimension numbers
``dimensions.csv``; the InferenceData goes into the run folder as netCDF
(:data:`evaluation.arviz_data.NETCDF_NAME`). Its options (the run folders, ``--seed``,
``--draws``, ``--dims``, ...) go into ``DIR/explore_config.json`` (not ``config.json``: DIR may
be a run folder). ``textvae explore RUN1 RUN2 ... --out DIR`` does
this for each run in ``DIR/<run name>/`` and lays their hole pictures side by side in
``DIR/hole_comparison.png`` (Zhang et al. 2022, Figure 1, from our own runs). It holds the lock of
every folder it writes (the run folders and DIR) and first removes the temporaries of writes killed halfway.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
from collections.abc import Sequence
from pathlib import Path

from .options import CHECKPOINT_HELP, at_least, check_folder

EXPLORE_CONFIG = "explore_config.json"
EXPLORE_OPTIONS = ("split", "sentences", "draws", "chains", "dims", "point", "label_names", "prior_samples",
                   "checkpoint", "device", "dpi", "seed")


def _dims(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dims expects two integers K1,K2, got {text!r}") from None
    if len(dims) != 2:
        raise argparse.ArgumentTypeError(f"--dims expects two integers K1,K2, got {text!r}")
    return dims


def label_names(text: str) -> dict[str, str]:
    """``"0=negative,1=positive"`` -> ``{"0": "negative", "1": "positive"}`` (``--label-names``)."""
    names = {}
    for pair in text.split(","):
        label, sep, name = pair.partition("=")
        if not sep or not label.strip() or not name.strip():
            raise argparse.ArgumentTypeError(f"--label-names expects LABEL=NAME[,LABEL=NAME...], got {text!r}")
        names[label.strip()] = name.strip()
    return names


def add_explore_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``explore`` on ``subparsers`` (with ``set_defaults(func=...)``)."""
    explore = subparsers.add_parser("explore", help="pictures of collapse and holes of one or more runs (ArviZ)",
                                    description="Pictures and CSV files of the posteriors of one or more runs.")
    explore.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s); several: a side-by-side hole picture")
    explore.add_argument("--out", required=True, metavar="DIR", help="folder for the pictures and CSV files")
    explore.add_argument("--split", default="test", choices=["train", "valid", "test"], help="split encoded")
    explore.add_argument("--sentences", type=at_least(1), default=16, metavar="N",
                         help="sentences in the InferenceData (random, seeded)")
    explore.add_argument("--draws", type=at_least(1), default=100, metavar="N",
                         help="draws per chain from q(z|x) and p(z)")
    explore.add_argument("--chains", type=at_least(1), default=2, metavar="N",
                         help="pseudo-chains (guide draws are independent)")
    explore.add_argument("--dims", type=_dims, metavar="K1,K2",
                         help="two latent dimensions for the hole picture (default: the two most active)")
    explore.add_argument("--point", choices=["draw", "center"], default="draw",
                         help="one draw z ~ q(z|x) or the posterior center per sentence in the hole picture")
    explore.add_argument("--label-names", type=label_names, metavar="LABEL=NAME[,...]",
                         help="names for the corpus labels in the hole pictures, e.g. 0=negative,1=positive "
                              "(default: the labels themselves)")
    explore.add_argument("--prior-samples", type=at_least(1), default=10_000, metavar="N",
                         help="prior draws for marginal-KL")
    explore.add_argument("--checkpoint", choices=["best", "last"], default="best", help=CHECKPOINT_HELP)
    explore.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    explore.add_argument("--dpi", type=at_least(1), default=100, help="resolution of the pictures")
    explore.add_argument("--seed", type=at_least(0), default=0, help="seed of the sentences and draws")
    explore.set_defaults(func=explore_command)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """``rows`` under ``header`` as a CSV file at ``path``, written atomically."""
    from pyro_textvae.io import atomic_write_bytes

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _run_names(paths: Sequence[str]) -> list[str]:
    names = [Path(p).resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{index}-{name}" for index, name in enumerate(names)]


def _explore_run(run, out: Path, args: argparse.Namespace):
    """Every picture and CSV of one opened run into ``out``; returns its
    :class:`evaluation.arviz_data.SplitPosteriors`."""
    from evaluation.arviz_data import (
        dimension_statistics,
        encode_split,
        posterior_summary,
        save_inference_data,
        to_inference_data,
    )
    from evaluation.plots import (
        plot_dimension_bars,
        plot_hole_picture,
        plot_length_ppc,
        plot_sentence_forest,
        plot_sentence_posteriors,
        save_figure,
    )
    from pyro_textvae.io import atomic_write_bytes, make_folder

    make_folder(out)
    print(f"{run.path}: drawing {args.chains} x {args.draws} posterior and prior samples of {args.sentences} "
          f"{args.split} sentences", flush=True)
    idata = to_inference_data(run, split=args.split, sentences=args.sentences, draws=args.draws,
                              chains=args.chains, seed=args.seed)
    print(f"{run.path}: InferenceData -> {save_inference_data(idata, run.path)}")
    print(f"{run.path}: encoding the {args.split} split, {args.prior_samples} prior draws for marginal-KL",
          flush=True)
    posteriors = encode_split(run, split=args.split, seed=args.seed)
    stats = dimension_statistics(posteriors, num_prior_samples=args.prior_samples, seed=args.seed)
    print(f"{run.path}: drawing the pictures", flush=True)
    hole = plot_hole_picture(posteriors, args.dims, args.point, label_names=args.label_names)
    save_figure(hole.figure, out / "hole.png", args.dpi)
    save_figure(plot_sentence_posteriors(idata), out / "posteriors.png", args.dpi)
    save_figure(plot_sentence_forest(idata), out / "forest.png", args.dpi)
    save_figure(plot_dimension_bars(stats), out / "dimensions.png", args.dpi)
    save_figure(plot_length_ppc(idata).figure, out / "ppc_length.png", args.dpi)
    summary = posterior_summary(idata)
    atomic_write_bytes(out / "summary.csv", summary.to_csv().encode("utf-8"))
    keys = ("kl", "mean_variance", "marginal_kl")
    rows = [[k] + ["" if stats[key] is None else float(stats[key][k]) for key in keys]
            for k in range(posteriors.latent_dim)]
    write_csv(out / "dimensions.csv", ("latent_dim",) + keys, rows)
    print(f"{run.path}: pictures and CSV files -> {out}")
    return posteriors


def _check_against_runs(runs, args: argparse.Namespace) -> None:
    """Refuse ``--dims`` outside a run's latent dimensions and more ``--sentences`` than a run's
    split holds, before anything is computed or written."""
    for run in runs:
        latent_dim, size = run.vae.config.latent_dim, len(run.corpus.splits[args.split].ids)
        dims = args.dims
        if dims is not None and (not 0 <= min(dims) <= max(dims) < latent_dim or dims[0] == dims[1]):
            raise ValueError(f"--dims {dims[0]},{dims[1]}: give two different latent dimensions of "
                             f"0..{latent_dim - 1} ({run.path})")
        if args.sentences > size:
            raise ValueError(f"--sentences {args.sentences}: the {args.split} split of {run.path} has {size} sentences")


def explore_command(args: argparse.Namespace) -> None:
    """``textvae explore``: see the module docstring. Bad options raise ValueError; a bad run
    folder raises CheckpointError (from ``open_run``)."""
    for path in args.runs:
        check_folder(path, "RUN")
    import matplotlib

    from inference.run import check_run_config
    from pyro_textvae.run_folder import open_run

    matplotlib.use("Agg")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    with contextlib.ExitStack() as locks:
        locked = _lock_written_folders(locks, args.runs)
        runs = [open_run(path, checkpoint=args.checkpoint, device=args.device, check=check_run_config)
                for path in args.runs]
        _check_against_runs(runs, args)
        _lock_written_folders(locks, [out], locked)  # after the checks: a refused command creates no DIR
        _explore_runs(runs, out, args)


def _lock_written_folders(locks: contextlib.ExitStack, folders: Sequence[str | Path],
                          locked: frozenset[Path] = frozenset()) -> frozenset[Path]:
    """Take the lock of each folder explore writes onto ``locks``, once per folder (those ``locked``
    already, and a DIR that is a run folder, are not locked again); remove what writes killed halfway
    left there and in its sub-folders. Returns every folder locked."""
    from inference.run import remove_temporaries
    from pyro_textvae.lock import FolderLock

    for folder in dict.fromkeys(Path(folder).resolve() for folder in folders):
        if folder in locked:
            continue
        locks.enter_context(FolderLock(folder))
        locked |= {folder}
        for inner in [folder, *(path for path in folder.iterdir() if path.is_dir())]:
            remove_temporaries(inner)
    return locked


def _explore_runs(runs, out: Path, args: argparse.Namespace) -> None:
    """Everything explore writes of the opened ``runs`` into ``out``, holding their locks."""
    from evaluation.plots import plot_hole_comparison, save_figure
    from pyro_textvae.io import save_json

    options = {name: getattr(args, name) for name in EXPLORE_OPTIONS}
    save_json(out / EXPLORE_CONFIG, {"runs": [str(run.path.resolve()) for run in runs], **options})
    if len(runs) == 1:
        _explore_run(runs[0], out, args)
        return
    names = _run_names(args.runs)
    compared = [(name, _explore_run(run, out / name, args)) for name, run in zip(names, runs)]
    figure = plot_hole_comparison(compared, args.dims, args.point, label_names=args.label_names)
    save_figure(figure, out / "hole_comparison.png", args.dpi)
    print(f"hole pictures side by side -> {out / 'hole_comparison.png'}")
