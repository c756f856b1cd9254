"""Draw metrics of an experiment's ``results.csv`` against a parameter of its methods (an ablation),
one panel a metric, on a log-2 axis (:func:`evaluation.sweep.plot_sweep`); print the table beside it.

    python examples/plot_sweep.py results/short_yelp_protocol_paper_init/results.csv ablation.png \\
        --point 1 "DG-VAE b=1" --point 2 "DG-VAE b=2" --point 32 DG-VAE

``--point VALUE METHOD`` (repeatable) names a row and its parameter value; ``--columns`` the metrics
(default: MI, AU, joint-KL, NLL); ``--parameter`` the axis label (default: b).
"""
from __future__ import annotations

import argparse

from evaluation.figures import plain_number, save_figure
from evaluation.sweep import SWEEP_COLUMNS, plot_sweep, read_sweep
from evaluation.tables import format_mean_std, markdown_table


def _value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point VALUE must be a number, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(prog="plot_sweep.py", usage=__doc__)
    parser.add_argument("results_csv")
    parser.add_argument("out_png")
    parser.add_argument("--point", nargs=2, action="append", required=True, metavar=("VALUE", "METHOD"))
    parser.add_argument("--columns", nargs="+", default=list(SWEEP_COLUMNS))
    parser.add_argument("--parameter", default="b")
    args = parser.parse_args()
    try:
        points = [(_value(value), method) for value, method in args.point]
        sweep = read_sweep(args.results_csv, points, args.columns)
        save_figure(plot_sweep(sweep, args.columns, args.parameter), args.out_png)
    except (OSError, ValueError, argparse.ArgumentTypeError) as error:
        parser.exit(1, f"plot_sweep: {error}\n")
    rows = [[plain_number(value), seeds]
            + [format_mean_std(c, sweep[c][i], sweep[f"{c} std"][i]) for c in args.columns]
            for i, (value, seeds) in enumerate(zip(sweep["value"], sweep["seeds"]))]
    print(markdown_table([args.parameter, "seeds", *args.columns], rows), end="")
    print(f"wrote {args.out_png}")


if __name__ == "__main__":
    main()
