"""From a checkpoint and user inputs (prompts, a first-frame image, an edge video) to video files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .checkpoint import load_model
from .conditioning import Cond, sobel_x
from .data import center_crop_resize
from .guidance import cfg as cfg_guidance
from .guidance import clip_denoised
from .sampling import SAMPLERS, sample
from .text import load_text_encoder
from .unet import SpaceTimeUNet
from .video_io import from_uint8, read_video, write_grid

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass(frozen=True)
class SampleConfig:
    prior: str = ""                       # checkpoint directory of the model to sample (e.g. checkpoints/prior)
    adapter: str = ""                     # checkpoint directory of a small domain model, sampled alone
    prompt: tuple[str, ...] = ()          # one or more text prompts
    first_frame: str = ""                 # image or video whose first frame conditions every sample
    edges_from: str = ""                  # video whose per-frame Sobel x-gradient conditions every sample
    num: int = 1                          # samples per prompt
    sampler: str = "ddpm"                 # ddpm | ddim | dpmpp-2m | heun
    steps: int = 1000                     # denoising steps (paper: 1000)
    guidance: float = 5.0                 # classifier-free guidance scale (1: no guidance)
    eta: float = 0.0                      # DDIM stochasticity (ddim only)
    clip_x0: float = 1.0                  # clip each step's x0 prediction to [-v, v] (Imagen; 0: off)
    seed: int = 0                         # samples are a deterministic function of the seed
    out: str = "outputs/sample.gif"       # .gif or .mp4: one labelled grid of all samples
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    fps: int = 8                          # frames per second of the written video
    upscale: int = 4                      # nearest-neighbour zoom, so 24x40 videos are watchable


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r} is not a device: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return device


def load_frames(path: str | Path, frames: int, size: tuple[int, int]) -> Tensor:
    """An image or video file -> [C, F, H, W] in [-1, 1] at the model's size (an image is one frame)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image

        array = np.asarray(Image.open(path).convert("RGB"))[None]
    else:
        array = read_video(path, max_frames=frames)
    return center_crop_resize(from_uint8(array), size)


def conditions_for(model: SpaceTimeUNet, text_emb, first_frame: str, edges_from: str, batch: int) -> Cond:
    """The Cond for `batch` samples; a requested condition the model cannot take is an error, not ignored."""
    cfg = model.cfg
    ff = edges = None
    if first_frame:
        if not cfg.first_frame_cond:
            raise ValueError("this checkpoint has no first-frame conditioning; drop --first-frame")
        ff = load_frames(first_frame, 1, (cfg.height, cfg.width))[:, 0].expand(batch, -1, -1, -1)
    if edges_from:
        if not cfg.edge_cond:
            raise ValueError("this checkpoint has no edge conditioning; drop --edges-from")
        video = load_frames(edges_from, cfg.frames, (cfg.height, cfg.width))
        if video.shape[1] < cfg.frames:
            raise ValueError(f"--edges-from {edges_from} has {video.shape[1]} frames; the model needs {cfg.frames}")
        edges = sobel_x(video[None]).expand(batch, -1, -1, -1, -1)
    return Cond.make(text=text_emb.tokens, text_mask=text_emb.mask, pooled=text_emb.pooled,
                     first_frame=ff, edges=edges)


@torch.no_grad()
def generate(model: SpaceTimeUNet, cond: Cond, *, sampler: str, steps: int, guidance: float, seed: int,
             clip_x0: float = 1.0, progress: bool = False, **sampler_kwargs) -> Tensor:
    """Samples [B, C, F, H, W] in [-1, 1] from one model with classifier-free guidance."""
    device = next(model.parameters()).device
    cfg = model.cfg
    shape = (cond.batch_size, cfg.channels, cfg.frames, cfg.height, cfg.width)
    eps_fn = clip_denoised(cfg_guidance(model, guidance), clip_x0)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        x = sample(eps_fn, shape, cond.to(device), sampler=sampler, steps=steps, seed=seed, device=device,
                   progress=progress, **sampler_kwargs)
    return x.float().clamp(-1, 1)


def sample_to_files(cfg: SampleConfig) -> list[Path]:
    if bool(cfg.prior) == bool(cfg.adapter):
        raise ValueError("pass exactly one checkpoint, --prior DIR or --adapter DIR")
    if not cfg.prompt:
        raise ValueError("pass at least one --prompt")
    if cfg.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if Path(cfg.out).suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"--out must end in .gif or .mp4, not {cfg.out!r}")
    for name in ("num", "fps", "upscale"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    device = resolve_device(cfg.device)
    model, config = load_model(cfg.prior or cfg.adapter, device=device)
    if "text_encoder" not in config:
        raise ValueError(f"{cfg.prior or cfg.adapter}/config.json names no text_encoder")
    encoder = load_text_encoder(config["text_encoder"], device=device)
    prompts = [p for p in cfg.prompt for _ in range(cfg.num)]
    cond = conditions_for(model, encoder.encode(prompts), cfg.first_frame, cfg.edges_from, len(prompts))
    kwargs = {"eta": cfg.eta} if cfg.sampler == "ddim" else {}
    videos = generate(model, cond, sampler=cfg.sampler, steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed,
                      clip_x0=cfg.clip_x0, progress=True, **kwargs)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_grid(out, list(videos.cpu()), labels=prompts, fps=cfg.fps, upscale=cfg.upscale)
