"""Cost of composing a small latent adapter with a realistic diffusers prior, per denoising step.

    python benchmarks/diffusers_prior_cost.py                # ModelScope's 1.7B UNet3D at 16x256x256, on the GPU
    python benchmarks/diffusers_prior_cost.py --tiny         # a tiny config, to check the script on a CPU

The prior is diffusers' UNet3DConditionModel with ModelScope text-to-video's config (random weights: timing only) at
its native latent size, behind `DiffusersPrior` exactly as `load_diffusers_prior` builds it; the adapter is our
SpaceTimeUNet in the same latent space at about 1% of the prior's parameters. Per step: the prior alone with
classifier-free guidance (one batched forward of 2B), the prior alone without guidance, and Video Adapter's
composition (one prior forward of B plus the adapter's guided pair, sec 3.3). Times are CUDA-event medians over
--iters steps after warm-up; memory is the peak allocated during each.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from video_adapter.maths.composition import Conds, PriorStrength, mode_fn
from video_adapter.maths.conditioning import Cond
from video_adapter.models.diffusers_prior import DiffusersPrior, DiscreteVP
from video_adapter.models.score_model import ModelSpec, NativeScoreModel
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

MODELSCOPE_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
                       attention_head_dim=64, in_channels=4, out_channels=4, norm_num_groups=32, sample_size=32,
                       down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
                       up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3)
TINY_UNET = dict(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=16, attention_head_dim=4,
                 in_channels=4, out_channels=4, norm_num_groups=4, sample_size=8,
                 down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                 up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="epsilon",
                 num_train_timesteps=1000)


def build(tiny: bool, device: torch.device, dtype: torch.dtype):
    from diffusers import UNet3DConditionModel

    unet_cfg = TINY_UNET if tiny else MODELSCOPE_UNET
    frames, size, text_len = (4, 8, 7) if tiny else (16, 32, 77)
    with torch.device(device):  # initialised where it runs: 1.4B parameters initialise slowly on a CPU
        denoiser = UNet3DConditionModel(**unet_cfg).to(dtype).eval().requires_grad_(False)
    text_dim = unet_cfg["cross_attention_dim"]
    spec = ModelSpec(space="latent:bench", channels=4, frames=frames, height=size, width=size, conditions=("text",),
                     value_range=(-float("inf"), float("inf")), time="timestep",
                     parameters=sum(p.numel() for p in denoiser.parameters()))
    prior = DiffusersPrior(denoiser, DiscreteVP.from_scheduler_config(SCHEDULER), spec,
                           torch.zeros(1, text_len, text_dim), device=device)
    adapter_cfg = UNetConfig(channels=4, frames=frames, height=size, width=size, space="latent:bench",
                             base_channels=8 if tiny else 64, channel_mults=(1, 2) if tiny else (1, 2, 4),
                             attention_resolutions=(size // 2,) if tiny else (16, 8), head_dim=8 if tiny else 64,
                             emb_dim=16 if tiny else 256, text_dim=text_dim, first_frame_cond=False,
                             norm_groups=4 if tiny else 32)
    unet = SpaceTimeUNet(adapter_cfg).to(device).eval().requires_grad_(False)
    half = dtype if dtype != torch.float32 else None
    adapter = NativeScoreModel(unet, autocast=half, cuda_graphs=device.type == "cuda")
    return prior, adapter, text_len, text_dim


def time_step(fn, x, logsnr, conds, iters: int, device: torch.device) -> tuple[float, float]:
    """(median milliseconds per call, peak GiB allocated)."""
    for _ in range(3):
        fn(x, logsnr, conds)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(x, logsnr, conds)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            import time

            t0 = time.perf_counter()
            fn(x, logsnr, conds)
            times.append(1e3 * (time.perf_counter() - t0))
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return statistics.median(times), peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a tiny prior, to check the script on a CPU")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", help="also write the rows as JSON here")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    prior, adapter, text_len, text_dim = build(args.tiny, device, dtype)
    ratio = 100 * adapter.spec.parameters / prior.spec.parameters
    print(f"prior {prior.spec.parameters / 1e9:.3f}B, adapter {adapter.spec.parameters / 1e6:.2f}M ({ratio:.2f}%), "
          f"latents {prior.spec.shape}, {dtype}, {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    modes = {"prior, CFG": ("prior", 5.0), "prior, no guidance": ("prior", 1.0), "composed (Algorithm 1)":
             ("composed", 5.0)}
    rows = []
    print("| batch | method | ms / step | x prior with CFG | peak GiB |\n|---:|---|---:|---:|---:|")
    for b in args.batch:
        x = torch.randn((b,) + prior.spec.shape, device=device)
        logsnr = torch.zeros(b, device=device)
        text = torch.randn(b, text_len, text_dim, device=device)
        conds = Conds(small=Cond.make(text=text), prior=Cond.make(text=text))
        base = None
        for label, (mode, alpha) in modes.items():
            fn = mode_fn(mode, adapter, prior, alpha=alpha, strength=PriorStrength(0.1))
            ms, peak = time_step(fn, x, logsnr, conds, args.iters, device)
            base = base or ms
            rows.append({"batch": b, "method": label, "ms_per_step": ms, "vs_prior_cfg": ms / base, "peak_gib": peak})
            print(f"| {b} | {label} | {ms:.2f} | {ms / base:.2f} | {peak:.2f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"prior_parameters": prior.spec.parameters, "adapter_parameters": adapter.spec.parameters,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
