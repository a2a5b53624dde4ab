set -e
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
A="--domain data/robot --prior checkpoints/prior --small-l checkpoints/adapters/robot/small-l/checkpoint --classifier checkpoints/adapters/robot/classifier --num 48 --batch-size 16 --sampler ddim --steps 25 --device cpu"
HF_HUB_OFFLINE=1 video-adapter evaluate --guidance 5 $A --methods small-l small-l+prior --composition normalized --gamma-sweep --out runs/cpu650l/eval-normalized
HF_HUB_OFFLINE=1 video-adapter evaluate --guidance 5 $A --methods small-l+prior --composition paper --gamma-sweep --out runs/cpu650l/eval-paper
