"""Classifier-free guidance as an eps_fn -> eps_fn wrapper, so every sampler in `sampling` can use it unchanged."""

from __future__ import annotations

import torch
from torch import Tensor

from .conditioning import Cond
from .sampling import EpsFn


def cfg(eps_fn: EpsFn, scale: float) -> EpsFn:
    """Classifier-free guidance (Ho & Salimans 2022): eps_u + scale * (eps_c - eps_u).

    This is Ho & Salimans' eq. 6 with scale = 1 + w, and the paper's sec. 3.3 low-temperature
    eps(tau, t) + alpha (eps(tau, t | text) - eps(tau, t)) with alpha = scale. The conditional and unconditional
    (`cond.null()`) halves share one batched forward; scale = 1 is the conditional model alone and costs one plain call.
    """
    if scale == 1:
        return eps_fn

    def guided(x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        both = eps_fn(torch.cat([x, x]), torch.cat([logsnr, logsnr]), cond.cat(cond.null()))
        eps_c, eps_u = both.chunk(2)
        return eps_u + scale * (eps_c - eps_u)

    return guided
