"""The ScoreModel interface: native checkpoints in canonical terms, declared specs, compatibility checks."""

import dataclasses

import pytest
import torch

from video_adapter.models.checkpoint import CheckpointError, save_model
from video_adapter.models.score_model import ModelSpec, NativeScoreModel, check_compatible, load_score_model
from video_adapter.models.unet import SpaceTimeUNet, count_parameters

from helpers import model_inputs, randomize


def test_native_checkpoint_is_a_score_model(tiny_cfg, tmp_path):
    unet = randomize(SpaceTimeUNet(tiny_cfg)).eval()
    directory = save_model(tmp_path / "ck", unet, "minilm")
    model = load_score_model(directory)
    x, logsnr, cond = model_inputs(tiny_cfg)
    with torch.no_grad():
        expected = unet(x, logsnr, cond)
    assert torch.equal(model(x, logsnr.double(), cond), expected)  # calling it is eps, logsnr in any dtype
    spec = model.spec
    assert spec.shape == (tiny_cfg.channels, tiny_cfg.frames, tiny_cfg.height, tiny_cfg.width)
    assert spec.conditions == ("text", "first_frame", "edges") and spec.space == "pixels"
    assert (spec.prediction, spec.time, spec.value_range) == ("v", "logsnr", (-1.0, 1.0))
    assert spec.parameters == count_parameters(unet) and spec.text_encoder == "minilm"
    plain = NativeScoreModel(SpaceTimeUNet(dataclasses.replace(tiny_cfg, edge_cond=False, first_frame_cond=False)))
    assert plain.spec.conditions == ("text",)


def test_a_checkpoint_with_non_finite_weights_is_refused(tiny_cfg, tmp_path):
    unet = randomize(SpaceTimeUNet(tiny_cfg))
    with torch.no_grad():
        unet.conv_in.bias[0] = float("nan")
    directory = save_model(tmp_path / "ck", unet, "minilm")
    with pytest.raises(CheckpointError, match=f"tensor conv_in.bias in {directory / 'model.safetensors'} holds NaN"):
        load_score_model(directory)


def test_bfloat16_model_returns_the_callers_dtype(tiny_cfg, tmp_path):
    unet = randomize(SpaceTimeUNet(tiny_cfg)).eval()
    model = load_score_model(save_model(tmp_path / "ck", unet, "minilm"), dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.autocast == torch.bfloat16
    x, logsnr, cond = model_inputs(tiny_cfg)
    out = model(x, logsnr, cond)
    with torch.no_grad():
        full = unet(x, logsnr, cond)
    assert out.dtype == torch.float32 and (out - full).abs().max() < 0.05 * full.abs().max()


def test_bad_settings(tiny_cfg):
    with pytest.raises(ValueError, match="autocast"):
        NativeScoreModel(SpaceTimeUNet(tiny_cfg), autocast=torch.float64)
    with pytest.raises(ValueError, match="cuda_graphs needs the model on a CUDA device"):
        NativeScoreModel(SpaceTimeUNet(tiny_cfg), cuda_graphs=True)
    with pytest.raises(ValueError, match="unknown conditions \\['depth'\\]"):
        ModelSpec("pixels", 3, 16, 24, 40, conditions=("text", "depth"))


class Declared(NativeScoreModel):
    """A model whose spec is declared by hand (as a diffusers or latent adapter would)."""

    def __init__(self, unet, **spec):
        super().__init__(unet)
        self.spec = dataclasses.replace(self.spec, **spec)


@pytest.mark.parametrize("change, words", [
    (dict(frames=8), ["frame counts differ: adapter 4, prior 8", "--model frames=8"]),
    (dict(height=16), ["shapes differ", "3x8x8", "3x16x8", "height=16"]),
    (dict(channels=4), ["shapes differ", "channels=4"]),
    (dict(space="latent:sd-vae"), ["spaces differ", "'pixels'", "'latent:sd-vae'"]),
    (dict(value_range=(0.0, 1.0)), ["value ranges differ", "(-1.0, 1.0)", "(0.0, 1.0)"]),
])
def test_incompatible_pairs_fail_before_sampling(tiny_cfg, change, words):
    small = NativeScoreModel(SpaceTimeUNet(tiny_cfg))
    prior = Declared(SpaceTimeUNet(tiny_cfg), **change)
    check_compatible(small, NativeScoreModel(SpaceTimeUNet(tiny_cfg)))
    with pytest.raises(ValueError, match="cannot be composed") as e:
        check_compatible(small, prior)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
