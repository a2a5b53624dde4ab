#!/usr/bin/env bash
# Issue 28 item 3, 2026-12-08 (ninth session), one H100, beside the guidance sweep
# (docs/results/analysis/guidance-gpu/commands.sh): the residual SR stages (the sr-* presets, lowres_residual 0.2)
# from scratch on data/sr-mix, eager, for the 7 minutes the device time left. Caching the 3,420 clips took 4 of
# them, and eight sampling runs shared the GPU, so the 48x80 stage made 200 steps of 32 clips (1.1 s a step) and
# stopped while its learning rate was still warming up. The 96x160 stage was stopped at step 243 of 250, before its
# first checkpoint, so it has no scores. Neither stage is shipped; checkpoints/sr keeps the video-form stages.
set -euo pipefail
export HF_HUB_OFFLINE=1
# the data, as the eighth session made it (docs/results/sr-cpu-residual/commands.sh, the same seeds)
video-adapter make-data broad-procedural --size 96x160 --num 2000 --seed 11 --out data/sr-broad
video-adapter make-data animation --size 96x160 --num 600 --seed 11 --out data/sr-anim
video-adapter make-data robot --size 96x160 --num 800 --seed 11 --out data/sr-robot
video-adapter make-data egocentric --size 96x160 --num 400 --seed 11 --out data/sr-ego
python scripts/merge_datasets.py --out data/sr-mix broad=data/sr-broad anim=data/sr-anim robot=data/sr-robot \
  ego=data/sr-ego
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True video-adapter train --data data/sr-mix/train --out runs/sr/sr-48x80 \
  --preset sr-48x80 --batch-size 32 --lr 5e-4 --warmup-steps 200 --ema-decay 0.995 --steps 100000 --max-minutes 7 \
  --save-every 250 --sample-every 0 --log-every 50 --heldout data/sr-mix/test --heldout-every 250 \
  --heldout-num 128 --cond-drop 0.1 --cache-videos --num-workers 3 --seed 0    # train-sr-48x80/loss.csv
video-adapter export runs/sr/sr-48x80/checkpoint --out runs/sr/sr-48x80-bf16
for d in robot ego broad anim; do
  python scripts/sr_eval.py --data data/sr-mix/test/$d --stages runs/sr/sr-48x80-bf16 --num 64 --steps 50 \
    --aug-level 0 --batch-size 32 --grid 4 --out docs/results/sr-gpu3/eval48-$d
done
