"""The ``textvae evaluate`` sub-command (``docs/metrics.md``).

``textvae evaluate RUN`` computes every metric of a run on one split and writes ``eval.json`` and
``eval.md`` into the run folder (:func:`evaluation.report.evaluate_run`). Register it with
:func:`add_evaluate_commands`.
"""
from __future__ import annotations

import argparse
import contextlib
import textwrap
from pathlib import Path

from evaluation.evaluate_options import EVALUATE_DEFAULTS, IW_MEMORY, SPLITS
from inference.train_config import launched_by_torchrun
from pyro_textvae.config import PRECISIONS

from .options import CHECKPOINT_HELP, at_least, check_folder

DESCRIPTION = "\n\n".join(textwrap.fill(paragraph, 79) for paragraph in (
    "Compute every metric of a run on one split; write eval.json and eval.md into the run folder and print eval.md.",
    "How long: on a 10,000-sentence split (short_yelp) with the paper's model sizes the defaults take about "
    f"1 h 40 min of one CPU core: 90 min of importance sampling (K = {EVALUATE_DEFAULTS.iw_samples} samples of "
    f"every sentence), 7 min of hole metrics ({EVALUATE_DEFAULTS.prior_samples:,} prior draws); with --iw-subset "
    "1000 about 17 min. A bar follows the stages, and the hole metrics and density-gap KLs have bars of their "
    "own. Memory: about 0.3 GB above the libraries' 0.5 GB there, estimated before anything is allocated (an "
    "evaluation that would not fit is refused, naming what to lower)."))


def _evaluate(args: argparse.Namespace) -> None:
    """Handler of ``textvae evaluate``: open the run's checkpoint, evaluate, print ``eval.md``
    (under torchrun, or with ``--distributed``: the importance sampling shared out over the
    processes, rank 0 printing and writing)."""
    check_folder(args.run, "RUN")
    from inference.distributed import close_distributed, init_distributed

    device = args.device
    if args.distributed or launched_by_torchrun():
        device = init_distributed(args.device).device
    try:
        _evaluate_on(args, device)
    finally:
        close_distributed()


def _evaluate_on(args: argparse.Namespace, device) -> None:
    """Evaluate holding the run folder's lock (rank 0, which writes ``eval.json``), having removed the
    temporaries of writes killed halfway."""
    from inference.distributed import rank_and_world_size
    from inference.run import remove_temporaries
    from pyro_textvae.lock import FolderLock

    writer = rank_and_world_size()[0] == 0 and Path(args.run).is_dir()
    with FolderLock(args.run) if writer else contextlib.nullcontext():
        if writer:
            remove_temporaries(Path(args.run))
        _evaluate_locked(args, device)


def _evaluate_locked(args: argparse.Namespace, device) -> None:
    from evaluation.report import evaluate_run
    from evaluation.tables import eval_filename
    from inference.distributed import rank_and_world_size
    from inference.run import check_run_config
    from pyro_textvae.run_folder import open_run

    options = {name: getattr(args, name) for name in (
        "split", "iw_samples", "iw_subset", "prior_samples", "num_generate", "num_interpolations", "seed",
        "iw_batch_size", "iw_chunk", "dg_samples", "checkpoint")}
    options["iw_chunk"] = options["iw_chunk"] or None
    run = open_run(args.run, checkpoint=args.checkpoint, device=device, precision=args.precision,
                   check=check_run_config)
    _check_not_replacing(Path(args.run) / eval_filename(args.split), options, args.overwrite)
    evaluate_run(run, progress=not args.no_progress, device=device, **options)
    if rank_and_world_size()[0] > 0:
        return
    print((Path(args.run) / eval_filename(args.split, "md")).read_text(encoding="utf-8"), end="")
    print(f"wrote {Path(args.run) / eval_filename(args.split)}")


def _check_not_replacing(path: Path, options: dict, overwrite: bool) -> None:
    """Refuse to replace an evaluation made with other settings (a K = 500 run is not lost to a
    quick K = 10 one) unless ``overwrite``; the same settings give the same numbers, so they may."""
    from evaluation.report import evaluation_settings
    from evaluation.tables import load_evaluation

    if overwrite or not path.exists():
        return
    old, new = load_evaluation(path).get("settings"), evaluation_settings(**options)
    old = old if isinstance(old, dict) else {}
    changed = [f"{name} {old.get(name)!r} -> {value!r}" for name, value in new.items() if old.get(name) != value]
    if changed:
        raise FileExistsError(f"{path} was made with other settings ({', '.join(changed)}); "
                              "pass --overwrite to replace it")


def add_evaluate_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the ``textvae`` sub-parsers (handler in ``func``)."""
    evaluate = subparsers.add_parser("evaluate", help="compute every metric of a run into eval.json and eval.md",
                                     description=DESCRIPTION)
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--split", default=EVALUATE_DEFAULTS.split, choices=SPLITS, help="split evaluated")
    evaluate.add_argument("--checkpoint", default="best", choices=["best", "last"],
                          help=CHECKPOINT_HELP)
    evaluate.add_argument("--iw-samples", type=at_least(1), default=EVALUATE_DEFAULTS.iw_samples, metavar="K",
                          help="importance samples K per sentence")
    evaluate.add_argument("--iw-subset", type=at_least(1), metavar="N",
                          help="score log p(x) on a seeded subset of N sentences (default: all)")
    evaluate.add_argument("--iw-batch-size", type=at_least(1), default=EVALUATE_DEFAULTS.iw_batch_size, metavar="N",
                          help="sentences per importance-sampling batch")
    evaluate.add_argument("--iw-chunk", type=at_least(0), default=EVALUATE_DEFAULTS.iw_chunk, metavar="N",
                          help="importance samples decoded at a time (default, or 0: the most that fit "
                               f"{IW_MEMORY // 2**20} MiB, fewer on the CPU; changes only the rounding)")
    evaluate.add_argument("--prior-samples", type=at_least(1), default=EVALUATE_DEFAULTS.prior_samples, metavar="N",
                          help="prior draws for the hole metrics")
    evaluate.add_argument("--dg-samples", type=at_least(1), default=EVALUATE_DEFAULTS.dg_samples, metavar="M",
                          help="draws per posterior for the density-gap KL")
    evaluate.add_argument("--num-generate", type=at_least(1), default=EVALUATE_DEFAULTS.num_generate, metavar="N",
                          help="prior samples decoded for BLEU")
    evaluate.add_argument("--num-interpolations", type=at_least(1), default=EVALUATE_DEFAULTS.num_interpolations,
                          metavar="N", help="pairs of sentences interpolated")
    evaluate.add_argument("--seed", type=at_least(0), default=EVALUATE_DEFAULTS.seed,
                          help="seed of every random draw of the evaluation")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K (cuda: one GPU per local rank)")
    evaluate.add_argument("--precision", choices=PRECISIONS,
                          help="the networks in fp32 or bf16 (default: the run's own; the metrics are fp32 either way)")
    evaluate.add_argument("--distributed", action="store_true",
                          help="share the importance sampling over torch.distributed processes "
                               "(automatic under torchrun with > 1 process)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace an eval.json made with other settings (refused without it)")
    evaluate.set_defaults(func=_evaluate)
