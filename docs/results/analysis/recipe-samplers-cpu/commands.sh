#!/usr/bin/env bash
# Issue 23 (c), on the CPU: does the recipe's gain depend on the sampler? The demo and the README's quick start
# sample with DPM-Solver++(2M) at 25 steps; the GPU tables used DDIM 100. Robot, the shipped 2,450-step Small (S),
# 32 conditions with the same seeds for every row, evaluate's defaults (the recipe: CFG Mix w 0.2 from log-SNR -2).
# From the repository root, in the project's environment; about 15 minutes a run on 2 cores.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1 VIDEO_ADAPTER_TEXT_TABLE=data/text-robot.safetensors
D=docs/results/analysis/recipe-samplers-cpu
robot() {  # robot SAMPLER OUT
  video-adapter evaluate --guidance 5 --domain data/robot --prior checkpoints/prior \
    --small-s checkpoints/adapters/robot/small-s/checkpoint --classifier checkpoints/adapters/robot/classifier \
    --metrics fvd-va accuracy --num 32 --batch-size 16 --sampler $1 --steps 25 --device cpu --gamma-sweep \
    --methods small-s cfg-mix prior --out $2
}
robot ddim $D/robot-ddim25
robot dpmpp-2m $D/robot-dpmpp25
# egocentric with the demo's sampler (the shipped 1,450-step Small (S))
VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors video-adapter evaluate --guidance 5 --domain data/egocentric \
  --prior checkpoints/prior --small-s checkpoints/adapters/egocentric/small-s/checkpoint \
  --classifier checkpoints/adapters/egocentric/classifier --metrics fvd-va accuracy --num 32 --batch-size 16 \
  --sampler dpmpp-2m --steps 25 --device cpu --gamma-sweep --methods small-s cfg-mix prior --out $D/ego-dpmpp25
