#!/usr/bin/env bash
# Positive control (issue 23, item 2e), CPU: a domain the prior knows. Fresh broad-bullet clips (seed 4: the prior's
# distribution, none of its clips), the demo's CPU recipe for Small (S) on their 630 training clips, composed with
# the shipped prior; N = 32, DDIM 25, alpha 5, gamma 0.1, the same seeds for every row.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1  # from the repository root, in the project's environment
R=runs/control
[ -d data/bb4 ] || video-adapter make-data broad-bullet --out data/bb4 --num 700 --seed 4
[ -f $R/small-s/checkpoint/config.json ] || video-adapter train --data data/bb4/train --out $R/small-s --preset small-s \
  --steps 400 --batch-size 8 --lr 1e-3 --warmup-steps 40 --sample-every 0 --save-every 400 --num-workers 0 --cache-videos --seed 0
A="--domain data/bb4 --prior checkpoints/prior --small-s $R/small-s/checkpoint --metrics fvd-va --num 32 --batch-size 16 \
   --sampler ddim --steps 25 --device cpu"
video-adapter evaluate --guidance 5 $A --methods small-s small-s+prior prior --composition normalized --gamma-sweep --out $R/eval-normalized-n32
# The gamma sweep with paired differences (eval-sweep-n32/): the same adapter, conditions and seeds, gamma 0.4 main
video-adapter evaluate --guidance 5 $A --methods small-s small-s+prior prior --composition normalized --prior-strength 0.4 \
  --gamma-sweep 0.1 0.8 --out $R/eval-sweep-n32
# The same sweep without guidance (eval-alpha1-n32/): alpha 1 for every row, so the composition is the geometric mean
video-adapter evaluate --guidance 5 $A --methods small-s small-s+prior prior --composition normalized --guidance 1 --prior-strength 0.5 \
  --gamma-sweep 0.25 0.75 --out $R/eval-alpha1-n32
