"""Classifier-free guidance as an eps_fn -> eps_fn wrapper, so every sampler in `sampling` can use it unchanged."""

from __future__ import annotations

import torch
from torch import Tensor

from .conditioning import Cond
from .sampling import EpsFn
from .schedule import eps_from_x0, x0_from_eps


def classifier_free(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 with scale = 1 + w): eps(x) + scale (eps(x|c) - eps(x)).

    Also the paper's sec 3.3 low-temperature eps(tau, t) + alpha (eps(tau, t | text) - eps(tau, t)), alpha = scale."""
    return uncond + scale * (cond - uncond)


def cond_uncond(eps_fn: EpsFn, x: Tensor, logsnr: Tensor, cond: Cond) -> tuple[Tensor, Tensor]:
    """eps_fn(x | cond) and eps_fn(x | null) from one batched forward (works for energies [B] as well)."""
    both = eps_fn(torch.cat([x, x]), torch.cat([logsnr, logsnr]), cond.cat(cond.null()))
    return both.chunk(2)


def cfg(eps_fn: EpsFn, scale: float) -> EpsFn:
    """`eps_fn` with classifier-free guidance `scale`; scale = 1 is the conditional model alone and one plain call."""
    if scale == 1:
        return eps_fn

    def guided(x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        c, u = cond_uncond(eps_fn, x, logsnr, cond)
        return classifier_free(u, c, scale)

    return guided


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
