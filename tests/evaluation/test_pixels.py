"""Per-clip pixel metrics on constructed inputs with known answers: edge fidelity, PSNR, SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from video_adapter.evaluation.metrics.pixels import correlation, edge_fidelity, psnr, ssim, upsample
from video_adapter.evaluation.metrics.scores import mean_with_ci
from video_adapter.maths.conditioning import lowres_condition, sobel_x


def videos(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 4, 12, 20, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_edge_fidelity_is_one_for_own_edges_minus_one_for_mirrored_and_near_zero_for_others():
    v = videos()
    assert np.allclose(edge_fidelity(v, sobel_x(v)), 1.0, atol=1e-12)
    # negating the video negates its x-gradient: the edges are followed exactly, with the opposite sign
    assert np.allclose(edge_fidelity(-v, sobel_x(v)), -1.0, atol=1e-12)
    # brightness and contrast changes keep the edges: correlation is scale- and offset-free
    assert np.allclose(edge_fidelity(0.3 * v + 0.2, sobel_x(v)), 1.0, atol=1e-12)
    unrelated = edge_fidelity(videos(seed=1), sobel_x(v))
    assert np.all(np.abs(unrelated) < 0.1), unrelated
    assert edge_fidelity(v, sobel_x(v)).shape == (3,)


def test_correlation_by_hand_and_its_edge_cases():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 2, 2)
    b = torch.tensor([1.0, 3.0, 2.0, 4.0]).view(1, 1, 1, 2, 2)
    # centred: a = (-1.5, -.5, .5, 1.5), b = (-1.5, .5, -.5, 1.5); dot 4, norms sqrt(5) each -> 0.8
    assert correlation(a, b)[0] == pytest.approx(0.8, abs=1e-12)
    assert correlation(torch.zeros_like(a), b)[0] == 0.0  # a flat output follows no edges
    with pytest.raises(ValueError, match="constant"):
        correlation(a, torch.zeros_like(b))
    with pytest.raises(ValueError, match="one shape"):
        edge_fidelity(videos(), sobel_x(videos(n=2)))


def test_psnr_and_ssim_known_values():
    v = videos()
    assert np.all(np.isinf(psnr(v, v)))
    shifted = (v + 0.1).clamp(-1, 1)
    mse = ((shifted - v) ** 2).flatten(1).mean(1).double().numpy()
    assert np.allclose(psnr(shifted, v), 10 * np.log10(4 / mse))
    assert psnr(v + 0.2, v) == pytest.approx([10 * math.log10(4 / 0.04)] * 3)
    assert np.allclose(ssim(v, v), 1.0)
    assert np.all(ssim(videos(seed=1), v) < 0.1)  # independent noise shares no structure
    assert np.all(ssim(-v, v) < 0)  # inverted contrast: negative structure term


def test_bicubic_of_a_smooth_video_beats_nearest_and_recovers_a_constant():
    const = torch.full((1, 3, 2, 8, 8), 0.25)
    assert torch.allclose(upsample(const[..., ::2, ::2], (8, 8)), const, atol=1e-6)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 40), indexing="ij")
    smooth = (0.8 * torch.sin(2 * x) * torch.cos(1.5 * y)).expand(1, 3, 2, 24, 40)
    low = lowres_condition(smooth, 2)
    nearest = upsample(torch.nn.functional.avg_pool3d(smooth, (1, 2, 2)), (24, 40), "nearest")
    assert psnr(low, smooth)[0] > psnr(nearest, smooth)[0] + 3


def test_mean_with_ci_brackets_the_mean():
    value = mean_with_ci(np.array([0.0, 1.0, 1.0, 0.0] * 10), rounds=200, seed=0)
    assert value.value == 0.5 and value.low < 0.5 < value.high
