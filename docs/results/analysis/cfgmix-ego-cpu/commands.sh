#!/usr/bin/env bash
# Issue 23: CFG Mix on egocentric on the CPU, at two weights, with the GPU-trained 500-step Small (S); N = 32, DDIM 25.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1 VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors
R=runs/cfgmix-ego-cpu; date
video-adapter evaluate --guidance 5 --domain data/egocentric --prior checkpoints/prior --small-s checkpoints/adapters/egocentric/small-s/checkpoint \
  --classifier checkpoints/adapters/egocentric/classifier --metrics fvd-va --num 32 --batch-size 16 \
  --sampler ddim --steps 25 --device cpu --gamma-sweep --methods small-s cfg-mix --mix 0.5 --mix-sweep 0.25 --out $R/eval; date
