"""Classifier-free guidance as an eps_fn -> eps_fn wrapper, so every sampler in `sampling` can use it unchanged."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .conditioning import CONDITIONS, Cond
from .sampling import EpsFn
from .schedule import eps_from_x0, x0_from_eps

# The default alpha of sample, evaluate, demo, the app and the pipeline, for every model and mode. At N = 128 with
# the shipped adapters and prior (docs/analysis.md, "Guidance itself"), alpha 2 is the recipe's best or even with
# its best in both domains, on FVD-VA and task accuracy alike (robot 0.030 / 0.58, egocentric 0.053 / 0.22, against
# 0.253 / 0.33 and 0.095 / 0.20 at 5, the tables before 2026-12-08); larger alphas overshoot. Large diffusers priors
# are tuned for their own (Wan, CogVideoX: 5-6): pass it with --guidance.
DEFAULT_GUIDANCE = 2.0


def classifier_free(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 with scale = 1 + w): eps(x) + scale (eps(x|c) - eps(x)).

    Also the paper's sec 3.3 low-temperature eps(tau, t) + alpha (eps(tau, t | text) - eps(tau, t)), alpha = scale."""
    return uncond + scale * (cond - uncond)


def cond_uncond(eps_fn: EpsFn, x: Tensor, logsnr: Tensor, cond: Cond,
                guided: tuple[str, ...] = CONDITIONS) -> tuple[Tensor, Tensor]:
    """eps_fn(x | cond) and eps_fn(x | null) from one batched forward (works for energies [B] as well); the null
    condition drops the `guided` conditions and keeps the others (`Cond.null`)."""
    both = eps_fn(torch.cat([x, x]), torch.cat([logsnr, logsnr]), cond.cat(cond.null(guided)))
    return both.chunk(2)


def with_guidance(eps_fn: EpsFn, scale: float, guided: tuple[str, ...] = CONDITIONS) -> EpsFn:
    """`eps_fn` with classifier-free guidance `scale` towards the `guided` conditions (the others are in both
    passes); scale = 1 is the conditional model alone and one plain call."""
    if scale == 1:
        return eps_fn

    def guided_fn(x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        c, u = cond_uncond(eps_fn, x, logsnr, cond, guided)
        return classifier_free(u, c, scale)

    return guided_fn


def clip_denoised(eps_fn: EpsFn, limit: float) -> EpsFn:
    """Static thresholding (Saharia et al. 2022, Imagen): clip the implied x0 to [-limit, limit], return its eps.

    At logsnr = -20, x0 = (x - sigma eps) / alpha multiplies the eps error by 1/alpha = e^10, and the first steps
    of a sampler carry that into x; clipping bounds it by the data range. limit <= 0 turns clipping off.
    """
    if limit <= 0:
        return eps_fn

    def clipped(x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        eps = eps_fn(x, logsnr, cond)
        x32, logsnr32 = x.float(), logsnr.to(x.device, torch.float32)  # 1/alpha reaches e^10: not for bf16
        x0 = x0_from_eps(x32, eps.float(), logsnr32).clamp(-limit, limit)
        return eps_from_x0(x32, x0, logsnr32).to(eps.dtype)

    return clipped


def threshold_x0(x0: Tensor, percentile: float) -> Tensor:
    """Dynamic thresholding (Saharia et al. 2022, Imagen sec 2.3) of x0 [B, ...]: per sample, s = the `percentile`
    quantile of |x0| (its ceil(percentile n)-th smallest value), at least 1; x0 is clipped to [-s, s] and divided by
    s, so a saturated prediction is pulled back into the data range instead of being flattened against its edge."""
    flat = x0.flatten(1).abs()  # kthvalue: torch.quantile refuses inputs over 2^24 elements
    s = flat.kthvalue(max(1, math.ceil(percentile * flat.shape[1])), dim=1).values.clamp(min=1.0)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return torch.maximum(torch.minimum(x0, s), -s) / s


def dynamic_threshold(eps_fn: EpsFn, percentile: float) -> EpsFn:
    """`eps_fn` whose implied x0 is dynamically thresholded (`threshold_x0`) at each step."""
    if not 0 < percentile <= 1:
        raise ValueError(f"the dynamic-thresholding percentile must be in (0, 1], e.g. 0.995; got {percentile}")

    def thresholded(x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        eps = eps_fn(x, logsnr, cond)
        x32, logsnr32 = x.float(), logsnr.to(x.device, torch.float32)
        x0 = threshold_x0(x0_from_eps(x32, eps.float(), logsnr32), percentile)
        return eps_from_x0(x32, x0, logsnr32).to(eps.dtype)

    return thresholded


def denoised_range(eps_fn: EpsFn, clip_x0: float, percentile: float = 0.0) -> EpsFn:
    """How each step's x0 is kept in the data range: dynamic thresholding at `percentile` when it is set, else
    static clipping at `clip_x0` (0: neither)."""
    return dynamic_threshold(eps_fn, percentile) if percentile else clip_denoised(eps_fn, clip_x0)
