"""What a training step pays for randomness that does not depend on the process count.

    python benchmarks/step_draws.py [--batch 128] [--processes 2] [--steps 20] [--device cpu|cuda]

`train.step_draws` draws the step's whole global batch (--processes x --batch) from one generator keyed by the step
and keeps one process's rows; the peer is one generator drawing only the process's own batch, which is what most
trainers do, but whose draws change with the number of processes. Prints ms per step for both at the video shape of
the paper (16x24x40).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from video_adapter.maths.conditioning import CONDITIONS  # noqa: E402
from video_adapter.training.steps import step_draws  # noqa: E402


def peer_draws(gen: torch.Generator, shape: tuple[int, ...], device: str):
    return (torch.rand(shape[0], generator=gen, device=device), torch.randn(shape, generator=gen, device=device),
            torch.rand(shape[0], len(CONDITIONS), generator=gen, device=device))


def ms_per_step(draw, steps: int, device: str) -> float:
    draw(0)  # warm-up (CUDA context, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(steps):
        draw(step)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="samples per step (per process)")
    parser.add_argument("--processes", type=int, default=2, help="processes sharing the global batch")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--device", default="cpu", help="where the draws are made: cpu or cuda")
    args = parser.parse_args()
    shape = (args.batch, 3, 16, 24, 40)
    gen = torch.Generator(device=args.device).manual_seed(0)
    rows, global_shape = slice(0, args.batch), (args.processes * args.batch, *shape[1:])
    ours = ms_per_step(lambda step: step_draws(0, step, rows, global_shape, args.device), args.steps, args.device)
    peer = ms_per_step(lambda step: peer_draws(gen, shape, args.device), args.steps, args.device)
    print(f"batch {args.batch} x {shape[1:]} per process, {args.processes} processes, on {args.device}, "
          f"{torch.get_num_threads()} threads\n")
    print("| draws | ms / step |\n|---|---:|")
    print(f"| peer: one generator for the batch | {peer:.2f} |")
    print(f"| ours: `step_draws`, the global batch's draws, one process's rows kept | {ours:.2f} |")
    print(f"\nours/peer: {ours / peer:.2f}x the time")


if __name__ == "__main__":
    main()
