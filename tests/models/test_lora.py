import json
import re

import pytest
import torch
from safetensors.torch import load_file

from video_adapter.data.toy import make_toy_dataset
from video_adapter.models.checkpoint import load_model, load_tensors, save_model
from video_adapter.models.lora import ATTENTION_PROJECTIONS, add_lora, is_lora, merged, trainable_parameters
from video_adapter.models.text import load_text_encoder
from video_adapter.models.unet import SpaceTimeUNet, preset
from video_adapter.training.train import TrainConfig, train

from helpers import TINY, model_inputs, randomize


def test_lora_starts_as_the_frozen_model_and_trains_only_its_low_rank_matrices(tiny_cfg):
    model = randomize(SpaceTimeUNet(tiny_cfg), seed=1).eval()
    x, logsnr, cond = model_inputs(tiny_cfg)
    with torch.no_grad():
        before = model(x, logsnr, cond)
        targets = {n: m for n, m in model.named_modules() if re.fullmatch(ATTENTION_PROJECTIONS, n)}
        add_lora(model, rank=2)
        assert torch.equal(model(x, logsnr, cond), before)  # B starts at zero
    assert targets and is_lora(model)
    expected = sum(2 * (m.in_features + m.out_features) for m in targets.values())
    assert sum(p.numel() for p in trainable_parameters(model)) == expected
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_merged_model_is_the_plain_network_computing_the_lora_output(tiny_cfg):
    plain_keys = SpaceTimeUNet(tiny_cfg).state_dict().keys()
    model = add_lora(randomize(SpaceTimeUNet(tiny_cfg), seed=1), rank=3).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.1)
        x, logsnr, cond = model_inputs(tiny_cfg)
        lora_out = model(x, logsnr, cond)
        plain = merged(model)
        assert not is_lora(plain) and plain.state_dict().keys() == plain_keys
        assert torch.allclose(plain(x, logsnr, cond), lora_out, atol=1e-5)
        assert not torch.allclose(lora_out, merged(add_lora(randomize(SpaceTimeUNet(tiny_cfg), seed=1), 3))(
            x, logsnr, cond), atol=1e-3)  # the update matters
    assert is_lora(model)  # merging works on a copy


def test_no_matching_module_and_bad_rank_are_errors(tiny_cfg):
    with pytest.raises(ValueError, match="no module"):
        add_lora(SpaceTimeUNet(tiny_cfg), rank=2, target=r"nothing\.here")
    with pytest.raises(ValueError, match="rank"):
        add_lora(SpaceTimeUNet(tiny_cfg), rank=0)


@pytest.fixture(scope="module")
def lora_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    toy = make_toy_dataset(root / "toy", num=8, frames=4, size=(8, 16), seed=0, progress=False)
    spec = load_text_encoder("minilm").spec
    init = save_model(root / "init", randomize(SpaceTimeUNet(preset("S", **TINY)), seed=5, scale=0.02), spec, step=9)
    return toy, init


def lora_config(toy, init, out, **kw):
    base = dict(data=str(toy), out=str(out), init=str(init), lora_rank=4, steps=8, batch_size=4, lr=5e-3,
                warmup_steps=1, save_every=4, sample_every=0, log_every=1, seed=0, num_workers=0)
    return TrainConfig(**{**base, **kw})


def test_lora_training_changes_only_the_targeted_weights_and_saves_a_plain_checkpoint(lora_setup, tmp_path):
    toy, init = lora_setup
    checkpoint = train(lora_config(toy, init, tmp_path / "run"))
    start, trained = load_tensors(init), load_tensors(checkpoint)
    assert trained.keys() == start.keys()  # merged: the network's own keys
    targeted = {k for k in start if re.fullmatch(ATTENTION_PROJECTIONS, k.rsplit(".", 1)[0])}
    assert targeted and all(torch.equal(trained[k], start[k]) for k in start if k not in targeted)
    assert any(not torch.equal(trained[k], start[k]) for k in targeted)
    model, _ = load_model(checkpoint)  # loads as an ordinary model
    assert json.loads((checkpoint / "config.json").read_text())["train_config"]["lora_rank"] == 4
    assert not is_lora(model)


@pytest.mark.slow
def test_killed_and_resumed_lora_run_is_bit_identical(lora_setup, tmp_path):
    toy, init = lora_setup
    straight = train(lora_config(toy, init, tmp_path / "a"))
    train(lora_config(toy, init, tmp_path / "b"), stop_after=6)
    resumed = train(lora_config(toy, init, tmp_path / "b"))
    for name in ("online", "ema"):
        a, b = (load_file(str(d / f"train_state/{name}.safetensors")) for d in (straight, resumed))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert all(torch.equal(v, load_tensors(resumed)[k]) for k, v in load_tensors(straight).items())


def test_lora_without_init_is_an_error(lora_setup, tmp_path):
    toy, _ = lora_setup
    with pytest.raises(ValueError, match="--init"):
        train(lora_config(toy, "", tmp_path / "run"))
