"""video_net: our offline encoder (FVD-VA) and per-domain caption classifier, trained briefly on tiny toy clips."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from video_adapter.data.dataset import VideoFolderDataset, center_crop_resize
from video_adapter.data.toy import COLORS, DIRECTIONS, SHAPES, make_toy_dataset, render_clip
from video_adapter.data.video_io import from_uint8
from video_adapter.evaluation.metrics.stats import feature_stats, frechet_distance
from video_adapter.evaluation.metrics.video_net import (
    VideoNet,
    VideoNetConfig,
    VideoNetTrainConfig,
    batches,
    caption_accuracy,
    caption_predictions,
    load_video_net,
    predict_captions,
    save_video_net,
    train_video_net,
    video_net_features,
)
from video_adapter.models.checkpoint import CheckpointError

FRAMES, SIZE = 8, (16, 16)
TINY = {"widths": (8, 16), "feature_dim": 32, "embed_dim": 32}
# At 16x16 a toy shape is ~5 px across, so squares and circles are barely apart; the classifier names colour and
# direction, which also exercises caption_rewrites (synonyms merged into one label, as "push"/"slide" in robot).
SHAPELESS = ("square=>shape", "circle=>shape")


def train_cfg(data, out, objective: str, steps: int, **kw) -> VideoNetTrainConfig:
    return VideoNetTrainConfig(data=str(data), out=str(out), objective=objective, frames=FRAMES, height=SIZE[0],
                               width=SIZE[1], model=TINY, steps=steps, batch_size=16, lr=1e-2, warmup_steps=10,
                               shift=1, device="cpu", **kw)


def render_pairs(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint sets of `num` toy clips [num, 3, FRAMES, *SIZE] made in memory, clip i of each with the same
    caption (colour, shape, direction) but its own size, lane, start and speed. Matching the captions keeps the
    halves' Fréchet distance free of the noise of which captions each half happened to draw, so it is ~20x below
    what a corruption adds; independently drawn halves of 128 differ by as much as frames shuffled in time do."""
    rng = np.random.default_rng(seed)
    halves = ([], [])
    for _ in range(num):
        what = (list(COLORS)[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))],
                list(DIRECTIONS)[rng.integers(len(DIRECTIONS))])
        for half in halves:
            half.append(center_crop_resize(from_uint8(render_clip(*what, FRAMES, SIZE, rng=rng)), SIZE).clamp(-1, 1))
    return torch.stack(halves[0]), torch.stack(halves[1])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num=48, frames=FRAMES, size=SIZE, seed=0, progress=False)


@pytest.fixture(scope="module")
def clips(toy):
    data = VideoFolderDataset(toy, frames=FRAMES, size=SIZE, random_crop=False)
    return torch.stack([data[i]["video"] for i in range(len(data))]), list(data.captions)


@pytest.fixture(scope="module")
def encoder(toy, tmp_path_factory):
    return train_video_net(train_cfg(toy, tmp_path_factory.mktemp("runs") / "encoder", "text", steps=60))


@pytest.fixture(scope="module")
def classifier(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "classifier"
    return train_video_net(train_cfg(toy, out, "caption", steps=300, caption_rewrites=SHAPELESS))


@pytest.mark.slow
def test_classifier_names_its_training_clips_and_not_shuffled_captions(classifier, clips):
    videos, captions = clips
    net = load_video_net(classifier)
    rewritten = [c.replace("square", "shape").replace("circle", "shape") for c in captions]
    assert net.cfg.labels == tuple(sorted(set(rewritten)))
    result = caption_accuracy(net, videos, captions, batch_size=7)
    assert result["num"] == len(captions) and result["num_unknown"] == 0
    assert result["chance"] == pytest.approx(1 / len(net.cfg.labels))
    assert result["accuracy"] > 0.9, result
    assert predict_captions(net, videos[:3]) == [net.cfg.labels[i] for i in net(videos[:3]).argmax(1).tolist()]
    # shuffled pairs: right only where two clips share a label, sum_k p_k^2 in expectation (chance for these labels)
    freq = np.unique(rewritten, return_counts=True)[1] / len(rewritten)
    rng = np.random.default_rng(0)
    shuffled = [caption_accuracy(net, videos, [captions[i] for i in rng.permutation(len(captions))])["accuracy"]
                for _ in range(5)]
    assert np.mean(shuffled) < (freq**2).sum() + 0.1, (shuffled, (freq**2).sum())


def test_text_encoder_contrastive_loss_falls_from_log_batch(encoder, clips):
    config = json.loads((encoder / "config.json").read_text())
    assert config["model"]["objective"] == "text" and config["step"] == 60
    # near-uniform logits at the start: the InfoNCE loss is about log(batch size)
    assert 0.75 * math.log(16) < config["initial_loss"] < 1.4 * math.log(16), config["initial_loss"]
    assert config["final_loss"] < 0.5 * config["initial_loss"], (config["initial_loss"], config["final_loss"])
    net = load_video_net(encoder)
    videos, _ = clips
    emb = net(videos[:5])
    assert emb.shape == (5, 32) and torch.allclose(emb.norm(dim=1), torch.ones(5))


def test_save_load_round_trip_is_bit_exact(encoder, clips, tmp_path):
    videos, _ = clips
    torch.manual_seed(1)
    net = VideoNet(VideoNetConfig(frames=FRAMES, height=SIZE[0], width=SIZE[1], objective="caption",
                                  labels=("a", "b", "c"), **TINY))
    with torch.no_grad():  # non-zero temporal convs too, so every weight reaches the features
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.1)
    before = video_net_features(net, videos, batch_size=5)
    loaded = load_video_net(save_video_net(tmp_path / "net", net, note="x"))
    assert loaded.cfg == net.cfg
    assert np.array_equal(video_net_features(loaded, videos, batch_size=5), before)
    # another batch size may round differently in the convolutions, but only at float32 precision
    np.testing.assert_allclose(video_net_features(loaded, videos, batch_size=48), before, rtol=0, atol=1e-5)
    assert before.dtype == np.float64 and before.shape == (len(videos), 32)
    assert json.loads((tmp_path / "net" / "config.json").read_text())["note"] == "x"
    # a trained net survives being written again (replacing the directory) unchanged
    trained = load_video_net(encoder)
    again = load_video_net(save_video_net(tmp_path / "net", trained))
    assert np.array_equal(video_net_features(again, videos), video_net_features(trained, videos))
    assert not list(tmp_path.glob(".*"))  # no temp or old directories left behind


def test_training_is_deterministic_given_the_seed(toy, tmp_path):
    def weights(name: str, seed: int) -> dict:
        cfg = train_cfg(toy, tmp_path / name, "caption", steps=12, seed=seed)
        return load_video_net(train_video_net(replace(cfg, shift=2))).state_dict()

    first, second, other = weights("a", 0), weights("b", 0), weights("c", 1)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["step"] == 12 and config["train"]["seed"] == 0 and math.isfinite(config["final_loss"])
    assert len(config["model"]["labels"]) > 2


def relabelled_copy(src, dst, prefix: str, num: int):
    """The first `num` clips of folder `src` in folder `dst`, each caption prefixed: captions `src` does not have."""
    import shutil

    dst.mkdir(parents=True)
    lines = [json.loads(line) for line in (src / "captions.jsonl").read_text().splitlines()][:num]
    for line in lines:
        shutil.copy(src / line["video"], dst / line["video"])
    (dst / "captions.jsonl").write_text("".join(json.dumps({**line, "caption": prefix + line["caption"]}) + "\n"
                                                for line in lines))
    return dst


def test_caption_classifier_on_several_folders_has_the_union_of_their_captions(toy, tmp_path):
    """--data A B: the clips of both, the classes every caption of either (sim clips plus generated ones, Figure 10);
    one folder given as a string or a 1-tuple trains the same net, and a config saved with a string still loads."""
    other = relabelled_copy(toy, tmp_path / "generated", "generated: ", num=8)
    both = train_video_net(replace(train_cfg(toy, tmp_path / "both", "caption", steps=2), data=(str(toy), str(other))))
    labels = load_video_net(both).cfg.labels
    captions = VideoFolderDataset(toy, frames=FRAMES, size=SIZE).captions
    generated = VideoFolderDataset(other, frames=FRAMES, size=SIZE).captions
    assert labels == tuple(sorted(set(captions) | set(generated)))
    _, _, data = batches(replace(train_cfg(toy, tmp_path / "c", "caption", steps=1), data=(str(toy), str(other))))
    seen = [c for _ in range(7) for c in next(data)["caption"]]  # two epochs of 56 clips in batches of 16
    assert set(generated) <= set(seen) and len(seen) == 7 * 16
    as_string = load_video_net(train_video_net(train_cfg(toy, tmp_path / "a", "caption", steps=2))).state_dict()
    as_tuple = load_video_net(train_video_net(replace(train_cfg(toy, tmp_path / "b", "caption", steps=2),
                                                      data=(str(toy),)))).state_dict()
    assert all(torch.equal(as_string[k], as_tuple[k]) for k in as_string)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["train"]
    assert saved["data"] == [str(toy)]
    assert VideoNetTrainConfig.from_dict({**saved, "data": str(toy)}).data == (str(toy),)  # an older config.json
    with pytest.raises(ValueError, match="streams on its own"):
        train_video_net(replace(train_cfg(toy, tmp_path / "x", "text", steps=1), data=(str(toy), "stream:broad")))


def test_text_encoder_trains_on_a_stream(tmp_path):
    out = train_video_net(train_cfg("stream:broad-procedural", tmp_path / "stream", "text", steps=2))
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["data"] == ["stream:broad-procedural"] and math.isfinite(config["final_loss"])
    assert load_video_net(out).cfg.labels == ()


def test_frechet_distance_on_features_sees_noise_and_shuffled_time(encoder):
    net = load_video_net(encoder)
    a, b = render_pairs(128, seed=1)
    gen = torch.Generator().manual_seed(0)
    noisy = (b + 0.5 * torch.randn(b.shape, generator=gen)).clamp(-1, 1)
    shuffled = torch.stack([clip[:, torch.randperm(FRAMES, generator=gen)] for clip in b])  # motion gone, frames kept
    stats = lambda x: feature_stats(video_net_features(net, x))  # noqa: E731
    ref = stats(a)
    halves, to_noisy, to_shuffled = (frechet_distance(*ref, *stats(x)) for x in (b, noisy, shuffled))
    assert 5 * halves < to_noisy and 5 * halves < to_shuffled, (halves, to_noisy, to_shuffled)


@pytest.mark.slow
def test_bad_inputs_are_reported_clearly(classifier, encoder, clips):
    net, videos, captions = load_video_net(classifier), clips[0][:4], clips[1][:4]
    with pytest.raises(ValueError, match=r"\[B, 3, 8, 16, 16\].*got \[4, 3, 8, 16, 24\]"):
        net.features(torch.zeros(4, 3, FRAMES, 16, 24))
    with pytest.raises(ValueError, match="got \\[3, 8, 16, 16\\]"):
        video_net_features(net, videos[0])
    with pytest.raises(TypeError, match="from_uint8"):
        net(torch.zeros(2, 3, FRAMES, *SIZE, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        net((videos + 1) * 127.5)
    with pytest.raises(ValueError, match="4 videos but 3 captions"):
        caption_accuracy(net, videos, captions[:3])
    with pytest.raises(ValueError, match="objective 'caption'"):
        caption_accuracy(load_video_net(encoder), videos, captions)
    mixed = captions[:3] + ["a purple hexagon dances"]
    result = caption_accuracy(net, videos, mixed)
    assert (result["num"], result["num_unknown"], result["unknown"]) == (3, 1, ["a purple hexagon dances"])
    with pytest.warns(UserWarning, match="1 of 4 captions are not among"):
        assert caption_predictions(net, videos, mixed).shape == (3,)
    with pytest.raises(ValueError, match="none of the 4 captions"):
        caption_predictions(net, videos, ["a purple hexagon dances"] * 4)
    with pytest.raises(ValueError, match="objective must be one of"):
        VideoNetConfig(objective="clip")
    with pytest.raises(ValueError, match="at least 2 distinct labels"):
        VideoNetConfig(objective="caption", labels=("a", "a"))
    with pytest.raises(ValueError, match="old=>new"):
        VideoNetConfig(caption_rewrites=("square->shape",))


@pytest.mark.slow
def test_bad_directories_and_data_are_reported_clearly(classifier, toy, tmp_path):
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_video_net(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_video_net(tmp_path)
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"model_type": "SpaceTimeUNet", "unet": {}}))
    with pytest.raises(CheckpointError, match="denoiser checkpoint, not a video_net"):
        load_video_net(tmp_path / "unet")
    # weights of another shape than config.json says: a mismatch, named
    net = load_video_net(classifier)
    wrong = save_video_net(tmp_path / "wrong", net)
    config = json.loads((wrong / "config.json").read_text())
    config["model"]["widths"] = [8, 24]
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match config.json"):
        load_video_net(wrong)
    with pytest.raises(ValueError, match="needs folders"):
        train_video_net(train_cfg("stream:broad-procedural", tmp_path / "x", "caption", steps=1))
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        train_video_net(replace(train_cfg(toy, tmp_path / "x", "text", steps=1), batch_size=64))
    with pytest.raises(ValueError, match="unknown VideoNetConfig fields"):
        train_video_net(replace(train_cfg(toy, tmp_path / "x", "text", steps=1), model={"depth": 3}))
    assert not (tmp_path / "x").exists()
