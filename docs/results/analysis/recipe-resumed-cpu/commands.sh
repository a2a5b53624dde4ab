#!/usr/bin/env bash
# Issue 23, 2026-12-07 (sixth session), 2 CPU cores, one thread each, 25 minutes: the recipe (CFG Mix w 0.2 from
# log-SNR -2) against Small (S) alone with the egocentric adapter before (1,450 steps) and after (2,150) this session's
# resumption; the same 32 conditions and seeds, DDIM 25, alpha 5.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1
D=docs/results/analysis/recipe-resumed-cpu
mkdir -p /tmp/before && git archive 3fe09c2 checkpoints/adapters/egocentric | tar x -C /tmp/before
run() {  # run STEP ADAPTER
  VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors video-adapter evaluate --guidance 5 --domain data/egocentric \
    --prior checkpoints/prior --small-s $2 --classifier checkpoints/adapters/egocentric/classifier --metrics fvd-va \
    --num 32 --batch-size 16 --sampler ddim --steps 25 --device cpu --methods small-s cfg-mix --mix 0.2 \
    --mix-min-logsnr -2 --out $D/ego-$1
}
run 1450 /tmp/before/checkpoints/adapters/egocentric/small-s/checkpoint &
run 2150 checkpoints/adapters/egocentric/small-s/checkpoint &
wait
