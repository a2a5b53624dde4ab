#!/usr/bin/env bash
# Egocentric on the CPU (issue 23): the demo's CPU recipe for Small (S) (400 steps of 8), composed with the shipped
# prior at the paper's Ego4D gamma 0.2; N = 48, DDIM 25, the same seeds for every row.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1  # from the repository root, in the project's environment
[ -d data/egocentric ] || video-adapter make-data egocentric --out data/egocentric --num 5000 --seed 0
R=runs/ego-cpu
[ -f $R/small-s/checkpoint/config.json ] || video-adapter train --data data/egocentric/train --out $R/small-s --preset small-s \
  --steps 400 --batch-size 8 --lr 1e-3 --warmup-steps 40 --sample-every 0 --save-every 400 --num-workers 0 --cache-videos --seed 0
A="--domain data/egocentric --prior checkpoints/prior --small-s $R/small-s/checkpoint --metrics fvd-va --num 48 --batch-size 16 \
   --sampler ddim --steps 25 --device cpu --prior-strength 0.2"
video-adapter evaluate --guidance 5 $A --methods small-s small-s+prior prior --composition normalized --gamma-sweep --out $R/eval-normalized
