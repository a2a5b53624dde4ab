"""One optimizer step of denoiser training and what it is made of: its randomness, loss, learning rate and EMA."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.lr_schedule import warmup_cosine
from ..maths.conditioning import CONDITIONS, Cond, diffusion_target, drop_conditions, make_cond
from ..maths.schedule import diffuse, logsnr_cosine, prediction_target
from ..models.unet import SpaceTimeUNet


def step_draws(seed: int, step: int, rows: slice, global_shape: tuple[int, ...],
               device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """One training step's randomness, `rows` of the step's global batch of `global_shape` [G, C, F, H, W]: times
    t, noise eps and dropout uniforms [., len(CONDITIONS)]. Every process draws the whole global batch from one
    generator keyed by (seed, step) and keeps its rows, so N processes of batch B draw what one process of batch
    N x B draws, and a resumed run what an uninterrupted one draws. Drawing all G rows costs each process a few
    elementwise kernels; a generator per sample cost 120x more on CUDA (docs/benchmarks.md). Drawn on `device` (a
    CUDA generator's stream differs from the CPU's: compare runs on one device type)."""
    key = np.random.SeedSequence((seed, step)).generate_state(1, np.uint64)[0]
    gen = torch.Generator(device=device).manual_seed(int(key))
    t = torch.rand(global_shape[0], generator=gen, device=device)
    uniforms = torch.rand(global_shape[0], len(CONDITIONS), generator=gen, device=device)
    eps = torch.randn(global_shape, generator=gen, device=device)
    return t[rows], eps[rows], uniforms[rows]


def augmentation_draws(seed: int, step: int, rows: slice, global_shape: tuple[int, ...], max_level: float,
                       device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """A super-resolution stage's noise augmentation for one training step, `rows` of the global batch as in
    `step_draws`: a level per sample, uniform in [0, `max_level`] (a cosine time, `conditioning.augment_lowres`),
    and the noise [., C, F, H, W] its low-resolution input is noised with. Keyed by (seed, step, 1), a stream of its
    own, so `step_draws` stays what it was and a model without augmentation trains on exactly what it did."""
    key = np.random.SeedSequence((seed, step, 1)).generate_state(1, np.uint64)[0]
    gen = torch.Generator(device=device).manual_seed(int(key))
    level = torch.rand(global_shape[0], generator=gen, device=device) * max_level
    noise = torch.randn(global_shape, generator=gen, device=device)
    return level[rows], noise[rows]


def denoising_loss(model, video: Tensor, cond: Cond, t: Tensor, eps: Tensor, prediction: str) -> Tensor:
    """MSE of the network's native prediction (eps or v) for clean `video` noised by `eps` at cosine times `t` [B]
    (paper sec 2). `prediction` is the model's `cfg.prediction`, passed in because `model` may be wrapped (DDP,
    compile)."""
    t, eps = t.to(video.device), eps.to(video.device)
    logsnr = logsnr_cosine(t)
    x_t = diffuse(video, eps, logsnr)
    target = prediction_target(prediction, video, eps, logsnr)
    return F.mse_loss(model(x_t, logsnr, cond, output="native").float(), target)


def lr_at(step: int, cfg) -> float:
    """The learning rate of `step` under a TrainConfig `cfg`: linear warmup, then constant or a cosine decay."""
    cfg = cfg.resolved() if cfg.warmup_steps == -1 else cfg
    if cfg.lr_decay == "constant":
        return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    # a short run ends far better annealed than at its peak rate (continuing it later re-warms from lr_end)
    return warmup_cosine(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.lr_end)


@torch.no_grad()
def ema_update(ema: SpaceTimeUNet, model: SpaceTimeUNet, step: int, decay: float) -> None:
    """The EMA of the weights, its decay warmed up as min(decay, (1 + n) / (10 + n)) so early weights fade fast."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - d)


def optimizer_step(run, cfg, acc, batch: dict, step: int) -> tuple[Tensor, Tensor, Tensor]:
    """Step `step` of a run (`setup.Run`) under TrainConfig `cfg` and accelerator `acc` on `batch`: the step's noise,
    times and condition dropout (`step_draws`), an SR stage's noise augmentation (`augmentation_draws`), the loss, a
    clipped gradient step and the EMA update. Returns the loss, the gradient norm and whether both are finite, all
    left on the device (a host sync per step would stall a small model's launches)."""
    device = acc.device
    video = batch["video"].to(device).contiguous(memory_format=run.memory_format)
    text = run.text_encoder.encode(batch["caption"], device=device)
    rows = slice(acc.process_index * len(video), (acc.process_index + 1) * len(video))
    global_shape = (acc.num_processes * len(video), *video.shape[1:])
    t, eps, uniforms = step_draws(cfg.seed, step, rows, global_shape, device)
    augment = augmentation_draws(cfg.seed, step, rows, global_shape, run.model_cfg.lowres_aug, device) \
        if run.model_cfg.lowres_factor and run.model_cfg.lowres_aug else None
    cond = drop_conditions(make_cond(video, text, run.model_cfg, augment), cfg.drop, uniforms=uniforms)
    for group in run.opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    with acc.autocast():
        target = diffusion_target(video, run.model_cfg)  # the video, or an SR stage's detail over its input
        loss = denoising_loss(run.net, target, cond, t, eps, run.model_cfg.prediction)
    acc.backward(loss)
    grad_norm = acc.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    # fp16's loss scaler skips the update of a step whose gradients overflow: that is no divergence
    finite = torch.isfinite(loss.detach()) & (torch.isfinite(grad_norm) if acc.scaler is None else True)
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    ema_update(run.ema, run.model, step, cfg.ema_decay)
    return loss, grad_norm, finite
