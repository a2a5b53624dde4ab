"""`video-adapter make-data`: render a generator's clips in parallel into a dataset folder the loader reads.

    DIR/train/000123.mp4 ...  DIR/train/captions.jsonl   (90% of the clips)
    DIR/test/000007.mp4 ...   DIR/test/captions.jsonl    (10%, the paper's split)
    DIR/data_card.json        generator, version, seed, counts, look, what is held out, measured speed
    DIR/preview.png           captions and first / middle / last frames of the first clips

Clips are stored losslessly by default (--crf 0, ~6 KB per 16x24x40 clip): x264's lossy modes decided differently
from run to run at sizes that are not multiples of 16, such as 24x40, so a lossy dataset's pixels would not be a
function of the seed. Each line of captions.jsonl is {"video", "caption", "meta"}: the loader reads the first two, and `meta` is the scene
metadata the caption was generated from. Clip i depends only on (seed, i), so the folder is the same for any number
of workers; it is written next to DIR and renamed into place when complete (a run killed outright leaves that
hidden folder, which the next run for DIR removes).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import socket
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...common.files import replace_dir
from .base import Clip, parse_size

CARD_NAME = "data_card.json"
SPLIT_SEED = 0x5EED  # the train/test permutation's own stream, apart from every clip's


@dataclass(frozen=True)
class MakeDataConfig:
    out: str = ""                         # dataset folder to create (must not exist yet, unless --overwrite)
    num: int = 1000                       # clips in total (train + test)
    seed: int = 0                         # the dataset is a deterministic function of the seed
    size: str = "24x40"                   # HEIGHTxWIDTH of the stored clips (paper: 24x40)
    frames: int = 16                      # frames per clip (paper: 16)
    fps: int = 8                          # frame rate written into the mp4 files
    test_fraction: float = 0.1            # held-out test share (paper: 90/10 split)
    workers: int = 0                      # processes (0: one per CPU core)
    crf: int = 0                          # mp4 quality: 0 lossless (lossy x264 output varies by run at 24x40)
    overwrite: bool = False               # replace an existing dataset folder


def _render(job: tuple) -> tuple[int, str, dict, float]:
    """Worker: render clip `index` and write it as mp4; returns (index, caption, meta, seconds)."""
    from ..video_io import write_mp4
    from . import generator

    kind, index, seed, size, frames, fps, crf, path = job
    start = time.perf_counter()
    clip: Clip = generator(kind).clip(index, seed, size, frames)
    write_mp4(path, clip.video, fps=fps, crf=crf)
    return index, clip.caption, clip.meta, time.perf_counter() - start


def split_indices(num: int, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """A seeded 90/10 (by default) partition of range(num), each part sorted."""
    order = np.random.default_rng([seed, SPLIT_SEED]).permutation(num)
    n_test = int(round(num * test_fraction))
    return {"train": sorted(order[n_test:].tolist()), "test": sorted(order[:n_test].tolist())}


def _check(cfg: MakeDataConfig, kind: str) -> tuple[int, int]:
    from . import KINDS

    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not cfg.out:
        raise ValueError("--out DIR is required: the dataset folder to create")
    if cfg.num < 1 or cfg.frames < 2 or cfg.fps < 1:
        raise ValueError(f"--num must be >= 1, --frames >= 2 and --fps >= 1 (got {cfg.num}, {cfg.frames}, {cfg.fps})")
    if not 0.0 <= cfg.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in [0, 1), got {cfg.test_fraction}")
    if cfg.workers < 0:
        raise ValueError(f"--workers must be >= 0 (0: one per core), got {cfg.workers}")
    if Path(cfg.out).exists() and not cfg.overwrite:
        raise ValueError(f"{cfg.out} exists; choose another --out or pass --overwrite")
    return parse_size(cfg.size)


def remove_stale_temps(out: Path) -> None:
    """Deletes the temp folders of `out` left by runs killed outright (kill -9, power loss), which no `finally` removed.

    A folder's name holds its writer's host and PID: one is stale once that process is gone. Another host's folder
    is left alone (its PID means nothing here, and the disk may be shared), as is a live writer's."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.tmp-(.+)-(\d+)-[0-9a-f]{{8}}")
    for tmp in out.parent.iterdir() if out.parent.is_dir() else []:
        match = pattern.fullmatch(tmp.name)
        if match and match[1] == socket.gethostname() and not _alive(int(match[2])):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


def make_dataset(kind: str, cfg: MakeDataConfig, progress: bool = True) -> Path:
    """Render `cfg.num` clips of `kind` into `cfg.out`; returns the folder."""
    from . import generator

    size = _check(cfg, kind)
    gen = generator(kind)
    out = Path(cfg.out)
    remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    splits = split_indices(cfg.num, cfg.test_fraction, cfg.seed)
    split_of = {i: name for name, idx in splits.items() for i in idx}
    jobs = [(kind, i, cfg.seed, size, cfg.frames, cfg.fps, cfg.crf, str(tmp / split_of[i] / f"{i:06d}.mp4"))
            for i in range(cfg.num)]
    workers = min(cfg.workers or os.cpu_count() or 1, cfg.num)
    records, busy = {}, 0.0
    start = time.perf_counter()
    try:
        for name in splits:
            (tmp / name).mkdir(parents=True)
        # spawn: a forked pybullet client or torch thread pool would be shared state in every child; an executor,
        # not a Pool, so a worker that dies raises BrokenProcessPool instead of being replaced forever
        spawn = multiprocessing.get_context("spawn")
        with (ProcessPoolExecutor(workers, mp_context=spawn) if workers > 1 else nullcontext()) as pool, \
                tqdm(total=cfg.num, desc=f"make-data {kind}", unit="clip", disable=not progress) as bar:
            chunk = max(1, min(16, cfg.num // (8 * workers)))
            results = map(_render, jobs) if pool is None else pool.map(_render, jobs, chunksize=chunk)
            for index, caption, meta, seconds in results:
                records[index] = (caption, meta)
                busy += seconds
                bar.update()
        wall = time.perf_counter() - start
        for name, idx in splits.items():
            lines = [json.dumps({"video": f"{i:06d}.mp4", "caption": records[i][0], "meta": records[i][1]})
                     for i in idx]
            (tmp / name / "captions.jsonl").write_text("".join(line + "\n" for line in lines))
        card = data_card(gen, kind, cfg, size, {n: len(i) for n, i in splits.items()}, busy, wall, workers)
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
        shown = range(min(8, cfg.num))
        write_preview(tmp / "preview.png", [tmp / split_of[i] / f"{i:06d}.mp4" for i in shown],
                      [records[i][0] for i in shown])
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def data_card(gen, kind: str, cfg: MakeDataConfig, size: tuple[int, int], counts: dict, busy: float, wall: float,
              workers: int) -> dict:
    return {
        "kind": kind,
        "generator": f"{type(gen).__module__}.{type(gen).__qualname__}",
        "version": gen.version,
        "seed": cfg.seed,
        "counts": counts,
        "size": list(size),
        "frames": cfg.frames,
        "fps": cfg.fps,
        "split": f"seeded permutation, {cfg.test_fraction:.0%} test",
        "look": gen.look,
        "held_out": gen.held_out,
        "templates": list(gen.templates),
        "speed": {"clips_per_second_per_core": round(cfg.num / busy, 2) if busy else None,
                  "clips_per_second": round(cfg.num / wall, 2), "workers": workers},
        "command": "video-adapter make-data " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["make-data"] else "",
        "config": asdict(cfg),
    }


def write_preview(path: Path, videos: list[Path], captions: list[str], upscale: int = 4) -> Path:
    """A PNG contact sheet: per clip, its caption above its first, middle and last frame."""
    from PIL import Image, ImageDraw

    from ..video_io import read_video

    rows = []
    for video in videos:
        frames = read_video(video)
        gap = np.full((frames.shape[1], 2, 3), 255, np.uint8)
        row = np.concatenate([frames[0], gap, frames[len(frames) // 2], gap, frames[-1]], axis=1)
        rows.append(row.repeat(upscale, 0).repeat(upscale, 1))
    width, line = max(r.shape[1] for r in rows), 14
    sheet = Image.new("RGB", (width, sum(r.shape[0] + line + 4 for r in rows)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for row, caption in zip(rows, captions):
        draw.text((2, y + 1), caption, fill=(0, 0, 0))
        sheet.paste(Image.fromarray(row), (0, y + line))
        y += row.shape[0] + line + 4
    sheet.save(path)
    return path
