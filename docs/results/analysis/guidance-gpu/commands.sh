#!/usr/bin/env bash
# Issue 23, 2026-12-08 (ninth session), one H100 (after nine refused starts): the recipe (CFG Mix w 0.2 from
# log-SNR -2) against Small (S) alone at guidance alpha 1, 2, 3 and 5 (both models guided alike), the shipped
# adapters (robot 3,550 steps, egocentric 2,550) and prior; the headline's 128 conditions and seeds per domain in
# every run, DDIM 100, batch 64. Four runs at a time (the two domains, two alphas each), beside the residual SR
# stages' training (docs/results/sr-gpu3/commands.sh). The alpha-5 runs reproduce the headline tables
# (docs/results/robot, docs/results/egocentric) to the last digit. The captions came from text tables
# (`embed-captions`), since the MiniLM weights were still on their way to the machine.
set -euo pipefail
export HF_HUB_OFFLINE=1
G=docs/results/analysis/guidance-gpu
# the data of every N = 128 table (only the test splits are read here)
[ -d data/robot ] || video-adapter make-data robot --num 5000 --seed 0 --out data/robot
[ -d data/egocentric ] || video-adapter make-data egocentric --num 5000 --seed 0 --out data/egocentric
video-adapter embed-captions --data data/robot --out data/text-robot.safetensors
video-adapter embed-captions --data data/egocentric --out data/text-egocentric.safetensors
guidance() {  # guidance DOMAIN ALPHA
  VIDEO_ADAPTER_TEXT_TABLE=data/text-$1.safetensors video-adapter evaluate --domain data/$1 \
    --prior checkpoints/prior --encoder checkpoints/video-encoder \
    --small-s checkpoints/adapters/$1/small-s/checkpoint --classifier checkpoints/adapters/$1/classifier \
    --num 128 --batch-size 64 --steps 100 --methods small-s cfg-mix --mix 0.2 --mix-min-logsnr -2 \
    --guidance $2 --out $G/$1-alpha$2
}
( guidance robot 1; guidance robot 3 ) & ( guidance robot 2; guidance robot 5 ) &
( guidance egocentric 1; guidance egocentric 3 ) & ( guidance egocentric 2; guidance egocentric 5 ) & wait
# kept in the repo: each run's results.json and table.md, and the qualitative grid at alpha 2
