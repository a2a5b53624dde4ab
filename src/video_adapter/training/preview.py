"""Sample previews during training: real clips above samples for the same captions, one row per condition set."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.video_io import write_grid
from ..generation.cascade import sample_stage
from ..generation.generate import SamplingSettings, generate
from ..maths.composition import Conds
from ..maths.conditioning import Cond, make_cond
from ..models.score_model import NativeScoreModel


def condition_sets(cfg) -> dict[str, dict[str, bool]]:
    """The conditions a model can be sampled with: text alone, plus each pixel condition it takes."""
    sets = {"text": {"first_frame": False, "edges": False}}
    if cfg.first_frame_cond:
        sets["text + first frame"] = {"first_frame": True, "edges": False}
    if cfg.edge_cond:
        sets["text + edges"] = {"first_frame": False, "edges": True}
    return sets


@torch.no_grad()
def write_preview(model, text_encoder, dataset, path: Path, *, seed: int, num: int = 4, steps: int = 50,
                  guidance: float = 3.0, formats: tuple[str, ...] = ("gif",), decode=None) -> list[Path]:
    """Top row: the first `num` training clips; below: samples from their captions under each condition set.
    A latent-space model's clips and samples are shown through `decode` (its VAE's decoder)."""
    items = [dataset[i] for i in range(min(num, len(dataset)))]
    device = next(model.parameters()).device
    real = torch.stack([it["video"] for it in items]).to(device)
    captions = [it["caption"] for it in items]
    cond = make_cond(real, text_encoder.encode(captions, device=device), model.cfg)
    was_training = model.training
    model.eval()
    score = {"small": NativeScoreModel(model, autocast=torch.bfloat16 if device.type == "cuda" else None)}
    settings = SamplingSettings(sampler="ddim", steps=steps, guidance=guidance, seed=seed)
    show = decode or (lambda v: v)

    def draw(c: Cond) -> torch.Tensor:
        if model.cfg.lowres_factor:  # an SR stage: through the cascade's own path (a residual stage's detail)
            return sample_stage(score["small"], c, cond.lowres, settings, device)
        return generate(score, Conds(small=c, prior=Cond()), ("adapter",), settings, device,
                        progress=False).videos["adapter"]

    rows = {name: show(draw(cond.with_flags(**flags))).cpu() for name, flags in condition_sets(model.cfg).items()}
    real = show(real)
    model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_grid(path, list(real.cpu()) + [v for row in rows.values() for v in row],
                      labels=captions * (1 + len(rows)), nrow=len(items), row_labels=["data", *rows],
                      upscale=4, formats=formats)
