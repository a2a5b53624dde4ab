#!/usr/bin/env bash
# Issue 28 item 3, 2026-12-07 (eighth session), 2 CPU cores (the GPU could not be had): the residual SR stage
# (lowres_residual 0.2, the presets' form since this session) against the same stage denoising the video itself
# (lowres_residual 0, the form of the shipped stages), trained alike on the CPU at a quarter of the 48x80 stage's
# size: 12x20 -> 24x40 on the robot training clips, the sr-48x80 preset narrowed to 16 base channels and one residual
# block, 400 steps of 8, the same seed, data order and noise. Scored like the GPU stages (scripts/sr_eval.py, no
# noise augmentation, DDIM 25) on 64 robot and 64 egocentric test clips (egocentric never seen in training).
set -euo pipefail
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
D=docs/results/sr-cpu-residual; R=runs/sr-ab
model=(height=24 width=40 base_channels=16 num_res_blocks=1 "attention_resolutions=[6]" emb_dim=64)
train() {  # train OUT [extra --model fields]
  local out=$1; shift
  video-adapter train --data data/robot/train --out $out --preset sr-48x80 --model "${model[@]}" "$@" \
    --batch-size 8 --lr 5e-4 --warmup-steps 50 --ema-decay 0.99 --steps 400 --save-every 200 --sample-every 0 \
    --log-every 20 --heldout data/robot/test --heldout-every 200 --heldout-num 64 --cond-drop 0.1 --num-workers 1 \
    --cache-videos --seed 0
}
train $R/residual & train $R/video lowres_residual=0.0 & wait
for form in residual video; do
  for d in robot egocentric; do
    python scripts/sr_eval.py --data data/$d/test --stages $R/$form/checkpoint --num 64 --steps 25 --aug-level 0 \
      --batch-size 16 --device cpu --grid 4 --out $D/$form-$d
  done
done
# the residual stage at the cascade's default noise augmentation level (0.2) instead of none
python scripts/sr_eval.py --data data/robot/test --stages $R/residual/checkpoint --num 64 --steps 25 --aug-level 0.2 \
  --batch-size 16 --device cpu --out $D/residual-robot-aug0.2

# the scale 0.2 of the sr-* presets: the detail's spread against the video's, on the first 64 training clips of each
# part of the SR data (make-data KIND --size 96x160 --seed 11: broad-procedural 2,000, animation 600, robot 800,
# egocentric 400, as docs/results/sr-gpu/commands.sh makes them at other counts), into detail_std.txt
python - data/sr-broad/train data/sr-anim/train data/sr-robot/train data/sr-ego/train > $D/detail_std.txt <<'PY'
# the SR detail's spread: std of (video - lowres_condition(video, 2)) against the video's, at 48x80 and 96x160
import sys
import torch
from video_adapter.data.dataset import VideoFolderDataset
from video_adapter.maths.conditioning import lowres_condition, resize_video
for folder in sys.argv[1:]:
    clips = VideoFolderDataset(folder, frames=16, size=(96, 160), random_crop=False, progress=False)
    video = torch.stack([clips[i]["video"] for i in range(min(64, len(clips)))])
    for size in ((48, 80), (96, 160)):
        x = resize_video(video, size, "area")
        print(f"{folder} {size[0]}x{size[1]}: video std {x.std():.3f}, detail std {(x - lowres_condition(x, 2)).std():.3f}")
PY
