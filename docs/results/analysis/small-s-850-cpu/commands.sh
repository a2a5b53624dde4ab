set -e
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
A="--domain data/robot --prior checkpoints/prior --small-s checkpoints/adapters/robot/small-s/checkpoint --classifier checkpoints/adapters/robot/classifier --num 48 --batch-size 16 --sampler ddim --steps 25 --device cpu"
HF_HUB_OFFLINE=1 video-adapter evaluate --guidance 5 $A --methods small-s small-s+prior --composition normalized --gamma-sweep --out runs/cpu850/eval-normalized
HF_HUB_OFFLINE=1 video-adapter evaluate --guidance 5 $A --methods small-s+prior --composition normalized --min-logsnr 0 --prior-strength 0.2 --gamma-sweep 0.4 --out runs/cpu850/eval-band
