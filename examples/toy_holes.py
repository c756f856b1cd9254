"""The hole problem in two dimensions, in seconds: the toy of :mod:`evaluation.toy` under
``elbo``, ``ae``, ``aae``, ``wae-mmd`` and ``dg`` (``textvae toy`` does the same).

Eight classes with four data each; every datum has its own free posterior N(mu_i, sigma_i^2) in
R^2, decoded by a small classifier. The grid shows the aggregated posterior q_D(z) over the
prior's contours at increasing steps: ``elbo`` collapses onto the prior (the classes are not told
apart), ``ae`` separates them and leaves holes, ``dg`` separates them and covers the prior.

    python examples/toy_holes.py --out toy-example
    python examples/toy_holes.py --out toy-example --steps 30   # a quick look (the snapshots scale with it)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.plots import plot_toy_grid, save_figure
from evaluation.toy import TOY_OBJECTIVES, ToyConfig, grid_kl, train_toy_objectives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="toy-example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=ToyConfig.steps, help="training steps per objective")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    runs = train_toy_objectives(TOY_OBJECTIVES, ToyConfig(steps=args.steps, seed=args.seed))
    for name, run in runs.items():
        kl = grid_kl(run.final.loc, run.final.scale)
        print(f"{name:8s} KL(q_D || p) = {kl['kl']:.3f}  KL(p || q_D) = {kl['reverse_kl']:.3f}")
    path = Path(args.out) / "toy_grid.png"
    save_figure(plot_toy_grid(runs), path)
    print(f"grid: {path}")


if __name__ == "__main__":
    main()
