#!/usr/bin/env bash
# The evidence for one domain (docs/analysis.md, docs/results.md): Small (S) and Small (L) adapters trained with a
# held-out loss curve, the domain's caption classifier, adapters on subsets of the training clips, then the
# diagnosis (`video-adapter diagnose`) and the evaluation of the paper's Algorithm 1 and its normalized form, each
# with a gamma sweep, CFG Mix over its weight, the composition restricted to high SNR, the x0-handling variants, the
# paper's 1,000-step DDPM and the data-size series. Extra arguments go to every evaluate.
#
#   DOMAIN=data/robot RUN=runs/robot GAMMA=0.1 MINUTES=9 SIZES="50 200 1000" \
#       REWRITES="slide the=>push the;touch the=>reach for the" scripts/evidence.sh --num 128 --batch-size 128
#
# Every stage skips itself when its output exists, and the trainings resume: the same command continues a run cut off
# by a time limit or trains a returned run MINUTES more. STAGES=train stops after the trainings.
set -euo pipefail
D=${DOMAIN:?set DOMAIN to a make-data folder}; R=${RUN:?set RUN to an output folder}; G=${GAMMA:-0.1}
PRIOR=${PRIOR:-checkpoints/prior}; ENCODER=${ENCODER:-checkpoints/video-encoder}; MINUTES=${MINUTES:-9}
BATCH=${BATCH:-256}; SIZES=${SIZES:-}; COMPILE=${COMPILE---compile}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
va="python3 -m video_adapter"
done_() { [ -f "$1/checkpoint/config.json" ] || [ -f "$1/config.json" ]; }
adapter() {  # adapter RUN_DIR PRESET DATA [extra train flags]: constant rate after warmup, EMA, held-out curve
  local out=$1 preset=$2 data=$3; shift 3
  $va train --data "$data" --out "$out" --preset "$preset" --batch-size "$BATCH" --lr 1e-3 --warmup-steps 200 \
      --ema-decay 0.999 --steps 100000 --max-minutes "$MINUTES" --save-every 1000 --sample-every 0 --log-every "${LOG_EVERY:-50}" \
      --heldout "$D/test" --heldout-every "${HELDOUT_EVERY:-250}" --heldout-num "${HELDOUT_NUM:-128}" --cache-videos --num-workers 2 --seed 0 "$@"
}
subset() {  # subset N: the first N training clips as a folder of links, with their captions
  local dir="$R/data-$1"
  [ -f "$dir/captions.jsonl" ] && return
  mkdir -p "$dir"
  head -n "$1" "$D/train/captions.jsonl" > "$dir/captions.jsonl.tmp"
  python3 -c "import json,os,sys; [os.symlink(os.path.abspath(os.path.join(sys.argv[1], json.loads(l)['video'])), os.path.join(sys.argv[2], os.path.basename(json.loads(l)['video']))) for l in open(sys.argv[3])]" \
      "$D/train" "$dir" "$dir/captions.jsonl.tmp"
  python3 -c "import json,os,sys; open(sys.argv[2],'w').writelines(json.dumps({'video': os.path.basename(json.loads(l)['video']), 'caption': json.loads(l)['caption']})+'\n' for l in open(sys.argv[1]))" \
      "$dir/captions.jsonl.tmp" "$dir/captions.jsonl"
  rm "$dir/captions.jsonl.tmp"
}
classifier_args=()
if [ -n "${REWRITES:-}" ]; then IFS=';' read -r -a rw <<< "$REWRITES"; classifier_args=(--caption-rewrites "${rw[@]}"); fi

# Stage 1: everything that trains. SERIAL=1 trains the adapters one after another (MINUTES each): a GPU time-slices
# between processes, so five at once trained at 130-250 clips/s each, about 1,000 in all, where Small (S) alone
# trains at 1,551 (docs/analysis.md). The classifier trains beside them either way.
pids=()
run() { if [ "${SERIAL:-0}" = 1 ]; then "$@"; else "$@" & pids+=($!); fi; }
batch_for() { local b=$BATCH; while [ "$b" -gt "$1" ]; do b=$((b / 2)); done; echo "$b"; }  # a batch <= N clips
if [ "$MINUTES" != 0 ]; then  # MINUTES=0: evaluate the adapters as they are
  run adapter "$R/small-s" small-s "$D/train" $COMPILE
  run adapter "$R/small-l" small-l "$D/train" $COMPILE
  for n in $SIZES; do subset "$n"; run adapter "$R/small-s-$n" small-s "$R/data-$n" --batch-size "$(batch_for "$n")"; done
fi
done_ "$R/classifier" || $va train-video-net --data "$D/train" --objective caption --out "$R/classifier" \
    --steps "${CLASSIFIER_STEPS:-1500}" --batch-size 128 --num-workers 2 --lr 2e-3 "${classifier_args[@]}" &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done
[ "${STAGES:-all}" = train ] && { echo "trained: $R"; exit 0; }  # STAGES=train: only this stage (no prior needed)

# Stage 2: the diagnosis, no sampling (minutes of CPU, seconds here).
for size in s l; do
  [ -f "$R/diagnose-$size/diagnose.json" ] || $va diagnose --adapter "$R/small-$size/checkpoint" --prior "$PRIOR" \
      --data "$D" --num "${DIAG_NUM:-128}" --batch-size 64 --out "$R/diagnose-$size"
done

# Stage 3: the evaluations, all from the same seeds.
ev() { local out=$1; shift; [ -f "$out/results.json" ] || $va evaluate --domain "$D" --prior "$PRIOR" \
    --small-s "$R/small-s/checkpoint" --small-l "$R/small-l/checkpoint" --encoder "$ENCODER" \
    --classifier "$R/classifier" --prior-strength "$G" --out "$out" "$@"; }
# First the recipe, the default since 2026-12-07: CFG Mix from log-SNR -2 (the guided adapter alone below), the shape
# of its MSE-optimal weight in both domains (docs/analysis.md, "The recipe"), over its weight
ev "$R/eval-cfg-mix-band" --methods small-s cfg-mix prior --mix 0.2 --mix-min-logsnr -2 --mix-sweep 0.1 0.3 0.5 \
    --gamma-sweep "${@}"
# (gamma 0 is Small (S) itself, bit for bit: tests/maths/test_composition.py)
ev "$R/eval-paper" --composition paper --methods small-s small-s+prior small-l small-l+prior prior \
    --gamma-sweep 0.05 0.1 0.2 "${@}"
ev "$R/eval-normalized" --composition normalized --methods small-s+prior small-l+prior \
    --gamma-sweep 0.05 0.1 0.2 0.4 "${@}"
# CFG Mix as the paper runs it, a constant weight at every level (the recipe's band off), over its weight; its
# experts in the same run, for the paired differences
ev "$R/eval-cfg-mix" --methods small-s cfg-mix prior --mix 0.5 --mix-min-logsnr=-inf --mix-sweep 0.1 0.25 0.75 \
    --gamma-sweep "${@}"
# the band where the diagnosis finds the prior better than the adapter (log-SNR >= 0), at larger gammas
ev "$R/eval-band" --composition normalized --min-logsnr 0 --methods small-s+prior small-l+prior \
    --gamma-sweep 0.1 0.2 0.4 "${@}"
ev "$R/eval-paper-x0" --composition paper --compose-in x0 --methods small-s+prior --gamma-sweep "${@}"
ev "$R/eval-paper-dynamic" --composition paper --dynamic-threshold 0.995 --methods small-s+prior --gamma-sweep "${@}"
# the paper's sampler: ancestral DDPM over 1,000 steps, for the recipe (evaluate's default CFG Mix) and Algorithm 1
ev "$R/eval-ddpm" --sampler ddpm --steps 1000 --methods small-s cfg-mix small-s+prior prior --gamma-sweep "${@}"
for n in $SIZES; do
  ev "$R/eval-size-$n" --small-s "$R/small-s-$n/checkpoint" --composition normalized \
      --methods small-s small-s+prior --gamma-sweep "${@}"
done
echo "evidence done: $R"
