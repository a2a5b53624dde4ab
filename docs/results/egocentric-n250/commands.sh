#!/usr/bin/env bash
# Issue 23, 2026-12-07 (fourth session), one H100: the egocentric headline at N = 250 (the largest N that leaves 250
# other test clips for the Real row), with the shipped 1,450-step Small (S) as it is in checkpoints/adapters (not
# resumed: the session's device time went to refused starts). The same rows and settings as the N = 128 headline,
# without the weight sweep: Small (S), the recipe (CFG Mix w 0.2 from log-SNR -2), Algorithm 1 (normalized, gamma
# 0.2) and the prior; DDIM 100, alpha 5, batch 64. 4.5 minutes on the GPU, shared with the stylisation run.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1
git checkout 3fe09c2 -- checkpoints/adapters/egocentric/small-s  # the 1,450-step adapter (later sessions resumed it)
mkdir -p runs/egocentric && cp -a checkpoints/adapters/egocentric/. runs/egocentric/
VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors video-adapter evaluate --guidance 5 --domain data/egocentric \
  --prior checkpoints/prior --encoder checkpoints/video-encoder --classifier runs/egocentric/classifier \
  --small-s runs/egocentric/small-s/checkpoint --methods small-s cfg-mix small-s+prior prior --prior-strength 0.2 \
  --gamma-sweep --num 250 --batch-size 64 --steps 100 --out docs/results/egocentric-n250
