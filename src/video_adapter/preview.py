"""Sample previews during training: real clips beside samples for the same captions and first frames."""

from __future__ import annotations

from pathlib import Path

import torch

from .pipeline import generate
from .train import make_cond
from .video_io import write_grid


@torch.no_grad()
def write_preview(model, text_encoder, dataset, path: Path, *, seed: int, num: int = 4, steps: int = 50,
                  guidance: float = 3.0) -> list[Path]:
    """Top row: the first `num` training clips; bottom row: samples from their captions (and first frames)."""
    items = [dataset[i] for i in range(min(num, len(dataset)))]
    device = next(model.parameters()).device
    real = torch.stack([it["video"] for it in items]).to(device)
    captions = [it["caption"] for it in items]
    cond = make_cond(real, text_encoder.encode(captions), model.cfg)
    was_training = model.training
    model.eval()
    fake = generate(model, cond, sampler="ddim", steps=steps, guidance=guidance, seed=seed)
    model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_grid(path, list(real.cpu()) + list(fake.cpu()), labels=captions + ["sample"] * len(items),
                      nrow=len(items), row_labels=["data", "sample"], upscale=4)
