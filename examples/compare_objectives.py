"""The paper's comparison from Python: train, evaluate and tabulate several objectives.

    python examples/compare_objectives.py examples/short_yelp.toml     # the real comparison (long)
    python examples/compare_objectives.py examples/short_yelp.toml --seed 1   # only seed 1 of it
    python examples/compare_objectives.py --quick --seed 0             # synthetic corpus, minutes

Same as ``textvae experiment CONFIG.toml [--seed S]``: with a CONFIG file, ``--seed`` trains only
that seed (default: the file's ``seeds``); see :mod:`pyro_textvae.cli.experiment_file` for the file format.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pyro_textvae.cli.experiment_file import load_experiment
from pyro_textvae.cli.experiment_runner import run_experiment

QUICK = """
out = "{out}"
seeds = [{seed}]
[data]
synthetic = {{num_train = 1000, num_valid = 200, num_test = 300, seed = {seed}}}
[model]
embed_dim = 32
hidden_dim = 128
latent_dim = 8
[train]
epochs = 6
optimizer = "adam"
[evaluate]
iw_samples = 20
prior_samples = 4000
num_generate = 100
num_interpolations = 10
[[methods]]
name = "VAE"
objective = "elbo"
params = {{warmup_epochs = 2.0}}
[[methods]]
name = "AE"
objective = "ae"
[[methods]]
name = "DG-VAE"
objective = "dg"
params = {{warmup_epochs = 2.0, mode = "joint"}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="experiment TOML file")
    parser.add_argument("--quick", action="store_true", help="a small synthetic comparison instead")
    parser.add_argument("--seed", type=int,
                        help="with CONFIG: train only this seed (default: the file's seeds); "
                             "with --quick: the comparison's seed (default 0)")
    args = parser.parse_args()
    if args.quick == bool(args.config):
        parser.error("give a CONFIG file or --quick")
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    seeds = None if args.seed is None else [args.seed]
    if args.quick:
        seed = args.seed or 0
        path = Path(tempfile.mkdtemp()) / "quick.toml"
        out = Path("results") / f"quick-seed{seed}"
        path.write_text(QUICK.format(seed=seed, out=out.resolve()))
    else:
        path = Path(args.config)
    config = load_experiment(path)
    run_experiment(config, seeds=seeds)
    print((Path(config["out"]) / "results.md").read_text(), end="")


if __name__ == "__main__":
    main()
