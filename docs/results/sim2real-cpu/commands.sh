#!/usr/bin/env bash
# Issue 28 item 2 (sim-to-real, paper Figure 10) on the CPU, at the demo's scale: edge-conditioned Small (S)
# adapters on robot (sim) and robot-real, unpaired, 400 steps of 8 each; a real-versus-sim classifier; the shipped
# prior. From the edges of held-out sim clips: realness, edge fidelity and FVD-VA against robot-real, N = 32, DDIM 25,
# alpha 5, the same seeds for every row. With DOWN=N (not run on the CPU: 2 x N composed samples take hours on
# 2 cores), the downstream test at a small scale: a task classifier trained on N sim clips alone, and on the same
# clips plus their generated real and ", at night" versions, scored on robot-real test clips.
set -euo pipefail
# --guidance 5: the default alpha when these ran (it is 2 since 2026-12-08); pinned so they reproduce
export HF_HUB_OFFLINE=1  # from the repository root, in the project's environment
R=runs/sim2real-cpu; DOWN=${DOWN:-0}; date
[ -d data/robot ] || video-adapter make-data robot --out data/robot --num 5000 --seed 0
[ -d data/robot-real ] || video-adapter make-data robot-real --out data/robot-real --num 1000 --seed 0
edge_adapter() {  # OUT DATA: edges dropped half the time, so the adapter has an unconditional mode for guidance
  [ -f $1/checkpoint/config.json ] || video-adapter train --data $2 --out $1 --preset small-s \
    --model first_frame_cond=false edge_cond=true --edges-drop 0.5 --steps 400 --batch-size 8 --lr 1e-3 \
    --warmup-steps 40 --sample-every 0 --save-every 400 --num-workers 0 --cache-videos --seed 0
}
edge_adapter $R/real-s data/robot-real/train; date
edge_adapter $R/sim-s data/robot/train; date
[ -f $R/real-classifier/config.json ] || video-adapter train-video-net --objective domain --out $R/real-classifier \
  --steps 300 --batch-size 32 --num-workers 1 --classes real=data/robot-real/train sim=data/robot/train
date
E="--prior checkpoints/prior --condition edges --num 32 --batch-size 16 --sampler ddim --steps 25 --device cpu"
S="--metrics style edge-fidelity fvd-va --style-classifier $R/real-classifier --style-label real"
# the real side: held-out sim clips' edges and captions, scored against robot-real test clips
[ -f $R/eval-real/results.json ] || video-adapter evaluate --guidance 5 --domain data/robot --real data/robot-real \
  --small-s $R/real-s/checkpoint --methods small-s small-s+prior prior --prior-strength 0.2 --gamma-sweep 0.4 \
  $E $S --out $R/eval-real
# the paired sim side: the same edges, seeds and captions through the sim adapter with the prior
[ -f $R/eval-sim/results.json ] || video-adapter evaluate --guidance 5 --domain data/robot --small-s $R/sim-s/checkpoint \
  --methods small-s+prior --prior-strength 0.2 --gamma-sweep $E $S --out $R/eval-sim
date
[ "$DOWN" = 0 ] && exit 0
# downstream: the first DOWN sim training clips, their real versions and their ", at night" versions (the prior asked
# for another look, the real adapter keeping each clip's caption, its task label)
mkdir -p $R/down; [ -d $R/down/sim ] || python3 - "$DOWN" $R/down/sim <<'PY'
import json, shutil, sys
from pathlib import Path
n, out = int(sys.argv[1]), Path(sys.argv[2]); tmp = out.with_name(out.name + ".tmp"); tmp.mkdir(parents=True)
rows = [json.loads(line) for line in open("data/robot/train/captions.jsonl")][:n]
for row in rows:
    shutil.copy(Path("data/robot/train") / row["video"], tmp / row["video"])
(tmp / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)); tmp.rename(out)
PY
for style in "" ", at night"; do
  tag=${style:+-night}
  [ -d $R/down/gen$tag/small-s_prior ] || video-adapter evaluate --guidance 5 --domain $R/down/sim --small-s $R/real-s/checkpoint \
    --methods small-s+prior --prior-strength 0.2 --gamma-sweep --prior-prompt-suffix "$style" $E $S --num $DOWN \
    --real data/robot-real --save-samples $R/down/gen$tag --out $R/down/eval-gen$tag
done
date
RW=(--caption-rewrites "move the arm to the=>reach for the" "touch the=>reach for the" "slide the=>push the" "move the=>push the")
task_net() { [ -f $1/config.json ] || video-adapter train-video-net --objective caption --out $1 --steps 300 --batch-size 32 \
  --num-workers 1 "${RW[@]}" --data "${@:2}"; }
task_net $R/down/task-sim $R/down/sim
task_net $R/down/task-sim+real $R/down/sim $R/down/gen/small-s_prior $R/down/gen-night/small-s_prior
for t in task-sim task-sim+real; do  # on real clips (the test), and on sim test clips (what each net learnt at all)
  video-adapter score-classifier --classifier $R/down/$t --data data/robot-real/test --out $R/down/$t.json
  video-adapter score-classifier --classifier $R/down/$t --data data/robot/test --out $R/down/$t-on-sim.json
done
date
