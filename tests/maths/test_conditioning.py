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
