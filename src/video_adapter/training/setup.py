"""What a training run starts from: its networks, optimizer, text encoder, data and logs, fresh or resumed from the
checkpoint in its --out."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.sources import data_source
from ..evaluation.heldout import HeldOutLog
from ..models.lora import add_lora, trainable_parameters
from ..models.text import TextEncoder, load_text_encoder
from ..models.unet import SpaceTimeUNet, UNetConfig, count_parameters
from .run_state import LossLog, check_resumable, init_weights, load_run


@dataclass(frozen=True)
class Run:
    model: SpaceTimeUNet                  # the online weights being trained
    ema: SpaceTimeUNet                    # their exponential moving average: what checkpoints hold, previews sample
    net: torch.nn.Module                  # `model` as the loss calls it: prepared by accelerate (DDP), maybe compiled
    opt: torch.optim.Optimizer            # AdamW over the trainable parameters, prepared by accelerate
    model_cfg: UNetConfig                 # the network's config
    text_encoder: TextEncoder             # captions -> embeddings, cached per caption
    memory_format: torch.memory_format    # of the video batches: channels-last-3d on CUDA, else contiguous
    stream: Iterator[tuple[dict, dict]]   # (batch, data position after it), from where the run stopped
    previews: Sequence                    # clips whose captions the sample previews use
    decode: Callable | None               # a latent model's VAE decoder for previews (None: pixels, or no previews)
    log: LossLog                          # loss.csv
    heldout: HeldOutLog | None            # heldout.csv (None: no --heldout, or not the main process)
    step: int                             # the step the run starts at: 0, or where its checkpoint stopped


def start_run(cfg, acc) -> Run:
    """The run of TrainConfig `cfg` under accelerator `acc`, resumed where the checkpoint in cfg.out stopped (only
    with the settings it was started with), else initialised from --init or at random (seeded by cfg.seed)."""
    out, device = Path(cfg.out), acc.device
    model_cfg = cfg.model_config()
    frames, size = cfg.video_shape()
    space = latent_space(cfg, model_cfg) if cfg.space else None
    text_encoder = load_text_encoder(space.text_encoder if space else cfg.text_encoder, device=device, cache=True)
    torch.manual_seed(cfg.seed)
    # NDHWC activations let cuDNN run the (1,3,3) and (3,1,1) convolutions several times faster (benchmarks.md).
    memory_format = torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format
    model = SpaceTimeUNet(model_cfg).to(device, memory_format=memory_format)
    ema = SpaceTimeUNet(model_cfg).to(device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    resuming = (out / "checkpoint" / "train_state" / "state.json").exists()
    if resuming:
        check_resumable(out, model_cfg, text_encoder.spec, cfg.seed)
    if cfg.init and not resuming:
        init_weights(cfg, model, ema, text_encoder.spec)
        acc.print(f"initialised from {cfg.init}")
    if cfg.lora_rank:
        for m in (model, ema):
            add_lora(m, cfg.lora_rank)
        ema.requires_grad_(False).load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(trainable_parameters(model), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    step, data_state = 0, None
    if resuming:
        step, data_state = load_run(out, model, ema, opt, acc.process_index, acc.num_processes)
        acc.print(f"resumed {out} at step {step}")
    previews, source, stream = data_source(cfg, size, frames, acc.process_index, acc.num_processes, data_state,
                                           space, device)
    decode = space.codec(device).decode if space and cfg.sample_every and acc.is_main_process else None
    out.mkdir(parents=True, exist_ok=True)
    net, opt = acc.prepare(torch.compile(model) if cfg.compile else model, opt)
    trained = sum(p.numel() for p in trainable_parameters(model))
    acc.print(f"model: {count_parameters(model) / 1e6:.2f}M parameters ({trained / 1e6:.2f}M trained), {source}, "
              f"device {device}")
    log = LossLog(out / "loss.csv", acc.is_main_process, resumed_at=step)
    heldout = HeldOutLog(out / "heldout.csv", heldout_folder(cfg.heldout), cfg.heldout_num, 4 * cfg.batch_size,
                         model_cfg, text_encoder, device, step, cfg.seed) \
        if cfg.heldout and acc.is_main_process else None
    return Run(model, ema, net, opt, model_cfg, text_encoder, memory_format, stream, previews, decode, log, heldout,
               step)


def latent_space(cfg, model_cfg: UNetConfig):
    """--space: the diffusers pipeline's latent space, checked to give the model's shape at cfg's video size."""
    from ..models.diffusers import latent_space

    frames, size = cfg.video_shape()
    space = latent_space(cfg.space)
    latent = space.latent_shape(frames, *size)
    if (model_cfg.space, (model_cfg.channels, model_cfg.frames, model_cfg.height, model_cfg.width)) != \
            (space.space, latent):
        raise ValueError(f"the model works in {model_cfg.space} at {model_cfg.channels}x{model_cfg.frames}x"
                         f"{model_cfg.height}x{model_cfg.width}, but {frames}x{size[0]}x{size[1]} videos in "
                         f"{space.space} give {'x'.join(map(str, latent))} latents; pass the video size the "
                         "model was trained at as --model frames=F height=H width=W")
    return space


def heldout_folder(path: str) -> str:
    """--heldout as given, or a make-data root's test/ split."""
    return str(Path(path) / "test") if (Path(path) / "test").is_dir() else path
