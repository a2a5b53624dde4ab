"""Style retention / realness: a domain classifier (video_net objective "domain") trained on named folders, scored on
its own training classes; and evaluate's edge-fidelity and style metrics with the CFG Mix sweep."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from video_adapter.data.dataset import VideoFolderDataset
from video_adapter.data.toy import make_toy_dataset
from video_adapter.data.video_io import read_video, write_mp4
from video_adapter.evaluation.metrics.scores import Scorer
from video_adapter.evaluation.metrics.domain_data import parse_classes
from video_adapter.evaluation.metrics.style import class_hits
from video_adapter.evaluation.metrics.video_net import (
    VideoNet,
    VideoNetConfig,
    VideoNetTrainConfig,
    load_video_net,
    save_video_net,
    train_video_net,
)
from video_adapter.maths.conditioning import sobel_x

FRAMES, SIZE = 4, (16, 16)
TINY = {"widths": (8, 16), "feature_dim": 16, "norm_groups": 4}


def inverted_copy(src: Path, dst: Path) -> Path:
    """The clips of `src` with every colour inverted (light background, complementary shapes): a second "style"."""
    dst.mkdir(parents=True)
    for line in (src / "captions.jsonl").read_text().splitlines():
        name = json.loads(line)["video"]
        write_mp4(dst / name, 255 - read_video(src / name), fps=8, crf=12)
    (dst / "captions.jsonl").write_text((src / "captions.jsonl").read_text())
    return dst


@pytest.fixture(scope="module")
def styles(tmp_path_factory):
    root = tmp_path_factory.mktemp("styles")
    dark = make_toy_dataset(root / "dark", num=24, frames=FRAMES, size=SIZE, seed=0, progress=False)
    return dark, inverted_copy(dark, root / "light")


def clips(folder: Path) -> torch.Tensor:
    data = VideoFolderDataset(folder, frames=FRAMES, size=SIZE, random_crop=False)
    return torch.stack([data[i]["video"] for i in range(len(data))])


@pytest.mark.slow
def test_domain_classifier_puts_its_training_classes_in_their_class(styles, tmp_path):
    dark, light = styles
    cfg = VideoNetTrainConfig(objective="domain", classes=(f"toon={light}", f"other={dark}"), out=str(tmp_path / "net"),
                              frames=FRAMES, height=SIZE[0], width=SIZE[1], model=TINY, steps=40, batch_size=8,
                              lr=1e-2, warmup_steps=5, shift=1, device="cpu")
    net = load_video_net(train_video_net(cfg))
    assert net.cfg.labels == ("other", "toon") and net.cfg.objective == "domain"
    toon, other = clips(light), clips(dark)
    assert class_hits(net, toon, "toon").mean() == 1.0
    assert class_hits(net, other, "toon").mean() == 0.0
    assert class_hits(net, other, "other").mean() == 1.0
    with pytest.raises(ValueError, match="not one of this classifier's"):
        class_hits(net, toon, "anime")


def test_domain_classifier_errors_name_the_fix(styles, tmp_path):
    dark, _ = styles
    with pytest.raises(ValueError, match="NAME=FOLDER"):
        parse_classes(("toon",))
    with pytest.raises(ValueError, match="at least 2 distinct names"):
        parse_classes((f"toon={dark}", f"toon={dark}"))
    base = VideoNetTrainConfig(objective="domain", classes=(f"a={dark}", f"b={dark}"), out=str(tmp_path / "x"),
                               frames=FRAMES, height=SIZE[0], width=SIZE[1], model=TINY, steps=1, device="cpu")
    with pytest.raises(ValueError, match="not --data"):
        train_video_net(replace(base, data=str(dark)))
    with pytest.raises(ValueError, match="--objective domain"):
        train_video_net(replace(base, objective="caption", data=str(dark)))
    encoder = VideoNet(VideoNetConfig(frames=FRAMES, height=SIZE[0], width=SIZE[1], **TINY, embed_dim=8))
    with pytest.raises(ValueError, match="objective 'domain'"):
        class_hits(encoder, clips(dark), "toon")


def test_scorer_edge_fidelity_and_style_on_known_inputs(styles, tmp_path):
    dark, light = styles
    toon, other = clips(light)[:6], clips(dark)[:6]
    # a classifier whose head says "toon" for every video: style is exactly 1 with a degenerate interval
    net = VideoNet(VideoNetConfig(frames=FRAMES, height=SIZE[0], width=SIZE[1], **TINY, objective="domain",
                                  labels=("other", "toon")))
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, 1.0]))
    path = save_video_net(tmp_path / "always-toon", net)
    scorer = Scorer(("style", "edge-fidelity"), toon, {"style": str(path)}, bootstrap_rounds=20, style_label="toon")
    got = scorer.score(other, ["x"] * 6, sobel_x(other))
    assert (got["style"].value, got["style"].low, got["style"].high) == (1.0, 1.0, 1.0)
    assert got["edge-fidelity"].value == pytest.approx(1.0, abs=1e-9)
    # inverting colours negates every gradient: the edges are followed with the opposite sign
    assert scorer.score(toon, ["x"] * 6, sobel_x(other))["edge-fidelity"].value < -0.9
    with pytest.raises(ValueError, match="--condition edges"):
        scorer.score(other, ["x"] * 6)
    with pytest.raises(ValueError, match="--style-classifier"):
        Scorer(("style",), toon, {}, style_label="toon")
    with pytest.raises(ValueError, match="--style-label"):
        Scorer(("style",), toon, {"style": str(path)}, style_label="")


@pytest.mark.slow
def test_evaluate_with_edges_scores_edge_fidelity_style_and_the_mix_sweep(eval_config, tmp_path):
    from video_adapter.evaluation.evaluate import run_evaluation
    from video_adapter.models.checkpoint import save_model
    from video_adapter.models.unet import SpaceTimeUNet

    from helpers import EVAL_SHAPE, EVAL_SMALL, randomize

    edge_small = save_model(tmp_path / "edge-small", randomize(SpaceTimeUNet(replace(EVAL_SMALL, edge_cond=True)),
                                                               seed=2, scale=0.05), "minilm")
    style = save_video_net(tmp_path / "style", VideoNet(VideoNetConfig(**EVAL_SHAPE, widths=(8, 16), feature_dim=16,
                                                                       norm_groups=4, objective="domain",
                                                                       labels=("other", "toon"))))
    cfg = replace(eval_config, small_s=str(edge_small), condition="edges", methods=("small-s+prior", "cfg-mix"),
                  metrics=("edge-fidelity", "style"), style_classifier=str(style), style_label="toon",
                  gamma_sweep=(0.0, 0.1), mix=0.5, mix_sweep=(0.5, 1.0), steps=2, out=str(tmp_path / "out"))
    results = run_evaluation(cfg)
    assert set(results["mix_sweep"]) == {"0.5", "1.0"} and set(results["gamma_sweep"]) == {"0.0", "0.1"}
    for row in [*results["methods"].values()]:
        fidelity, share = row["metrics"]["edge-fidelity"], row["metrics"]["style"]
        assert -1 <= fidelity["ci95"][0] <= fidelity["value"] <= fidelity["ci95"][1] <= 1
        assert 0 <= share["value"] <= 1
    # the sweep's entry at the run's own mix reuses the method's samples
    assert results["mix_sweep"]["0.5"] == results["methods"]["cfg-mix"]["metrics"]
    assert (tmp_path / "out" / "gamma_sweep.png").stat().st_size > 0
    with pytest.raises(ValueError, match="--condition edges"):
        run_evaluation(replace(cfg, condition="first_frame"))
