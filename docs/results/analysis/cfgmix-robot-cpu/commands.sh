#!/usr/bin/env bash
# Issue 23: does CFG Mix (the product of the two guided experts, exponents summing to 1) cost robot, where the prior
# is far worse than the adapter? The shipped 1,600-step Small (S), the same 32 conditions and seeds as mcmc-robot-cpu.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1  # from the repository root, in the project's environment
R=runs/cfgmix-robot-cpu; date
video-adapter evaluate --guidance 5 --domain data/robot --prior checkpoints/prior --small-s checkpoints/adapters/robot/small-s/checkpoint \
  --classifier checkpoints/adapters/robot/classifier --metrics fvd-va accuracy --num 32 --batch-size 16 \
  --sampler ddim --steps 25 --device cpu --prior-strength 0.1 --gamma-sweep --methods small-s cfg-mix --mix 0.1 \
  --mix-sweep 0.3 --out $R/eval; date
# The diagnosis with CFG Mix (diagnose-s/), the first 32 held-out clips:
VIDEO_ADAPTER_TEXT_TABLE=data/text-robot.safetensors video-adapter diagnose \
  --adapter checkpoints/adapters/robot/small-s/checkpoint --prior checkpoints/prior --data data/robot --num 32 \
  --batch-size 16 --guidance 5 --gammas 0.1 0.2 0.5 --compositions normalized cfg-mix --compose-in eps --device cpu \
  --out $R/diagnose-s
