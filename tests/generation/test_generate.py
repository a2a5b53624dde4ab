"""Generation in one place: every method of a set from the same noise, errors before and after sampling, and the video
size a checkpoint records for a diffusers prior."""

import json
import math

import pytest
import torch

from video_adapter.generation.generate import SamplingSettings, generate
from video_adapter.generation.loading import trained_video_size
from video_adapter.maths.composition import Conds, PriorStrength
from video_adapter.maths.mcmc import MCMCConfig
from video_adapter.models.checkpoint import save_model
from video_adapter.models.score_model import NativeScoreModel
from video_adapter.models.unet import SpaceTimeUNet

from helpers import model_inputs, randomize

CPU = torch.device("cpu")


@pytest.fixture
def models(tiny_cfg):
    small, prior = (NativeScoreModel(randomize(SpaceTimeUNet(tiny_cfg), seed=s)) for s in (1, 2))
    _, _, cond = model_inputs(tiny_cfg, b=2)
    return {"small": small, "prior": prior}, Conds(small=cond, prior=cond)


def test_every_method_starts_from_the_same_noise(models):
    """At prior strength 0 the composition is the adapter alone, bit for bit: the same seed, the same draws."""
    models, conds = models
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, strength=PriorStrength(0.0))
    out = generate(models, conds, ("adapter", "composed", "prior"), settings, CPU, progress=False)
    assert list(out.videos) == list(out.seconds) == ["adapter", "composed", "prior"]
    assert torch.equal(out.videos["composed"], out.videos["adapter"])
    assert not torch.equal(out.videos["prior"], out.videos["adapter"])
    assert out.videos["adapter"].shape == (2, *models["small"].spec.shape) and out.videos["prior"].abs().max() <= 1
    again = generate(models, conds, ("composed",), SamplingSettings(sampler="ddim", steps=3, guidance=2.0), CPU,
                     progress=False)
    assert not torch.equal(again.videos["composed"], out.videos["adapter"])  # gamma 0.1: the prior counts


def test_a_non_finite_sample_is_an_error_naming_its_method(models, monkeypatch):
    models, conds = models
    monkeypatch.setattr(models["prior"], "eps", lambda x, logsnr, cond: torch.full_like(x, math.nan))
    with pytest.raises(ValueError, match="the prior samples hold NaN or Inf"):
        generate(models, conds, ("adapter", "prior"), SamplingSettings(sampler="ddim", steps=2), CPU, progress=False)


def test_settings_refuse_what_would_sample_wrongly():
    with pytest.raises(ValueError, match="--prior-strength -0.1 is negative"):
        SamplingSettings(strength=PriorStrength(-0.1)).validate()
    SamplingSettings(strength=PriorStrength(-0.1)).validate(allow_negative_strength=True)
    with pytest.raises(ValueError, match="--strength-end -1.0 is negative"):
        SamplingSettings(strength=PriorStrength(0.1, decay="linear", gamma_end=-1.0)).validate()
    with pytest.raises(ValueError, match="--mcmc mala composes energies"):
        SamplingSettings(mcmc=MCMCConfig("mala"), compose_in="x0").validate()
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        SamplingSettings(sampler="euler").validate()


def test_the_video_size_comes_from_config_json_and_from_older_latent_checkpoints(tiny_cfg, tmp_path):
    recorded = save_model(tmp_path / "new", SpaceTimeUNet(tiny_cfg), "minilm",
                          video={"frames": 16, "height": 256, "width": 320})
    assert trained_video_size(recorded) == (16, 256, 320)
    # written before the record: a --space run's train_config gives --model's size over its preset's
    legacy = save_model(tmp_path / "old", SpaceTimeUNet(tiny_cfg), "minilm",
                        train_config={"space": "/models/zeroscope", "preset": "S", "model": {"height": 256}})
    assert "video" not in json.loads((legacy / "config.json").read_text())
    assert trained_video_size(legacy) == (16, 256, 40)
    pixels = save_model(tmp_path / "pixels", SpaceTimeUNet(tiny_cfg), "minilm", train_config={"space": ""})
    assert trained_video_size(pixels) is None
