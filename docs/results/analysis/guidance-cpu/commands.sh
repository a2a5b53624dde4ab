#!/usr/bin/env bash
# Issue 23 (guidance on the first-frame domains), 2026-12-07 (eighth session), 2 CPU cores, one thread each: the
# recipe (CFG Mix w 0.2 from log-SNR -2) against Small (S) alone at guidance alpha 1, 2, 3 and 5 on robot and 1 and 5
# on egocentric (both models guided alike), the shipped adapters (robot 3,550 steps, egocentric 2,550) and prior; the
# same 32 conditions and seeds per domain in every run, DDIM 25. The GPU was not to be had, so N is 32, not 128.
# Egocentric at alpha 2 and 3 (the last line) ran in the ninth session (2026-12-08), while no GPU could be had.
set -euo pipefail
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
D=docs/results/analysis/guidance-cpu
run() {  # run DOMAIN ALPHA OUT
  video-adapter evaluate --domain data/$1 --prior checkpoints/prior --encoder checkpoints/video-encoder \
    --small-s checkpoints/adapters/$1/small-s/checkpoint \
    --classifier checkpoints/adapters/$1/classifier --metrics fvd-va accuracy --num 32 --batch-size 16 \
    --sampler ddim --steps 25 --device cpu --methods small-s cfg-mix --mix 0.2 --mix-min-logsnr -2 \
    --guidance $2 --out $3
}
run robot 1 $D/alpha1 & run robot 2 $D/alpha2 & wait
run robot 3 $D/alpha3 & run robot 5 $D/alpha5 & wait
run egocentric 1 $D/ego-alpha1 & run egocentric 5 $D/ego-alpha5 & wait
run egocentric 2 $D/ego-alpha2 & run egocentric 3 $D/ego-alpha3 & wait
