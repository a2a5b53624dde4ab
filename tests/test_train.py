import json

import pytest
import torch
from safetensors.torch import load_file

from video_adapter.checkpoint import load_model, load_tensors
from video_adapter.conditioning import Cond
from video_adapter.text import load_text_encoder
from video_adapter.toy import make_toy_dataset
from video_adapter.train import TrainConfig, diffusion_loss, lr_at, make_cond, train

TINY = dict(frames=4, height=8, width=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(4,),
            head_dim=16, emb_dim=32)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num=8, frames=4, size=(8, 16), seed=0, progress=False)


def config(data, out, **kw):
    base = dict(data=str(data), out=str(out), preset="S", model=TINY, steps=12, batch_size=4, lr=2e-3,
                warmup_steps=2, save_every=4, sample_every=0, log_every=1, seed=0, num_workers=0)
    return TrainConfig(**{**base, **kw})


def held_out_loss(model, data, seed=123) -> float:
    """The training loss of `model` on all training clips, at noise levels and noise fixed by `seed`."""
    from video_adapter.data import VideoFolderDataset

    ds = VideoFolderDataset(data, frames=4, size=(8, 16), random_crop=False)
    video = torch.stack([ds[i]["video"] for i in range(len(ds))])
    text = load_text_encoder("minilm").encode([ds[i]["caption"] for i in range(len(ds))])
    cond = make_cond(video, text, model.cfg)
    with torch.no_grad():
        return diffusion_loss(model, video, cond, torch.Generator().manual_seed(seed), model.cfg.prediction).item()


def test_training_drives_loss_far_below_start(toy, tmp_path):
    ckpt = train(config(toy, tmp_path / "run", steps=150, save_every=150, ema_decay=0.9))
    model, _ = load_model(ckpt)
    # A fresh network outputs v = 0 (zero-initialised output), so its loss is E[v^2], near 1 at these levels.
    start = held_out_loss(type(model)(model.cfg), toy)
    end = held_out_loss(model, toy)
    assert start > 0.3
    assert end < 0.5 * start, f"loss {start:.3f} -> {end:.3f}"
    rows = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,grad_norm,samples_per_s" and len(rows) == 151


def test_killed_and_resumed_run_is_bit_identical(toy, tmp_path):
    straight = train(config(toy, tmp_path / "a"))
    # Killed after step 6 with its last checkpoint at step 4; resuming replays steps 5 and 6.
    train(config(toy, tmp_path / "b"), stop_after=6)
    assert json.loads((tmp_path / "b/checkpoint/train_state/state.json").read_text())["step"] == 4
    resumed = train(config(toy, tmp_path / "b"))
    for name in ("online", "optimizer", "rng"):
        a = load_file(str(straight / "train_state" / f"{name}.safetensors"))
        b = load_file(str(resumed / "train_state" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k} differs after resume"
    ema_a, ema_b = load_tensors(straight), load_tensors(resumed)
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    state_a = json.loads((straight / "train_state/state.json").read_text())
    state_b = json.loads((resumed / "train_state/state.json").read_text())
    assert state_a["data"] == state_b["data"] and state_a["step"] == state_b["step"] == 12
    # The loss log has each step once, as if never interrupted.
    steps = [int(r.split(",")[0]) for r in (tmp_path / "b/loss.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 13))


def test_resume_differs_without_restored_data_position(toy, tmp_path):
    """The resume test above must be sensitive: dropping the data position changes the weights."""
    straight = train(config(toy, tmp_path / "a"))
    train(config(toy, tmp_path / "b"), stop_after=6)
    state_path = tmp_path / "b/checkpoint/train_state/state.json"
    state = json.loads(state_path.read_text())
    state["data"] = {"epoch": 0, "position": 0}
    state_path.write_text(json.dumps(state))
    resumed = train(config(toy, tmp_path / "b"))
    a = load_file(str(straight / "train_state/online.safetensors"))
    b = load_file(str(resumed / "train_state/online.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_warmup_schedule():
    cfg = TrainConfig(lr=1e-4, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-5) and lr_at(9, cfg) == pytest.approx(1e-4)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)


def test_too_small_dataset_and_unknown_fields(toy, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(config(toy, tmp_path / "r", batch_size=64))
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"stepz": 3})


def test_make_cond_takes_every_condition_the_model_accepts():
    from video_adapter.unet import UNetConfig

    video = torch.rand(2, 3, 4, 8, 8) * 2 - 1
    text = load_text_encoder("minilm").encode(["a", "b"])
    cond = make_cond(video, text, UNetConfig(height=8, width=8, channel_mults=(1, 2), attention_resolutions=(4,),
                                             edge_cond=True))
    assert isinstance(cond, Cond) and torch.equal(cond.first_frame, video[:, :, 0])
    assert cond.edges.shape == video.shape and cond.has_edges.all()


def test_streamed_training_resumes_bit_identically(tmp_path):
    """--data stream:KIND: clips made on the fly, and a killed run resumes on exactly the clips it had not seen."""
    cfg = lambda out, **kw: config("stream:broad-procedural", tmp_path / out, steps=8, **kw)
    weights = lambda run: load_file(str(run / "train_state/online.safetensors"))
    straight = weights(train(cfg("a")))
    train(cfg("b"), stop_after=6)
    resumed = train(cfg("b"))
    assert all(torch.equal(straight[k], v) for k, v in weights(resumed).items())
    state = json.loads((resumed / "train_state/state.json").read_text())
    assert state["data"] == {"stream": "broad-procedural", "start": 8 * 4} and state["step"] == 8
    # sensitivity: resuming from the stream's beginning instead (clips already seen) changes the weights
    train(cfg("c"), stop_after=6)
    state_path = tmp_path / "c/checkpoint/train_state/state.json"
    state = json.loads(state_path.read_text())
    state["data"]["start"] = 0
    state_path.write_text(json.dumps(state))
    assert any(not torch.equal(straight[k], v) for k, v in weights(train(cfg("c"))).items())


def test_folder_and_stream_mixed_per_batch_resume_bit_identically(toy, tmp_path):
    """--data FOLDER --stream KIND: each batch has both, and a killed run resumes both exactly."""
    cfg = lambda out, **kw: config(toy, tmp_path / out, steps=8, stream="broad-procedural", **kw)
    weights = lambda run: load_file(str(run / "train_state/online.safetensors"))
    straight = weights(train(cfg("a")))
    train(cfg("b"), stop_after=6)
    resumed = train(cfg("b"))
    assert all(torch.equal(straight[k], v) for k, v in weights(resumed).items())
    state = json.loads((resumed / "train_state/state.json").read_text())["data"]
    assert state["stream"] == {"stream": "broad-procedural", "start": 8 * 2}  # half of each batch of 4
    assert state["folder"]["epoch"] == 1  # 8 batches x 2 folder clips = 16: the 8-clip folder's second epoch
    folder_only = weights(train(config(toy, tmp_path / "c", steps=8)))
    assert any(not torch.equal(straight[k], v) for k, v in folder_only.items())
    for data, share in ((toy, 0.1), (toy, 1.0), ("stream:broad-procedural", 0.5)):
        with pytest.raises(ValueError, match="--stream"):
            train(config(data, tmp_path / "d", stream="broad-procedural", stream_share=share))
