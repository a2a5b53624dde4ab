#!/usr/bin/env bash
# Issue 23, 2026-12-07 (third session), one H100, 23 minutes held. Three lines ran at once, then a second round:
#   1. ego-band-500: the decision run, CFG Mix w 0.2 from log-SNR -2 on egocentric with the shipped 500-step adapter
#      (read in place), beside Small (S) and the prior, N = 128.
#   2. each domain's Small (S) resumed for 6 minutes (egocentric 500 -> 1,000 steps, robot 1,600 -> 2,000; the GPU
#      shared with line 1, about 1.3 steps/s each), then evaluated with the recipe (ego-1000, robot-2000), then
#      diagnose on egocentric (diagnose-ego-1000).
#   3. both resumed again for 4 minutes (egocentric -> 1,450, robot -> 2,450), evaluated (docs/results/egocentric and
#      docs/results/robot: the headline tables), and diagnosed (diagnose-ego-1450, diagnose-robot-2450).
# Every evaluation: the same 128 conditions and seeds per domain as every N = 128 table, DDIM 100, alpha 5, batch 64.
# The adapters these commands leave are the ones in checkpoints/adapters (with their optimizer state).
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1
A=docs/results/analysis/recipe-gpu
# the adapters as they were before these runs (egocentric step 500, robot step 1,600)
git checkout 086a5fa -- checkpoints/adapters/egocentric checkpoints/adapters/robot/small-s
mkdir -p runs/egocentric runs/robot
cp -a checkpoints/adapters/egocentric/. runs/egocentric/
cp -a checkpoints/adapters/robot/. runs/robot/

ego() { VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors "$@"; }
robot() { VIDEO_ADAPTER_TEXT_TABLE=data/text-robot.safetensors "$@"; }
train() {  # train DATA RUN MINUTES: batch 256, lr 1e-3 after 200 warm-up steps, constant, EMA 0.999
  video-adapter train --data $1/train --out $2 --preset small-s --batch-size 256 --lr 1e-3 --warmup-steps 200 \
    --ema-decay 0.999 --steps 100000 --max-minutes $3 --save-every 500 --sample-every 0 --log-every 50 \
    --heldout $1/test --heldout-every 250 --heldout-num 128 --cache-videos --num-workers 4 --seed 0
}
evaluate() {  # evaluate DATA RUN ADAPTER OUT [flags]
  local d=$1 r=$2 s=$3 out=$4; shift 4
  video-adapter evaluate --guidance 5 --domain $d --prior checkpoints/prior --encoder checkpoints/video-encoder \
    --classifier $r/classifier --small-s $s --num 128 --batch-size 64 --steps 100 --out $out "$@"
}
recipe() {  # recipe DATA RUN GAMMA OUT: the recipe beside Algorithm 1 (normalized) and both experts
  evaluate $1 $2 $2/small-s/checkpoint $4 --methods small-s cfg-mix small-s+prior prior --mix 0.2 \
    --mix-min-logsnr -2 --mix-sweep 0.1 ${SWEEP3:+0.3} --prior-strength $3 --gamma-sweep
}
diagnose() {  # diagnose DATA RUN OUT
  video-adapter diagnose --adapter $2/small-s/checkpoint --prior checkpoints/prior --data $1 --num 128 \
    --batch-size 64 --compositions normalized cfg-mix --compose-in eps --out $3
}

# round 1 (at once)
ego evaluate data/egocentric runs/egocentric checkpoints/adapters/egocentric/small-s/checkpoint $A/ego-band-500 \
  --methods small-s cfg-mix prior --mix 0.2 --mix-min-logsnr -2 --mix-sweep 0.3 0.5 --gamma-sweep &
(ego train data/egocentric runs/egocentric/small-s 6
 SWEEP3=1 ego recipe data/egocentric runs/egocentric 0.2 $A/ego-1000
 ego diagnose data/egocentric runs/egocentric $A/diagnose-ego-1000) &
(robot train data/robot runs/robot/small-s 5
 SWEEP3=1 robot recipe data/robot runs/robot 0.1 $A/robot-2000) &
wait
# round 2
ego train data/egocentric runs/egocentric/small-s 4 & robot train data/robot runs/robot/small-s 4 & wait
ego recipe data/egocentric runs/egocentric 0.2 docs/results/egocentric &
robot recipe data/robot runs/robot 0.1 docs/results/robot & wait
ego diagnose data/egocentric runs/egocentric $A/diagnose-ego-1450 &
robot diagnose data/robot runs/robot $A/diagnose-robot-2450 & wait
