#!/usr/bin/env bash
# Validation -ELBO after 2 epochs under --precision fp32 and bf16, seeds 0 and 1, for the
# main job (DG-VAE on the synthetic corpus) and for DG-VAE on short_yelp; one thread, one run at a time,
# fp32 and bf16 alternating. Usage: bash benchmarks/precision_elbo.sh OUT [SHORT_YELP_DIR]
set -euo pipefail
out=${1:?usage: precision_elbo.sh OUT [SHORT_YELP_DIR]}
yelp=${2:-../shared/data/short_yelp}
export OMP_NUM_THREADS=1
for job in main short_yelp; do
  data=()
  if [ "$job" = short_yelp ]; then data=(--data "$yelp"); fi
  for seed in 0 1; do
    for precision in fp32 bf16; do
      run="$out/$job-seed$seed-$precision"
      textvae train "${data[@]}" --objective dg --epochs 2 --seed "$seed" --precision "$precision" \
        --no-progress --overwrite --out "$run" > /dev/null
      python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; \
print(sys.argv[2], f\"-ELBO {r['valid_elbo_loss']:.3f} rec {r['valid_reconstruction']:.3f} \
KL {r['valid_kl']:.3f} AU {r['valid_active_units']} train s/epoch {r['seconds']:.0f}\")" \
        "$run/metrics.jsonl" "$job seed $seed $precision"
    done
  done
done
