"""Print the Markdown table of a results.csv with the columns named, numbers as papers print them.

    python examples/results_table.py results/short_yelp/results.csv NLL PPL KL MI AU joint-KL
(no column names: every metric in the file).
"""
from __future__ import annotations

import sys

from evaluation.tables import table_from_results_csv

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    try:
        print(table_from_results_csv(sys.argv[1], sys.argv[2:] or None), end="")
    except (OSError, ValueError) as error:
        sys.exit(f"results_table: {error}")
