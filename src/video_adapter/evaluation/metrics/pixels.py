"""Per-clip pixel comparisons of a video with a reference: edge fidelity (stylisation, sim-to-real), PSNR and SSIM
(super-resolution). Each returns one float64 value per clip, so `scores.bootstrap` can resample clips.

Videos are `[N, C, F, H, W]` floats in [-1, 1]; edges are `conditioning.sobel_x` of a video, the same layout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...maths.conditioning import sobel_x


def _check_pair(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    for name, t in zip(names, (a, b)):
        if not isinstance(t, Tensor) or t.dim() != 5 or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor [N, C, F, H, W], got "
                             f"{list(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {list(a.shape)} and {names[1]} {list(b.shape)} must have one shape: compare "
                         "clips at the same size (resize one of them first)")


def correlation(a: Tensor, b: Tensor) -> np.ndarray:
    """Pearson correlation of each clip of `a` with the same clip of `b`, over all its values: [N] in [-1, 1].

    A clip of `b` with no variance is an error (it is a reference with nothing to follow); a clip of `a` with none
    (a flat output) follows nothing and scores 0, its covariance with anything."""
    _check_pair(a, b, ("a", "b"))
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norm_a, norm_b = a.norm(dim=1), b.norm(dim=1)
    if bool((norm_b == 0).any()):
        flat = (norm_b == 0).nonzero().flatten().tolist()
        raise ValueError(f"reference clips {flat[:5]} are constant: their edges carry nothing to follow; condition on "
                         "clips with visible structure")
    return ((a * b).sum(1) / (norm_a.clamp_min(1e-300) * norm_b)).cpu().numpy()


def edge_fidelity(videos: Tensor, edges: Tensor) -> np.ndarray:
    """How closely each output follows its input edges: the correlation of its Sobel x-gradient (the same operator
    that made `edges`, `conditioning.sobel_x`) with `edges`, per clip. 1: the same edges up to scale; 0: unrelated."""
    _check_pair(videos, edges, ("videos", "edges"))
    return correlation(sobel_x(videos.float()), edges.float())


def psnr(videos: Tensor, reference: Tensor) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each clip against its reference, the peak being [-1, 1]'s range of 2.
    Identical clips give +inf."""
    _check_pair(videos, reference, ("videos", "reference"))
    mse = (videos.double() - reference.double()).pow(2).flatten(1).mean(1)
    with np.errstate(divide="ignore"):
        return (10 * np.log10(4.0 / mse.cpu().numpy()))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def ssim(videos: Tensor, reference: Tensor) -> np.ndarray:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of each clip
    against its reference, computed per frame and channel on [0, 1] values ("valid" windows only) and averaged.
    Frames smaller than the window use a window of their smaller side."""
    _check_pair(videos, reference, ("videos", "reference"))
    n, c, f, h, w = videos.shape
    size = min(11, h, w)
    g = _gaussian_window(size)
    kernel = (g[:, None] * g[None]).view(1, 1, size, size)
    frames = lambda v: ((v.double() + 1) / 2).permute(0, 2, 1, 3, 4).reshape(n * f * c, 1, h, w)
    x, y = frames(videos), frames(reference)
    blur = lambda t: F.conv2d(t, kernel)
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(1).cpu().numpy()


def upsample(videos: Tensor, size: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """Each frame resized to `size` (height, width) and clamped to [-1, 1]: the bicubic baseline of super-resolution."""
    from ...maths.conditioning import resize_video

    return resize_video(videos, size, mode).clamp(-1, 1)
