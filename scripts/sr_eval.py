"""PSNR and SSIM of the super-resolution cascade against the real high-resolution clips, beside bicubic upsampling.

Each held-out clip, read at the last stage's size, is averaged down to the base size (what the base model makes);
the cascade and bicubic each bring it back up, and both are compared with the real clip, per clip, with bootstrap
95% intervals over the clips:

    python scripts/sr_eval.py --data data/broad-96x160/test --stages runs/sr-48x80/checkpoint \
        runs/sr-96x160/checkpoint --num 128 --steps 50 --out outputs/sr-eval

Writes sr_eval.json and sr_eval.md into --out; with --grid K also compare.gif and compare.png (its last frame): the
first K clips, rows the real clip, bicubic and the cascade, zoomed 2x.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from video_adapter.common.devices import resolve_device
from video_adapter.common.files import atomic_path, atomic_write_text, make_out_dir
from video_adapter.common.tables import table_markdown
from video_adapter.data.dataset import VideoFolderDataset
from video_adapter.data.video_io import make_grid, write_gif
from video_adapter.evaluation.metrics.pixels import psnr, ssim, upsample
from video_adapter.evaluation.metrics.scores import mean_with_ci
from video_adapter.generation.cascade import DEFAULT_AUG_LEVEL, load_stages, upscale
from video_adapter.generation.generate import SamplingSettings
from video_adapter.maths.conditioning import resize_video


def evaluate(data: str, stages: list[str], num: int, steps: int, guidance: float, batch: int, seed: int,
             device: str, rounds: int, aug_level: float = DEFAULT_AUG_LEVEL, start: float = 1.0,
             grid: int = 0, out: Path | None = None) -> dict:
    """The scores (sr_eval.json's content); with `grid` > 0 the comparison grid of the first `grid` clips into
    `out` too."""
    if grid > 0 and out is None:
        raise ValueError("a comparison grid needs a folder to go to: pass out")
    dev = resolve_device(device)
    models = load_stages(stages, dev)
    top, factor = models[-1].spec, int(np.prod([m.spec.lowres_factor for m in models]))
    clips = VideoFolderDataset(data, frames=top.frames, size=(top.height, top.width), random_crop=False)
    if len(clips) < 2:
        raise ValueError(f"{data} has {len(clips)} clips; pass a test split of at least 2")
    idx = list(range(min(num, len(clips))))
    real = torch.stack([clips[i]["video"] for i in idx])
    base = resize_video(real, (top.height // factor, top.width // factor), "area")
    settings = SamplingSettings(sampler="ddim", steps=steps, guidance=guidance, seed=seed)
    made = torch.cat([upscale(models, base[i:i + batch], [clips.captions[j] for j in idx[i:i + batch]],
                              replace(settings, seed=seed + i // batch), dev, aug_level=aug_level,
                              start=start)[-1].cpu()
                      for i in range(0, len(idx), batch)])
    bicubic = upsample(base, (top.height, top.width))
    rows = {"cascade": made, "bicubic": bicubic}
    if grid > 0:
        write_comparison(out, {"real": real, "bicubic": bicubic, "cascade": made}, min(grid, len(idx)))
    return {"data": data, "stages": list(stages), "num": len(idx), "base": [top.height // factor, top.width // factor],
            "size": [top.height, top.width], "steps": steps, "guidance": guidance,
            "aug_level": aug_level if any(m.spec.lowres_aug for m in models) else None, "start": start,
            "metrics": {name: {"psnr": mean_with_ci(psnr(v, real), rounds, seed).as_dict(),
                               "ssim": mean_with_ci(ssim(v, real), rounds, seed + 1).as_dict()}
                        for name, v in rows.items()}}


def write_comparison(out: Path, rows: dict[str, torch.Tensor], k: int) -> None:
    """compare.gif (rows of k videos, zoomed 2x) and compare.png, its last frame."""
    from PIL import Image

    videos = [v for row in rows.values() for v in row[:k]]
    frames = make_grid(videos, nrow=k, upscale=2, row_labels=list(rows))
    write_gif(out / "compare.gif", frames)
    with atomic_path(out / "compare.png") as tmp:
        Image.fromarray(frames[-1]).save(tmp, format="PNG")


def markdown(result: dict) -> str:
    cell = lambda v: f"{v['value']:.4g} [{v['ci95'][0]:.4g}, {v['ci95'][1]:.4g}]"
    rows = [[name, cell(m["psnr"]), cell(m["ssim"])] for name, m in result["metrics"].items()]
    aug = "" if result.get("aug_level") is None else f", noise augmentation level {result['aug_level']:g}"
    if result.get("start", 1.0) < 1.0:
        aug += f", each stage started from its upsampled input at cosine time {result['start']:g} (SDEdit)"
    return (table_markdown(["upsampling", "PSNR (dB)", "SSIM"], rows) +
            f"\n\n{result['num']} clips of {result['data']} averaged down to {result['base'][0]}x{result['base'][1]} "
            f"and brought back to {result['size'][0]}x{result['size'][1]}; cascade: ddim {result['steps']} steps, "
            f"guidance {result['guidance']:g}{aug}. Brackets: bootstrap 95% intervals over the clips.\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="held-out clips rendered at the last stage's size (or larger)")
    p.add_argument("--stages", nargs="+", required=True, help="SR stage checkpoints, smallest first")
    p.add_argument("--num", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=1.0, help="text guidance of every stage (1: none)")
    p.add_argument("--aug-level", type=float, default=DEFAULT_AUG_LEVEL,
                   help="noise augmentation level (cosine time) of the stages trained with it")
    p.add_argument("--start", type=float, default=1.0,
                   help="cosine time each stage starts from its upsampled input at (1: pure noise; SDEdit)")
    p.add_argument("--grid", type=int, default=0, help="write compare.gif / .png of the first K clips (0: none)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    out = Path(a.out)
    make_out_dir(out)
    result = evaluate(a.data, a.stages, a.num, a.steps, a.guidance, a.batch_size, a.seed, a.device, a.bootstrap,
                      a.aug_level, a.start, a.grid, out)
    atomic_write_text(out / "sr_eval.json", json.dumps(result, indent=1))
    atomic_write_text(out / "sr_eval.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
