"""Print the Markdown table of a results.csv with the columns named, numbers as papers print them.

    python examples/results_table.py results/short_yelp/results.csv NLL PPL KL MI AU joint-KL
(no column names: every metric in the file); ``--row NAME`` (repeatable) keeps only those methods, in
that order:
    python examples/results_table.py results/short_yelp_protocol_paper_init/results.csv MI AU joint-KL NLL \\
        --row "DG-VAE b=1" --row "DG-VAE b=2" --row "DG-VAE"
"""
from __future__ import annotations

import argparse

from evaluation.tables import table_from_results_csv

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="results_table.py", usage=__doc__)
    parser.add_argument("results_csv")
    parser.add_argument("columns", nargs="*")
    parser.add_argument("--row", action="append", help="a method to keep (repeatable; default: every row)")
    args = parser.parse_args()
    try:
        print(table_from_results_csv(args.results_csv, args.columns or None, rows=args.row), end="")
    except (OSError, ValueError) as error:
        parser.exit(1, f"results_table: {error}\n")
