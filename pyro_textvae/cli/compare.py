"""The ``textvae compare`` sub-command: ``textvae compare RUN...`` prints one table with a row per
run of their ``eval.json`` and writes it as ``PREFIX.md`` and ``PREFIX.csv``
(:func:`evaluation.tables.compare_runs`). Register it with :func:`add_compare_command`.
"""
from __future__ import annotations

import argparse

from evaluation.evaluate_options import EVALUATE_DEFAULTS, SPLITS

from .options import check_folder


def _compare(args: argparse.Namespace) -> None:
    """Handler of ``textvae compare``: print the table; with ``--out PREFIX`` also write it as
    ``PREFIX.md`` and ``PREFIX.csv``."""
    for run in args.runs:
        check_folder(run, "RUN")
    from evaluation.tables import compare_runs

    table = compare_runs(args.runs, out_prefix=args.out, split=args.split)
    print(table.markdown(), end="")
    if args.out:
        print(f"wrote {args.out}.md and {args.out}.csv")


def add_compare_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compare`` on the ``textvae`` sub-parsers (handler in ``func``)."""
    compare = subparsers.add_parser("compare", help="one table of the evaluated metrics of several runs",
                                    description="Print one table, a row per run, of the runs' eval.json.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding eval.json")
    compare.add_argument("--split", default=EVALUATE_DEFAULTS.split, choices=SPLITS, help="split compared")
    compare.add_argument("--out", metavar="PREFIX",
                         help="also write the table as PREFIX.md and PREFIX.csv (default: print it only)")
    compare.set_defaults(func=_compare)
