"""Held-out denoising loss: how well a model denoises clips it never trained on, per noise level.

`heldout_loss` scores one model on fixed clips, levels and noise (two models scored alike differ only by their
weights); `HeldOutLog` runs it during training every --heldout-every steps on the EMA weights and appends a row to
the run's heldout.csv, the curve that says when a run has converged, drawn beside it as heldout.png.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.files import atomic_path, continue_csv
from ..data.dataset import VideoFolderDataset
from ..maths.conditioning import Cond, diffusion_target, make_cond
from ..maths.schedule import diffuse, logsnr_cosine, prediction_target

# Ten levels at the midpoints of ten equal slices of the cosine schedule's time: their mean is the training
# objective's expectation over t, estimated on held-out clips.
HELDOUT_LOGSNRS = logsnr_cosine(torch.arange(0.5, 10, dtype=torch.float64) / 10)


@torch.no_grad()
def heldout_loss(model, video: Tensor, cond: Cond, logsnrs: Tensor, seed: int, prediction: str) -> Tensor:
    """The native-prediction MSE of `model` on clean `video` at each of `logsnrs`, one value per level.

    Noise comes from `seed` alone, so two models scored with the same arguments see identical x_t: their difference
    is the weights', not the draw's (how a retrained prior is compared with the shipped one).
    """
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for logsnr in logsnrs.tolist():
        eps = torch.randn(video.shape, generator=gen).to(video.device)
        level = torch.full((video.shape[0],), logsnr, device=video.device)
        out = model(diffuse(video, eps, level), level, cond, output="native").float()
        losses.append(F.mse_loss(out, prediction_target(prediction, video, eps, level)))
    return torch.stack(losses)


class HeldOutLog:
    """heldout.csv of a run: step, the mean over HELDOUT_LOGSNRS, then one column per level.

    The first `num` clips of `folder` (captions encoded once, every condition the model takes present) are scored
    in batches of `batch_size` with noise seeded by the batch, so every row of a run sees the same x_t. Rows after
    the step a run resumes from are dropped, as in loss.csv."""

    def __init__(self, path: Path, folder: str, num: int, batch_size: int, model_cfg, text_encoder,
                 device: torch.device, resumed_at: int, seed: int = 0):
        data = VideoFolderDataset(folder, frames=model_cfg.frames, size=(model_cfg.height, model_cfg.width),
                                  random_crop=False, progress=False)
        n = min(num, len(data))
        self.batches = []
        for start in range(0, n, batch_size):
            items = [data[i] for i in range(start, min(n, start + batch_size))]
            video = torch.stack([item["video"] for item in items]).to(device)
            text = text_encoder.encode([item["caption"] for item in items], device=device)
            self.batches.append((diffusion_target(video, model_cfg), make_cond(video, text, model_cfg)))
        self.path, self.seed, self.prediction, self.clips = path, seed, model_cfg.prediction, n
        header = "step,mean," + ",".join(f"logsnr_{v:.2f}" for v in HELDOUT_LOGSNRS.tolist()) + "\n"
        continue_csv(path, header, resumed_at)

    def __call__(self, step: int, model) -> float:
        """Scores `model` (eval mode for the call), appends the row and returns the mean."""
        training = model.training
        model.eval()
        total = torch.zeros(len(HELDOUT_LOGSNRS), dtype=torch.float64)
        for i, (video, cond) in enumerate(self.batches):
            losses = heldout_loss(model, video, cond, HELDOUT_LOGSNRS, self.seed + i, self.prediction)
            total += losses.double().cpu() * len(video)
        model.train(training)
        per_level = (total / self.clips).tolist()
        mean = sum(per_level) / len(per_level)
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([step, f"{mean:.6f}", *(f"{v:.6f}" for v in per_level)])
        plot_heldout(self.path, self.path.with_suffix(".png"))
        return mean


def read_heldout(path: Path) -> tuple[list[int], list[float]]:
    """The steps and mean held-out losses of a heldout.csv."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["mean"]) for r in rows]


def last_drop(means: list[float]) -> float | None:
    """How much the last scoring lowered the mean held-out loss, as a fraction (0.1: 10% lower; None: one row).
    Near 0 is what converged looks like."""
    return None if len(means) < 2 else 1 - means[-1] / means[-2]


def plot_heldout(csv_path: Path, png_path: Path) -> None:
    """heldout.png: the mean held-out loss over training steps (log scale), titled with the last scoring's drop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, means = read_heldout(csv_path)
    drop = last_drop(means)
    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=120)
    ax.plot(steps, means, marker="o")
    ax.set(xlabel="step", ylabel="held-out loss (mean over 10 levels)", yscale="log",
           title="held-out loss" + ("" if drop is None else f": last scoring {-100 * drop:+.1f}%"))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
