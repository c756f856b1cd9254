"""The ``textvae evaluate`` and ``textvae compare`` sub-commands (docs/dg-vae.md, sec. 5).

``textvae evaluate RUN`` computes every metric of a run on one split and writes ``eval.json`` and
``eval.md`` into the run folder (:func:`evaluation.report.evaluate_run`); ``textvae compare RUN...``
prints one table with a row per run and writes it as ``PREFIX.md`` and ``PREFIX.csv``
(:func:`evaluation.report.compare_runs`). Register both with :func:`add_evaluate_commands`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inference.distributed import close_distributed, init_distributed, launched_by_torchrun, rank_and_world_size
from inference.run import open_run

from .report import evaluate_run
from .tables import compare_runs, eval_filename


def _evaluate(args: argparse.Namespace) -> None:
    """Handler of ``textvae evaluate``: open the run's checkpoint, evaluate, print ``eval.md``
    (under torchrun, or with ``--distributed``: the importance sampling shared out over the
    processes, rank 0 printing and writing)."""
    device = args.device
    if args.distributed or launched_by_torchrun():
        device = init_distributed(args.device).device
    try:
        _evaluate_on(args, device)
    finally:
        close_distributed()


def _evaluate_on(args: argparse.Namespace, device: torch.device | str) -> None:
    run = open_run(args.run, checkpoint=args.checkpoint, device=device)
    evaluate_run(
        run,
        split=args.split,
        iw_samples=args.iw_samples,
        iw_subset=args.iw_subset,
        prior_samples=args.prior_samples,
        num_generate=args.num_generate,
        num_interpolations=args.num_interpolations,
        seed=args.seed,
        progress=not args.no_progress,
        iw_batch_size=args.iw_batch_size,
        iw_chunk=args.iw_chunk,
        dg_samples=args.dg_samples,
        checkpoint=args.checkpoint,
        device=device,
    )
    if rank_and_world_size()[0] > 0:
        return
    print((Path(args.run) / eval_filename(args.split, "md")).read_text(encoding="utf-8"), end="")
    print(f"wrote {Path(args.run) / eval_filename(args.split)}")


def _compare(args: argparse.Namespace) -> None:
    """Handler of ``textvae compare``: print the table and write it as Markdown and CSV."""
    table = compare_runs(args.runs, out_prefix=args.out, split=args.split)
    print(table.markdown(), end="")
    print(f"wrote {args.out}.md and {args.out}.csv")


def add_evaluate_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` and ``compare`` on the ``textvae`` sub-parsers (handlers in ``func``)."""
    evaluate = subparsers.add_parser("evaluate", help="compute every metric of a run into eval.json and eval.md")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"])
    evaluate.add_argument("--checkpoint", default="best", choices=["best", "last"])
    evaluate.add_argument("--iw-samples", type=int, default=500, help="importance samples K per sentence")
    evaluate.add_argument("--iw-subset", type=int, metavar="N",
                          help="score log p(x) on a seeded subset of N sentences (default: all)")
    evaluate.add_argument("--iw-batch-size", type=int, default=32, help="sentences per importance-sampling batch")
    evaluate.add_argument("--iw-chunk", type=int, default=50, help="importance samples evaluated at a time")
    evaluate.add_argument("--prior-samples", type=int, default=1000 * 128, help="prior draws for the hole metrics")
    evaluate.add_argument("--dg-samples", type=int, default=1, help="draws per posterior for the density-gap KL")
    evaluate.add_argument("--num-generate", type=int, default=1000, help="prior samples decoded for BLEU")
    evaluate.add_argument("--num-interpolations", type=int, default=100, help="pairs of sentences interpolated")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K (cuda: one GPU per local rank)")
    evaluate.add_argument("--distributed", action="store_true",
                          help="share the importance sampling over torch.distributed processes "
                               "(automatic under torchrun with > 1 process)")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=_evaluate)
    compare = subparsers.add_parser("compare", help="one table of the evaluated metrics of several runs")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding eval.json")
    compare.add_argument("--split", default="test", choices=["train", "valid", "test"])
    compare.add_argument("--out", default="comparison", metavar="PREFIX", help="writes PREFIX.md and PREFIX.csv")
    compare.set_defaults(func=_compare)
