"""Analytic Gaussian experts: ScoreModels whose eps and energy are known in closed form at every noise level.

Data x0 ~ N(mean, cov) given text and N(mean_u, cov_u) without (cond.has_text False), as [B, D, 1, 1, 1] "videos".
At log-SNR l the noised law is N(alpha mean, alpha^2 cov + sigma^2 I), so with precision P_t:
    eps(x) = sigma P_t (x - alpha mean),   E(x) = (x - alpha mean)^T P_t (x - alpha mean) / 2,   eps = sigma grad E.
"""

from __future__ import annotations

import torch
from torch import Tensor

from video_adapter.maths.conditioning import Cond
from video_adapter.maths.schedule import alpha_sigma
from video_adapter.models.score_model import ModelSpec, ScoreModel


def random_cov(d: int, seed: int, scale: float = 0.3) -> Tensor:
    """A correlated covariance with standard deviations around `scale`."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) * scale / d**0.5
    return a @ a.T + torch.eye(d, dtype=torch.float64) * scale**2 / 2


def _levels(logsnr: Tensor) -> list[float]:
    """The distinct noise levels of a batch (samplers pass one; the check avoids a sort per call)."""
    logsnr = logsnr.double()
    return [logsnr[0].item()] if bool((logsnr == logsnr[0]).all()) else logsnr.unique().tolist()


class GaussianExpert(ScoreModel):
    def __init__(self, mean, cov, mean_u=None, cov_u=None):
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        self.mean_u = self.mean if mean_u is None else torch.as_tensor(mean_u, dtype=torch.float64)
        self.cov_u = self.cov if cov_u is None else torch.as_tensor(cov_u, dtype=torch.float64)
        d = len(self.mean)
        self.spec = ModelSpec(space="pixels", channels=d, frames=1, height=1, width=1, conditions=("text",),
                              parameters=d + d * d)
        self.calls: list[tuple[int, list[float]]] = []  # (batch, distinct logsnrs) of every eps call

    def noised(self, logsnr: float, text: bool) -> tuple[Tensor, Tensor]:
        """Mean [D] and precision [D, D] of the noised law at one level."""
        alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
        mean, cov = (self.mean, self.cov) if text else (self.mean_u, self.cov_u)
        return alpha * mean, torch.linalg.inv(alpha**2 * cov + sigma**2 * torch.eye(len(mean), dtype=torch.float64))

    def _per_group(self, x: Tensor, logsnr: Tensor, cond: Cond, fn) -> Tensor:
        """fn(z [n, D], mean, prec, sigma) on each group of rows sharing a level and a text flag."""
        has_text = cond.has_text if cond.has_text is not None else torch.ones(len(logsnr), dtype=torch.bool)
        z, out = x.flatten(1).double(), None
        for level in _levels(logsnr):
            for text in (True, False):
                rows = (logsnr.double() == level) & (has_text == text)
                if rows.any():
                    mean, prec = self.noised(level, text)
                    part = fn(z[rows] - mean, prec, alpha_sigma(torch.tensor(level, dtype=torch.float64))[1])
                    out = part.new_zeros((len(z),) + part.shape[1:]) if out is None else out
                    out[rows] = part
        return out

    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        self.calls.append((x.shape[0], _levels(logsnr)))
        eps = self._per_group(x, logsnr, cond, lambda z, prec, sigma: sigma * z @ prec)
        return eps.reshape(x.shape).to(x.dtype)

    def energy(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        return self._per_group(x, logsnr, cond, lambda z, prec, sigma: 0.5 * ((z @ prec) * z).sum(1)).to(x.dtype)


def product(terms: list[tuple[float, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Mean and covariance of prod_i N(mean_i, cov_i)^{w_i}, terms (w_i, mean_i, cov_i)."""
    prec = sum(w * torch.linalg.inv(c) for w, _, c in terms)
    cov = torch.linalg.inv(prec)
    return cov @ sum(w * torch.linalg.inv(c) @ m for w, m, c in terms), cov


def text_cond(batch: int) -> Cond:
    return Cond(has_text=torch.ones(batch, dtype=torch.bool))
