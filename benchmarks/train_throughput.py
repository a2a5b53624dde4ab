"""Training throughput and peak memory: our space-time U-Net against diffusers' UNet3DConditionModel at its best.

Both train on random 16x24x40 video with eps-prediction MSE, bf16 autocast and AdamW (fused on CUDA), in one run:

    python benchmarks/train_throughput.py --compile --channels-last --ours-batch 128

Ours is `SpaceTimeUNet(preset("bench-35m"))`. The peer is a 34.3M-parameter UNet3DConditionModel: blocks
(64, 128, 256), 2 layers per block, cross-attention dim 384, diffusers defaults otherwise (attention_head_dim 64,
norm_num_groups 32). The peer runs twice in the same run: as diffusers ships it (eager, its default memory format, at
--peer-batch), and at its best, `torch.compile`d in both memory formats at each of --peer-best-batches; the fastest
of those rows is the peer the headline ratio compares with (ours_over_peer_best_*), the shipped one stands beside
it. Throughput is samples/s over the timed steps after warmup; peak memory is torch.cuda.max_memory_allocated over
warmup and timed steps, so it includes weights, gradients and optimizer state. Results go to a markdown table on
stdout and to --json. CPU smoke check (no compiling):

    python benchmarks/train_throughput.py --device cpu --steps 1 --warmup 0 --batch 1 --peer-best-batches ""
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from video_adapter.common.files import atomic_write_text
from video_adapter.maths.conditioning import Cond
from video_adapter.maths.schedule import diffuse, logsnr_cosine
from video_adapter.models.unet import preset

FRAMES, HEIGHT, WIDTH = 16, 24, 40
CHANNELS = 3
TEXT_LEN, TEXT_DIM = 32, 384
PEER_TIMESTEPS = 1000
PEER_BEST = "peer, compiled"  # the rows of the peer at its best settings: compiled, each memory format and batch
GIB = 2**30
SDPA_BACKENDS = {"default": None, "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH",
                 "cudnn": "CUDNN_ATTENTION"}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "train_throughput.json"


@dataclass
class Batch:
    x_t: Tensor  # [B, C, F, H, W] noisy video
    eps: Tensor  # the noise to predict
    logsnr: Tensor  # [B], ours' noise input
    timestep: Tensor  # [B] int in [0, PEER_TIMESTEPS), the peer's noise input at the same t
    text: Tensor  # [B, L, D]
    cond: Cond


def make_batch(batch: int, device: torch.device, channels_last: bool, cfg=None) -> Batch:
    """A random batch at 16x24x40, or at the shape of `cfg` (our UNetConfig) with the conditions it cannot train
    without: a super-resolution stage's upsampled input and, trained with noise augmentation, that input's level."""
    shape = (cfg.frames, cfg.height, cfg.width) if cfg is not None else (FRAMES, HEIGHT, WIDTH)
    t = torch.rand(batch, device=device)
    logsnr = logsnr_cosine(t)
    x0 = torch.rand(batch, CHANNELS, *shape, device=device) * 2 - 1
    eps = torch.randn_like(x0)
    x_t = diffuse(x0, eps, logsnr)
    if channels_last:
        x_t = x_t.contiguous(memory_format=torch.channels_last_3d)
    text = torch.randn(batch, TEXT_LEN, TEXT_DIM, device=device)
    mask = torch.ones(batch, TEXT_LEN, dtype=torch.bool, device=device)
    timestep = (t * (PEER_TIMESTEPS - 1)).round().long()
    lowres = {}
    if cfg is not None and cfg.lowres_factor:
        lowres["lowres"] = torch.rand_like(x_t) * 2 - 1
        if cfg.lowres_aug:
            lowres["lowres_level"] = torch.rand(batch, device=device) * cfg.lowres_aug
    return Batch(x_t, eps, logsnr, timestep, text, Cond.make(text=text, text_mask=mask, **lowres))


def ours_loss(model: nn.Module, b: Batch) -> Tensor:
    return F.mse_loss(model(b.x_t, b.logsnr, b.cond).float(), b.eps)


def peer_loss(model: nn.Module, b: Batch) -> Tensor:
    return F.mse_loss(model(b.x_t, b.timestep, encoder_hidden_states=b.text, return_dict=False)[0].float(), b.eps)


def build_ours(preset_name: str) -> nn.Module:
    from video_adapter.models.unet import SpaceTimeUNet

    return SpaceTimeUNet(preset(preset_name))


def build_peer() -> nn.Module:
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(
        in_channels=CHANNELS,
        out_channels=CHANNELS,
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        cross_attention_dim=TEXT_DIM,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    )


def to_channels_last(model: nn.Module) -> None:
    """Channels-last weights for every 2-D and 3-D convolution (Module.to accepts one format for both ranks)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for p in model.parameters():
        if p.dim() in formats:
            p.data = p.data.contiguous(memory_format=formats[p.dim()])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn, b: Batch, device: torch.device) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = loss_fn(model, b)
    loss.backward()
    opt.step()


def time_steps(model, opt, loss_fn, batch: int, channels_last: bool, args, device,
               cfg=None) -> tuple[float, float] | None:
    """(seconds of warmup, including compilation; seconds per timed step), or None when out of GPU memory."""
    b = make_batch(batch, device, channels_last, cfg)
    try:
        start = time.perf_counter()
        for _ in range(args.warmup):
            train_step(model, opt, loss_fn, b, device)
        sync(device)
        warmup_end = time.perf_counter()
        for _ in range(args.steps):
            train_step(model, opt, loss_fn, b, device)
        sync(device)
        return warmup_end - start, (time.perf_counter() - warmup_end) / args.steps
    except torch.OutOfMemoryError:
        return None


def benchmark(name: str, model: nn.Module, loss_fn, batches: list[int], compile_model: bool, channels_last: bool,
              args, device) -> list[dict]:
    """One row per batch size; the model and its optimizer are shared across the rows."""
    params, cfg = sum(p.numel() for p in model.parameters()), getattr(model, "cfg", None)  # the peer has none
    model = model.to(device).train()
    if channels_last:
        to_channels_last(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    fwd = torch.compile(model, dynamic=False) if compile_model else model
    rows = []
    for batch in batches:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timing = time_steps(fwd, opt, loss_fn, batch, channels_last, args, device, cfg)
        opt.zero_grad(set_to_none=True)
        peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
        free_memory(device)
        warmup_s, step_s = timing or (None, None)
        row = {
            "model": name,
            "params": params,
            "batch": batch,
            "compiled": compile_model,
            "channels_last": channels_last,
            "oom": timing is None,
            "warmup_s": warmup_s,
            "step_ms": None if step_s is None else 1e3 * step_s,
            "samples_per_s": None if step_s is None else batch / step_s,
            "peak_gib": None if step_s is None else peak,
            "gib_per_sample": None if step_s is None or peak is None else peak / batch,
        }
        print(progress_line(row), flush=True)
        rows.append(row)
    return rows


def profile_steps(model: nn.Module, loss_fn, batch: int, channels_last: bool, steps: int, device) -> str:
    """torch.profiler's table of the kernels of `steps` eager training steps (after two untimed ones), by device
    time: where a model that is slower than its arithmetic spends its steps."""
    from torch.profiler import ProfilerActivity, profile

    model = model.to(device).train()
    if channels_last:
        to_channels_last(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    b = make_batch(batch, device, channels_last, getattr(model, "cfg", None))
    for _ in range(2):
        train_step(model, opt, loss_fn, b, device)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train_step(model, opt, loss_fn, b, device)
        sync(device)
    def self_time(evt) -> float:  # microseconds on the device (the CPU's when profiling on the CPU)
        if device.type != "cuda":
            return evt.self_cpu_time_total
        return getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0.0)

    events = sorted(prof.key_averages(), key=self_time, reverse=True)
    total = sum(self_time(e) for e in events)
    lines = [f"profile: {steps} steps of batch {batch}, {total / 1e3 / steps:.1f} ms of kernels per step"]
    lines += [f"{self_time(e) / 1e3 / steps:8.2f} ms/step {100 * self_time(e) / total:5.1f}% x{e.count // steps:<4d} "
              f"{e.key[:90]}" for e in events[:25]]
    return "\n".join(lines)


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def progress_line(row: dict) -> str:
    if row["oom"]:
        return f"[{row['model']}] batch {row['batch']}: out of memory"
    return (f"[{row['model']}] {row['params'] / 1e6:.1f}M params, batch {row['batch']}: "
            f"{row['samples_per_s']:.1f} samples/s, {row['step_ms']:.1f} ms/step, "
            f"peak {fmt(row['peak_gib'], '.2f')} GiB, "
            f"warmup {row['warmup_s']:.1f} s")


def markdown_table(rows: list[dict]) -> str:
    from video_adapter.common.tables import table_markdown

    header = ["model", "params (M)", "batch", "compiled", "channels-last", "samples/s", "ms/step", "peak GiB",
              "GiB/sample"]
    return table_markdown(header, [[r["model"], f"{r['params'] / 1e6:.1f}", str(r["batch"]),
                                    "yes" if r["compiled"] else "no", "yes" if r["channels_last"] else "no",
                                    "OOM" if r["oom"] else fmt(r["samples_per_s"], ".1f"), fmt(r["step_ms"], ".1f"),
                                    fmt(r["peak_gib"], ".2f"), fmt(r["gib_per_sample"], ".3f")] for r in rows])


def best(rows: list[dict], name: str) -> dict | None:
    ok = [r for r in rows if r["model"] == name and not r["oom"]]
    return max(ok, key=lambda r: r["samples_per_s"], default=None)


def value(row: dict | None, key: str):
    return None if row is None else row[key]


def ratio(a, b) -> float | None:
    return None if a is None or b is None else a / b


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="bench-35m", help="preset of our SpaceTimeUNet")
    p.add_argument("--batch", type=int, default=16, help="batch size of both models")
    p.add_argument("--ours-batch", help="our batch size(s), comma separated, e.g. 16,64,128 (default --batch)")
    p.add_argument("--peer-batch", type=int, help="the peer's batch size as shipped, eager (default --batch)")
    p.add_argument("--peer-best-batches", default="16,32,64",
                   help="batch sizes of the compiled peer, each in both memory formats (\"\": skip these rows)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per row (compilation happens here)")
    p.add_argument("--compile", action="store_true", help="torch.compile ours")
    p.add_argument("--compile-peer", action="store_true", help="torch.compile the peer at --peer-batch as well")
    p.add_argument("--channels-last", action="store_true", help="channels-last (NDHWC) weights and input for ours")
    p.add_argument("--channels-last-peer", action="store_true", help="channels-last weights and input for the peer")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="also print torch.profiler's kernel table of STEPS eager steps of ours at the first batch")
    p.add_argument("--sdpa", choices=sorted(SDPA_BACKENDS), default="default",
                   help="scaled_dot_product_attention backend (default: torch's own choice)")
    p.add_argument("--skip-ours", action="store_true")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    args.ours_batches = [int(b) for b in args.ours_batch.split(",")] if args.ours_batch else [args.batch]
    args.peer_batch = args.peer_batch or args.batch
    args.peer_best_batches = [int(b) for b in args.peer_best_batches.split(",") if b.strip()]
    return args


def main() -> None:
    args = parse_args()
    if SDPA_BACKENDS[args.sdpa]:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[args.sdpa])):
            return run(args)
    return run(args)


def run(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    ours_cfg = preset(args.preset)
    if (ours_cfg.frames, ours_cfg.height, ours_cfg.width) != (FRAMES, HEIGHT, WIDTH) and not args.skip_peer:
        raise SystemExit(f"--preset {args.preset} trains at {ours_cfg.frames}x{ours_cfg.height}x{ours_cfg.width}, "
                         f"the peer at {FRAMES}x{HEIGHT}x{WIDTH}: their ratio would compare different work; "
                         "pass --skip-peer")
    print(f"device {device_name}, torch {torch.__version__}, video {FRAMES}x{HEIGHT}x{WIDTH} (ours: "
          f"{ours_cfg.frames}x{ours_cfg.height}x{ours_cfg.width}), "
          f"{args.warmup} warmup + {args.steps} timed steps", flush=True)

    rows = []
    if not args.skip_ours:
        rows += benchmark("ours", build_ours(args.preset), ours_loss, args.ours_batches, args.compile,
                          args.channels_last, args, device)
        free_memory(device)
        if args.profile:
            print(profile_steps(build_ours(args.preset), ours_loss, args.ours_batches[0], args.channels_last,
                                args.profile, device), flush=True)
            free_memory(device)
    if not args.skip_peer:
        rows += benchmark("peer", build_peer(), peer_loss, [args.peer_batch], args.compile_peer,
                          args.channels_last_peer, args, device)
        free_memory(device)
        for channels_last in (False, True) if args.peer_best_batches else ():  # where it helps: measured, not assumed
            rows += benchmark(PEER_BEST, build_peer(), peer_loss, args.peer_best_batches, True, channels_last, args,
                              device)
            free_memory(device)

    ours, peer, peer_best = best(rows, "ours"), best(rows, "peer"), best(rows, PEER_BEST)
    speed_ratio = ratio(value(ours, "samples_per_s"), value(peer, "samples_per_s"))
    memory_ratio = ratio(value(ours, "gib_per_sample"), value(peer, "gib_per_sample"))
    best_speed_ratio = ratio(value(ours, "samples_per_s"), value(peer_best, "samples_per_s"))
    best_memory_ratio = ratio(value(ours, "gib_per_sample"), value(peer_best, "gib_per_sample"))
    print()
    print(markdown_table(rows))
    print(f"\nours / the peer at its best (compiled, batch {value(peer_best, 'batch')}, channels-last "
          f"{value(peer_best, 'channels_last')}): samples/s x{fmt(best_speed_ratio, '.2f')}, GiB/sample "
          f"x{fmt(best_memory_ratio, '.2f')}; ours / the peer as shipped (eager, batch {args.peer_batch}): samples/s "
          f"x{fmt(speed_ratio, '.2f')}, GiB/sample x{fmt(memory_ratio, '.2f')}")

    atomic_write_text(args.json, json.dumps({
        "ours_samples_per_s": value(ours, "samples_per_s"),
        "peer_best_samples_per_s": value(peer_best, "samples_per_s"),
        "peer_samples_per_s": value(peer, "samples_per_s"),
        "ours_gib_per_sample": value(ours, "gib_per_sample"),
        "peer_best_gib_per_sample": value(peer_best, "gib_per_sample"),
        "peer_gib_per_sample": value(peer, "gib_per_sample"),
        "ours_over_peer_best_samples_per_s": best_speed_ratio,
        "ours_over_peer_best_gib_per_sample": best_memory_ratio,
        "samples_per_s_ratio": speed_ratio,
        "gib_per_sample_ratio": memory_ratio,
        "device": device_name,
        "params": {"ours": value(ours, "params"), "peer": value(peer, "params")},
        "batches": {"ours": value(ours, "batch"), "peer": value(peer, "batch"), "peer_best": value(peer_best, "batch")},
        "peer_best_channels_last": value(peer_best, "channels_last"),
        "preset": args.preset,
        "compile": args.compile,
        "sdpa": args.sdpa,
        "compile_peer": args.compile_peer,
        "channels_last": args.channels_last,
        "channels_last_peer": args.channels_last_peer,
        "steps": args.steps,
        "warmup": args.warmup,
        "video": [FRAMES, HEIGHT, WIDTH],
        "torch": torch.__version__,
        "diffusers": None if args.skip_peer else version("diffusers"),  # the GPU machine may lack it
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
