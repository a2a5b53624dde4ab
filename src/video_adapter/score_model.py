"""`ScoreModel`: any denoiser in the package's canonical terms, so composition works with any pair of models.

Canonical terms: variance-preserving x_t = alpha x0 + sigma eps with the log-SNR as noise input (see `schedule`),
and the output eps(x_t, logsnr, cond). A model with another time variable, noise schedule or prediction type (a
diffusers scheduler's integer timesteps, a rectified-flow velocity, a prior served over the network) becomes a
ScoreModel by one adapter class that converts its inputs and outputs with the exact maps in `schedule`; samplers,
composition and MCMC never change. `ModelSpec` declares what the model is, so mismatched pairs fail before sampling.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import load_model
from .conditioning import CONDITIONS, Cond
from .unet import SpaceTimeUNet, count_parameters


@dataclass(frozen=True)
class ModelSpec:
    space: str                                    # what x is: "pixels", or "latent:<autoencoder>" for latent models
    channels: int                                 # x's channels ...
    frames: int                                   # ... frames ...
    height: int                                   # ... and size: x is [B, channels, frames, height, width]
    width: int
    conditions: tuple[str, ...]                   # conditions the model accepts, from conditioning.CONDITIONS
    value_range: tuple[float, float] = (-1.0, 1.0)  # range of clean x0 in this space
    prediction: str = "eps"                       # the network's native output (eps, v, x0, flow velocity)
    time: str = "logsnr"                          # the network's native noise input (logsnr, timestep, flow t)
    parameters: int = 0                           # trainable parameters, for the small/prior ratio (paper Table 1)
    text_encoder: str = ""                        # text encoder spec (text.load_text_encoder), "" without text

    def __post_init__(self):
        if unknown := sorted(set(self.conditions) - set(CONDITIONS)):
            raise ValueError(f"unknown conditions {unknown}; known: {CONDITIONS}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """[C, F, H, W] of one sample."""
        return self.channels, self.frames, self.height, self.width


class ScoreModel(ABC):
    """eps(x_t, logsnr, cond) in canonical terms, on whatever device and dtype the model lives.

    `eps` takes x on any device and dtype and returns eps on x's device in x's dtype, so two models on different
    devices or in different precisions compose without the caller moving anything. Calling the model is `eps`, so
    a ScoreModel is an `EpsFn` for every sampler.
    """

    spec: ModelSpec

    @abstractmethod
    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        """eps [B, C, F, H, W] for x_t [B, C, F, H, W] at per-sample logsnr [B]."""

    def energy(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        """E(x_t) [B] with eps = sigma * grad_x E, i.e. -log p_t(x_t) up to a constant; only energy-parameterized
        models (e.g. "Reduce, Reuse, Recycle" EBM diffusion) have one, and only they allow Metropolis-corrected MCMC."""
        raise NotImplementedError(f"{type(self).__name__} predicts eps and has no energy; Metropolis-corrected MCMC "
                                  "(mala, hmc) needs one, use the unadjusted ula or uhmc instead")

    @property
    def has_energy(self) -> bool:
        return type(self).energy is not ScoreModel.energy

    def __call__(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        return self.eps(x, logsnr, cond)


class NativeScoreModel(ScoreModel):
    """A `SpaceTimeUNet`: already canonical (log-SNR input; forward returns eps, converted from its native v).

    The module is used as it is (a model still in training can be sampled); `autocast` (bfloat16 or float16) runs
    its forward in that precision, with normalisations kept in float32.
    """

    def __init__(self, unet: SpaceTimeUNet, text_encoder: str = "", autocast: torch.dtype | None = None):
        if autocast not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be torch.bfloat16, torch.float16 or None, not {autocast}")
        self.unet, self.autocast = unet, autocast
        param = next(unet.parameters())
        self.device, self.dtype = param.device, param.dtype
        cfg = unet.cfg
        conditions = ("text",) + ("first_frame",) * cfg.first_frame_cond + ("edges",) * cfg.edge_cond
        self.spec = ModelSpec(space="pixels", channels=cfg.channels, frames=cfg.frames, height=cfg.height,
                              width=cfg.width, conditions=conditions, prediction=cfg.prediction, time="logsnr",
                              parameters=count_parameters(unet), text_encoder=text_encoder)

    @torch.no_grad()
    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            eps = self.unet(x.to(self.device, self.dtype), logsnr.to(self.device, torch.float32),
                            cond.to(self.device, self.dtype))
        return eps.to(x.device, x.dtype)


def load_score_model(directory: str | Path, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> NativeScoreModel:
    """A checkpoint directory (checkpoint.save_model) as a ScoreModel on `device`, computing in `dtype`.

    float32 keeps float32 weights; bfloat16 / float16 store the weights in it and run under autocast."""
    half = dtype in (torch.bfloat16, torch.float16)
    unet, config = load_model(directory, device=device, dtype=dtype)
    return NativeScoreModel(unet, text_encoder=config.get("text_encoder", ""), autocast=dtype if half else None)


def check_compatible(small: ScoreModel, prior: ScoreModel) -> None:
    """Both models must denoise the same x: same space, shape and value range. Raises before any sampling."""
    a, b = small.spec, prior.spec
    problems = []
    if a.space != b.space:
        problems.append(f"spaces differ: adapter {a.space!r}, prior {b.space!r} (compose models of one space, e.g. "
                        "both pixels or both the same autoencoder's latents)")
    if a.frames != b.frames:
        problems.append(f"frame counts differ: adapter {a.frames}, prior {b.frames} (train the adapter with "
                        f"--model frames={b.frames})")
    if (a.channels, a.height, a.width) != (b.channels, b.height, b.width):
        problems.append(f"shapes differ: adapter {a.channels}x{a.height}x{a.width}, prior "
                        f"{b.channels}x{b.height}x{b.width} (channels x height x width; train the adapter with "
                        f"--model channels={b.channels} height={b.height} width={b.width})")
    if tuple(a.value_range) != tuple(b.value_range):
        problems.append(f"value ranges differ: adapter {a.value_range}, prior {b.value_range} (rescale one model's "
                        "inputs in its ScoreModel adapter)")
    if problems:
        raise ValueError("the adapter and the prior cannot be composed:\n  " + "\n  ".join(problems))
