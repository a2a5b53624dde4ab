#!/usr/bin/env bash
# Issue 28 item 3, 2026-12-07 (seventh session), one H100, beside issue 23's runs
# (docs/results/analysis/recipe-resumed-gpu/commands.sh). The 48x80 stage trained on from the shipped weights of the
# sixth session (docs/results/sr-gpu/commands.sh: 550 steps of 16 clips) for 6.3 minutes, compiled, at batch 32: 2.3
# minutes of start-up (caching 6,930 clips, compiling), then 450 steps, most of them beside the two Small (S)
# resumptions; then scored alone at 48x80 on each part's test split, with and without noise augmentation.
# The animation split at augmentation 0.2 and the cascade's 96x160 scores with this stage were cut off by the device
# time; the 96x160 scores ran on the CPU afterwards (below).
set -euo pipefail
export HF_HUB_OFFLINE=1
# the data: data/sr-mix, made exactly as the sixth session made it (its make-data and merge_datasets.py lines at the
# top of docs/results/sr-gpu/commands.sh, the same seeds)
git checkout 5c00df4 -- checkpoints/sr/sr-48x80  # the stage as the sixth session left it
# (lowres_residual=0: the stage denoises the video, as the presets did until the eighth session)
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True video-adapter train --data data/sr-mix/train --out runs/sr/sr-48x80 \
  --preset sr-48x80 --model lowres_residual=0 --init checkpoints/sr/sr-48x80 --batch-size 32 --lr 5e-4 --warmup-steps 100 --ema-decay 0.995 \
  --steps 100000 --max-minutes 6.3 --save-every 500 --sample-every 0 --log-every 50 --heldout data/sr-mix/test \
  --heldout-every 500 --heldout-num 256 --cond-drop 0.1 --cache-videos --num-workers 4 --seed 1 --compile
video-adapter export runs/sr/sr-48x80/checkpoint --out runs/sr/sr-48x80-bf16   # shipped as checkpoints/sr/sr-48x80

# the stage alone, at 48x80 from 24x40: 64 test clips per part (egocentric's split has 40), DDIM 50
for d in robot ego broad anim; do
  for a in 0 0.2; do
    python scripts/sr_eval.py --data data/sr-mix/test/$d --stages runs/sr/sr-48x80-bf16 --num 64 --steps 50 \
      --aug-level $a --out docs/results/sr-gpu2/eval48-$d-aug$a
  done
done

# Afterwards on the CPU (2 cores), the shipped stage (checkpoints/sr/sr-48x80 is runs/sr/sr-48x80-bf16) on the same 8
# robot test clips as the sixth session's CPU check (docs/results/sr-gpu/commands.sh), DDIM 25:
for aug in 0.2 0; do
  python scripts/sr_eval.py --data data/sr-robot/test --stages checkpoints/sr/sr-48x80 --num 8 --steps 25 \
    --aug-level $aug --batch-size 8 --device cpu --out docs/results/sr-gpu2/cpu-stage1-robot/aug$aug
done
# each stage started from its upsampled input at cosine time 0.3 or 0.5 instead of pure noise (SDEdit; --start is new)
for s in 0.3 0.5; do
  python scripts/sr_eval.py --data data/sr-robot/test --stages checkpoints/sr/sr-48x80 --num 8 --steps 25 \
    --aug-level 0 --start $s --batch-size 8 --device cpu --out docs/results/sr-gpu2/cpu-sdedit-robot/start$s
done
# both stages (the 96x160 one as the sixth session left it) on the 8 robot test clips (45 minutes of 2 CPU cores)
python scripts/sr_eval.py --data data/sr-robot/test --stages checkpoints/sr/sr-48x80 checkpoints/sr/sr-96x160 \
  --num 8 --steps 25 --batch-size 8 --device cpu --out docs/results/sr-gpu2/cpu-cascade-robot
# the same, each stage started from its upsampled input at t 0.3, with a picture of the first 4 clips
python scripts/sr_eval.py --data data/sr-robot/test --stages checkpoints/sr/sr-48x80 checkpoints/sr/sr-96x160 \
  --num 8 --steps 25 --batch-size 8 --device cpu --start 0.3 --grid 4 --out docs/results/sr-gpu2/cpu-cascade-robot-start0.3
# a picture: 4 robot test clips, rows the real clip, bicubic and the 48x80 stage (--grid is new)
python scripts/sr_eval.py --data data/sr-robot/test --stages checkpoints/sr/sr-48x80 --num 4 --steps 25 \
  --batch-size 4 --device cpu --grid 4 --out docs/results/sr-gpu2/cpu-grid-robot
