#!/usr/bin/env bash
# Issue 28 item 2, 2026-12-07 (seventh session), CPU: the downstream test (Figure 10) of the fifth session, re-scored
# on 2,000 new robot-real clips that neither task classifier saw (the shipped checkpoints/adapters/sim2real nets:
# (a) task-sim, trained on sim clips; (b) task-sim+gen, on sim clips plus 1,024 generated real versions).
# make-data splits them 1,800 / 200; both splits are unseen, and each is scored with the paired difference (b) - (a).
set -euo pipefail
video-adapter make-data robot-real --num 2000 --seed 5 --out data/robot-real-s5   # 5 minutes on 1 core
for split in train test; do
  video-adapter score-classifier --classifier checkpoints/adapters/sim2real/task-sim+gen \
    --against checkpoints/adapters/sim2real/task-sim --data data/robot-real-s5/$split --device cpu \
    --out docs/results/sim2real-cpu2/seed5-$split.json
done
