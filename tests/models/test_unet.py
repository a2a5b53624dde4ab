import pytest
import torch

from video_adapter.maths.conditioning import Cond, drop_conditions
from video_adapter.models.unet import (
    PRESETS,
    SpaceTimeUNet,
    UNetConfig,
    build_unet,
    count_parameters,
    preset,
)

from helpers import model_inputs, randomize


def inputs(cfg, b=3, seed=0):
    return model_inputs(cfg, b, seed, logsnr_range=5.0)


@pytest.fixture
def model(tiny_cfg):
    return randomize(SpaceTimeUNet(tiny_cfg)).eval()


def test_output_shape_and_finite(model, tiny_cfg):
    x, logsnr, cond = inputs(tiny_cfg)
    out = model(x, logsnr, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_fresh_model_predicts_zero_natively_and_eps_from_v(tiny_cfg):
    # Zero-initialised output conv: an untrained network outputs 0, the MSE-optimal constant of its target.
    x, logsnr, cond = inputs(tiny_cfg)
    model = SpaceTimeUNet(tiny_cfg)
    assert model(x, logsnr, cond, output="native").abs().max() == 0
    # v = 0 means eps = sigma x_t (eps = sigma x + alpha v); an eps-model's eps is its output itself.
    sigma = torch.sigmoid(-logsnr).sqrt().view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(model(x, logsnr, cond), sigma * x)
    eps_model = SpaceTimeUNet(UNetConfig(**{**tiny_cfg.to_dict(), "prediction": "eps"}))
    assert eps_model(x, logsnr, cond).abs().max() == 0
    with pytest.raises(ValueError, match="prediction"):
        UNetConfig(prediction="x0")


@pytest.mark.parametrize("field", ["text", "first_frame", "edges"])
def test_each_condition_changes_output(model, tiny_cfg, field):
    x, logsnr, cond = inputs(tiny_cfg)
    base = model(x, logsnr, cond)
    other = getattr(cond, field).clone()
    other[0] = torch.randn_like(other[0])
    changed = model(x, logsnr, Cond(**{**cond.__dict__, field: other}))
    assert not torch.allclose(changed[0], base[0], atol=1e-5)  # the edited sample moved
    torch.testing.assert_close(changed[1:], base[1:])  # the others did not: no leak across the batch


def test_noise_level_changes_output(model, tiny_cfg):
    x, logsnr, cond = inputs(tiny_cfg)
    assert not torch.allclose(model(x, logsnr, cond), model(x, logsnr + 1.0, cond), atol=1e-5)


def test_dropped_conditions_equal_null_condition(model, tiny_cfg):
    x, logsnr, cond = inputs(tiny_cfg, b=4)
    keep = torch.tensor([True, False, True, False])  # samples 1 and 3 lose every condition
    dropped = cond.with_flags(text=keep, first_frame=keep, edges=torch.tensor([True, False, False, False]))
    out, null, full = model(x, logsnr, dropped), model(x, logsnr, cond.null()), model(x, logsnr, cond)
    torch.testing.assert_close(out[[1, 3]], null[[1, 3]])
    torch.testing.assert_close(out[0], full[0])
    assert not torch.allclose(out[2], full[2], atol=1e-5)  # edges alone dropped: neither full nor null
    assert not torch.allclose(out[2], null[2], atol=1e-5)
    # The null condition ignores the content of the dropped tensors entirely ...
    scrambled = cond.map(lambda v: torch.randn_like(v) if v.is_floating_point() else v).null()
    torch.testing.assert_close(model(x, logsnr, scrambled), null)
    # ... and equals giving no conditions at all.
    torch.testing.assert_close(model(x, logsnr, Cond()), null)


def test_condition_dropout_rate():
    b = 4000
    cond = Cond.make(text=torch.zeros(b, 1, 2), first_frame=torch.zeros(b, 3, 2, 2))
    dropped = drop_conditions(cond, {"text": 0.1, "first_frame": 0.5}, torch.Generator().manual_seed(0))
    # Binomial standard errors are 0.005 and 0.008; 4 of them either way.
    assert abs((~dropped.has_text).float().mean() - 0.1) < 0.02
    assert abs((~dropped.has_first_frame).float().mean() - 0.5) < 0.032
    assert dropped.has_edges is None


def test_only_temporal_layers_see_frame_order(model, tiny_cfg):
    # Spatial layers act per frame (norms pool over frames, an order-free statistic), so without the
    # temporal layers a permutation of the frames permutes the output; with them it does not.
    x, logsnr, cond = inputs(tiny_cfg)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = Cond(**{**cond.__dict__, "edges": cond.edges[:, :, perm]})
    out, out_p = model(x, logsnr, cond), model(x[:, :, perm], logsnr, permuted)
    assert not torch.allclose(out_p, out[:, :, perm], atol=1e-4)
    spatial_only = randomize(SpaceTimeUNet(UNetConfig(**{**tiny_cfg.to_dict(), "temporal_attention": False})))
    for m in spatial_only.modules():
        if isinstance(m, torch.nn.Conv3d) and m.kernel_size[0] == 3:
            torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)
    torch.testing.assert_close(spatial_only(x[:, :, perm], logsnr, permuted), spatial_only(x, logsnr, cond)[:, :, perm])


def test_fewer_frames_than_configured(model, tiny_cfg):
    x, logsnr, cond = inputs(tiny_cfg)
    out = model(x[:, :, :2], logsnr, Cond.make(text=cond.text, first_frame=cond.first_frame, edges=cond.edges[:, :, :2]))
    assert out.shape[2] == 2


def test_bad_inputs_raise(model, tiny_cfg):
    x, logsnr, cond = inputs(tiny_cfg)
    with pytest.raises(ValueError, match="does not fit the model"):
        model(x[..., :4], logsnr, cond)
    with pytest.raises(ValueError, match="text_dim=16"):
        model(x, logsnr, Cond.make(text=torch.randn(3, 5, 7)))
    no_ff = SpaceTimeUNet(UNetConfig(**{**tiny_cfg.to_dict(), "first_frame_cond": False}))
    with pytest.raises(ValueError, match="first-frame conditioning"):
        no_ff(x, logsnr, cond)


def test_config_validation_and_round_trip(tiny_cfg):
    with pytest.raises(ValueError, match="divisible by 4"):
        UNetConfig(height=10, width=40)
    with pytest.raises(ValueError, match="attention_resolutions"):
        UNetConfig(attention_resolutions=(5,))
    with pytest.raises(ValueError, match="unknown UNetConfig fields"):
        UNetConfig.from_dict({"base_chanels": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("XXL")
    assert UNetConfig.from_dict(tiny_cfg.to_dict()) == tiny_cfg


def test_head_dim_is_the_width_of_one_head(tiny_cfg):
    cfg = UNetConfig(**{**tiny_cfg.to_dict(), "head_dim": 8})
    attn = SpaceTimeUNet(cfg).mid.attn[0].spatial
    assert attn.heads == 32 // 8  # mid level has 32 channels


def test_presets_build_on_meta_and_paper_prior_is_billions():
    for name in PRESETS:
        assert count_parameters(build_unet(preset(name), "meta")) > 0
    paper = build_unet(preset("paper-5.6b"), "meta")
    assert next(paper.parameters()).is_meta
    assert count_parameters(paper) > 5e9
    small = count_parameters(build_unet(preset("S"), "meta"))
    assert small < 0.002 * count_parameters(paper)
