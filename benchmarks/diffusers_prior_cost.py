"""Cost of composing a small latent adapter with today's open video priors at their real sizes, per denoising step.

    python benchmarks/diffusers_prior_cost.py --out benchmarks/results/diffusers_prior_cost.json   # every family, GPU
    python benchmarks/diffusers_prior_cost.py --family wan-14b --batch 1 --offload                  # also offloaded
    python benchmarks/diffusers_prior_cost.py --tiny --device cpu --iters 1 --train-steps 1         # CPU smoke check

Each prior is the released denoiser's architecture built from its public config (written below, with where it comes
from) with random weights (timing only), at the video size its users run, behind `DiffusersPrior` exactly as
`load_diffusers_prior` assembles it (parameterization, family call: layout, rotary grid, patchifier). The adapter is our
SpaceTimeUNet in the same latent space, its width chosen to be --adapter-share (1.5%) of the prior's parameters.
Per family and batch it records:

- ms per step: the prior alone with classifier-free guidance (one batched forward of 2B), without guidance, and Video
  Adapter's composition (one prior forward of B plus the adapter's guided pair, sec 3.3), and composed / guided prior
  (issue 27's target: at most 0.6);
- peak GiB allocated during each, with the prior's weights on the GPU and, with --offload, kept in CPU memory and
  moved in layer by layer (`--prior-offload`, accelerate's cpu_offload);
- the adapter's training samples/s in that latent space (denoising loss, bf16 autocast, AdamW, --train-batch).

Times are CUDA-event medians over --iters calls after 2 warm-up calls; text embeddings are random at each pipeline's
length and width. Nothing here downloads; the VAEs and text encoders are not part of a step and are not built.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from video_adapter.maths.composition import Conds, PriorStrength, mode_fn
from video_adapter.maths.conditioning import Cond
from video_adapter.models.diffusers import PIPELINES, Context, DiffusersPrior, DiscreteVP, Experts, RectifiedFlow
from video_adapter.models.score_model import ModelSpec, NativeScoreModel
from video_adapter.models.text import TextEmbedding
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

GIB = 2**30
DDPM = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


@dataclass(frozen=True)
class Family:
    pipeline: str                  # PIPELINES entry whose denoiser and family call are timed
    config: dict                   # the denoiser's released config (source in `source`)
    source: str
    video: tuple[int, int, int]    # frames, height, width users run
    ratios: tuple[int, int, int]   # the VAE's latent channels, spatial and temporal factors
    text_tokens: int               # prompt tokens, as the pipeline pads them
    scheduler: dict = field(default_factory=dict)  # a DDPM grid's scheduler config (DiscreteVP families)
    tiny: dict = field(default_factory=dict)       # config overrides of the CPU smoke check


WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
WAN_TINY = dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=32, num_layers=2, text_dim=32, freq_dim=16)

FAMILIES = {
    # huggingface.co/ali-vilab/text-to-video-ms-1.7b, unet/config.json
    "modelscope": Family("TextToVideoSDPipeline", dict(
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024, attention_head_dim=64,
        in_channels=4, out_channels=4, norm_num_groups=32, sample_size=32,
        down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3), "ali-vilab/text-to-video-ms-1.7b",
        (16, 256, 256), (4, 8, 1), 77, dict(DDPM, prediction_type="epsilon"),
        dict(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=32, attention_head_dim=4,
             norm_num_groups=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
             up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))),
    # huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers, transformer/config.json; 480p, 81 frames
    "wan-1.3b": Family("WanPipeline", WAN_1_3B, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", (81, 480, 832), (16, 8, 4),
                       512, tiny=WAN_TINY),
    # huggingface.co/Wan-AI/Wan2.1-T2V-14B-Diffusers, transformer/config.json (run in bf16); 480p, 81 frames
    "wan-14b": Family("WanPipeline", dict(WAN_1_3B, num_attention_heads=40, ffn_dim=13824, num_layers=40),
                      "Wan-AI/Wan2.1-T2V-14B-Diffusers", (81, 480, 832), (16, 8, 4), 512, tiny=WAN_TINY),
    # huggingface.co/Lightricks/LTX-Video (0.9.x 2B), transformer/config.json; 768x512, 121 frames (its 8k+1 frames,
    # sizes divisible by 32)
    "ltx-2b": Family("LTXPipeline", dict(
        in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32, attention_head_dim=64,
        cross_attention_dim=2048, num_layers=28, activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads",
        norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, attention_bias=True,
        attention_out_bias=True), "Lightricks/LTX-Video", (121, 512, 768), (128, 32, 8), 128,
        tiny=dict(num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16, num_layers=1,
                  caption_channels=32)),
    # huggingface.co/THUDM/CogVideoX-5b, transformer/config.json and scheduler/scheduler_config.json; 49 frames 480x720
    "cogvideox-5b": Family("CogVideoXPipeline", dict(
        num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=512,
        text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226, activation_fn="gelu-approximate",
        timestep_activation_fn="silu", norm_elementwise_affine=True, norm_eps=1e-5, spatial_interpolation_scale=1.875,
        temporal_interpolation_scale=1.0, use_rotary_positional_embeddings=True), "THUDM/CogVideoX-5b",
        (49, 480, 720), (16, 8, 4), 226,
        dict(DDPM, _class_name="CogVideoXDDIMScheduler", snr_shift_scale=1.0, rescale_betas_zero_snr=True,
             prediction_type="v_prediction", timestep_spacing="trailing"),
        tiny=dict(num_attention_heads=2, attention_head_dim=16, time_embed_dim=8, text_embed_dim=32, num_layers=1,
                  sample_width=4, sample_height=4)),
}
TINY_VIDEO = {"modelscope": (4, 64, 64), "ltx-2b": (9, 64, 64)}  # else 5 frames at 32x32


def build_denoiser(name: str, fam: Family, tiny: bool, device: torch.device, dtype: torch.dtype):
    import diffusers

    cls = getattr(diffusers, PIPELINES[fam.pipeline].denoiser)
    config = {**fam.config, **(fam.tiny if tiny else {})}
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialised in its precision where it runs: 14B float32 weights would not fit
    try:
        with torch.device(device):
            return cls(**config).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(default)


def build_prior(name: str, tiny: bool, device: torch.device, dtype: torch.dtype) -> DiffusersPrior:
    fam = FAMILIES[name]
    video = TINY_VIDEO.get(name, (5, 32, 32)) if tiny else fam.video
    channels, spatial, temporal = fam.ratios
    frames, height, width = video
    shape = (channels, (frames - 1) // temporal + 1, height // spatial, width // spatial)
    denoiser = build_denoiser(name, fam, tiny, device, dtype)
    config = dict(denoiser.config)
    # the text encoder's width: umt5-xxl / T5-XXL 4096 (Wan, LTX, CogVideoX), OpenCLIP-H 1024 (ModelScope)
    width_text = next(config[k] for k in ("text_dim", "caption_channels", "text_embed_dim", "cross_attention_dim")
                      if config.get(k))
    time = DiscreteVP.from_scheduler_config(fam.scheduler) if fam.scheduler else RectifiedFlow()
    # the family call needs only the VAE's ratios (LTX's rotary scale), not the VAE
    codec = SimpleNamespace(spatial=spatial, temporal=temporal)
    family = PIPELINES[fam.pipeline].family(Context(config, shape, video, device, codec))
    spec = ModelSpec(space=f"latent:{name}", channels=channels, frames=shape[1], height=shape[2], width=shape[3],
                     conditions=("text",), value_range=(-float("inf"), float("inf")),
                     parameters=sum(p.numel() for p in denoiser.parameters()))
    null = TextEmbedding(torch.zeros(1, fam.text_tokens, width_text), torch.ones(1, fam.text_tokens, dtype=torch.bool),
                         torch.zeros(1, width_text))
    return DiffusersPrior(Experts([denoiser]), time, family, spec, null, device=device)


def adapter_config(prior: DiffusersPrior, share: float, text_dim: int) -> UNetConfig:
    """A SpaceTimeUNet in the prior's latent space whose width makes it `share` of the prior's parameters: three levels
    where the latent size allows, attention at the coarsest; base channels a multiple of 16, counted on meta."""
    c, f, h, w = prior.spec.shape
    mults = (1, 2, 4) if h % 4 == 0 and w % 4 == 0 else (1, 2) if h % 2 == 0 and w % 2 == 0 else (1,)
    coarsest = h // 2 ** (len(mults) - 1)

    def config(base: int) -> UNetConfig:
        return UNetConfig(channels=c, frames=f, height=h, width=w, base_channels=base, channel_mults=mults,
                          attention_resolutions=(coarsest,), head_dim=min(64, base), emb_dim=4 * base,
                          text_dim=text_dim, norm_groups=min(32, base), space=prior.spec.space)

    def count(base: int) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in SpaceTimeUNet(config(base)).parameters())

    target, base, below = share * prior.spec.parameters, 16, 0
    while (params := count(base)) < target and base < 1024:  # parameters grow with the width
        base, below = base + 16, params
    return config(base if base == 16 or params - target < target - below else base - 16)


def time_calls(fn, args, iters: int, device: torch.device) -> tuple[float, float]:
    """(median milliseconds per call, peak GiB allocated) after 2 warm-up calls."""
    cuda = device.type == "cuda"
    for _ in range(2):
        fn(*args)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*args)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn(*args)
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times), (torch.cuda.max_memory_allocated() / GIB if cuda else float("nan"))


def sampling_rows(name, prior, adapter, batches, iters, device, offload: bool) -> list[dict]:
    text_len, text_dim = prior.null_text.tokens.shape[1:]
    modes = {"prior, CFG": ("prior", 5.0), "prior, no guidance": ("prior", 1.0),
             "composed (Algorithm 1)": ("composed", 5.0)}
    rows = []
    for b in batches:
        x = torch.randn((b,) + prior.spec.shape, device=device)
        logsnr = torch.zeros(b, device=device)
        text = torch.randn(b, text_len, text_dim, device=device)
        # an adapter trained in the prior's space reads the prompt through the prior's own encoder
        conds = Conds(small=Cond.make(text=text), prior=Cond.make(text=text))
        base = None
        for label, (mode, alpha) in modes.items():
            fn = mode_fn(mode, adapter, prior, alpha=alpha, strength=PriorStrength(0.1))
            ms, peak = time_calls(fn, (x, logsnr, conds), iters, device)
            base = base or ms
            rows.append({"family": name, "batch": b, "method": label, "offload": offload, "ms_per_step": ms,
                         "vs_prior_cfg": ms / base, "peak_gib": peak})
            print(f"| {name} | {b} | {label} | {'yes' if offload else 'no'} | {ms:.1f} | {ms / base:.2f} | "
                  f"{peak:.2f} |", flush=True)
    return rows


def training_rate(cfg: UNetConfig, batch: int, steps: int, device: torch.device, dtype: torch.dtype) -> float:
    """The adapter's training samples/s in the latent space: denoising loss, autocast, AdamW (fused on CUDA)."""
    from video_adapter.training.steps import denoising_loss

    net = SpaceTimeUNet(cfg).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=device.type == "cuda")
    video = torch.randn(batch, cfg.channels, cfg.frames, cfg.height, cfg.width, device=device)
    cond = Cond.make(text=torch.randn(batch, 16, cfg.text_dim, device=device), first_frame=video[:, :, 0])

    def step():
        t, eps = torch.rand(batch, device=device), torch.randn_like(video)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = denoising_loss(net, video, cond, t, eps, cfg.prediction)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms, _ = time_calls(step, (), steps, device)
    return batch / ms * 1e3


def offload(prior: DiffusersPrior, device: torch.device) -> None:
    """The prior's weights to CPU memory, moved to `device` per layer at each forward (--prior-offload)."""
    from accelerate import cpu_offload

    prior.denoiser.to("cpu")
    torch.cuda.empty_cache()
    cpu_offload(prior.denoiser, execution_device=device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", nargs="+", choices=sorted(FAMILIES), default=[f for f in FAMILIES if f != "modelscope"])
    p.add_argument("--tiny", action="store_true", help="tiny configs at a tiny size, to check the script on a CPU")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--offload", action="store_true", help="also time every row with the prior offloaded")
    p.add_argument("--adapter-share", type=float, default=0.015, help="adapter parameters / prior parameters")
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="also write the rows as JSON here")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = {"device": gpu, "dtype": str(dtype), "torch": torch.__version__, "families": {}, "rows": []}
    print("| prior | batch | method | offload | ms / step | x prior with CFG | peak GiB |\n"
          "|---|---:|---|---|---:|---:|---:|")
    for name in args.family:
        torch.manual_seed(0)
        prior = build_prior(name, args.tiny, device, dtype)
        cfg = adapter_config(prior, args.adapter_share, prior.null_text.tokens.shape[-1])
        unet = SpaceTimeUNet(cfg).to(device).eval().requires_grad_(False)
        adapter = NativeScoreModel(unet, autocast=dtype if dtype != torch.float32 else None,
                                   cuda_graphs=device.type == "cuda")
        share = adapter.spec.parameters / prior.spec.parameters
        info = {"source": FAMILIES[name].source, "prior_parameters": prior.spec.parameters,
                "adapter_parameters": adapter.spec.parameters, "adapter_share": share, "latents": prior.spec.shape,
                "video": TINY_VIDEO.get(name, (5, 32, 32)) if args.tiny else FAMILIES[name].video,
                "adapter_config": cfg.to_dict()}
        rows = sampling_rows(name, prior, adapter, args.batch, args.iters, device, offload=False)
        if args.offload:
            offload(prior, device)
            rows += sampling_rows(name, prior, adapter, args.batch, args.iters, device, offload=True)
        del prior, adapter, unet
        if device.type == "cuda":
            torch.cuda.empty_cache()
        info["train_samples_per_s"] = training_rate(cfg, args.train_batch, args.train_steps, device, dtype)
        print(f"{name}: prior {info['prior_parameters'] / 1e9:.3f}B, adapter {info['adapter_parameters'] / 1e6:.1f}M "
              f"({100 * share:.2f}%), latents {info['latents']}; adapter training {info['train_samples_per_s']:.2f} "
              f"samples/s at batch {args.train_batch}; {gpu}", flush=True)
        results["families"][name] = info
        results["rows"] += rows
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
