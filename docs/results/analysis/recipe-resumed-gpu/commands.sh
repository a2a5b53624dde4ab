#!/usr/bin/env bash
# Issue 23, 2026-12-07 (seventh session), one H100, 24 minutes held (after two refused starts). Two lines at once:
#   1. the recipe's N = 128 tables with the adapters of the sixth session (egocentric 2,150 steps, robot 3,150), with
#      nothing else on the GPU (ego-2150, robot-3150); both adapters resumed for 6 minutes, compiled, beside each
#      other and the 48x80 super-resolution stage (egocentric -> 2,550, robot -> 3,550; about 1.8 steps/s each once
#      compiled); the tables again (docs/results/egocentric and docs/results/robot: the headline) and the
#      diagnosis (diagnose-ego-2550, diagnose-robot-3550).
#   2. issue 28: docs/results/sr-gpu2/commands.sh.
# Every evaluation: the same 128 conditions and seeds per domain as every N = 128 table, DDIM 100, alpha 5, batch 64.
# The adapters these commands leave are the ones in checkpoints/adapters (with their optimizer state).
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1
A=docs/results/analysis/recipe-resumed-gpu
# the adapters as they were before these runs (egocentric step 2,150, robot step 3,150)
git checkout 5c00df4 -- checkpoints/adapters/egocentric checkpoints/adapters/robot/small-s
mkdir -p runs/egocentric runs/robot
cp -a checkpoints/adapters/egocentric/. runs/egocentric/
cp -a checkpoints/adapters/robot/classifier checkpoints/adapters/robot/small-s runs/robot/

ego() { VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors "$@"; }
robot() { VIDEO_ADAPTER_TEXT_TABLE=data/text-robot.safetensors "$@"; }
recipe() {  # recipe DATA RUN GAMMA OUT: the recipe beside Algorithm 1 (normalized) and both experts
  video-adapter evaluate --guidance 5 --domain $1 --prior checkpoints/prior --encoder checkpoints/video-encoder \
    --classifier $2/classifier --small-s $2/small-s/checkpoint --num 128 --batch-size 64 --steps 100 --out $4 \
    --methods small-s cfg-mix small-s+prior prior --mix 0.2 --mix-min-logsnr -2 --mix-sweep 0.1 \
    --prior-strength $3 --gamma-sweep
}
train() {  # train DATA RUN MINUTES: batch 256, lr 1e-3 after 200 warm-up steps, constant, EMA 0.999, compiled
  video-adapter train --data $1/train --out $2 --preset small-s --batch-size 256 --lr 1e-3 --warmup-steps 200 \
    --ema-decay 0.999 --steps 100000 --max-minutes $3 --save-every 500 --sample-every 0 --log-every 50 \
    --heldout $1/test --heldout-every 250 --heldout-num 128 --cache-videos --num-workers 3 --seed 0 --compile
}
diagnose() {  # diagnose DATA RUN OUT
  video-adapter diagnose --adapter $2/small-s/checkpoint --prior checkpoints/prior --data $1 --num 128 \
    --batch-size 64 --compositions normalized cfg-mix --compose-in eps --out $3
}

ego recipe data/egocentric runs/egocentric 0.2 $A/ego-2150 & robot recipe data/robot runs/robot 0.1 $A/robot-3150 & wait
ego train data/egocentric runs/egocentric/small-s 5.9 & robot train data/robot runs/robot/small-s 5.9 & wait
ego recipe data/egocentric runs/egocentric 0.2 docs/results/egocentric &
robot recipe data/robot runs/robot 0.1 docs/results/robot & wait
ego diagnose data/egocentric runs/egocentric $A/diagnose-ego-2550 &
robot diagnose data/robot runs/robot $A/diagnose-robot-3550 & wait
