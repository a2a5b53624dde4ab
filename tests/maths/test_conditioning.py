"""Conditions: every one a model accepts, taken from the clean video and its caption."""

import torch

from video_adapter.maths.conditioning import Cond, make_cond
from video_adapter.models.text import load_text_encoder
from video_adapter.models.unet import UNetConfig


def test_make_cond_takes_every_condition_the_model_accepts():
    video = torch.rand(2, 3, 4, 8, 8) * 2 - 1
    text = load_text_encoder("minilm").encode(["a", "b"])
    cond = make_cond(video, text, UNetConfig(height=8, width=8, channel_mults=(1, 2), attention_resolutions=(4,),
                                             edge_cond=True))
    assert isinstance(cond, Cond) and torch.equal(cond.first_frame, video[:, :, 0])
    assert cond.edges.shape == video.shape and cond.has_edges.all()


def test_augment_lowres_noises_each_row_to_its_level_and_leaves_level_0_untouched():
    """Noise conditioning augmentation: cos(pi u / 2) x + sin(pi u / 2) noise per row; a row at level 0 is the input
    bit for bit (not merely close), which the SR stage's level-0 equivalence rests on."""
    import math

    import pytest

    from video_adapter.maths.conditioning import augment_lowres

    g = torch.Generator().manual_seed(0)
    lowres = torch.rand(3, 3, 2, 4, 8, generator=g) * 2 - 1
    noise = torch.randn(lowres.shape, generator=g)
    level = torch.tensor([0.0, 0.5, 1.0])
    out = augment_lowres(lowres, level, noise)
    assert torch.equal(out[0], lowres[0])
    half = math.sqrt(0.5)
    torch.testing.assert_close(out[1], half * lowres[1] + half * noise[1])
    torch.testing.assert_close(out[2], noise[2], atol=1e-6, rtol=0)  # level 1: pure noise
    # variance preserving: unit-variance input and noise stay unit variance at any level
    big, eps = torch.randn(2, 3, 4, 32, 32, generator=g), torch.randn(2, 3, 4, 32, 32, generator=g)
    assert abs(float(augment_lowres(big, torch.tensor([0.3, 0.7]), eps).std()) - 1) < 0.02
    with pytest.raises(ValueError, match="a level per sample"):
        augment_lowres(lowres, torch.zeros(2), noise)


def test_make_cond_noises_an_augmented_stage_input_and_gives_its_level():
    import pytest

    from video_adapter.maths.conditioning import augment_lowres, lowres_condition

    video = torch.rand(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    text = load_text_encoder("minilm").encode(["a", "b"])
    sr = UNetConfig(height=8, width=8, channel_mults=(1, 2), attention_resolutions=(4,), first_frame_cond=False,
                    lowres_factor=2, lowres_aug=0.5)
    clean = make_cond(video, text, sr)  # no augmentation drawn (a preview): level 0, the clean input
    assert torch.equal(clean.lowres, lowres_condition(video, 2)) and torch.equal(clean.lowres_level, torch.zeros(2))
    level, noise = torch.tensor([0.1, 0.4]), torch.randn(video.shape)
    cond = make_cond(video, text, sr, (level, noise))
    assert torch.equal(cond.lowres, augment_lowres(lowres_condition(video, 2), level, noise))
    assert torch.equal(cond.lowres_level, level) and cond.null().lowres_level is level
    plain = UNetConfig(height=8, width=8, channel_mults=(1, 2), attention_resolutions=(4,), lowres_factor=2)
    assert make_cond(video, text, plain).lowres_level is None
    with pytest.raises(ValueError, match="lowres_aug > 0"):
        make_cond(video, text, plain, (level, noise))


def test_a_residual_stage_diffuses_its_scaled_detail_and_video_from_residual_puts_it_back():
    from dataclasses import replace

    from video_adapter.maths.conditioning import diffusion_target, lowres_condition, video_from_residual

    cfg = UNetConfig(frames=2, height=8, width=8, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                     head_dim=8, emb_dim=16, first_frame_cond=False, lowres_factor=2, lowres_residual=0.25)
    video = torch.rand(2, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lowres = lowres_condition(video, 2)
    detail = diffusion_target(video, cfg)
    torch.testing.assert_close(detail, (video - lowres) / 0.25)
    torch.testing.assert_close(video_from_residual(detail, lowres, 0.25), video)
    assert diffusion_target(video, replace(cfg, lowres_residual=0.0)) is video  # any other model: the video
    assert float(video_from_residual(torch.full_like(video, 100.0), lowres, 0.25).max()) == 1.0
