#!/usr/bin/env bash
# Trains our prior (checkpoints/prior, model card there): preset "prior" on the broad corpus, half of every batch
# from pre-rendered pybullet clips (`video-adapter make-data broad-bullet --out DIR`) and half from procedural clips
# made on the fly. Each run trains for --max-minutes and saves; running it again continues exactly where it stopped.
#
#   DATA=data/broad-bullet/train RUN=runs/prior scripts/train_prior.sh --max-minutes 9
#
# Continuing the shipped prior in a new session (weights only: its optimizer state is not shipped), annealed:
#
#   DATA=... RUN=runs/prior10 scripts/train_prior.sh --init checkpoints/prior --seed 8 --steps 3000 \
#       --warmup-steps 150 --lr-decay cosine --lr-end 2e-6 --ema-decay 0.999 --max-minutes 13.5 --sample-every 0
#
# --max-minutes counts from the start, torch.compile's warm-up included (2.6-3 min on a fresh machine): 3,000 steps
# at ~4.7 steps/s take 10.6 minutes more.
#
# GPUS=N runs it under `accelerate launch` on N GPUs of one machine (DDP), the same script and config: --batch-size
# is per process, so N GPUs take N x 128 clips a step, and loss.csv's samples_per_s counts all of them. A run
# resumes with the GPU count it started with; change it by starting a new run from the weights with --init.
set -euo pipefail
# PyTorch's default of a thread per core in each of 14 DataLoader workers oversubscribes the CPU (runs 4-6 used 3).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-3}"
accelerate launch --num_processes "${GPUS:-1}" --num_machines 1 --dynamo_backend no -m video_adapter train --data "${DATA:?set DATA to a folder of broad-bullet clips}" \
    --stream broad-procedural --stream-share 0.5 --out "${RUN:-runs/prior}" --preset prior --text-encoder minilm \
    --batch-size 128 --lr 2e-4 --warmup-steps 500 --ema-decay 0.9995 --steps 100000 \
    --cond-drop 0.1 --first-frame-drop 0.5 --edges-drop 0.7 \
    --compile --num-workers 7 --cache-videos --log-every 20 --save-every 1000 --sample-every 1000 --seed 0 "$@"
