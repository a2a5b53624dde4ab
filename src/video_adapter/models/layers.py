"""The U-Net's building blocks that need no UNetConfig: (2+1)-D convolutions, attention, noise-level features.

The video classifier (evaluation/metrics/video_net.py) builds on the same convolutions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def zero_init(module: nn.Module) -> nn.Module:
    """Residual branches start as the identity, as in ADM and Imagen."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class FactorisedConv(nn.Conv3d):
    """A Conv3d whose kernel spans space only, (1, k, k), or time only, (k, 1, 1), run as the Conv2d it is.

    Space folds frames into the batch, [(B F), C, H, W]; time folds pixels into one axis, [B, C, F, (H W)]. In
    channels-last-3d memory (training on CUDA) both folds are views, and cuDNN's NHWC 2-D kernels replace the 3-D
    ones, whose data-gradient kernel took a quarter of a small adapter's step (docs/benchmarks.md). In the default
    NCDHW layout (CPU, sampling) the folds would cost a copy in and out, 10-25% slower on the CPU, so there it runs
    as the Conv3d it is. The parameters are nn.Conv3d's, so checkpoints load either way.
    """

    def __init__(self, cin: int, cout: int, kernel_size: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
                 padding: tuple[int, int, int] = (0, 0, 0)):
        kt, kh, kw = kernel_size
        if kt != 1 and (kh, kw, stride[1], stride[2], padding[1], padding[2]) != (1, 1, 1, 1, 0, 0):
            raise ValueError(f"kernel {kernel_size} spans both space and time; a FactorisedConv spans one")
        super().__init__(cin, cout, kernel_size, stride=stride, padding=padding)
        self.spatial = kt == 1 and stride[0] == 1 and padding[0] == 0

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_contiguous(memory_format=torch.channels_last_3d):
            return super().forward(x)
        b, _, f, h, w = x.shape
        if self.spatial:
            y = F.conv2d(x.transpose(1, 2).reshape(b * f, -1, h, w), self.weight[:, :, 0], self.bias,
                         self.stride[1:], self.padding[1:])
            return y.reshape(b, f, *y.shape[1:]).transpose(1, 2)
        y = F.conv2d(x.reshape(b, -1, f, h * w), self.weight[..., 0], self.bias, (self.stride[0], 1),
                     (self.padding[0], 0))
        return y.reshape(*y.shape[:3], h, w)


def conv_space(cin: int, cout: int, stride: int = 1) -> FactorisedConv:
    return FactorisedConv(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1))


def conv_time(cin: int, cout: int, stride: int = 1) -> FactorisedConv:
    return FactorisedConv(cin, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0))


def time_features(u: Tensor, dim: int) -> Tensor:
    """Sinusoidal features [B, dim] of a time u [B] in [0, 1] (the unclipped cosine schedule's time)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=u.device) / half)
    angles = 1000.0 * u[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def noise_level_features(logsnr: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of the noise level, taken on u = (2/pi) atan(exp(-logsnr/2)) in (0, 1).

    u is the cosine schedule's time without clipping: bounded and smooth over the whole log-SNR line,
    so any sampler's or prior's noise levels embed sensibly, not only the training range.
    """
    return time_features(torch.atan(torch.exp(-0.5 * logsnr.float().clamp(-40, 40))) * (2 / math.pi), dim)


def augmentation_features(level: Tensor, dim: int) -> Tensor:
    """Features of a noise augmentation level [B] (a time u in [0, 1], as `noise_level_features` takes the noise
    level): `time_features(u) - time_features(0)`, exactly zero at level 0, so a bias-free projection of them adds
    nothing there and a super-resolution stage at level 0 computes what it would without augmentation."""
    u = level.float()
    return time_features(u, dim) - time_features(torch.zeros_like(u), dim)


class Attention(nn.Module):
    """Multi-head attention with a pre-norm and a zero-initialised output: queries from x, keys from `context`."""

    def __init__(self, channels: int, context_dim: int | None, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, channels, bias=False)
        self.kv = nn.Linear(context_dim or channels, 2 * channels, bias=False)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h = self.norm(x)
        q = self.q(h)
        k, v = self.kv(h if context is None else context).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "n s (h d) -> n h s d", h=self.heads) for t in (q, k, v))
        return x + self.out(rearrange(attention(q, k, v, mask), "n h s d -> n s (h d)"))


# cuDNN's fused attention, torch's first choice on an H100, fails ("mha_graph.execute") once one call holds more than
# 65,535 sequences x heads: temporal attention has one sequence per pixel, so a 24x40 batch of 512 reaches it
# (docs/benchmarks.md). Larger calls go in chunks of this many sequences x heads.
MAX_SEQUENCES = 65535


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """scaled_dot_product_attention over [N, heads, S, head_dim], in chunks of N where N x heads is too many."""
    n = max(1, MAX_SEQUENCES // q.shape[1])
    if q.shape[0] <= n:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    masks = mask.split(n) if mask is not None and mask.shape[0] > 1 else [mask] * -(-q.shape[0] // n)
    return torch.cat([F.scaled_dot_product_attention(*qkv, attn_mask=m)
                      for *qkv, m in zip(q.split(n), k.split(n), v.split(n), masks)])
