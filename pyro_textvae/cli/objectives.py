"""``textvae objectives``: list every objective, its parameters and their defaults."""
from __future__ import annotations

import argparse


def _objectives(args: argparse.Namespace) -> None:
    from inference.objectives import OBJECTIVES

    for objective in OBJECTIVES.values():
        params = ", ".join(f"{k}={v}" for k, v in objective.defaults.items()) or "-"
        print(f"{objective.name:20s} {objective.description}\n{'':20s} parameters: {params}")


def add_objectives_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``textvae objectives``."""
    objectives = subparsers.add_parser("objectives", help="list the objectives and their parameters",
                                       description="List every objective, its parameters and their defaults.")
    objectives.set_defaults(func=_objectives)
