#!/usr/bin/env bash
# The paper's protocol on one domain (docs/results.md): trains Small (S) and Small (L) adapters, the prior finetuned
# and the prior with LoRA for Small (S)'s training FLOPs (appendix C), and the domain's caption classifier, then runs
# `video-adapter evaluate` over every method. Extra arguments go to evaluate.
#
#   DOMAIN=data/robot RUN=runs/robot GAMMA=0.1 REWRITES="slide the=>push the;touch the=>reach for the" \
#       scripts/eval_domain.sh --num 128 --batch-size 64
#
# DOMAIN is a make-data folder (train/ and test/). Each stage skips itself when its output exists, so a run cut off
# by a time limit continues where it stopped. STEPS: adapter steps; BATCH: clips per training step; PRIOR_BATCH: clips
# per step of the prior-sized baselines (their steps scale so that they see as many FLOPs in all); REWRITES:
# ";"-separated caption rewrites merging synonymous tasks for the classifier; COMPILE="" trains without torch.compile;
# MAX_MINUTES: stop the adapters there (with a checkpoint; the baselines follow Small (S)'s reached step);
# GPUS: processes (one per GPU) that share the evaluation's sample generation, through torchrun (1 included).
set -euo pipefail
D=${DOMAIN:?set DOMAIN to a make-data folder}; R=${RUN:?set RUN to an output folder}; G=${GAMMA:-0.1}
STEPS=${STEPS:-4000}; BATCH=${BATCH:-64}; PRIOR_BATCH=${PRIOR_BATCH:-$BATCH}; PRIOR=${PRIOR:-checkpoints/prior}
ENCODER=${ENCODER:-checkpoints/video-encoder}; LORA_RANK=${LORA_RANK:-16}; COMPILE=${COMPILE---compile}; GPUS=${GPUS:-1}
WORKERS=${WORKERS:-4}  # per training: decode the split into its cache, then assemble batches
# Stage 1 runs three trainings at once: a thread per core each would oversubscribe the CPU (docs/results.md)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / 4 > 0 ? $(nproc) / 4 : 1 ))}
classifier_args=()
if [ -n "${REWRITES:-}" ]; then IFS=';' read -r -a rw <<< "$REWRITES"; classifier_args=(--caption-rewrites "${rw[@]}"); fi
va="python3 -m video_adapter"
common=(--data "$D/train" --cache-videos --num-workers "$WORKERS" --sample-every 0 --log-every 50 --seed 0)
# first-frame domains: the prior-sized baselines train with edges always absent, as they are sampled
prior_sized=("${common[@]}" --batch-size "$PRIOR_BATCH" --init "$PRIOR" --edges-drop 1 --first-frame-drop 0.1
             --warmup-steps 10 --lr-decay cosine --ema-decay 0.99)
done_() { [ -f "$1/checkpoint/config.json" ] || [ -f "$1/config.json" ]; }

# Stage 1: the adapters and the classifier at once (they are too small to fill a GPU alone).
pids=()
for size in s l; do
  done_ "$R/small-$size" || $va train "${common[@]}" --out "$R/small-$size" --preset "small-$size" --steps "$STEPS" \
      --batch-size "$BATCH" --lr 1e-3 --warmup-steps 200 --lr-decay cosine --ema-decay 0.999 \
      --save-every "$STEPS" ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"} $COMPILE &
  pids+=($!)
done
done_ "$R/classifier" || $va train-video-net --data "$D/train" --objective caption --out "$R/classifier" \
    --steps "${CLASSIFIER_STEPS:-3000}" --batch-size "$BATCH" --num-workers "$WORKERS" --lr 2e-3 \
    "${classifier_args[@]}" &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done
# Equal compute: training GFLOP per sample (benchmarks/training_flops.py) of small-s 2.765, prior 123.42,
# prior + LoRA r16 79.23, so Small (S)'s samples buy 1/44.6 as many finetuning samples and 1/28.7 as many LoRA ones.
adapter_steps=$(python3 -c "import json; print(json.load(open('$R/small-s/checkpoint/config.json'))['step'])")
ft_steps=$(python3 -c "print(max(1, round($adapter_steps * $BATCH / $PRIOR_BATCH / 44.6)))")
lora_steps=$(python3 -c "print(max(1, round($adapter_steps * $BATCH / $PRIOR_BATCH / 28.7)))")
done_ "$R/finetuned" || $va train "${prior_sized[@]}" --out "$R/finetuned" --steps "$ft_steps" --lr 1e-4 \
    --save-every "$ft_steps"
done_ "$R/lora" || $va train "${prior_sized[@]}" --out "$R/lora" --steps "$lora_steps" --lr 1e-3 \
    --lora-rank "$LORA_RANK" --save-every "$lora_steps"

# "-m --": torchrun's own options end there (it would take --num for its --numa-binding); --standalone: a free port,
# so two domains can run at once
python3 -m torch.distributed.run --standalone --nproc_per_node "$GPUS" -m -- video_adapter evaluate \
    --domain "$D" --prior "$PRIOR" --small-s "$R/small-s/checkpoint" --small-l "$R/small-l/checkpoint" \
    --finetuned "$R/finetuned/checkpoint" --lora "$R/lora/checkpoint" --encoder "$ENCODER" \
    --classifier "$R/classifier" --prior-strength "$G" --out "$R/eval" "$@"
