"""The test suite's shared fixtures (its shared helpers are in helpers.py). Tests marked `slow` (whole files of
multi-process runs, shipped-model checks and end-to-end evaluations, and single long tests) are left out by
`make test-fast`; `make test`, which CI runs, runs everything."""

import json
import os

import pytest
import torch

# Nothing in the test suite may reach the network; transformers and the hub honour this.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg():
    from video_adapter.models.unet import UNetConfig

    return UNetConfig(frames=4, height=8, width=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                      attention_resolutions=(4,), head_dim=8, emb_dim=32, text_dim=16, edge_cond=True)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Eight captioned toy clips of 4 frames at 8x16 (helpers.TINY's size)."""
    from video_adapter.data.toy import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num=8, frames=4, size=(8, 16), seed=0, progress=False)


@pytest.fixture(scope="module")
def eval_config(tmp_path_factory):
    """Tiny prior, adapter, encoder, classifier and toy test split, and the EvalConfig that evaluates them."""
    from video_adapter.data.toy import make_toy_dataset
    from video_adapter.evaluation.evaluate import EvalConfig
    from video_adapter.evaluation.metrics.detectors import INCEPTION
    from video_adapter.evaluation.metrics.video_net import VideoNet, VideoNetConfig, save_video_net
    from video_adapter.models.checkpoint import save_model
    from video_adapter.models.unet import SpaceTimeUNet

    from helpers import EVAL_PRIOR, EVAL_SHAPE, EVAL_SMALL, InceptionStandIn, randomize

    root = tmp_path_factory.mktemp("eval")
    domain = root / "domain"
    make_toy_dataset(domain / "test", num=6, frames=4, size=(8, 16), seed=0, progress=False)
    captions = sorted({json.loads(line)["caption"] for line in (domain / "test" / "captions.jsonl").open()})
    torch.manual_seed(0)
    prior = save_model(root / "prior", randomize(SpaceTimeUNet(EVAL_PRIOR), scale=0.05), "minilm")
    small = save_model(root / "small", randomize(SpaceTimeUNet(EVAL_SMALL), seed=1, scale=0.05), "minilm")
    net = dict(**EVAL_SHAPE, widths=(8, 16), feature_dim=16, norm_groups=4)
    encoder = save_video_net(root / "encoder", VideoNet(VideoNetConfig(**net, embed_dim=8)))
    classifier = save_video_net(root / "classifier",
                                VideoNet(VideoNetConfig(**net, objective="caption", labels=tuple(captions))))
    inception = root / INCEPTION.filename
    torch.jit.script(InceptionStandIn().eval()).save(str(inception))
    return EvalConfig(domain=str(domain), prior=str(prior), small_s=str(small),
                      methods=("small-s", "small-s+prior", "prior", "cfg-mix"),
                      metrics=("fvd-va", "accuracy", "fid", "kid", "is"), encoder=str(encoder),
                      classifier=str(classifier), inception=str(inception), num=4, batch_size=2, steps=3,
                      gamma_sweep=(0.0, 0.1), prior_strength=0.1, bootstrap=20, grid=2, device="cpu",
                      out=str(root / "out"))
