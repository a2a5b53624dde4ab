#!/usr/bin/env bash
# Issue 23, 2026-12-08 (ninth session), 2 CPU cores, one thread each: after the N = 128 guidance sweep
# (docs/results/analysis/guidance-gpu/commands.sh) found the recipe even with the adapter at alpha 2, two screens of
# whether the prior helps at alpha 2 at all: a larger prior weight (CFG Mix w 0.4 beside the recipe's 0.2) with the
# shipped robot adapter, and the adapters trained on 50 and 200 robot clips (checkpoints/adapters/robot/sizes), where
# the adapter knows least. The same 32 conditions and seeds as docs/results/analysis/guidance-cpu, DDIM 25.
set -euo pipefail
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
# data/robot and data/egocentric: make-data robot / egocentric --num 5000 --seed 0 (as for every N = 128 table)
D=docs/results/analysis/guidance2-cpu
run() {  # run ADAPTER OUT [ARGS...]
  local adapter=$1 out=$2; shift 2
  video-adapter evaluate --domain data/robot --prior checkpoints/prior --encoder checkpoints/video-encoder \
    --small-s $adapter --classifier checkpoints/adapters/robot/classifier --metrics fvd-va accuracy --num 32 \
    --batch-size 16 --sampler ddim --steps 25 --device cpu --methods small-s cfg-mix --mix 0.2 \
    --mix-min-logsnr -2 --guidance 2 --out $out "$@"
}
S=checkpoints/adapters/robot/sizes
run checkpoints/adapters/robot/small-s/checkpoint $D/robot-w0.4 --mix-sweep 0.4 &
( run $S/small-s-50/checkpoint $D/robot-50clips; run $S/small-s-200/checkpoint $D/robot-200clips ) & wait
# kept: each run's results.json, table.md and qualitative.gif (the mp4s are left out)
