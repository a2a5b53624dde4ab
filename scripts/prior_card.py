"""The figures of the prior's model card (checkpoints/prior/README.md): the loss curve and a samples grid.

    python scripts/prior_card.py --prior checkpoints/prior --bullet-test data/broad-bullet/test

The loss curve joins the runs in `train_logs/` (loss_run1.csv, loss_run2.csv, ...) on one step axis. The samples are
held out: pybullet clips from the broad corpus's test split and procedural clips from stream positions far beyond
any that training reached, each sampled from its caption alone, with its first frame, and with its edges.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np


def load_runs(logs: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, global step, loss) per run, each run continuing from where the previous one ended."""
    runs, offset = [], 0
    # by run number: a plain sort would put loss_run10 before loss_run2
    for path in sorted(logs.glob("loss_run*.csv"), key=lambda p: int(p.stem.removeprefix("loss_run"))):
        rows = list(csv.DictReader(path.open()))
        steps = np.array([int(r["step"]) for r in rows]) + offset
        runs.append((path.stem.removeprefix("loss_"), steps, np.array([float(r["loss"]) for r in rows])))
        offset = int(steps[-1])
    if not runs:
        raise SystemExit(f"no loss_run*.csv in {logs}")
    return runs


def plot_loss(runs, out: Path, window: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(out)
    print(f"wrote {out}")


def held_out_clips(bullet_test: Path, num_each: int, size, frames) -> list[dict]:
    from video_adapter.data import VideoFolderDataset
    from video_adapter.datagen.stream import ClipStream

    bullet = VideoFolderDataset(bullet_test, frames=frames, size=size, random_crop=False)
    procedural = ClipStream("broad-procedural", 0, size, frames, start=2**41)
    return [bullet[i] for i in range(num_each)] + list(itertools.islice(procedural, num_each))


def main() -> None:
    import torch

    from video_adapter.checkpoint import load_model
    from video_adapter.preview import write_preview
    from video_adapter.text import load_text_encoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="checkpoints/prior", help="the model directory")
    p.add_argument("--bullet-test", required=True, help="test split of `make-data broad-bullet`")
    p.add_argument("--num", type=int, default=3, help="clips of each source")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
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
