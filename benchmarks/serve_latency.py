"""What serving the prior over loopback HTTP costs a composed sampler: per prior call, and for a whole composed run.

    python benchmarks/serve_latency.py --prior checkpoints/prior --batch 1 --steps 10     # the shipped prior
    python benchmarks/serve_latency.py --prior tiny --batch 4 --steps 25                   # a random tiny model

Starts `video-adapter serve-prior` in a subprocess (on --device), builds a random adapter of the preset
--adapter-preset at the prior's video size (its weights do not change the cost), and measures, on --device:

1. the prior's eps for one composed step's batch (--batch rows, caption and first frame), --repeats times: local
   forward against the same call through RemoteScoreModel; the median difference is the loopback overhead per
   composed step (the composition calls the prior once per step);
2. composed sampling (`generation.generate`, --sampler, --steps) with the local prior and with the remote one, the
   same seed; the samples must be equal (bit for bit on the CPU in float32).

Writes --out (JSON) and prints a markdown table.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from serve_load import TINY, TOKEN, Server  # noqa: E402

from video_adapter.common.devices import resolve_device  # noqa: E402
from video_adapter.generation.generate import SamplingSettings, generate  # noqa: E402
from video_adapter.generation.loading import load_model  # noqa: E402
from video_adapter.generation.routing import model_conds, route_conditions  # noqa: E402
from video_adapter.maths.composition import PriorStrength  # noqa: E402
from video_adapter.models.checkpoint import read_config, save_model  # noqa: E402
from video_adapter.models.remote import RemoteScoreModel  # noqa: E402
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig, preset  # noqa: E402


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="checkpoints/prior", help="a checkpoint directory, or tiny")
    parser.add_argument("--adapter-preset", default="small-s")
    parser.add_argument("--batch", type=int, default=1, help="samples per composed step")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--repeats", type=int, default=20, help="timed prior calls, after 3 untimed")
    parser.add_argument("--device", default="cpu", help="where both the server and the local run compute")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the local run and of the server "
                        "(0: torch's default; 1 keeps shared cores from turning thread barriers into waits)")
    parser.add_argument("--port", type=int, default=8793)
    parser.add_argument("--out", default="benchmarks/results/serve_latency.json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        prior = args.prior
        torch.manual_seed(0)
        if prior == "tiny":
            prior = str(save_model(Path(tmp) / "tiny", SpaceTimeUNet(TINY), "minilm"))
        size = UNetConfig.from_dict(read_config(prior)["unet"]) if args.prior != "tiny" else TINY
        adapter_cfg = preset(args.adapter_preset, frames=size.frames, height=size.height, width=size.width,
                             text_dim=size.text_dim)
        adapter = str(save_model(Path(tmp) / "adapter", SpaceTimeUNet(adapter_cfg),
                                 read_config(prior)["text_encoder"]))
        with Server(prior, token_file, args.port, max_batch=max(32, 2 * args.batch), read_timeout=30,
                    device=args.device, dtype=args.dtype, threads=args.threads):
            result = measure(args, prior, adapter, device, dtype)
    result.update(prior=args.prior, device=str(device), dtype=args.dtype, cores=os.cpu_count(),
                  torch_threads=torch.get_num_threads(), gpu=torch.cuda.get_device_name(device)
                  if device.type == "cuda" else None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(markdown(result))


def measure(args, prior_dir: str, adapter_dir: str, device: torch.device, dtype: torch.dtype) -> dict:
    local = {"small": load_model(adapter_dir, device, dtype), "prior": load_model(prior_dir, device, dtype)}
    remote = {"small": local["small"], "prior": RemoteScoreModel(f"http://127.0.0.1:{args.port}", TOKEN)}
    spec = local["prior"].spec
    g = torch.Generator().manual_seed(0)
    first = torch.rand(args.batch, spec.channels, spec.height, spec.width, generator=g) * 2 - 1
    prompts = [f"push the block {i}" for i in range(args.batch)]
    conds = {}
    for name, models in (("local", local), ("remote", remote)):
        routes = route_conditions(models, {"text", "first_frame"}, partial=False)
        conds[name] = model_conds(models, prompts, {"first_frame": first}, routes, device)
    x = torch.randn(args.batch, *spec.shape, generator=g).to(device)
    logsnr = torch.zeros(args.batch, dtype=torch.float64)
    calls = {}
    for name, models in (("local", local), ("remote", remote)):
        call = lambda m=models, c=conds[name].prior: m["prior"](x, logsnr, c)  # noqa: E731
        timed(call, 3, device)
        calls[name] = timed(call, args.repeats, device)
    settings = SamplingSettings(sampler=args.sampler, steps=args.steps, guidance=5.0, strength=PriorStrength(0.1),
                                seed=0)
    runs = {}
    for name, models in (("local", local), ("remote", remote)):
        runs[name] = generate(models, conds[name], ("composed",), settings, device, progress=False)
    same = torch.equal(runs["local"].videos["composed"], runs["remote"].videos["composed"])
    median = {k: statistics.median(v) * 1000 for k, v in calls.items()}
    return {"batch": args.batch, "steps": args.steps, "sampler": args.sampler, "repeats": args.repeats,
            "prior_call_ms": {k: {"median": median[k], "min": min(v) * 1000, "max": max(v) * 1000}
                              for k, v in calls.items()},
            "overhead_per_composed_step_ms": median["remote"] - median["local"],
            "composed_seconds": {k: r.seconds["composed"] for k, r in runs.items()},
            "composed_overhead_per_step_ms": (runs["remote"].seconds["composed"] - runs["local"].seconds["composed"])
            / args.steps * 1000, "remote_sample_equals_local": same}


def markdown(r: dict) -> str:
    c, s = r["prior_call_ms"], r["composed_seconds"]
    where = f"{r['device']}" + (f" ({r['gpu']})" if r["gpu"] else f", {r['cores']} cores")
    return "\n".join([
        f"prior {r['prior']} on {where}, {r['dtype']}, batch {r['batch']}",
        "", "| | local | remote (loopback) | difference |", "|---|---:|---:|---:|",
        (f"| prior eps of one composed step, median ms | {c['local']['median']:.1f} | {c['remote']['median']:.1f} | "
         f"{r['overhead_per_composed_step_ms']:.1f} |"),
        (f"| composed sampling, {r['steps']} {r['sampler']} steps, s | {s['local']:.2f} | {s['remote']:.2f} | "
         f"{s['remote'] - s['local']:.2f} ({r['composed_overhead_per_step_ms']:.1f} ms a step) |"),
        "", f"remote sample equals the local one bit for bit: {r['remote_sample_equals_local']}"])


if __name__ == "__main__":
    main()
