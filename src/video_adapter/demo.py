"""The demo: generate toy videos, train a tiny model on the CPU for a few minutes, and write samples.

    video-adapter demo --out outputs/demo

Writes `data/` (the toy dataset), `run/` (checkpoint, loss.csv, previews) and `samples.gif` / `samples.mp4`:
one row of training clips and one row of samples for the same captions and first frames.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_model
from .conditioning import Cond
from .data import VideoFolderDataset
from .pipeline import generate
from .text import load_text_encoder
from .toy import make_toy_dataset
from .train import TrainConfig, make_cond, train
from .video_io import write_grid


@dataclass(frozen=True)
class DemoConfig:
    out: str = "outputs/demo"             # everything the demo writes goes here
    num_videos: int = 128                 # toy clips to generate
    frames: int = 8                       # frames per clip (the paper's 16 trains too slowly on a CPU)
    height: int = 16                      # clip size for the demo model
    width: int = 24                       # (divisible by 2: the model has two levels)
    steps: int = 800                      # training steps (about 4 minutes on 2 cores)
    batch_size: int = 8                   # clips per training step
    lr: float = 1e-3                      # a tiny model on toy data tolerates a high rate
    sample_steps: int = 50                # DDIM steps for the final samples
    guidance: float = 3.0                 # classifier-free guidance scale for the final samples
    seed: int = 0                         # data, weights and samples are a deterministic function of it


def train_config(cfg: DemoConfig, data: Path) -> TrainConfig:
    return TrainConfig(
        data=str(data), out=str(Path(cfg.out) / "run"), preset="S", steps=cfg.steps, batch_size=cfg.batch_size,
        lr=cfg.lr, warmup_steps=cfg.steps // 20, ema_decay=0.995, sample_every=0, save_every=cfg.steps,
        log_every=25, seed=cfg.seed, num_workers=0, cache_videos=True,
        model=dict(frames=cfg.frames, height=cfg.height, width=cfg.width, base_channels=16, channel_mults=(1, 2),
                   attention_resolutions=(cfg.height // 2,), head_dim=16, emb_dim=64))


def run_demo(cfg: DemoConfig) -> list[Path]:
    out = Path(cfg.out)
    data = out / "data"
    if not (data / "captions.jsonl").exists():
        print(f"[1/3] generating {cfg.num_videos} toy clips in {data}")
        make_toy_dataset(data, num=cfg.num_videos, frames=cfg.frames, seed=cfg.seed)
    tcfg = train_config(cfg, data)
    print(f"[2/3] training a tiny model for {cfg.steps} steps on the CPU ({tcfg.out})")
    checkpoint = train(tcfg)
    print("[3/3] sampling held-out captions with their first frames")
    model, config = load_model(checkpoint)
    encoder = load_text_encoder(config["text_encoder"])
    dataset = VideoFolderDataset(data, frames=cfg.frames, size=(cfg.height, cfg.width), random_crop=False)
    picks = range(0, len(dataset), max(1, len(dataset) // 4))
    real = torch.stack([dataset[i]["video"] for i in picks])
    captions = [dataset[i]["caption"] for i in picks]
    cond: Cond = make_cond(real, encoder.encode(captions), model.cfg)
    fake = generate(model, cond, sampler="ddim", steps=cfg.sample_steps, guidance=cfg.guidance, seed=cfg.seed,
                    progress=True)
    paths = write_grid(out / "samples.gif", list(real) + list(fake), labels=captions + ["sample"] * len(captions),
                       nrow=len(captions), row_labels=["data", "sample"], upscale=6, formats=("gif", "mp4"))
    rows = list(csv.DictReader((Path(tcfg.out) / "loss.csv").open()))
    print(f"loss {float(rows[0]['loss']):.3f} at step {rows[0]['step']} -> {float(rows[-1]['loss']):.3f} "
          f"at step {rows[-1]['step']}")
    for p in paths:
        print(f"wrote {p}")
    return paths
