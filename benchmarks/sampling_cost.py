"""Sampling cost of Video Adapter's composition against the prior alone, with and without CFG (GPU).

    python benchmarks/sampling_cost.py [--steps 100] [--batch 8] [--out benchmarks/results/sampling_cost.json]

Random weights (cost does not depend on them): the prior is the paper's prior architecture at a quarter of its width
(base 256, 2 residual blocks, 359M parameters) and the adapter the paper's Small (S) (4.5M, 1.26% of it; paper
Bridge: 70M of 5.6B = 1.25%). Every row runs the same sampler, steps, batch and precision (bfloat16 autocast) through
the package's own code path (`composition.mode_fn` on `NativeScoreModel`s), timed after a warm-up with CUDA
synchronisation, best of `--repeats`; both models replay CUDA graphs (`NativeScoreModel(cuda_graphs=True)`, the CLI's
default on CUDA), and the main rows are repeated without them. Targets (issue 3): composed <= 1.1x prior without CFG, <= 0.6x prior with CFG.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from video_adapter.common.files import atomic_write_text
from video_adapter.maths.composition import DEFAULT_MIX, DEFAULT_MIX_MIN_LOGSNR, Conds, PriorStrength, mode_fn
from video_adapter.maths.conditioning import Cond
from video_adapter.maths.sampling import sample
from video_adapter.models.score_model import NativeScoreModel
from video_adapter.models.unet import build_unet, count_parameters, preset

PRIOR = dict(base_channels=256, channel_mults=(1, 2, 4), num_res_blocks=2, attention_resolutions=(6, 12),
             emb_dim=1024)


def make_model(cfg, device, seed, cuda_graphs):
    torch.manual_seed(seed)
    unet = build_unet(cfg, device).to(torch.bfloat16).eval().requires_grad_(False)
    return NativeScoreModel(unet, autocast=torch.bfloat16, cuda_graphs=cuda_graphs)


def make_cond(cfg, batch, device, gen):
    text = torch.randn(batch, 16, cfg.text_dim, generator=gen).to(device, torch.bfloat16)
    first = (torch.rand(batch, cfg.channels, cfg.height, cfg.width, generator=gen) * 2 - 1).to(device)
    return Cond.make(text=text, first_frame=first)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(args, mode, small, prior, conds, shape, device, **kw):
    eps_fn = mode_fn(mode, small.eps, prior.eps, alpha=kw.pop("alpha"), **kw)
    sample(eps_fn, shape, conds, sampler=args.sampler, steps=min(args.steps, 5), seed=0, device=device)  # warm-up
    best = math.inf
    for _ in range(args.repeats):
        synchronize(device)
        start = time.perf_counter()
        sample(eps_fn, shape, conds, sampler=args.sampler, steps=args.steps, seed=0, device=device)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="sampler steps, the same for every row")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--batch", type=int, default=8, help="videos per batch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/sampling_cost.json")
    parser.add_argument("--device", default="cuda", help="cuda for the figures; cpu only to smoke-test the script")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("this benchmark times GPU sampling; run it on a CUDA machine (or --device cpu to smoke-test it)")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    small_cfg, prior_cfg = preset("S"), preset("S", **PRIOR)
    graphs = device.type == "cuda"
    small, prior = make_model(small_cfg, device, 0, graphs), make_model(prior_cfg, device, 1, graphs)
    n_small, n_prior = count_parameters(small.unet), count_parameters(prior.unet)
    gen = torch.Generator().manual_seed(0)
    cond = make_cond(small_cfg, args.batch, device, gen)
    conds = Conds(small=cond, prior=cond)
    shape = (args.batch, *small.spec.shape)
    strength = PriorStrength(0.1)
    rows = {
        "prior_nocfg_s": ("prior alone, no CFG", "prior", dict(alpha=1.0)),
        "prior_cfg_s": ("prior alone, CFG 5", "prior", dict(alpha=5.0)),
        "adapter_cfg_s": ("adapter alone, CFG 5", "adapter", dict(alpha=5.0)),
        "composed_s": ("composed (Alg. 1, alpha 5, gamma 0.1, paper cutoff)", "composed",
                       dict(alpha=5.0, strength=strength)),
        "composed_nocutoff_s": ("composed, prior at every step", "composed",
                                dict(alpha=5.0, strength=PriorStrength(0.1, cutoff_logsnr=math.inf))),
        "cfg_mix_s": ("CFG Mix (w 0.5)", "cfg-mix", dict(alpha=5.0, mix=0.5)),
        "recipe_s": ("the recipe: CFG Mix w 0.2 from log-SNR -2", "cfg-mix",
                     dict(alpha=5.0, mix=DEFAULT_MIX, mix_min_logsnr=DEFAULT_MIX_MIN_LOGSNR)),
    }
    results = {}
    for key, (_, mode, kw) in rows.items():
        results[key] = time_mode(args, mode, small, prior, conds, shape, device, **dict(kw))
        print(f"{key}: {results[key]:.3f} s", flush=True)
    # The same models without CUDA graphs (every kernel launched from Python), for the main rows.
    small.graphs = prior.graphs = None
    for key in ("prior_nocfg_s", "prior_cfg_s", "adapter_cfg_s", "composed_s"):
        label, mode, kw = rows[key]
        eager = key.replace("_s", "_eager_s")
        results[eager] = time_mode(args, mode, small, prior, conds, shape, device, **dict(kw))
        rows[eager] = (label + ", no CUDA graphs", mode, kw)
        print(f"{eager}: {results[eager]:.3f} s", flush=True)

    base = results["prior_nocfg_s"]
    print(f"\n{args.steps} {args.sampler} steps, batch {args.batch} x {list(shape[1:])}, bfloat16, CUDA graphs; "
          f"adapter {n_small / 1e6:.2f}M / prior {n_prior / 1e6:.1f}M = {100 * n_small / n_prior:.2f}%")
    print(f"{'mode':<55} {'seconds':>8} {'x prior no-CFG':>15} {'x prior CFG':>12}")
    for key, (label, _, _) in rows.items():
        print(f"{label:<55} {results[key]:>8.3f} {results[key] / base:>15.3f} "
              f"{results[key] / results['prior_cfg_s']:>12.3f}")
    ratios = {"composed_over_prior_nocfg": results["composed_s"] / base,
              "composed_over_prior_cfg": results["composed_s"] / results["prior_cfg_s"],
              "recipe_over_prior_cfg": results["recipe_s"] / results["prior_cfg_s"]}
    print(f"\ncomposed / prior no-CFG = {ratios['composed_over_prior_nocfg']:.3f} (target <= 1.1); "
          f"composed / prior CFG = {ratios['composed_over_prior_cfg']:.3f} (target <= 0.6); "
          f"the recipe / prior CFG = {ratios['recipe_over_prior_cfg']:.3f}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out = {**results, **ratios, "device": name, "steps": args.steps,
           "sampler": args.sampler, "batch": args.batch, "shape": list(shape[1:]), "adapter_parameters": n_small,
           "prior_parameters": n_prior, "torch": torch.__version__,
           "command": "python benchmarks/sampling_cost.py " + " ".join(sys.argv[1:])}
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
