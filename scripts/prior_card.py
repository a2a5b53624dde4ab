"""The figures of the prior's model card (checkpoints/prior/README.md): the loss curve, a samples grid, the runs table.

    python scripts/prior_card.py --prior checkpoints/prior --bullet-test data/broad-bullet/test
    python scripts/prior_card.py --table checkpoints/prior/train_logs checkpoints/prior/train_logs/unshipped

The loss curve joins the runs in `train_logs/` (loss_run1.csv, loss_run2.csv, ...) on one step axis. The runs
table (docs/benchmarks.md) is read off the same logs: each row of a loss.csv covers the steps since the row before at
its samples/s, so the first row's interval is torch.compile's warm-up and the rest is the training wall time. The samples are
held out: pybullet clips from the broad corpus's test split and procedural clips from stream positions far beyond
any that training reached, each sampled from its caption alone, with its first frame, and with its edges.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import statistics
from pathlib import Path

import numpy as np


LOG_NAME = re.compile(r"loss_run(\d+)([a-z]*)\.csv")


def run_key(path: Path) -> tuple[int, str]:
    """Run order: by number (a plain sort puts loss_run10 before loss_run2), then suffix (7a before 7b)."""
    match = LOG_NAME.fullmatch(path.name)
    if not match:
        raise SystemExit(f"{path}: a loss log must be named loss_run<N>.csv or loss_run<N><letters>.csv; rename it")
    return int(match[1]), match[2]


def read_log(path: Path) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(path.open()))
    missing = {"step", "loss", "samples_per_s"} - set(rows[0] if rows else ())
    if missing:
        raise SystemExit(f"{path}: not a training loss.csv (no rows, or no column {', '.join(sorted(missing))}); "
                         "pass the loss.csv a run wrote")
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def load_runs(logs: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, global step, loss) per run, each run continuing from where the previous one ended."""
    runs, offset = [], 0
    for path in sorted(logs.glob("loss_run*.csv"), key=run_key):
        log = read_log(path)
        steps = log["step"].astype(int) + offset
        runs.append((path.stem.removeprefix("loss_"), steps, log["loss"]))
        offset = int(steps[-1])
    if not runs:
        raise SystemExit(f"no loss_run*.csv in {logs}")
    return runs


def run_summary(path: Path, batch: int, last: int = 10) -> dict[str, float]:
    """One row of the runs table from a loss log."""
    log = read_log(path)
    seconds = np.diff(log["step"], prepend=0) * batch / log["samples_per_s"]
    return {"steps": int(log["step"][-1]), "warmup_s": float(seconds[0]), "train_min": float(seconds[1:].sum() / 60),
            "median_samples_per_s": statistics.median(log["samples_per_s"][1:]) if len(seconds) > 1 else float("nan"),
            "loss_last": float(log["loss"][-last:].mean())}


def print_table(dirs: list[Path], batch: int) -> None:
    print("| run | steps | compile warm-up | training wall time | median samples/s | loss, last 10 logged batches |")
    print("|---|---:|---:|---:|---:|---:|")
    for d in dirs:
        for path in sorted(d.glob("loss_run*.csv"), key=run_key):
            r = run_summary(path, batch)
            print(f"| {path.stem.removeprefix('loss_run')} | {r['steps']:,} | {r['warmup_s']:.0f} s | "
                  f"{r['train_min']:.1f} min | {r['median_samples_per_s']:.0f} | {r['loss_last']:.4f} |")


def plot_loss(runs, out: Path, window: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from video_adapter.common.files import atomic_path

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    for name, steps, loss in runs:
        raw, = ax.plot(steps, loss, alpha=0.25, lw=0.8)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")  # one logged batch per point: noisy
        ax.plot(steps[window - 1:], smooth, lw=1.8, color=raw.get_color(),
                label=f"{name} (mean of {window} logged batches)")
    ax.set(yscale="log", xlabel="optimizer step (batch 128)", ylabel="v-prediction MSE",
           title="prior training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    print(f"wrote {out}")


def held_out_clips(bullet_test: Path, num_each: int, size, frames) -> list[dict]:
    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.data.datagen.stream import ClipStream

    bullet = VideoFolderDataset(bullet_test, frames=frames, size=size, random_crop=False)
    procedural = ClipStream("broad-procedural", 0, size, frames, start=2**41)
    return [bullet[i] for i in range(num_each)] + list(itertools.islice(procedural, num_each))


def main() -> None:
    import torch

    from video_adapter.models.checkpoint import load_model
    from video_adapter.training.preview import write_preview
    from video_adapter.models.text import load_text_encoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="checkpoints/prior", help="the model directory")
    p.add_argument("--bullet-test", help="test split of `make-data broad-bullet` (for the figures)")
    p.add_argument("--table", nargs="+", type=Path, metavar="LOG_DIR",
                   help="only print the runs table of the loss logs in these folders")
    p.add_argument("--batch", type=int, default=128, help="global batch of the logged runs (for --table)")
    p.add_argument("--num", type=int, default=3, help="clips of each source")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.table:
        print_table(args.table, args.batch)
        return
    if not args.bullet_test:
        p.error("--bullet-test is needed for the samples grid (or pass --table to print the runs table only)")
    prior = Path(args.prior)
    plot_loss(load_runs(prior / "train_logs"), prior / "loss.png")
    torch.manual_seed(args.seed)
    model, config = load_model(prior)
    clips = held_out_clips(Path(args.bullet_test), args.num, (model.cfg.height, model.cfg.width), model.cfg.frames)
    paths = write_preview(model, load_text_encoder(config["text_encoder"]), clips, prior / "samples.gif",
                          seed=args.seed, num=len(clips), steps=args.steps, guidance=args.guidance)
    print("wrote " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
