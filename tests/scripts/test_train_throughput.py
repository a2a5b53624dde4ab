"""benchmarks/train_throughput.py: a batch for any preset has that preset's shape and the conditions it cannot train
without, so a super-resolution stage can be timed like the other networks."""

from dataclasses import replace

import pytest
import torch

from helpers import load_script
from video_adapter.models.unet import SpaceTimeUNet, preset


@pytest.fixture(scope="module")
def bench():
    return load_script("train_throughput", "benchmarks")


def test_a_batch_has_the_presets_shape_and_an_sr_stage_its_lowres_input(bench):
    plain = bench.make_batch(2, torch.device("cpu"), False)
    assert plain.x_t.shape == (2, 3, bench.FRAMES, bench.HEIGHT, bench.WIDTH) and plain.cond.lowres is None
    cfg = replace(preset("sr-48x80"), frames=4, height=8, width=16, base_channels=8, channel_mults=(1, 2),
                  num_res_blocks=1, attention_resolutions=(4,), head_dim=8, emb_dim=16)
    b = bench.make_batch(2, torch.device("cpu"), False, cfg)
    assert b.x_t.shape == (2, 3, 4, 8, 16) and b.cond.lowres.shape == b.x_t.shape
    assert ((0 <= b.cond.lowres_level) & (b.cond.lowres_level <= cfg.lowres_aug)).all()
    # the stage trains on it: one loss with gradients (without the level it refuses, as the model says)
    loss = bench.ours_loss(SpaceTimeUNet(cfg), b)
    loss.backward()
    assert torch.isfinite(loss)
