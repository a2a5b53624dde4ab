#!/usr/bin/env bash
# Issue 23: CFG Mix with a band (--mix-min-logsnr -2: the guided adapter alone below log-SNR -2, the mix above), the
# shape of the MSE-optimal weight `diagnose` measured on both domains. The same adapters, 32 conditions, seeds,
# DDIM 25 and alpha 5 as cfgmix-robot-cpu/ and cfgmix-ego-cpu/, so every row pairs with the constant-weight rows there.
# From the repository root, in the project's environment; about 15 minutes a CFG Mix row on 2 cores.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1
D=docs/results/analysis/cfgmix-band-cpu
robot() {  # robot W SWEEP OUT
  VIDEO_ADAPTER_TEXT_TABLE=data/text-robot.safetensors video-adapter evaluate --guidance 5 --domain data/robot \
    --prior checkpoints/prior --small-s checkpoints/adapters/robot/small-s/checkpoint \
    --classifier checkpoints/adapters/robot/classifier --metrics fvd-va accuracy --num 32 --batch-size 16 \
    --sampler ddim --steps 25 --device cpu --prior-strength 0.1 --gamma-sweep --methods small-s cfg-mix \
    --mix $1 --mix-min-logsnr -2 --mix-sweep $2 --out $3
}
robot 0.5 0.3 $D/robot-a
robot 0.1 0.2 $D/robot-b
VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors video-adapter evaluate --guidance 5 --domain data/egocentric \
  --prior checkpoints/prior --small-s checkpoints/adapters/egocentric/small-s/checkpoint \
  --classifier checkpoints/adapters/egocentric/classifier --metrics fvd-va --num 32 --batch-size 16 \
  --sampler ddim --steps 25 --device cpu --gamma-sweep --methods small-s cfg-mix --mix 0.5 --mix-min-logsnr -2 \
  --mix-sweep 0.3 --out $D/ego
# w 0.2 from log-SNR -2 on egocentric, the setting the README names:
VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors video-adapter evaluate --guidance 5 --domain data/egocentric \
  --prior checkpoints/prior --small-s checkpoints/adapters/egocentric/small-s/checkpoint \
  --classifier checkpoints/adapters/egocentric/classifier --metrics fvd-va --num 32 --batch-size 16 \
  --sampler ddim --steps 25 --device cpu --gamma-sweep --methods small-s cfg-mix --mix 0.2 --mix-min-logsnr -2 \
  --out $D/ego-w0.2
# the same at N = 64 (its first 32 conditions and seeds are the run above's; 25 minutes on 2 cores):
VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors video-adapter evaluate --guidance 5 --domain data/egocentric \
  --prior checkpoints/prior --small-s checkpoints/adapters/egocentric/small-s/checkpoint \
  --classifier checkpoints/adapters/egocentric/classifier --metrics fvd-va --num 64 --batch-size 16 \
  --sampler ddim --steps 25 --device cpu --gamma-sweep --methods small-s cfg-mix --mix 0.2 --mix-min-logsnr -2 \
  --out $D/ego-w0.2-n64
