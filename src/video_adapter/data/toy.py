"""A tiny captioned video dataset for demos and tests: coloured shapes moving on a plain background.

Each clip shows one square or circle of one colour moving left/right/up/down in a straight line at constant speed,
captioned like "a red square moves left". Clips are drawn at `upscale` times the target size (shapes have smooth,
sub-pixel positions there) and written as mp4 at that size with a low crf; the loader's anti-aliased downsampling back
to `size` then averages away most of the H.264/yuv420p chroma error, so colours come back within a few levels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..common.files import atomic_path
from .video_io import write_mp4

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (40, 60, 230),
    "yellow": (240, 220, 30),
    "cyan": (30, 210, 220),
    "magenta": (220, 40, 220),
    "white": (245, 245, 245),
}
SHAPES = ("square", "circle")
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (dy, dx)
BACKGROUND = (40, 40, 40)


def render_clip(
    color: str, shape: str, direction: str, frames: int = 16, size: tuple[int, int] = (24, 40),
    upscale: int = 4, rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One clip as uint8 `[frames, H*upscale, W*upscale, 3]`; `rng` picks shape size, lane, start and speed."""
    rng = rng if rng is not None else np.random.default_rng(0)
    h, w = size[0] * upscale, size[1] * upscale
    radius = rng.uniform(0.12, 0.18) * min(size) * upscale  # half the side for squares
    dy, dx = DIRECTIONS[direction]
    # Centre range that keeps the whole shape inside the frame along each axis.
    lo, hi = np.array([radius, radius]), np.array([h - radius, w - radius])
    axis = 0 if dy else 1
    travel = (hi[axis] - lo[axis]) * rng.uniform(0.6, 1.0)
    start = rng.uniform(lo, hi)
    start[axis] = lo[axis] + rng.uniform(0, hi[axis] - lo[axis] - travel)
    if dy + dx < 0:  # moving towards smaller coordinates: start at the far end
        start[axis] += travel
    step = travel / max(frames - 1, 1)

    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    out = np.empty((frames, h, w, 3), np.uint8)
    out[:] = BACKGROUND
    for f in range(frames):
        cy, cx = start[0] + dy * step * f, start[1] + dx * step * f
        if shape == "circle":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        else:
            mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
        out[f][mask] = COLORS[color]
    return out


def make_toy_dataset(
    out_dir: str | os.PathLike, num: int = 64, frames: int = 16, size: tuple[int, int] = (24, 40), seed: int = 0,
    progress: bool = True, upscale: int = 4, fps: float = 8, crf: int = 12,
) -> Path:
    """Write `num` clips (`clip_0000.mp4`, ...) and `captions.jsonl` into `out_dir`; deterministic given the seed.

    Every file is written atomically and captions.jsonl last, so an interrupted run never leaves a dataset that
    looks complete. Returns `out_dir`, ready for `VideoFolderDataset(out_dir, frames=frames, size=size)`.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for i in tqdm(range(num), desc="toy videos", disable=not progress):
        color = list(COLORS)[rng.integers(len(COLORS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
        clip = render_clip(color, shape, direction, frames, size, upscale, rng)
        name = f"clip_{i:04d}.mp4"
        write_mp4(out / name, clip, fps=fps, crf=crf)
        records.append({"video": name, "caption": f"a {color} {shape} moves {direction}",
                        "color": color, "shape": shape, "direction": direction})
    with atomic_path(out / "captions.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out
