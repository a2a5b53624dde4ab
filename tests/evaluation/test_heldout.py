"""The held-out denoising loss: its value per level in closed form, and its noise fixed by the seed alone."""

import pytest
import torch

from video_adapter.evaluation.heldout import heldout_loss
from video_adapter.maths.schedule import diffuse


def test_heldout_loss_is_the_mse_at_each_level_with_seeded_noise():
    class Affine(torch.nn.Module):
        """Outputs 0.5 * x_t as its native prediction, so the loss has a closed form per level."""

        def forward(self, x, logsnr, cond, output):
            return 0.5 * x

    video = torch.randn(3, 3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    levels = torch.tensor([-4.0, 0.0, 4.0])
    got = heldout_loss(Affine(), video, None, levels, seed=7, prediction="eps")
    gen = torch.Generator().manual_seed(7)
    for value, level in zip(got, levels):
        eps = torch.randn(video.shape, generator=gen)
        x_t = diffuse(video, eps, torch.full((3,), float(level)))
        assert value == pytest.approx(((0.5 * x_t - eps) ** 2).mean().item(), rel=1e-6)
    assert torch.equal(got, heldout_loss(Affine(), video, None, levels, seed=7, prediction="eps"))
    assert not torch.equal(got, heldout_loss(Affine(), video, None, levels, seed=8, prediction="eps"))
