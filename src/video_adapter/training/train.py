"""Training a video denoiser on a folder of captioned videos, with accelerate (CPU, one GPU or many).

    video-adapter train --data DIR --out runs/NAME --preset S --steps 20000
    accelerate launch -m video_adapter train ...     # several GPUs, same code

This file is the run's options (`TrainConfig`) and its loop (`train`), which fits on one screen; what a run starts
from is `setup`, one optimizer step `steps`, and its state on disk `run_state`. Exact resume: the online and EMA
weights, optimizer, step, data position and RNG state are all in the checkpoint, so a run killed and resumed ends
bit-identical to an uninterrupted one on CPU. Any process count: the step's noise, times and condition dropout are
drawn for its whole global batch, keyed by the step (`steps.step_draws`), each process keeping its rows, and the
folder sampler deals each process its chunk of that batch, so N processes of batch B train on what one process of
batch N x B does (folder or stream data; equal up to float rounding in the gradient average).
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..common.config import config_from_dict
from ..models import checkpoint as ckpt
from ..models.unet import PRESETS, UNetConfig, preset
from .preview import write_preview
from .run_state import gather_rng_states, run_lock, save_run
from .setup import start_run
from .steps import lr_at, optimizer_step


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""                        # folder of captioned videos, or stream:KIND (clips of a make-data kind)
    stream: str = ""                      # also stream this make-data kind into every batch of a --data folder
    stream_share: float = 0.5             # share of each batch from --stream
    out: str = "runs/train"               # run directory: checkpoints, loss.csv, sample previews
    preset: str = "S"                     # model preset (video_adapter.unet.PRESETS)
    model: dict = field(default_factory=dict)  # UNetConfig field overrides on top of the preset
    text_encoder: str = "minilm"          # "minilm" | "t5:/local/dir" | "clip:/local/dir" (--space: the prior's own)
    space: str = ""                       # a diffusers pipeline dir: train in its VAE's latents (--model: video size)
    steps: int = 20_000                   # optimizer steps (paper: 2M)
    batch_size: int = 8                   # per process (paper: 2048 in total)
    lr: float = 1e-4                      # paper: 1e-4
    warmup_steps: int = -1                # linear warmup (paper: 10k of 2M steps; -1: min(1000, --steps // 10))
    lr_decay: str = "constant"            # after warmup: "constant" | "cosine" (to lr_end at --steps)
    lr_end: float = 0.0                   # the cosine decay's final rate
    weight_decay: float = 0.0             # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    grad_clip: float = 1.0                # max global grad norm
    ema_decay: float = 0.999              # EMA of the weights, warmed up as min(decay, (1+n)/(10+n))
    cond_drop: float = 0.1                # text dropout, for classifier-free guidance
    first_frame_drop: float = 0.1         # first-frame dropout (high for a prior that must also sample without one)
    edges_drop: float = 0.1               # edge dropout (high: with edges the video is nearly given)
    stride: int = 1                       # temporal stride when reading videos
    fit: str = "crop"                     # crop | pad: how clips of another aspect ratio reach the model's
    keywords: tuple[str, ...] = ()        # keep only captions containing one of these (paper's curation)
    skip_bad: bool = False                # skip unreadable videos instead of stopping with a list
    mixed_precision: str = "auto"         # "auto" (bf16 on GPU, fp32 on CPU) | "no" | "bf16"
    compile: bool = False                 # torch.compile the model (GPU)
    num_workers: int = -1                 # DataLoader processes decoding videos (0: the main process; -1: min(4, cores))
    cache_videos: bool = False            # keep decoded, resized videos in RAM (small datasets, many epochs)
    log_every: int = 10                   # steps between loss.csv rows
    heldout: str = ""                     # held-out clips (a folder, or a make-data root's test/) for heldout.csv
    heldout_every: int = 0                # steps between held-out losses of the EMA weights (0: never)
    heldout_num: int = 128                # held-out clips scored (the folder's first N)
    sample_every: int = 1_000             # steps between sample previews (0: never)
    save_every: int = 1_000               # steps between checkpoints (and at the end)
    max_minutes: float = 0.0              # stop with a checkpoint after this long (0: never); the same command resumes
    init: str = ""                        # start from this model directory's weights with a fresh optimizer
    lora_rank: int = 0                    # >0: freeze --init's weights, train LoRA of this rank on attention (lora.py)
    seed: int = 0                         # seeds the weights, data order, crops, noise and dropout

    def model_config(self) -> UNetConfig:
        """The preset with --model overrides or, with --init, the initial model's own config (overrides apply).
        With --space, --model's frames, height and width are the video's; the model gets its latents' shape."""
        # with --space, frames / height / width are the video's, never the (latent) model's
        rest = {k: v for k, v in self.model.items() if k not in ("frames", "height", "width")} if self.space \
            else self.model
        if self.init:
            return replace(ckpt.read_unet_config(self.init)[0], **rest)
        if not self.space:
            return preset(self.preset, **self.model)
        from ..models.diffusers import latent_space

        frames, (height, width) = self.video_shape()
        latents = latent_space(self.space)
        c, f, h, w = latents.latent_shape(frames, height, width)
        if rest.get("edge_cond", PRESETS[self.preset].edge_cond):
            raise ValueError("edges are a pixel-space condition (the Sobel gradient of frames); with --space pass "
                             "--model edge_cond=false")
        return preset(self.preset, **rest, channels=c, frames=f, height=h, width=w, text_dim=latents.text_dim,
                      space=latents.space)

    def video_shape(self) -> tuple[int, tuple[int, int]]:
        """(frames, (height, width)) at which clips are read: the model's own or, with --space, the video's."""
        if self.space:
            frames, height, width = (self.model.get(k, getattr(PRESETS[self.preset], k))
                                     for k in ("frames", "height", "width"))
            return frames, (height, width)
        cfg = self.model_config()
        return cfg.frames, (cfg.height, cfg.width)

    def resolved(self) -> TrainConfig:
        """A copy with the automatic defaults (-1) made concrete: --num-workers min(4, this machine's CPU cores), and
        --warmup-steps min(1000, --steps // 10), so a short run reaches its learning rate, or, resuming the run in
        --out, the warmup it was started with (its schedule must not change midway)."""
        warmup = self.warmup_steps
        if warmup == -1:
            warmup = min(1_000, self.steps // 10)
            checkpoint = Path(self.out) / "checkpoint"
            if (checkpoint / "train_state" / "state.json").exists():
                saved = ckpt.read_config(checkpoint).get("train_config", {}).get("warmup_steps")
                warmup = saved if isinstance(saved, int) and saved >= 0 else warmup
        workers = min(4, os.cpu_count() or 1) if self.num_workers == -1 else self.num_workers
        return replace(self, warmup_steps=warmup, num_workers=workers)

    def validate(self) -> None:
        """Every problem that can be seen without reading data or building the model."""
        for name in ("warmup_steps", "num_workers"):
            if (value := getattr(self, name)) < -1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 0 (or -1: automatic), got {value}")
        if self.lr_decay not in ("constant", "cosine"):
            raise ValueError(f"--lr-decay must be constant or cosine, not {self.lr_decay!r}")
        if self.fit not in ("crop", "pad"):
            raise ValueError(f"--fit must be crop or pad, not {self.fit!r}")
        if self.lora_rank and not self.init:
            raise ValueError("--lora-rank trains LoRA on a pretrained model's frozen weights: pass --init MODEL_DIR")
        at_least = {"steps": 1, "batch_size": 1, "stride": 1, "log_every": 1, "save_every": 1,
                    "sample_every": 0, "heldout_every": 0, "heldout_num": 1, "lora_rank": 0,
                    "max_minutes": 0, "lr": 0, "lr_end": 0,
                    "weight_decay": 0}
        for name, low in at_least.items():
            if not getattr(self, name) >= low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        unit = {"stream_share": self.stream_share, "ema_decay": self.ema_decay, **{
            f"{c}_drop".replace("text_", "cond_"): p for c, p in self.drop.items()}}
        for name, value in unit.items():
            if not 0 <= value <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
        if bool(self.heldout) != bool(self.heldout_every):
            raise ValueError("--heldout DIR and --heldout-every N go together: the clips and how often to score them")
        if not (self.grad_clip > 0 and len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)):
            raise ValueError(f"--grad-clip must be positive and --betas two numbers in [0, 1), got {self.grad_clip} "
                             f"and {self.betas}")

    @property
    def drop(self) -> dict[str, float]:
        return {"text": self.cond_drop, "first_frame": self.first_frame_drop, "edges": self.edges_drop}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d)


def train(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Trains (or resumes) the run in cfg.out; `stop_after` ends after that step without saving, as a kill would.

    With `max_minutes` the run saves and returns once that much time has passed; running it again continues.
    A second run with the same cfg.out while this one lives is an error (`run_lock`).
    """
    started = time.monotonic()
    from accelerate import Accelerator

    cfg.validate()
    cfg = cfg.resolved()  # the concrete warmup and workers are what the checkpoint's train_config records
    acc = Accelerator(mixed_precision=precision(cfg.mixed_precision), cpu=not torch.cuda.is_available())
    # the main process locks for all processes of the run (if it cannot, the launcher ends the others)
    with run_lock(Path(cfg.out)) if acc.is_main_process else nullcontext():
        return _loop(cfg, acc, started, stop_after)


def _loop(cfg: TrainConfig, acc, started: float, stop_after: int | None) -> Path:
    out, run = Path(cfg.out), start_run(cfg, acc)
    end = min(cfg.steps, stop_after or cfg.steps)
    bar = tqdm(range(run.step, end), initial=run.step, total=cfg.steps, disable=not acc.is_main_process, desc="train")
    diverged_at = torch.zeros((), dtype=torch.long, device=acc.device)  # the first non-finite step (0: none)
    for step in bar:
        batch, data_state = next(run.stream)
        loss, grad_norm, finite = optimizer_step(run, cfg, acc, batch, step)
        # read where the run logs or saves, so a save never writes weights that a non-finite step touched
        diverged_at = torch.where(finite | (diverged_at > 0), diverged_at, step + 1)
        done = step + 1
        logs, saves = done % cfg.log_every == 0 or done == end, done % cfg.save_every == 0 or done == cfg.steps
        if (logs or saves) and (bad := int(diverged_at)):
            raise FloatingPointError(f"step {bad}: the loss or its gradient became non-finite; stopped at step {done} "
                                     f"before saving, so the checkpoint of {out} is the last one of finite weights; "
                                     "lower --lr or check the data")
        if logs:
            samples = len(batch["video"]) * acc.num_processes
            run.log.write(done, loss.item(), lr_at(step, cfg), float(grad_norm), samples)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if run.heldout is not None and done % cfg.heldout_every == 0:
            acc.print(f"step {done}: held-out loss {run.heldout(done, run.ema):.5f}")
        if acc.is_main_process and cfg.sample_every and done % cfg.sample_every == 0:
            write_preview(run.ema, run.text_encoder, run.previews, out / "samples" / f"step_{done:07d}.gif",
                          seed=cfg.seed, decode=run.decode)
        out_of_time = (bool(cfg.max_minutes) and done % cfg.log_every == 0
                       and all_agree(acc, time.monotonic() - started > 60 * cfg.max_minutes))
        if saves or out_of_time:
            rngs = gather_rng_states(acc)
            if acc.is_main_process:
                save_run(out, run.model, run.ema, run.opt, rngs, done, data_state, cfg, run.text_encoder.spec)
            acc.wait_for_everyone()
        if out_of_time:
            acc.print(f"stopped at step {done} after --max-minutes {cfg.max_minutes}; run the command again to go on")
            break
    return out / "checkpoint"


def all_agree(acc, flag: bool) -> bool:
    """One process's clock must not stop it alone: any process out of time stops them all at the same step."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), reduction="max").item())


def precision(name: str) -> str:
    """--mixed-precision: auto is bf16 on a GPU and none on the CPU."""
    if name == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    if name not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, not {name!r}")
    return name
