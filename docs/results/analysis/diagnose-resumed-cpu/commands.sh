#!/usr/bin/env bash
# Issue 23 (a), 2026-12-07 (sixth session), 2 CPU cores: held-out eps error per noise level of each Small (S) before
# and after this session's GPU resumption, the same 32 test clips and noise for all four (seed 0), unguided.
set -euo pipefail
export HF_HUB_OFFLINE=1
D=docs/results/analysis/diagnose-resumed-cpu
mkdir -p /tmp/before && git archive 3fe09c2 checkpoints/adapters | tar x -C /tmp/before  # the adapters before it (1,450 and 2,450 steps)
diagnose() {  # diagnose DOMAIN ADAPTER OUT
  VIDEO_ADAPTER_TEXT_TABLE=data/text-$1.safetensors video-adapter diagnose --adapter $2 --prior checkpoints/prior \
    --data data/$1 --num 32 --batch-size 16 --guidance 1 --gammas 0.1 0.2 0.4 --compositions normalized \
    --compose-in eps --device cpu --out $3
}
diagnose egocentric /tmp/before/checkpoints/adapters/egocentric/small-s/checkpoint $D/ego-1450
diagnose egocentric checkpoints/adapters/egocentric/small-s/checkpoint $D/ego-2150
diagnose robot /tmp/before/checkpoints/adapters/robot/small-s/checkpoint $D/robot-2450
diagnose robot checkpoints/adapters/robot/small-s/checkpoint $D/robot-3150
