#!/usr/bin/env bash
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
# The first GPU hold of issue 23's egocentric domain (2026-12-07, one H100; 13 minutes of the session's 30 went on
# machines that would not start). One detached chain; the clips (make-data egocentric --num 5000 --seed 0, rendered
# here with pybullet) and the caption table travelled as uploads. Small (S) trained alone on the GPU (beside the
# caption classifier); the three evaluations and the diagnosis then shared it. Small (L) was started beside them and
# stopped at step 93 to give them the GPU; the 1,000-step DDPM row did not finish in the device time.
export VIDEO_ADAPTER_TEXT_TABLE=data/text-egocentric.safetensors  # video-adapter embed-captions --data data/egocentric --out ...
va="python3 -m video_adapter"; E=data/egocentric; R=runs/egocentric
$va train-video-net --data $E/train --objective caption --out $R/classifier --steps 1500 --batch-size 128 \
  --num-workers 2 --lr 2e-3 &
$va train --data $E/train --out $R/small-s --preset small-s --batch-size 256 --lr 1e-3 --warmup-steps 200 \
  --ema-decay 0.999 --steps 100000 --max-minutes 3 --save-every 500 --sample-every 0 --log-every 50 --heldout $E/test \
  --heldout-every 250 --heldout-num 128 --cache-videos --num-workers 4 --seed 0   # -> step 500
wait
ev() {  # ev OUT [flags]: N = 128, batch 64, DDIM 100, the same seeds for every method
  local out=$1; shift
  $va evaluate --guidance 5 --domain $E --prior checkpoints/prior --encoder checkpoints/video-encoder --classifier $R/classifier \
    --small-s $R/small-s/checkpoint --num 128 --batch-size 64 --steps 100 --out $out "$@"
}
(ev $R/eval-normalized --methods small-s small-s+prior cfg-mix prior --prior-strength 0.2 --gamma-sweep 0.1 0.4
 ev $R/eval-paper --composition paper --methods small-s+prior --prior-strength 0.2 --gamma-sweep 0.1 0.4) &
(ev $R/eval-alpha1 --guidance 1 --methods small-s small-s+prior prior --prior-strength 0.25 --gamma-sweep 0.5 0.75
 $va diagnose --adapter $R/small-s/checkpoint --prior checkpoints/prior --data $E --num 128 --batch-size 64 \
   --out $R/diagnose-s) &
wait
# The adapter and classifier are kept in checkpoints/adapters/egocentric (with the optimizer state): resume with
#   mkdir -p runs/egocentric && cp -a checkpoints/adapters/egocentric/. runs/egocentric/  and the same train command.
# On the CPU afterwards: the diagnosis with CFG Mix (diagnose-s-cfgmix-cpu/), the first 32 held-out clips
#   video-adapter diagnose --adapter checkpoints/adapters/egocentric/small-s/checkpoint --prior checkpoints/prior \
#     --data data/egocentric --num 32 --batch-size 16 --guidance 5 --gammas 0.1 0.2 0.5 \
#     --compositions normalized cfg-mix --compose-in eps --device cpu --out diagnose-s-cfgmix-cpu
