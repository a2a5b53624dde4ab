#!/usr/bin/env bash
# Issue 23, 2026-12-07 (one H100, the last 6 of the session's device minutes; 12 starts failed before it): CFG Mix
# with its band on robot at N = 128, the shipped 1,600-step Small (S), the same 128 conditions and seeds as every
# robot N = 128 table (DDIM 100, alpha 5, batch 64). Wall time: 2.5 minutes.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1 VIDEO_ADAPTER_TEXT_TABLE=data/text-robot.safetensors
video-adapter evaluate --guidance 5 --domain data/robot --prior checkpoints/prior --encoder checkpoints/video-encoder \
  --classifier checkpoints/adapters/robot/classifier --small-s checkpoints/adapters/robot/small-s/checkpoint \
  --num 128 --batch-size 64 --steps 100 --methods small-s cfg-mix prior --mix 0.2 --mix-min-logsnr -2 \
  --mix-sweep 0.1 --gamma-sweep --out docs/results/analysis/cfgmix-band-gpu-robot/eval-cfg-mix-band
