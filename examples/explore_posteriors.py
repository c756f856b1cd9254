"""Explore the posteriors of trained runs with ArviZ, from Python (``textvae explore`` does the same).

Without arguments, trains two small runs on the synthetic corpus first (``elbo`` and ``dg``, a
minute or two on a laptop CPU), then for each run: exports the InferenceData (netCDF in the run
folder), prints the ``az.summary`` statistics of a few sentences' posteriors and draws the
pictures of :mod:`evaluation.plots`; finally the two hole pictures side by side.

    python examples/explore_posteriors.py --out explore-example --seed 0
    python examples/explore_posteriors.py runs/a runs/b --out explore-example --seed 0

``--seed`` seeds the example runs (corpus and training) and every draw of the exploration; the
options go into ``OUT/explore_config.json``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.arviz_data import (
    dimension_statistics,
    encode_split,
    posterior_summary,
    save_inference_data,
    to_inference_data,
)
from evaluation.plots import (
    plot_dimension_bars,
    plot_hole_comparison,
    plot_hole_picture,
    plot_length_ppc,
    plot_sentence_forest,
    plot_sentence_posteriors,
    save_figure,
)
from inference.trainer import TrainConfig
from pyro_textvae.io import save_json
from pyro_textvae.run_folder import open_run


def train_examples(folder: Path, epochs: int, seed: int = 0) -> list[Path]:
    """Two small runs on the synthetic corpus: the plain VAE and DG-VAE (corpus and training seeded by ``seed``)."""
    from inference.run import new_trainer

    data = {"synthetic": {"num_train": 1000, "num_valid": 200, "num_test": 200, "seed": seed}}
    model = {"embed_dim": 32, "hidden_dim": 64, "latent_dim": 8}
    train = TrainConfig(epochs=epochs, batch_size=32, optimizer="adam", progress=False, seed=seed)
    paths = []
    for objective in ("elbo", "dg"):
        path = folder / objective
        new_trainer(path, data, model, objective, {"warmup_epochs": 1.0}, train, overwrite=True).fit()
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run folders (default: train two small ones)")
    parser.add_argument("--out", default="explore-example")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the example runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the example runs and of the posterior draws")
    args = parser.parse_args()
    out = Path(args.out)
    paths = [Path(p) for p in args.runs] or train_examples(out / "runs", args.epochs, args.seed)
    save_json(out / "explore_config.json", {"runs": [str(p.resolve()) for p in paths], "epochs": args.epochs,
                                            "seed": args.seed})

    compared = []
    for path in paths:
        run = open_run(path)
        idata = to_inference_data(run, split="test", sentences=8, draws=100, chains=2, seed=args.seed)
        print(f"{path}: InferenceData saved to {save_inference_data(idata, run.path)}")
        print(posterior_summary(idata).head(8).to_string())
        posteriors = encode_split(run, split="test", seed=args.seed)
        stats = dimension_statistics(posteriors, seed=args.seed)
        print(f"{path}: E_x KL per dimension {stats['kl'].round(3)}, Var of means {stats['mean_variance'].round(3)}")
        pictures = out / path.name
        save_figure(plot_hole_picture(posteriors).figure, pictures / "hole.png")
        save_figure(plot_sentence_posteriors(idata), pictures / "posteriors.png")
        save_figure(plot_sentence_forest(idata), pictures / "forest.png")
        save_figure(plot_dimension_bars(stats), pictures / "dimensions.png")
        save_figure(plot_length_ppc(idata).figure, pictures / "ppc_length.png")
        compared.append((path.name, posteriors))
    save_figure(plot_hole_comparison(compared), out / "hole_comparison.png")
    print(f"pictures in {out}")


if __name__ == "__main__":
    main()
