#!/usr/bin/env bash
# Issue 28 item 1 on the CPU, at the demo's scale: an edge-conditioned Small (S) on animation (400 steps of 8),
# composed with the shipped prior on the edges of held-out robot clips; Video Adapter's gamma sweep against CFG Mix's
# weight sweep, scored by a toon-versus-not classifier and edge fidelity. N = 32, DDIM 25, the same seeds everywhere.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1  # from the repository root, in the project's environment
R=runs/stylise-cpu; date
[ -f data/animation/data_card.json ] || video-adapter make-data animation --out data/animation --num 1000 --seed 0
[ -d data/robot ] || video-adapter make-data robot --out data/robot --num 5000 --seed 0
[ -d data/egocentric ] || video-adapter make-data egocentric --out data/egocentric --num 5000 --seed 0
[ -d data/bb4 ] || video-adapter make-data broad-bullet --out data/bb4 --num 700 --seed 4
date
[ -f $R/animation-s/checkpoint/config.json ] || video-adapter train --data data/animation/train --out $R/animation-s \
  --preset small-s --model first_frame_cond=false edge_cond=true --edges-drop 0.5 --steps 400 --batch-size 8 --lr 1e-3 \
  --warmup-steps 40 --sample-every 0 --save-every 400 --num-workers 0 --cache-videos --seed 0
date
[ -f $R/toon-classifier/config.json ] || video-adapter train-video-net --objective domain --out $R/toon-classifier \
  --steps 300 --batch-size 32 --num-workers 1 --classes toon=data/animation/train other=data/robot/train \
  other=data/egocentric/train other=data/bb4/train
date
video-adapter evaluate --guidance 5 --domain data/robot --prior checkpoints/prior --small-s $R/animation-s/checkpoint --condition edges \
  --methods small-s small-s+prior prior cfg-mix --prior-strength 0.4 --gamma-sweep 0.1 0.8 --mix 0.5 --mix-sweep 0.25 0.75 \
  --metrics style edge-fidelity --style-classifier $R/toon-classifier --style-label toon --num 32 --batch-size 16 \
  --sampler ddim --steps 25 --device cpu --out $R/eval-robot
date
# One pair of samples at gamma 0.4, static x0 clipping against dynamic thresholding (not scored): the last frames
# gamma0.4-static-clip.png and gamma0.4-dynamic-threshold.png
V=$(ls data/robot/test/*.mp4 | head -1)
for dt in 0 0.995; do
  video-adapter sample --guidance 5 --adapter $R/animation-s/checkpoint --prior checkpoints/prior --prompt "slide the pink block backward" \
    --edges-from $V --num 2 --prior-strength 0.4 --composition normalized --sampler ddim --steps 25 --dynamic-threshold $dt \
    --compare --out $R/g0.4-dt$dt.gif --device cpu
done
