"""The FVD-VA encoder we ship in git (checkpoints/video-encoder): it loads through the real loader, matches its card,
and its features see what FVD must see on clips it never trained on (procedural broad clips; it saw pybullet ones)."""

import functools
import itertools
import json
import re
from pathlib import Path

import pytest
import torch

from video_adapter.data.datagen.stream import ClipStream
from video_adapter.evaluation.metrics.scores import feature_separation
from video_adapter.evaluation.metrics.video_net import load_video_net, video_net_features

pytestmark = pytest.mark.slow  # the shipped encoder over streamed clips

ENCODER = Path(__file__).resolve().parents[2] / "checkpoints" / "video-encoder"


@pytest.fixture(scope="module")
def encoder():
    return load_video_net(ENCODER)


def test_encoder_config_and_card_agree(encoder):
    config = json.loads((ENCODER / "config.json").read_text())
    assert encoder.cfg.objective == "text"
    assert (encoder.cfg.frames, encoder.cfg.height, encoder.cfg.width) == (16, 24, 40)
    card = (ENCODER / "README.md").read_text()
    params = sum(p.numel() for p in encoder.parameters())
    assert f"{params:,}" in card and f"| {config['step']:,} |" in card
    assert re.search(rf"{config['final_loss']:.3f}", card)


def test_features_see_noise_shuffled_time_and_frozen_video(encoder):
    """FD between two disjoint sets of 128 clips (the sampling floor) against the same second set shuffled in time,
    with noise, or frozen on its first frame (the card's table: 0.31 against 0.40, 0.44 and 1.68)."""
    clips = list(itertools.islice(ClipStream("broad-procedural", 0, (24, 40), 16, start=2**41), 256))
    videos = torch.stack([c["video"] for c in clips])
    fd = feature_separation(functools.partial(video_net_features, encoder), videos[:128], videos[128:])
    floor = fd["same distribution"]
    assert fd["shuffled in time"] > 1.2 * floor and fd["noise 0.3"] > 1.2 * floor
    assert fd["frozen on the first frame"] > 2 * floor
