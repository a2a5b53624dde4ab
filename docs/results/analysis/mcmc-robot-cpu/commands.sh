#!/usr/bin/env bash
# Issue 23 item 2c on the CPU: does ULA between noise levels (Reduce, Reuse, Recycle) change what the prior does to
# the robot adapter? The shipped Small (S) (1,600 steps), the shipped prior, normalized composition at gamma 0.1;
# N = 32 test conditions, DDIM 25, alpha 5, the same seeds for every row; each sampler's rows paired within its run.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1  # from the repository root, in the project's environment
R=runs/mcmc-cpu; date
[ -d data/robot ] || video-adapter make-data robot --out data/robot --num 5000 --seed 0
A="--domain data/robot --prior checkpoints/prior --small-s checkpoints/adapters/robot/small-s/checkpoint
   --classifier checkpoints/adapters/robot/classifier --metrics fvd-va accuracy --num 32 --batch-size 16
   --sampler ddim --steps 25 --device cpu --prior-strength 0.1 --gamma-sweep --methods small-s small-s+prior"
video-adapter evaluate --guidance 5 $A --out $R/eval-ddim25; date
video-adapter evaluate --guidance 5 $A --mcmc ula --mcmc-steps 2 --out $R/eval-ddim25-ula2; date
