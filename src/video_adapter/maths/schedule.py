"""Continuous-time noise schedule in log-SNR, and exact conversions between parameterizations.

Every model and sampler in this package speaks the variance-preserving convention
    x_t = alpha * x0 + sigma * eps,   alpha^2 = sigmoid(logsnr),   sigma^2 = sigmoid(-logsnr),
with the log signal-to-noise ratio `logsnr = log(alpha^2 / sigma^2)` as the noise input (VDM, Kingma et al. 2021).
Time runs t in [0, 1]: t=0 is clean data (logsnr = LOGSNR_MAX), t=1 is pure noise (logsnr = LOGSNR_MIN).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOGSNR_MIN = -20.0  # paper appendix B: "noise schedule log SNR with range [-20, 20]"
LOGSNR_MAX = 20.0


def logsnr_cosine(t: Tensor, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021) written in log-SNR, with its ends mapped exactly onto [min, max].

    alpha/sigma = 1/tan(pi t / 2) for the unclipped schedule; shifting and scaling the angle keeps the
    curve's shape while t=0 and t=1 land on logsnr_max and logsnr_min instead of +-inf.
    """
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    # The clamp only absorbs rounding in tan(atan(.)), which would otherwise put t = 1 at logsnr_min - 2e-12.
    logsnr = (-2.0 * torch.log(torch.tan(a * t.double() + b))).clamp(logsnr_min, logsnr_max)
    return logsnr.to(t.dtype if t.is_floating_point() else torch.float32)


def t_from_logsnr_cosine(logsnr: Tensor, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX) -> Tensor:
    """Inverse of `logsnr_cosine`."""
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    return ((torch.atan(torch.exp(-0.5 * logsnr.double())) - b) / a).to(logsnr.dtype)


def alpha_sigma(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    """alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr)); alpha^2 + sigma^2 = 1 exactly."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def broadcast(v: Tensor, like: Tensor) -> Tensor:
    """Per-sample scalars [B] -> [B, 1, 1, ...] matching `like`'s rank."""
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def diffuse(x0: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    """Forward process q(x_t | x0): x_t = alpha x0 + sigma eps."""
    alpha, sigma = alpha_sigma(broadcast(logsnr, x0))
    return alpha * x0 + sigma * eps


# Conversions between predictions. All take the noisy x_t and per-sample logsnr [B].

def x0_from_eps(x: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(broadcast(logsnr, x))
    return (x - sigma * eps) / alpha


def eps_from_x0(x: Tensor, x0: Tensor, logsnr: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(broadcast(logsnr, x))
    return (x - alpha * x0) / sigma


def v_from_eps(x: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    """v = alpha eps - sigma x0 (Salimans & Ho 2022)."""
    alpha, sigma = alpha_sigma(broadcast(logsnr, x))
    return (eps - sigma * x) / alpha


def prediction_target(prediction: str, x0: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    """What a network of native `prediction` ("eps" or "v") regresses for clean x0 noised by eps at logsnr [B]: eps,
    or v = alpha eps - sigma x0 written with x0 and eps directly; through x_t (`v_from_eps`) it would cancel
    catastrophically at logsnr -20 (1 - sigma^2 ~ 2e-9)."""
    if prediction == "eps":
        return eps
    alpha, sigma = alpha_sigma(broadcast(logsnr, x0))
    return alpha * eps - sigma * x0


def eps_from_v(x: Tensor, v: Tensor, logsnr: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(broadcast(logsnr, x))
    return sigma * x + alpha * v


def x0_from_v(x: Tensor, v: Tensor, logsnr: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(broadcast(logsnr, x))
    return alpha * x - sigma * v


# Rectified flow (Liu et al. 2022; Esser et al. 2024): z_s = (1 - s) x0 + s eps, velocity u = eps - x0.
# The same noise level as VP has s = sigma / (alpha + sigma), and z_s = x_t / (alpha + sigma).

def flow_time_from_logsnr(logsnr: Tensor) -> Tensor:
    """s in (0, 1) with s / (1 - s) = sigma / alpha = exp(-logsnr / 2)."""
    return torch.sigmoid(-0.5 * logsnr)


def logsnr_from_flow_time(s: Tensor) -> Tensor:
    return -2.0 * (torch.log(s) - torch.log1p(-s))


def flow_from_vp(x: Tensor, logsnr: Tensor) -> Tensor:
    """VP sample x_t -> flow sample z_s at the same noise level."""
    alpha, sigma = alpha_sigma(broadcast(logsnr, x))
    return x / (alpha + sigma)


def vp_from_flow(z: Tensor, logsnr: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(broadcast(logsnr, z))
    return z * (alpha + sigma)


def eps_from_flow_velocity(z: Tensor, u: Tensor, s: Tensor) -> Tensor:
    """eps = z + (1 - s) u, from z = (1 - s) x0 + s eps and u = eps - x0."""
    return z + (1.0 - broadcast(s, z)) * u


def flow_velocity_from_eps(z: Tensor, eps: Tensor, s: Tensor) -> Tensor:
    return (eps - z) / (1.0 - broadcast(s, z))
