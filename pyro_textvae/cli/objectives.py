"""``textvae objectives``: list every objective, its parameters and their defaults."""
from __future__ import annotations

import argparse

from inference.objective_configs import describe_parameters


def _objectives(args: argparse.Namespace) -> None:
    """Each objective, its parameters (:func:`inference.objective_configs.describe_parameters`, as
    ``textvae train --help`` lists them) and, per parameter, its range and meaning."""
    from inference.objectives import OBJECTIVES

    for objective in OBJECTIVES.values():
        print(f"{objective.name:20s} {objective.description}\n{'':20s} parameters: "
              f"{describe_parameters(objective.name)}")
        for name, item in objective.config_class.parameters().items():
            print(f"{'':22s} {name}: {item.metadata['range'].describe()}, {item.metadata['help']}")


def add_objectives_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``textvae objectives``."""
    objectives = subparsers.add_parser("objectives", help="list the objectives and their parameters",
                                       description="List every objective, its parameters and their defaults.")
    objectives.set_defaults(func=_objectives)
