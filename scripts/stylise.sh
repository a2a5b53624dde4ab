#!/usr/bin/env bash
# Issue 28 on the GPU: stylisation on animation, sim-to-real on robot / robot-real, and the super-resolution stages.
# Not yet run; every number goes into docs/results.md when it has been. Each stage skips itself when its output
# exists, and the trainings resume (the same command continues a run cut off by MINUTES).
#
#   DATA=data RUN=runs/issue28 MINUTES=20 scripts/stylise.sh --num 128 --batch-size 64
#
# Needs: $DATA/{animation,robot,robot-real,egocentric,broad} from make-data at 24x40, and $DATA/sr-{48x80,96x160}
# (make-data broad --size HxW: the generators render at the larger sizes). Extra arguments go to every evaluate.
# STAGES="train" stops after the trainings; STAGES="sr" runs only the super-resolution stages.
set -euo pipefail
D=${DATA:?set DATA to the folder of make-data datasets}; R=${RUN:?set RUN to an output folder}
PRIOR=${PRIOR:-checkpoints/prior}; ENCODER=${ENCODER:-checkpoints/video-encoder}; MINUTES=${MINUTES:-20}
BATCH=${BATCH:-256}; STAGES=${STAGES:-all}; GAMMAS=${GAMMAS:-0 0.1 0.2 0.4 0.8}; MIXES=${MIXES:-0 0.25 0.5 0.75 1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
va="python3 -m video_adapter"
done_() { [ -f "$1/checkpoint/config.json" ] || [ -f "$1/config.json" ]; }
train() {  # train RUN_DIR PRESET DATA [extra flags]: resumes; edges dropped half the time (the adapter needs both)
  local out=$1 preset=$2 data=$3; shift 3
  $va train --data "$data" --out "$out" --preset "$preset" --batch-size "$BATCH" --lr 1e-3 --warmup-steps 200 \
      --steps 100000 --max-minutes "$MINUTES" --save-every 1000 --sample-every 0 --cache-videos --num-workers 2 \
      --seed 0 "$@"
}
edge_adapter() { train "$1" small-s "$2" --model first_frame_cond=false edge_cond=true --edges-drop 0.5; }

if [ "$STAGES" != sr ]; then
  # 1. adapters: animation (stylisation), robot = sim and robot-real (sim-to-real, unpaired), edge-conditioned
  edge_adapter "$R/animation-s" "$D/animation/train" &
  edge_adapter "$R/sim-s" "$D/robot/train" &
  edge_adapter "$R/real-s" "$D/robot-real/train" &
  # 2. domain classifiers: toon versus not, real versus sim (metrics.style), and the robot task classifier
  done_ "$R/toon-classifier" || $va train-video-net --objective domain --out "$R/toon-classifier" --steps 5000 \
      --classes toon="$D/animation/train" other="$D/robot/train" other="$D/egocentric/train" other="$D/broad/train" &
  done_ "$R/real-classifier" || $va train-video-net --objective domain --out "$R/real-classifier" --steps 5000 \
      --classes real="$D/robot-real/train" sim="$D/robot/train" &
  done_ "$R/robot-task" || $va train-video-net --objective caption --data "$D/robot/train" --out "$R/robot-task" \
      --steps 5000 &
  wait
fi
[ "$STAGES" = train ] && exit 0

if [ "$STAGES" != sr ]; then
  # 3. stylisation: edges of held-out clips of other domains, animation adapter + prior; Figure 6's two sweeps
  for src in robot egocentric broad; do
    out="$R/eval/stylise-$src"
    [ -f "$out/results.json" ] || $va evaluate --domain "$D/$src" --prior "$PRIOR" --small-s "$R/animation-s/checkpoint" \
        --condition edges --methods small-s small-s+prior prior cfg-mix --gamma-sweep $GAMMAS --mix-sweep $MIXES \
        --metrics style edge-fidelity --style-classifier "$R/toon-classifier" --style-label toon --out "$out" "$@"
  done
  # FVD-VA against the animation test set: the same samples scored against animation clips need a real set other
  # than the conditions' domain (evaluate scores against --domain's test split); see docs/results.md
  # 4. sim-to-real: from the edges of held-out sim clips, the real adapter with the prior; realness, edge fidelity,
  #    FVD-VA against robot-real (the sim adapter's rows are the paired sim videos)
  for side in real sim; do
    out="$R/eval/sim2real-$side"
    [ -f "$out/results.json" ] || $va evaluate --domain "$D/robot" --prior "$PRIOR" --small-s "$R/$side-s/checkpoint" \
        --condition edges --methods small-s small-s+prior prior --gamma-sweep $GAMMAS --metrics style edge-fidelity \
        --style-classifier "$R/real-classifier" --style-label real --out "$out" "$@"
  done
fi

# 5. super-resolution stages 24x40 -> 48x80 -> 96x160, then PSNR / SSIM against bicubic on held-out clips
train "$R/sr-48x80" sr-48x80 "$D/sr-48x80/train" --cond-drop 0.1
train "$R/sr-96x160" sr-96x160 "$D/sr-96x160/train" --cond-drop 0.1 --batch-size $((BATCH / 4))
python3 scripts/sr_eval.py --data "$D/sr-96x160/test" --stages "$R/sr-48x80/checkpoint" "$R/sr-96x160/checkpoint" \
    --num 128 --steps 50 --out "$R/eval/sr"
