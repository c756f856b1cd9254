#!/usr/bin/env bash
# Runs examples/short_yelp_protocol_paper_init.toml as two streams, one a core, each one run at a time:
# stream a: seed 0 of the seven compared rows, then the ablation's b = 16, 4;
# stream b: seed 1 of the seven compared rows, then the ablation's b = 8, 2, 1.
# Each stream writes its own results folder (one experiment holds a results folder's lock at a time);
# a finished run is skipped and an interrupted one resumes from its last.pt, so a stream is simply
# started again to continue.
#   nice -n 19 env OMP_NUM_THREADS=1 bash examples/short_yelp_protocol_paper_init.sh OUT STREAM ["COMMAND"]
# OUT: the stream's results folder (run folders with checkpoints go under OUT/runs/; keep it outside git);
# STREAM: a or b; COMMAND: how to call textvae (default "textvae").
set -euo pipefail
out=${1:?usage: short_yelp_protocol_paper_init.sh OUT STREAM [TEXTVAE]}
stream=${2:?usage: short_yelp_protocol_paper_init.sh OUT STREAM [TEXTVAE]}
read -ra textvae <<< "${3:-textvae}"
config="$(dirname "$0")/short_yelp_protocol_paper_init.toml"
rows=("VAE" "DG-VAE" "DG-VAE SGD" "VAE SGD" "DG-VAE joint" "BN-VAE" "free bits")
case "$stream" in
  a) seed=0; ablation=("DG-VAE b=16" "DG-VAE b=4") ;;
  b) seed=1; ablation=("DG-VAE b=8" "DG-VAE b=2" "DG-VAE b=1") ;;
  *) echo "short_yelp_protocol_paper_init.sh: STREAM must be a or b, got '$stream'" >&2; exit 2 ;;
esac
for method in "${rows[@]}"; do
  "${textvae[@]}" experiment "$config" --seed "$seed" --method "$method" --out "$out" --no-progress
done
for method in "${ablation[@]}"; do
  "${textvae[@]}" experiment "$config" --seed 0 --method "$method" --out "$out" --no-progress
done
