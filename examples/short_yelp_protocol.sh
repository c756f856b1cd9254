#!/usr/bin/env bash
# Runs examples/short_yelp_protocol.toml one run at a time, in the order the comparison needs them:
# VAE and DG-VAE first, seed 0 before seed 1, the one-seed rows last. A finished run is skipped and
# an interrupted one resumes from its last.pt, so the script is simply started again to continue.
#   nice -n 19 env OMP_NUM_THREADS=1 bash examples/short_yelp_protocol.sh OUT ["COMMAND"]
# OUT: the results folder (run folders with checkpoints go under OUT/runs/; keep it outside git);
# COMMAND: how to call textvae (default "textvae"; e.g. ".venv/bin/python -m pyro_textvae.cli").
set -euo pipefail
out=${1:?usage: short_yelp_protocol.sh OUT [TEXTVAE]}
read -ra textvae <<< "${2:-textvae}"
config="$(dirname "$0")/short_yelp_protocol.toml"
for seed in 0 1; do
  for method in "VAE" "DG-VAE" "free bits" "BN-VAE" "DG-VAE joint" "VAE SGD" "DG-VAE SGD" \
                "DG-VAE joint memory 1024"; do
    "${textvae[@]}" experiment "$config" --seed "$seed" --method "$method" --out "$out" --no-progress
  done
done
for method in "delta-VAE" "vMF-VAE" "DG-vMF-VAE" "cyclical" "beta-VAE 0.4"; do
  "${textvae[@]}" experiment "$config" --seed 0 --method "$method" --out "$out" --no-progress
done
