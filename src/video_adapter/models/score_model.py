"""`ScoreModel`: any denoiser in the package's canonical terms, so composition works with any pair of models.

Canonical terms: variance-preserving x_t = alpha x0 + sigma eps with the log-SNR as noise input (see `schedule`),
and the output eps(x_t, logsnr, cond). A model with another time variable, noise schedule or prediction type (a
diffusers scheduler's integer timesteps, a rectified-flow velocity, a prior served over the network) becomes a
ScoreModel by one adapter class that converts its inputs and outputs with the exact maps in `schedule`; samplers,
composition and MCMC never change. `ModelSpec` declares what the model is, so mismatched pairs fail before sampling.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..maths.conditioning import CONDITIONS, Cond
from .checkpoint import load_model
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
    first_frame_pixels: bool = False              # takes first_frame as RGB [B, 3, H, W] at the video size even in a
                                                  # latent space (an image-to-video prior encodes it its own way)
    lowres_factor: int = 0                        # a super-resolution stage from 1/this size (cond.lowres); 0: none
    lowres_aug: float = 0.0                       # its largest noise augmentation level (cond.lowres_level); 0: none
    lowres_residual: float = 0.0                  # >0: x is its detail over the clean cond.lowres, / this; 0: the video

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
    # A model that has its captions embedded elsewhere (a prior behind an API: its server does) names here the encoder
    # its Cond's text must come from; None: the encoder its spec names (`routing.encode_prompts`).
    caption_encoder = None

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
    its forward in that precision, with normalisations kept in float32. `cuda_graphs` replays each input signature
    (shapes and the conditions present) from a captured CUDA graph: a small model's ~1000 kernel launches cost more
    CPU time than its GPU work, which would otherwise make the adapter as slow as the prior (docs/benchmarks.md).
    """

    def __init__(self, unet: SpaceTimeUNet, text_encoder: str = "", autocast: torch.dtype | None = None,
                 cuda_graphs: bool = False):
        if autocast not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be torch.bfloat16, torch.float16 or None, not {autocast}")
        self.unet, self.autocast = unet, autocast
        param = next(unet.parameters())
        self.device, self.dtype = param.device, param.dtype
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs the model on a CUDA device, not {self.device}")
        self.graphs = CudaGraphs(self._forward) if cuda_graphs else None
        cfg = unet.cfg
        conditions = ("text",) + ("first_frame",) * cfg.first_frame_cond + ("edges",) * cfg.edge_cond
        # latents are unbounded: only pixels have a data range to clip x0 to
        value_range = (-1.0, 1.0) if cfg.space == "pixels" else (-math.inf, math.inf)
        self.spec = ModelSpec(space=cfg.space, channels=cfg.channels, frames=cfg.frames, height=cfg.height,
                              width=cfg.width, conditions=conditions, value_range=value_range,
                              prediction=cfg.prediction, time="logsnr", parameters=count_parameters(unet),
                              text_encoder=text_encoder, lowres_factor=cfg.lowres_factor,
                              lowres_aug=cfg.lowres_aug, lowres_residual=cfg.lowres_residual)

    def _forward(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        # no autocast weight cache: a CUDA graph must not capture casts that a later call would skip
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None,
                            cache_enabled=False):
            return self.unet(x, logsnr, cond)

    @torch.no_grad()
    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        args = (x.to(self.device, self.dtype), logsnr.to(self.device, torch.float32, non_blocking=True),
                cond.to(self.device, self.dtype))
        eps = self.graphs(*args) if self.graphs is not None else self._forward(*args)
        return eps.to(x.device, x.dtype)


class CudaGraphs:
    """`fn(x, logsnr, cond)` replayed from CUDA graphs, one captured per input signature.

    Inputs are copied into the graph's static tensors, and the output is cloned, so callers see plain function
    semantics. `fn` must not synchronise with the host or branch on tensor values (the U-Net does neither).
    """

    def __init__(self, fn):
        self.fn, self.graphs, self.pool = fn, {}, None

    @staticmethod
    def _signature(x: Tensor, logsnr: Tensor, cond: Cond) -> tuple:
        fields = tuple((f.name, None if (v := getattr(cond, f.name)) is None else (tuple(v.shape), v.dtype))
                       for f in dataclasses.fields(cond))
        return tuple(x.shape), x.dtype, tuple(logsnr.shape), fields

    def __call__(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        key = self._signature(x, logsnr, cond)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, logsnr, cond)
        graph, static_in, static_out = self.graphs[key]
        for dst, src in zip(static_in, self._tensors(x, logsnr, cond)):
            dst.copy_(src)
        graph.replay()
        return static_out.clone()

    @staticmethod
    def _tensors(x: Tensor, logsnr: Tensor, cond: Cond) -> list[Tensor]:
        return [x, logsnr] + [v for f in dataclasses.fields(cond) if (v := getattr(cond, f.name)) is not None]

    def _capture(self, x: Tensor, logsnr: Tensor, cond: Cond):
        static_x, static_logsnr = x.clone(), logsnr.clone()
        static_cond = cond.map(lambda v: v.clone())
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):  # warm-up off the capture (cuDNN autotuning, lazy allocations)
            for _ in range(2):
                self.fn(static_x, static_logsnr, static_cond)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        self.pool = self.pool or torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self.fn(static_x, static_logsnr, static_cond)
        return graph, self._tensors(static_x, static_logsnr, static_cond), static_out


def load_score_model(directory: str | Path, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32, cuda_graphs: bool = False) -> NativeScoreModel:
    """A checkpoint directory (checkpoint.save_model) as a ScoreModel on `device`, computing in `dtype`.

    float32 keeps float32 weights; bfloat16 / float16 store the weights in it and run under autocast."""
    half = dtype in (torch.bfloat16, torch.float16)
    unet, config = load_model(directory, device=device, dtype=dtype)
    return NativeScoreModel(unet, text_encoder=config.get("text_encoder", ""), autocast=dtype if half else None,
                            cuda_graphs=cuda_graphs)


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
