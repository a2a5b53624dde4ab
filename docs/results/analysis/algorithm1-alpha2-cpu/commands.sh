#!/usr/bin/env bash
# Issue 23, 2026-12-08 (ninth session), 2 CPU cores, one thread each: the paper's Algorithm 1 (normalized form, the
# paper's gamma per domain) against Small (S) at alpha 2, the new default, with the shipped adapters and prior; the
# same 32 conditions and seeds per domain as docs/results/analysis/guidance-cpu, DDIM 25.
set -euo pipefail
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
# data/robot and data/egocentric: make-data robot / egocentric --num 5000 --seed 0 (as for every N = 128 table)
D=docs/results/analysis/algorithm1-alpha2-cpu
run() {  # run DOMAIN GAMMA
  video-adapter evaluate --domain data/$1 --prior checkpoints/prior --encoder checkpoints/video-encoder \
    --small-s checkpoints/adapters/$1/small-s/checkpoint --classifier checkpoints/adapters/$1/classifier \
    --metrics fvd-va accuracy --num 32 --batch-size 16 --sampler ddim --steps 25 --device cpu \
    --methods small-s small-s+prior --prior-strength $2 --gamma-sweep --guidance 2 --out $D/$1
}
run robot 0.1 & run egocentric 0.2 & wait
# kept: each run's results.json, table.md and qualitative.gif
# (--gamma-sweep with no values: no sweep; the default sweep of six gammas would take an hour here)
