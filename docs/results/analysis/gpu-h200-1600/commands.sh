#!/usr/bin/env bash
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
# The third GPU hold of 2026-12-06 (one H200, about 14 minutes held): robot only. What ran, in one detached chain
# (from device-plan.sh of that session; egocentric was planned too but its generator needs pybullet, which the GPU
# machine lacks, and its 64 MB of clips did not fit the device time left). Every process shared the GPU at once.
export VIDEO_ADAPTER_TEXT_TABLE=data/text-robot.safetensors   # video-adapter embed-captions --data data/robot --out ...
va="python3 -m video_adapter"
train() {  # train OUT PRESET DATA MINUTES [BATCH]: constant lr after warmup, EMA, held-out curve every 1000 steps
  $va train --data "$3" --out "$1" --preset "$2" --batch-size "${5:-64}" --lr 1e-3 --warmup-steps 200 --ema-decay 0.999 \
    --steps 100000 --max-minutes "$4" --save-every 1000 --sample-every 0 --log-every 100 --heldout data/robot/test \
    --heldout-every 1000 --heldout-num 128 --cache-videos --num-workers 2 --seed 0
}
subset() {  # subset N: the first N training clips as a folder of links, with their captions
  local dir=runs/robot/data-$1; mkdir -p $dir
  head -n $1 data/robot/train/captions.jsonl > $dir/captions.jsonl
  python3 -c "import json,os,sys; [os.symlink(os.path.abspath(os.path.join('data/robot/train', json.loads(l)['video'])), os.path.join(sys.argv[1], json.loads(l)['video'])) for l in open(sys.argv[1]+'/captions.jsonl')]" $dir
}
ev() {  # ev OUT [flags]: N = 128, batch 64, DDIM 100, alpha 5, gamma 0.1, the same seeds for every method
  local out=$1; shift
  $va evaluate --guidance 5 --domain data/robot --prior checkpoints/prior --encoder checkpoints/video-encoder \
    --classifier runs/robot/classifier --num 128 --batch-size 64 --steps 100 --out "$out" "$@"
}
mkdir -p runs/robot && cp -a checkpoints/adapters/robot/. runs/robot/   # resumes Small (S) at 850, Small (L) at 650
for n in 50 200 1000; do subset $n; done
train runs/robot/small-s small-s data/robot/train 5 &    # -> step 1600
train runs/robot/small-l small-l data/robot/train 5 &    # -> step 1300
(train runs/robot/small-s-50 small-s runs/robot/data-50 3 32        # 50 clips are fewer than one batch of 64
 ev runs/robot/eval-size-50 --small-s runs/robot/small-s-50/checkpoint --methods small-s small-s+prior --gamma-sweep 0.2 0.4
 ev runs/robot/eval-size-50-paper --composition paper --small-s runs/robot/small-s-50/checkpoint --methods small-s+prior --gamma-sweep) &
for n in 200 1000; do
  (train runs/robot/small-s-$n small-s runs/robot/data-$n $([ $n = 200 ] && echo 3 || echo 4)
   ev runs/robot/eval-size-$n --small-s runs/robot/small-s-$n/checkpoint --methods small-s small-s+prior --gamma-sweep 0.2 0.4
   ev runs/robot/eval-size-$n-paper --composition paper --small-s runs/robot/small-s-$n/checkpoint --methods small-s+prior --gamma-sweep) &
done
wait
R="--small-s runs/robot/small-s/checkpoint --small-l runs/robot/small-l/checkpoint"
ev runs/robot/eval-normalized $R --methods small-s small-s+prior small-l small-l+prior prior --gamma-sweep 0.05 0.2
ev runs/robot/eval-paper $R --composition paper --methods small-s+prior small-l+prior --gamma-sweep 0.05 0.2
$va diagnose --adapter runs/robot/small-s/checkpoint --prior checkpoints/prior --data data/robot --num 128 --batch-size 64 \
  --out runs/robot/diagnose-s
