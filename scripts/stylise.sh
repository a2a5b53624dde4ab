#!/usr/bin/env bash
# Issue 28 on the GPU: stylisation on animation, sim-to-real on robot / robot-real, and the super-resolution stages.
# Not yet run; every number goes into docs/results.md when it has been. Each stage skips itself when its output
# exists, and the trainings resume (the same command continues a run cut off by MINUTES).
#
#   DATA=data RUN=runs/issue28 MINUTES=20 scripts/stylise.sh --num 128 --batch-size 64
#
# Needs: $DATA/{animation,robot,robot-real,egocentric,broad} from make-data at 24x40, and $DATA/sr-mix: clips at
# 96x160 (make-data KIND --size 96x160, merged by scripts/merge_datasets.py; docs/results/sr-gpu/commands.sh).
# Extra arguments go to every evaluate.
# STAGES="train" stops after the trainings; STAGES="sr" runs only the super-resolution stages. DOWN_NUM sim train clips
# get generated real versions for the downstream test, and augmented ones, one per STYLES="suffix;..." entry (the
# prior's captions end in it); REWRITES="old=>new;..." merges synonymous task captions.
set -euo pipefail
D=${DATA:?set DATA to the folder of make-data datasets}; R=${RUN:?set RUN to an output folder}
PRIOR=${PRIOR:-checkpoints/prior}; ENCODER=${ENCODER:-checkpoints/video-encoder}; MINUTES=${MINUTES:-20}
BATCH=${BATCH:-256}; STAGES=${STAGES:-all}; GAMMAS=${GAMMAS:-0 0.1 0.2 0.4 0.8}; MIXES=${MIXES:-0 0.25 0.5 0.75 1}
DOWN_NUM=${DOWN_NUM:-1024}; STYLES=${STYLES-, at night;, in the snow}
classifier_args=()
if [ -n "${REWRITES:-}" ]; then
  IFS=';' read -r -a rw <<< "$REWRITES"; classifier_args=(--caption-rewrites "${rw[@]}")
fi
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
# task_net OUT FOLDER...: the robot task classifier, the same recipe whatever it trains on (the downstream test's
# arms differ only in their data, at the same number of steps)
task_net() { local out=$1; shift; done_ "$out" || $va train-video-net --objective caption --out "$out" --steps 5000 \
    "${classifier_args[@]}" --data "$@"; }

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
  task_net "$R/robot-task" "$D/robot/train" &  # the downstream test's arm (a): sim clips only
  wait
fi
[ "$STAGES" = train ] && exit 0

if [ "$STAGES" != sr ]; then
  # 3. stylisation: edges of held-out clips of other domains, animation adapter + prior; Figure 6's two sweeps
  for src in robot egocentric broad; do
    out="$R/eval/stylise-$src"
    [ -f "$out/results.json" ] || $va evaluate --domain "$D/$src" --prior "$PRIOR" --small-s "$R/animation-s/checkpoint" \
        --condition edges --methods small-s small-s+prior prior cfg-mix --gamma-sweep $GAMMAS --mix-sweep $MIXES \
        --metrics style edge-fidelity fvd-va --real "$D/animation" --style-classifier "$R/toon-classifier" \
        --style-label toon --out "$out" "$@"  # FVD-VA against the animation test set
  done
  # 4. sim-to-real: from the edges of held-out sim clips, the real adapter with the prior; realness, edge fidelity,
  #    FVD-VA against robot-real (the sim adapter's rows are the paired sim videos)
  for side in real sim; do
    out="$R/eval/sim2real-$side"
    [ -f "$out/results.json" ] || $va evaluate --domain "$D/robot" --prior "$PRIOR" --small-s "$R/$side-s/checkpoint" \
        --condition edges --methods small-s small-s+prior prior --gamma-sweep $GAMMAS \
        --metrics style edge-fidelity fvd-va --real "$D/robot-real" --style-classifier "$R/real-classifier" \
        --style-label real --out "$out" "$@"
  done
  # 5. the downstream test (Figure 10): real versions of the first DOWN_NUM sim TRAIN clips, from their edges and
  #    captions by the real adapter with the prior (a folder without test/ is evaluate's condition set), saved as a
  #    training folder; the task classifier trained on (a) sim clips only and (b) sim clips plus those, each scored
  #    on robot-real test clips with a bootstrap interval. The paper's augmented versions: the same edges and seeds
  #    with the prior asked for another style (--prior-prompt-suffix), the real adapter keeping the clip's caption;
  #    their captions.jsonl keep it too, the task label. (Under VIDEO_ADAPTER_TEXT_TABLE the table must hold the
  #    styled captions: embed-captions --data "$D/robot" --prompt-suffix ", at night" ", in the snow" ...)
  IFS=';' read -r -a styles <<< "$STYLES"
  sets=()
  for i in "" "${!styles[@]}"; do  # "": the plain real versions; then one set per style
    gen="$R/samples/sim2real-train${i:+-style$i}"
    [ -f "$gen/small-s_prior/captions.jsonl" ] || $va evaluate --domain "$D/robot/train" --prior "$PRIOR" \
        --small-s "$R/real-s/checkpoint" --condition edges --methods small-s+prior --gamma-sweep \
        --metrics style edge-fidelity --style-classifier "$R/real-classifier" --style-label real \
        --prior-prompt-suffix "${i:+${styles[$i]}}" --out "$R/eval/sim2real-train${i:+-style$i}" "$@" \
        --num "$DOWN_NUM" --save-samples "$gen"
    sets+=("$gen/small-s_prior")
  done
  task_net "$R/robot-task-sim+real" "$D/robot/train" "${sets[@]}"  # arm (b): sim, real and augmented
  for task in robot-task robot-task-sim+real; do
    [ -f "$R/eval/downstream-$task.json" ] || $va score-classifier --classifier "$R/$task" \
        --data "$D/robot-real/test" --out "$R/eval/downstream-$task.json"
  done
  # arm (b) minus arm (a) on the same real clips: the paired difference and its interval
  [ -f "$R/eval/downstream-paired.json" ] || $va score-classifier --classifier "$R/robot-task-sim+real" \
      --against "$R/robot-task" --data "$D/robot-real/test" --out "$R/eval/downstream-paired.json"
fi

# 6. super-resolution stages 24x40 -> 48x80 -> 96x160, then PSNR / SSIM against bicubic on held-out clips
# (both read the 96x160 clips, the 48x80 stage averaged down; at batch 64 the 48x80 stage alone takes 50 GB)
train "$R/sr-48x80" sr-48x80 "$D/sr-mix/train" --cond-drop 0.1 --batch-size $((BATCH / 8))
train "$R/sr-96x160" sr-96x160 "$D/sr-mix/train" --cond-drop 0.1 --batch-size $((BATCH / 16))
for part in "$D"/sr-mix/test/*/; do  # per part: the merged split lists its parts one after another
  python3 scripts/sr_eval.py --data "$part" --stages "$R/sr-48x80/checkpoint" "$R/sr-96x160/checkpoint" \
      --num 64 --steps 50 --out "$R/eval/sr-$(basename "$part")"
done
