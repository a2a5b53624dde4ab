"""A diffusers model's own noise variable and prediction type, mapped exactly to and from ours (log-SNR, VP x_t, eps).

Two parameterizations cover today's open video models (maths: docs/diffusers_priors.md):

- `DiscreteVP`: a DDPM training grid of N steps, eps or v prediction (ModelScope, CogVideoX);
- `RectifiedFlow`: flow matching, z_s = (1 - s) x0 + s eps, velocity output (Wan, LTX-Video, HunyuanVideo).

`Experts` picks which of several denoisers answers at a noise level (Wan 2.2 A14B's two experts, switched at
`boundary_ratio` of the model's own time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...maths.schedule import (
    LOGSNR_MIN,
    eps_from_flow_velocity,
    eps_from_v,
    flow_from_vp,
    flow_time_from_logsnr,
    logsnr_from_flow_time,
)


@dataclass(frozen=True)
class DiscreteVP:
    """A DDPM grid: step k in [0, N) has log-SNR lambda_k = log(abar_k / (1 - abar_k)), decreasing in k.

    The model takes a continuous k where lambda(k) = logsnr, linear in log-SNR between grid steps (k-diffusion's
    sigma_to_t: log sigma is -logsnr / 2), because the networks' sinusoidal time embeddings accept any real k.
    `quantize` rounds to the nearest trained step instead. Outside [lambda_{N-1}, lambda_0] k is clamped to the grid's
    end: the model then denoises as if x were at that end's level (`mismatch` gives the gap).
    """

    logsnrs: Tensor             # [N] float64, decreasing
    prediction: str             # "epsilon" | "v_prediction"
    quantize: bool = False      # nearest integer step instead of the continuous one

    @classmethod
    def from_scheduler_config(cls, config: dict, quantize: bool = False) -> DiscreteVP:
        """The grid of the scheduler class the config names (its own betas, SNR shift and zero-terminal-SNR rescale);
        a zero-SNR last step (abar = 0) stands at our lowest level, LOGSNR_MIN."""
        import diffusers

        scheduler = getattr(diffusers, config.get("_class_name", "DDPMScheduler")).from_config(config)
        abar = scheduler.alphas_cumprod.double()
        prediction = config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type {prediction!r} is not supported; epsilon and v_prediction are")
        return cls((torch.log(abar) - torch.log1p(-abar)).clamp_min(LOGSNR_MIN), prediction, quantize)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.logsnrs)

    def timestep(self, logsnr: Tensor) -> Tensor:
        """The model's (continuous) step k at `logsnr`, float64."""
        ascending = self.logsnrs.flip(0).to(logsnr.device)
        lam = logsnr.double().clamp(ascending[0], ascending[-1])
        i = torch.searchsorted(ascending, lam).clamp(1, len(ascending) - 1)
        frac = (lam - ascending[i - 1]) / (ascending[i] - ascending[i - 1]).clamp_min(1e-12)
        k = (len(ascending) - 1) - (i - 1 + frac)
        return k.round() if self.quantize else k

    def logsnr_at(self, k: Tensor) -> Tensor:
        grid = self.logsnrs.to(k.device)
        lo = k.floor().long().clamp(0, len(grid) - 1)
        hi = (lo + 1).clamp(max=len(grid) - 1)
        return torch.lerp(grid[lo], grid[hi], k.double() - lo.double())

    def mismatch(self, logsnr: Tensor) -> Tensor:
        """The model's log-SNR minus the asked one (0 inside the grid with quantize off)."""
        return self.logsnr_at(self.timestep(logsnr)) - logsnr.double()

    def inputs(self, x: Tensor, logsnr: Tensor) -> tuple[Tensor, Tensor]:
        return x, self.timestep(logsnr)

    def to_eps(self, out: Tensor, x: Tensor, logsnr: Tensor) -> Tensor:
        if self.prediction == "epsilon":
            return out
        # v at the level the model was evaluated at: eps = alpha v + sigma x
        model_logsnr = self.logsnr_at(self.timestep(logsnr)).to(x.device, torch.float32)
        return eps_from_v(x, out, model_logsnr)


@dataclass(frozen=True)
class RectifiedFlow:
    """z_s = (1 - s) x0 + s eps at time s * num_train_timesteps; the network predicts the velocity eps - x0.

    The same noise level as VP x_t at logsnr has s = sigma / (alpha + sigma) and z = x_t / (alpha + sigma), exactly,
    for every logsnr. A pipeline's timestep shift only chooses which s its own sampler visits, so it plays no part here.
    """

    num_train_timesteps: int = 1000
    prediction: str = "flow velocity"

    def timestep(self, logsnr: Tensor) -> Tensor:
        """The model's time s * N at `logsnr`, float64 (the scale of FlowMatchEulerDiscreteScheduler's timesteps)."""
        return flow_time_from_logsnr(logsnr.double()) * self.num_train_timesteps

    def logsnr_at(self, t: Tensor) -> Tensor:
        return logsnr_from_flow_time(t.double() / self.num_train_timesteps)

    def inputs(self, x: Tensor, logsnr: Tensor) -> tuple[Tensor, Tensor]:
        return flow_from_vp(x, logsnr.to(x.dtype)), self.timestep(logsnr)

    def to_eps(self, out: Tensor, x: Tensor, logsnr: Tensor) -> Tensor:
        return eps_from_flow_velocity(flow_from_vp(x, logsnr), out, flow_time_from_logsnr(logsnr))


class Experts:
    """The denoisers of a pipeline and which one answers at each noise level.

    One denoiser answers everywhere, unless the pipeline has a second (Wan 2.2 A14B: `transformer` for high noise,
    `transformer_2` for low noise) and a boundary: as WanPipeline's loop does, `transformer` answers where the model's
    timestep t >= boundary_ratio * num_train_timesteps and `transformer_2` below. Time decreases as log-SNR rises, so
    in our terms `transformer` answers where logsnr <= the boundary's log-SNR (`boundary_logsnr`, from the
    parameterization's own `logsnr_at`): a level goes to the expert the pipeline would use at that noise level.
    """

    def __init__(self, denoisers: list, boundary_logsnr: float | None = None):
        if len(denoisers) not in (1, 2) or (len(denoisers) == 2) != (boundary_logsnr is not None):
            raise ValueError("a pipeline has one denoiser, or two and a boundary between them (Wan 2.2's "
                             f"boundary_ratio); got {len(denoisers)} denoisers and boundary {boundary_logsnr}")
        self.denoisers, self.boundary_logsnr = denoisers, boundary_logsnr

    @property
    def first(self):
        return self.denoisers[0]

    def index(self, logsnr: Tensor) -> Tensor:
        """[B] long: 0 for `transformer`, 1 for `transformer_2`."""
        if self.boundary_logsnr is None:
            return torch.zeros(logsnr.shape, dtype=torch.long, device=logsnr.device)
        return (logsnr.double() > self.boundary_logsnr).long()

    def __iter__(self):
        return iter(self.denoisers)
