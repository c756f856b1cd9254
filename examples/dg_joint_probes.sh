#!/bin/bash
# Why does the joint density gap keep fewer active units than the dimension-wise one?
# Trains DG-VAE (joint estimator) on short_yelp with one setting changed at a time (aggregation size b
# through the batch size, KL warm-up, learning rate, samples M) and prints validation AU, KL and -ELBO
# per epoch. The reference setting (batch 32, warm-up 2, lr 1e-3, M 32, seed 0) is the
# "DG-VAE joint" row of examples/short_yelp.toml. About 6 minutes a variant on one core.
#   bash examples/dg_joint_probes.sh OUT_DIR [TRAIN OPTIONS...]
# TRAIN OPTIONS are appended to every `textvae train` below, so they win over its settings, e.g.
# `--epochs 1 --hidden-dim 16` for a quick check, or `--data DIR` for another corpus.
set -euo pipefail
out=${1:?usage: dg_joint_probes.sh OUT_DIR [TRAIN OPTIONS...]}
shift
data=$(dirname "$0")/../../shared/data/short_yelp
train="textvae train --data $data --embed-dim 128 --hidden-dim 512 --latent-dim 32 --dropout-in 0.5
       --dropout-out 0.5 --objective dg --dg-mode joint --epochs 6 --optimizer adam --no-validate-args
       --no-progress --seed 0 --overwrite"
$train --batch-size 128 --lr 0.001 --warmup-epochs 2 --out "$out/b128" "$@"
$train --batch-size 32 --lr 0.001 --warmup-epochs 6 --out "$out/warm6" "$@"
$train --batch-size 32 --lr 0.0005 --warmup-epochs 2 --out "$out/lr5e-4" "$@"
$train --batch-size 32 --lr 0.001 --warmup-epochs 2 --dg-samples 128 --out "$out/m128" "$@"
python - "$out" <<'PY'
import json, pathlib, sys
for run in sorted(p for p in pathlib.Path(sys.argv[1]).iterdir() if (p / "metrics.jsonl").exists()):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cells = [f"{r['valid_active_units']}/{r['valid_kl']:.2f}/{r['valid_elbo_loss']:.2f}" for r in rows]
    print(f"| {run.name} | " + " | ".join(cells) + " |")
PY
