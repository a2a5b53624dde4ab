"""Training FLOPs per sample of U-Net presets, and the prior finetuning steps that cost one adapter run (appendix C).

    python benchmarks/training_flops.py --presets prior small-s small-l --adapter-steps 100000 --lora-rank 16

The paper finetunes its prior for the adapter's TPU time: 100k adapter steps / (512 / 8 chips) = 1,560 steps. Here
the ratio is counted, not timed: torch.utils.flop_counter over one forward and backward of a 16x24x40 sample with
every condition the preset takes, on the CPU (a count, so the machine does not matter; wall-clock ratios on a GPU
also depend on launch overhead, which favours the large model). With --lora-rank, a row for the prior training LoRA
of that rank on its frozen weights: the backward pass skips the frozen weights' gradients, so a step costs less.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from video_adapter.maths.conditioning import Cond
from video_adapter.models.lora import add_lora
from video_adapter.models.unet import SpaceTimeUNet, preset

TEXT_LEN = 32


def training_flops(name: str, lora_rank: int = 0) -> int:
    """FLOPs of one training sample (forward and backward) of preset `name`, or of LoRA of `lora_rank` on it."""
    cfg = preset(name)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.channels, cfg.frames, cfg.height, cfg.width, generator=gen)
    cond = Cond.make(text=torch.randn(1, TEXT_LEN, cfg.text_dim, generator=gen),
                     text_mask=torch.ones(1, TEXT_LEN, dtype=torch.bool), pooled=torch.randn(1, cfg.text_dim),
                     first_frame=x[:, :, 0] if cfg.first_frame_cond else None,
                     edges=torch.randn_like(x) if cfg.edge_cond else None,
                     lowres=torch.randn_like(x) if cfg.lowres_factor else None,  # an SR stage's upsampled input
                     lowres_level=torch.zeros(1) if cfg.lowres_factor and cfg.lowres_aug else None)
    model = SpaceTimeUNet(cfg)
    if lora_rank:
        add_lora(model, lora_rank)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(1), cond, output="native").square().mean().backward()
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["prior", "small-s", "small-l"], help="the first is the prior")
    p.add_argument("--adapter-steps", type=int, default=100_000, help="adapter training steps (paper Bridge: 100k)")
    p.add_argument("--lora-rank", type=int, default=0, help="also count LoRA of this rank on the prior (0: no)")
    args = p.parse_args()
    flops = {name: training_flops(name) for name in args.presets}
    if args.lora_rank:
        flops[f"{args.presets[0]} + LoRA r{args.lora_rank}"] = training_flops(args.presets[0], args.lora_rank)
    prior = flops[args.presets[0]]
    print(f"| preset | GFLOP per training sample | prior / preset | prior steps for {args.adapter_steps:,} "
          "preset steps |\n|---|---:|---:|---:|")
    for name, value in flops.items():
        ratio = prior / value
        print(f"| {name} | {value / 1e9:.3f} | {ratio:.1f} | {args.adapter_steps / ratio:,.0f} |")


if __name__ == "__main__":
    main()
