import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from video_adapter.evaluation.heldout import heldout_loss
from video_adapter.maths.conditioning import Cond, make_cond
from video_adapter.models.checkpoint import load_model, load_tensors
from video_adapter.models.text import load_text_encoder
from video_adapter.training.steps import denoising_loss, lr_at, step_draws
from video_adapter.training.train import TrainConfig, train

from helpers import TINY, assert_same_training_state, randomize, train_config


def held_out_loss(model, data, seed=123) -> float:
    """The training loss of `model` on all training clips, at noise levels and noise fixed by `seed`."""
    from video_adapter.data.dataset import VideoFolderDataset

    ds = VideoFolderDataset(data, frames=4, size=(8, 16), random_crop=False)
    video = torch.stack([ds[i]["video"] for i in range(len(ds))])
    text = load_text_encoder("minilm").encode([ds[i]["caption"] for i in range(len(ds))])
    cond = make_cond(video, text, model.cfg)
    t, eps, _ = step_draws(seed, 0, slice(0, len(video)), video.shape)
    with torch.no_grad():
        return denoising_loss(model, video, cond, t, eps, model.cfg.prediction).item()


@pytest.mark.slow
def test_training_drives_loss_far_below_start(toy, tmp_path):
    ckpt = train(train_config(toy, tmp_path / "run", steps=150, save_every=150, ema_decay=0.9))
    model, _ = load_model(ckpt)
    # A fresh network outputs v = 0 (zero-initialised output), so its loss is E[v^2], near 1 at these levels.
    start = held_out_loss(type(model)(model.cfg), toy)
    end = held_out_loss(model, toy)
    assert start > 0.3
    assert end < 0.5 * start, f"loss {start:.3f} -> {end:.3f}"
    rows = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,grad_norm,samples_per_s" and len(rows) == 151


@pytest.mark.slow
def test_killed_and_resumed_run_is_bit_identical(toy, tmp_path):
    straight = train(train_config(toy, tmp_path / "a"))
    # Killed after step 6 with its last checkpoint at step 4; resuming replays steps 5 and 6.
    train(train_config(toy, tmp_path / "b"), stop_after=6)
    assert json.loads((tmp_path / "b/checkpoint/train_state/state.json").read_text())["step"] == 4
    resumed = train(train_config(toy, tmp_path / "b"))
    assert_same_training_state(straight, resumed, step=12)
    # The loss log has each step once, as if never interrupted.
    steps = [int(r.split(",")[0]) for r in (tmp_path / "b/loss.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 13))


@pytest.mark.slow
def test_a_save_cut_short_leaves_the_previous_checkpoint_resumable(toy, tmp_path, monkeypatch):
    import video_adapter.training.run_state as run_state

    straight = train(train_config(toy, tmp_path / "a"))
    real_save_file, optimizer_saves = run_state.save_file, []

    def killed_at_the_second_optimizer_write(tensors, filename, *args, **kwargs):
        if filename.endswith("optimizer.safetensors"):
            optimizer_saves.append(filename)
            if len(optimizer_saves) == 2:  # step 8's checkpoint: weights written, train_state not yet
                raise KeyboardInterrupt
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(run_state, "save_file", killed_at_the_second_optimizer_write)
    with pytest.raises(KeyboardInterrupt):
        train(train_config(toy, tmp_path / "b"))
    monkeypatch.undo()
    assert json.loads((tmp_path / "b/checkpoint/train_state/state.json").read_text())["step"] == 4
    assert load_model(tmp_path / "b/checkpoint")[1]["step"] == 4  # weights and train_state of one step
    assert not [p.name for p in (tmp_path / "b").iterdir() if p.name.startswith(".") and p.name != ".lock"]
    resumed = train(train_config(toy, tmp_path / "b"))
    assert_same_training_state(straight, resumed, step=12)


def test_a_full_disk_at_a_save_names_the_intact_checkpoint_and_a_resume_drops_the_unsaved_loss_rows(
        toy, tmp_path, monkeypatch):
    import errno

    import video_adapter.models.checkpoint as ckpt_module

    real_save_file, saves = ckpt_module.save_file, []

    def full_at_the_second_save(tensors, filename, *args, **kwargs):
        saves.append(filename)
        if len(saves) == 2:  # step 8's checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt_module, "save_file", full_at_the_second_save)
    run = tmp_path / "run"
    with pytest.raises(ckpt_module.CheckpointError) as info:
        train(train_config(toy, run))
    monkeypatch.undo()
    message = str(info.value)
    assert "disk is full" in message and str(run / "checkpoint") in message and "\n" not in message
    assert "at step 4, is intact" in message
    assert load_model(run / "checkpoint")[1]["step"] == 4
    assert json.loads((run / "checkpoint/train_state/state.json").read_text())["step"] == 4
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    # loss.csv was written up to the failed save; resuming from step 4 replays 5 to 8 and logs each step once
    steps = lambda: [int(r.split(",")[0]) for r in (run / "loss.csv").read_text().splitlines()[1:]]
    assert steps() == list(range(1, 9))
    train(train_config(toy, run))
    assert steps() == list(range(1, 13))


HOLD_LOCK = """
import sys
from pathlib import Path
from video_adapter.training.run_state import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()  # until the test kills it
"""


@pytest.mark.slow
def test_one_run_per_out_folder_and_a_dead_holder_does_not_block(toy, tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ValueError, match=re.escape(
                f"{run} is in use by another training run (PID {holder.pid}); wait for it to end, or pass another "
                "--out")):
            train(train_config(toy, run, steps=4))
        assert [p.name for p in run.iterdir()] == [".lock"]  # refused before writing anything
    finally:
        holder.kill()  # killed, not ended: the kernel releases its lock, the file stays
        holder.wait()
    assert (run / ".lock").exists()
    assert load_model(train(train_config(toy, run, steps=4)))[1]["step"] == 4
    assert (run / ".lock").read_text() == f"{os.getpid()}\n"


def test_a_non_finite_loss_stops_the_run_before_its_update_is_saved(toy, tmp_path, monkeypatch):
    """NaN at step 7, no log or save step: the run stops at the next one (8, a save step) before saving, so the
    step-4 checkpoint stays; resumed without the fault (and no lock left behind), it goes on."""
    import video_adapter.training.steps as steps

    real, calls = steps.denoising_loss, []

    def nan_at_step_8(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 7 else loss

    monkeypatch.setattr(steps, "denoising_loss", nan_at_step_8)
    cfg = train_config(toy, tmp_path / "run", log_every=3)
    with pytest.raises(FloatingPointError, match=re.escape(
            f"step 7: the loss or its gradient became non-finite; stopped at step 8 before saving, so the checkpoint "
            f"of {tmp_path / 'run'} is the last one of finite weights; lower --lr or check the data")):
        train(cfg)
    assert load_model(tmp_path / "run/checkpoint")[1]["step"] == 4
    assert [int(r.split(",")[0]) for r in (tmp_path / "run/loss.csv").read_text().splitlines()[1:]] == [3, 6]
    monkeypatch.undo()
    assert load_model(train(cfg))[1]["step"] == 12


@pytest.mark.slow
def test_resume_differs_without_restored_data_position(toy, tmp_path):
    """The resume test above must be sensitive: dropping the data position changes the weights."""
    straight = train(train_config(toy, tmp_path / "a"))
    train(train_config(toy, tmp_path / "b"), stop_after=6)
    state_path = tmp_path / "b/checkpoint/train_state/state.json"
    state = json.loads(state_path.read_text())
    state["data"] = {"epoch": 0, "position": 0}
    state_path.write_text(json.dumps(state))
    resumed = train(train_config(toy, tmp_path / "b"))
    a = load_file(str(straight / "train_state/online.safetensors"))
    b = load_file(str(resumed / "train_state/online.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_one_process_state_of_the_earlier_format_resumes_exactly(toy, tmp_path):
    """train_state written before per-process RNG states (no "processes", unsuffixed RNG names) still resumes."""
    from safetensors.torch import save_file

    straight = train(train_config(toy, tmp_path / "a"))
    train(train_config(toy, tmp_path / "b"), stop_after=6)
    state_dir = tmp_path / "b/checkpoint/train_state"
    state = json.loads((state_dir / "state.json").read_text())
    del state["processes"]
    (state_dir / "state.json").write_text(json.dumps(state))
    rng = load_file(str(state_dir / "rng.safetensors"))
    save_file({k.removesuffix(".0"): v for k, v in rng.items()}, str(state_dir / "rng.safetensors"))
    resumed = train(train_config(toy, tmp_path / "b"))
    a = load_file(str(straight / "train_state/online.safetensors"))
    b = load_file(str(resumed / "train_state/online.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_warmup_schedule():
    cfg = TrainConfig(lr=1e-4, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-5) and lr_at(9, cfg) == pytest.approx(1e-4)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)


def test_default_warmup_scales_with_steps_and_workers_with_cores(monkeypatch):
    """`--steps 300` used to keep a 1000-step warmup, so its learning rate never reached --lr."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert TrainConfig().warmup_steps == -1 and TrainConfig().num_workers == -1  # static defaults, for --help
    for steps, warmup in ((300, 30), (5, 0), (20_000, 1000), (2_000_000, 1000)):
        assert TrainConfig(steps=steps).resolved().warmup_steps == warmup
    assert TrainConfig(steps=300, warmup_steps=1000).resolved().warmup_steps == 1000  # asked for: kept
    assert TrainConfig().resolved().num_workers == 2 and TrainConfig(num_workers=0).resolved().num_workers == 0
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert TrainConfig().resolved().num_workers == 4
    cfg = TrainConfig(lr=1e-4, steps=300)
    assert lr_at(29, cfg) == pytest.approx(1e-4) and lr_at(14, cfg) == pytest.approx(0.5e-4)
    with pytest.raises(ValueError, match=r"--warmup-steps must be at least 0 \(or -1: automatic\), got -2"):
        TrainConfig(warmup_steps=-2).validate()


@pytest.mark.slow
def test_the_checkpoint_records_the_resolved_warmup_and_a_resumed_run_keeps_its_own(toy, tmp_path):
    run = tmp_path / "run"
    train(train_config(toy, run, steps=20, save_every=20, warmup_steps=-1, num_workers=-1))
    saved = json.loads((run / "checkpoint" / "config.json").read_text())["train_config"]
    assert saved["warmup_steps"] == 2 and saved["num_workers"] == TrainConfig().resolved().num_workers
    rates = [float(r.split(",")[2]) for r in (run / "loss.csv").read_text().splitlines()[1:]]
    assert rates[0] == pytest.approx(1e-3) and rates[1] == pytest.approx(2e-3)  # lr 2e-3 reached at step 2
    # continued to 200 steps, the run keeps the warmup it started with (not 200 // 10)
    assert train_config(toy, run, steps=200, warmup_steps=-1).resolved().warmup_steps == 2
    # a run written before the automatic default recorded an explicit 1000; resuming it keeps 1000
    saved["warmup_steps"] = 1000
    config_json = json.loads((run / "checkpoint" / "config.json").read_text())
    (run / "checkpoint" / "config.json").write_text(json.dumps({**config_json, "train_config": saved}))
    assert train_config(toy, run, steps=300, warmup_steps=-1).resolved().warmup_steps == 1000
    assert train_config(toy, tmp_path / "new", steps=300, warmup_steps=-1).resolved().warmup_steps == 30


def test_cosine_decay_after_warmup():
    cfg = TrainConfig(lr=1e-4, lr_end=1e-6, warmup_steps=10, steps=110, lr_decay="cosine")
    assert lr_at(4, cfg) == pytest.approx(5e-5)  # warmup is unchanged
    assert lr_at(10, cfg) == pytest.approx(1e-4)
    assert lr_at(60, cfg) == pytest.approx((1e-4 + 1e-6) / 2)  # halfway: the cosine's midpoint
    assert lr_at(110, cfg) == pytest.approx(1e-6) and lr_at(500, cfg) == pytest.approx(1e-6)
    rates = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_unknown_lr_decay_is_an_error(toy, tmp_path):
    with pytest.raises(ValueError, match="--lr-decay must be constant or cosine"):
        train(train_config(toy, tmp_path / "run", lr_decay="linear"))
    assert not (tmp_path / "run").exists()


def test_too_small_dataset_and_unknown_fields(toy, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(train_config(toy, tmp_path / "r", batch_size=64))
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"stepz": 3})


@pytest.mark.slow
def test_streamed_training_resumes_bit_identically(tmp_path):
    """--data stream:KIND: clips made on the fly, and a killed run resumes on exactly the clips it had not seen."""
    run_cfg = lambda out, **kw: train_config("stream:broad-procedural", tmp_path / out, steps=8, **kw)
    weights = lambda run: load_file(str(run / "train_state/online.safetensors"))
    straight = weights(train(run_cfg("a")))
    train(run_cfg("b"), stop_after=6)
    resumed = train(run_cfg("b"))
    assert all(torch.equal(straight[k], v) for k, v in weights(resumed).items())
    state = json.loads((resumed / "train_state/state.json").read_text())
    assert state["data"] == {"stream": "broad-procedural", "start": 8 * 4} and state["step"] == 8
    # sensitivity: resuming from the stream's beginning instead (clips already seen) changes the weights
    train(run_cfg("c"), stop_after=6)
    state_path = tmp_path / "c/checkpoint/train_state/state.json"
    state = json.loads(state_path.read_text())
    state["data"]["start"] = 0
    state_path.write_text(json.dumps(state))
    assert any(not torch.equal(straight[k], v) for k, v in weights(train(run_cfg("c"))).items())


@pytest.mark.slow
def test_folder_and_stream_mixed_per_batch_resume_bit_identically(toy, tmp_path):
    """--data FOLDER --stream KIND: each batch has both, and a killed run resumes both exactly."""
    run_cfg = lambda out, **kw: train_config(toy, tmp_path / out, steps=8, stream="broad-procedural", **kw)
    weights = lambda run: load_file(str(run / "train_state/online.safetensors"))
    straight = weights(train(run_cfg("a")))
    train(run_cfg("b"), stop_after=6)
    resumed = train(run_cfg("b"))
    assert all(torch.equal(straight[k], v) for k, v in weights(resumed).items())
    state = json.loads((resumed / "train_state/state.json").read_text())["data"]
    assert state["stream"] == {"stream": "broad-procedural", "start": 8 * 2}  # half of each batch of 4
    assert state["folder"]["epoch"] == 1  # 8 batches x 2 folder clips = 16: the 8-clip folder's second epoch
    folder_only = weights(train(train_config(toy, tmp_path / "c", steps=8)))
    assert any(not torch.equal(straight[k], v) for k, v in folder_only.items())
    for data, share in ((toy, 0.1), (toy, 1.0), ("stream:broad-procedural", 0.5)):
        with pytest.raises(ValueError, match="--stream"):
            train(train_config(data, tmp_path / "d", stream="broad-procedural", stream_share=share))


@pytest.mark.slow
def test_max_minutes_stops_with_a_checkpoint_and_reruns_continue_bit_identically(toy, tmp_path, capsys):
    """--max-minutes: out of time at a log step, the run saves there and returns; the same command continues.

    It stops mid-epoch (2 batches per epoch) and the model has dropout, which draws from the global RNG: a data loader
    that drew its seed from that RNG when a resumed run starts it mid-epoch would make the weights differ.
    """
    model = {**TINY, "dropout": 0.1}
    straight = train(train_config(toy, tmp_path / "a", log_every=3, model=model))
    timed = train_config(toy, tmp_path / "b", log_every=3, model=model, max_minutes=1e-9)  # out of time at every log step
    stops = []
    for _ in range(4):
        checkpoint = train(timed)
        stops.append(json.loads((checkpoint / "train_state/state.json").read_text())["step"])
    assert stops == [3, 6, 9, 12]  # not at the save_every checkpoints (4, 8) in between: only out of time
    assert "stopped at step 3 after --max-minutes 1e-09; run the command again to go on" in capsys.readouterr().out
    assert_same_training_state(straight, checkpoint, step=12)
    # loss.csv: each log step once, with the uninterrupted run's loss, lr and gradient norm
    rows = lambda run: [r.split(",")[:4] for r in (run / "loss.csv").read_text().splitlines()]
    assert rows(tmp_path / "b") == rows(tmp_path / "a") and len(rows(tmp_path / "a")) == 5


def test_a_run_resumes_only_with_its_own_model_text_encoder_and_seed(toy, tmp_path):
    train(train_config(toy, tmp_path / "r"), stop_after=5)
    # another seed would resume on other noise, dropout and data order
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'r'} was trained with --seed 0, this command passes --seed 3; pass --seed 0, or a new --out "
            f"(--init {tmp_path / 'r' / 'checkpoint'} starts a new run from its weights)")):
        train(train_config(toy, tmp_path / "r", seed=3))
    with pytest.raises(ValueError, match=r"holds a model of other settings than this command's \(emb_dim 32 -> 64\)"
                                         r".*a new --out \(--init .*checkpoint starts a new run"):
        train(train_config(toy, tmp_path / "r", model={**TINY, "emb_dim": 64}))
    # another encoder of the same width would load and silently train on other embeddings
    spec = json.loads((tmp_path / "r/checkpoint/config.json").read_text())["text_encoder"]
    assert spec.startswith("minilm") and spec != "minilm?max_length=8"
    with pytest.raises(ValueError, match=re.escape(f"text encoder {spec!r}, this command uses 'minilm?max_length=8'")):
        train(train_config(toy, tmp_path / "r", text_encoder="minilm?max_length=8"))
    assert json.loads((tmp_path / "r/checkpoint/config.json").read_text())["text_encoder"] == spec
    assert load_model(tmp_path / "r/checkpoint")[1]["step"] == 4
    # a run started before a UNetConfig field existed (its config.json lacks it) resumes: the default applies
    path = tmp_path / "r/checkpoint/config.json"
    saved = json.loads(path.read_text())
    del saved["unet"]["space"]
    path.write_text(json.dumps(saved))
    # and a --model given as JSON (lists where the config holds tuples) is the same model
    with pytest.warns(UserWarning, match="their defaults apply: space='pixels'"):
        checkpoint = train(train_config(toy, tmp_path / "r", model={**TINY, "channel_mults": [1, 2]}))
    assert load_model(checkpoint)[1]["step"] == 12


def test_init_loads_weights_into_online_and_ema_with_a_fresh_optimizer(toy, tmp_path):
    from dataclasses import replace

    from video_adapter.models.checkpoint import save_model
    from video_adapter.models.unet import SpaceTimeUNet, preset
    from video_adapter.training.run_state import init_weights


    init_cfg = preset("S", **TINY, edge_cond=True)  # not train_config()'s model: the run takes the init's config
    spec = load_text_encoder("minilm").spec
    init = save_model(tmp_path / "init", randomize(SpaceTimeUNet(init_cfg), seed=5, scale=0.02), spec, step=500)
    saved = load_tensors(init)
    cfg = train_config(toy, tmp_path / "run", model={}, init=str(init), steps=2, lr=0.0)
    assert cfg.model_config() == init_cfg
    assert replace(cfg, model={"dropout": 0.1}).model_config() == replace(init_cfg, dropout=0.1)  # overrides apply
    # before any step: both copies hold the init's weights (all of them: randomize leaves no zero-initialised layer)
    model, ema = SpaceTimeUNet(init_cfg), SpaceTimeUNet(init_cfg)
    assert not torch.equal(model.state_dict()["conv_in.weight"], saved["conv_in.weight"])
    init_weights(cfg, model, ema, spec)
    for m in (model, ema):
        assert m.state_dict().keys() == saved.keys() and all(torch.equal(v, saved[k]) for k, v in m.state_dict().items())
    # through train(): at lr 0 neither copy moves, so after two steps both are still exactly the init's weights
    checkpoint = train(cfg)
    online = load_file(str(checkpoint / "train_state/online.safetensors"))
    for weights in (online, load_tensors(checkpoint)):
        assert all(torch.equal(v, saved[k]) for k, v in weights.items())
    config_json = json.loads((checkpoint / "config.json").read_text())
    assert config_json["unet"] == json.loads(json.dumps(init_cfg.to_dict())) and config_json["step"] == 2
    optimizer = load_file(str(checkpoint / "train_state/optimizer.safetensors"))
    assert optimizer["0.step"].item() == 2  # a fresh optimizer (and step count), not the init's 500 steps


def test_init_with_another_text_encoder_is_an_error(toy, tmp_path):
    from video_adapter.models.checkpoint import save_model
    from video_adapter.models.unet import SpaceTimeUNet, preset

    init = save_model(tmp_path / "init", SpaceTimeUNet(preset("S", **TINY)), "clip:/models/clip?max_length=77")
    with pytest.raises(ValueError, match=r"pass --text-encoder clip:/models/clip\?max_length=77$") as e:
        train(train_config(toy, tmp_path / "run", init=str(init)))
    assert "this run uses 'minilm?max_length=32'" in str(e.value)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_init_of_a_residual_sr_stage_from_a_video_denoiser_is_an_error(toy, tmp_path):
    """The same shapes, another meaning: a stage that denoised the video cannot start one that denoises the detail."""
    from video_adapter.models.checkpoint import save_model
    from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

    sr = {**TINY, "first_frame_cond": False, "lowres_factor": 2}
    init = save_model(tmp_path / "init", SpaceTimeUNet(UNetConfig(**sr)), "minilm?max_length=32")
    with pytest.raises(ValueError, match=r"denoises the video itself .*pass --model lowres_residual=0 ") as e:
        train(train_config(toy, tmp_path / "run", model={**sr, "lowres_residual": 0.2}, init=str(init), steps=1))
    assert "the detail over its input (lowres_residual 0.2)" in str(e.value)
    assert not (tmp_path / "run" / "checkpoint").exists()
    train(train_config(toy, tmp_path / "same", model=sr, init=str(init), steps=1, save_every=1))  # its own form


@pytest.mark.parametrize("dropped", ["text", "first_frame", "edges"])
def test_each_dropout_probability_reaches_its_own_condition(dropped):
    from video_adapter.maths.conditioning import drop_conditions

    fields = {"text": "cond_drop", "first_frame": "first_frame_drop", "edges": "edges_drop"}
    cfg = TrainConfig(**{field: float(name == dropped) for name, field in fields.items()})
    assert cfg.drop == {name: float(name == dropped) for name in fields}
    b = 64
    cond = Cond.make(text=torch.randn(b, 3, 16), first_frame=torch.randn(b, 3, 8, 8), edges=torch.randn(b, 3, 4, 8, 8))
    out = drop_conditions(cond, cfg.drop, torch.Generator().manual_seed(0))
    for name in fields:  # probability 1 drops that condition in every sample, 0 in none
        assert out.present(name).tolist() == [name != dropped] * b, name


def test_step_draws_of_the_processes_make_up_one_process_draws_and_change_with_the_step():
    global_shape = (6, 3, 2, 4, 4)
    whole = step_draws(0, 5, slice(0, 6), global_shape)
    per_process = [step_draws(0, 5, slice(rank * 2, rank * 2 + 2), global_shape) for rank in range(3)]
    for drawn, *parts in zip(whole, *per_process):
        assert torch.equal(drawn, torch.cat(parts))
    assert whole[1].shape == global_shape and whole[2].shape[0] == 6
    assert not torch.equal(whole[1], step_draws(0, 6, slice(0, 6), global_shape)[1])
    assert not torch.equal(whole[1], step_draws(1, 5, slice(0, 6), global_shape)[1])


@pytest.mark.slow
def test_heldout_log_scores_the_ema_weights_on_fixed_clips_and_survives_resume(toy, tmp_path):
    """heldout.csv: a row every --heldout-every steps, whose per-level losses are `heldout_loss` of the EMA weights
    saved at that step (the same clips, levels and noise); a resumed run drops rows past its checkpoint."""
    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.evaluation.heldout import HELDOUT_LOGSNRS
    from video_adapter.maths.conditioning import make_cond
    from video_adapter.models.checkpoint import load_model
    from video_adapter.models.text import load_text_encoder

    cfg = train_config(toy, tmp_path / "run", heldout=str(toy), heldout_every=4, heldout_num=5)
    train(cfg, stop_after=10)  # killed after step 10; the last checkpoint is step 8
    rows = (tmp_path / "run" / "heldout.csv").read_text().splitlines()
    assert rows[0].startswith("step,mean,logsnr_") and [int(r.split(",")[0]) for r in rows[1:]] == [4, 8]
    train(cfg)  # resumes at 8: rows 4, 8 kept, then 12
    rows = (tmp_path / "run" / "heldout.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [4, 8, 12]
    model, _ = load_model(tmp_path / "run" / "checkpoint")
    data = VideoFolderDataset(toy, frames=4, size=(8, 16), random_crop=False)
    video = torch.stack([data[i]["video"] for i in range(5)])
    cond = make_cond(video, load_text_encoder("minilm").encode([data.captions[i] for i in range(5)]), model.cfg)
    expected = heldout_loss(model.eval(), video, cond, HELDOUT_LOGSNRS, seed=0, prediction=model.cfg.prediction)
    got = [float(v) for v in rows[-1].split(",")[2:]]
    assert got == pytest.approx(expected.tolist(), rel=1e-4)
    assert float(rows[-1].split(",")[1]) == pytest.approx(expected.mean().item(), rel=1e-4)
    # the curve beside it: heldout.png, redrawn at every scoring from the csv as it stands
    from PIL import Image

    from video_adapter.evaluation.heldout import last_drop, read_heldout

    steps, means = read_heldout(tmp_path / "run" / "heldout.csv")
    assert steps == [4, 8, 12] and means == [float(r.split(",")[1]) for r in rows[1:]]
    assert last_drop(means) == pytest.approx(1 - means[2] / means[1]) and last_drop(means[:1]) is None
    assert Image.open(tmp_path / "run" / "heldout.png").format == "PNG"
    assert not list((tmp_path / "run").glob(".heldout*"))  # written atomically: no temp file left
    with pytest.raises(ValueError, match="go together"):
        train_config(toy, tmp_path / "x", heldout=str(toy)).validate()


def test_augmentation_draws_are_per_sample_from_the_seed_and_step_and_shard_like_step_draws():
    from video_adapter.training.steps import augmentation_draws

    global_shape = (6, 3, 2, 4, 4)
    level, noise = augmentation_draws(0, 5, slice(0, 6), global_shape, 0.5)
    assert level.shape == (6,) and noise.shape == global_shape
    assert len(set(level.tolist())) == 6 and 0 <= float(level.min()) and float(level.max()) <= 0.5  # per sample
    again = augmentation_draws(0, 5, slice(0, 6), global_shape, 0.5)
    assert torch.equal(again[0], level) and torch.equal(again[1], noise)
    parts = [augmentation_draws(0, 5, slice(r * 2, r * 2 + 2), global_shape, 0.5) for r in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts]), level) and torch.equal(torch.cat([p[1] for p in parts]), noise)
    for other in (augmentation_draws(0, 6, slice(0, 6), global_shape, 0.5),
                  augmentation_draws(1, 5, slice(0, 6), global_shape, 0.5)):
        assert not torch.equal(other[0], level) and not torch.equal(other[1], noise)
    # levels scale with the maximum (the same uniforms), and the stream is apart from step_draws'
    torch.testing.assert_close(augmentation_draws(0, 5, slice(0, 6), global_shape, 0.25)[0], level / 2)
    assert not torch.equal(step_draws(0, 5, slice(0, 6), global_shape)[1], noise)


def test_an_augmented_sr_stage_trains_on_the_levels_drawn_for_each_step(toy, tmp_path, monkeypatch):
    """Each training step noises the low-resolution input at the levels `augmentation_draws(seed, step)` gives, one
    per sample, and passes them to the network; a model without augmentation gets none."""
    import video_adapter.training.steps as steps
    from video_adapter.models.checkpoint import read_unet_config
    from video_adapter.training.train import train

    seen, make_cond = [], steps.make_cond
    monkeypatch.setattr(steps, "make_cond", lambda video, text, cfg, augment=None: (
        seen.append((video.shape, augment)), make_cond(video, text, cfg, augment))[1])
    model = {**TINY, "first_frame_cond": False, "lowres_factor": 2, "lowres_aug": 0.5}
    ckpt = train(train_config(toy, tmp_path / "sr", model=model, steps=2, save_every=2, seed=7))
    assert read_unet_config(ckpt)[0].lowres_aug == 0.5
    assert len(seen) == 2
    for step, (shape, (level, noise)) in enumerate(seen):
        want = steps.augmentation_draws(7, step, slice(0, shape[0]), shape, 0.5)
        assert torch.equal(level, want[0]) and torch.equal(noise, want[1])
    seen.clear()
    train(train_config(toy, tmp_path / "plain", model={**model, "lowres_aug": 0.0}, steps=1, save_every=1))
    assert seen[0][1] is None


def test_a_residual_sr_stage_trains_and_is_scored_on_its_scaled_detail(toy, tmp_path, monkeypatch):
    """A stage with lowres_residual s learns (video - lowres_condition(video)) / s, in training and in its
    held-out score; the network still sees the (noise-augmented) input."""
    import video_adapter.evaluation.heldout as heldout
    import video_adapter.training.steps as steps
    from video_adapter.maths.conditioning import lowres_condition
    from video_adapter.training.train import train

    videos, targets, scored = [], [], []
    make_cond, loss, heldout_loss = steps.make_cond, steps.denoising_loss, heldout.heldout_loss
    monkeypatch.setattr(steps, "make_cond", lambda video, text, cfg, augment=None: (
        videos.append(video), make_cond(video, text, cfg, augment))[1])
    monkeypatch.setattr(steps, "denoising_loss", lambda net, target, cond, *a: (
        targets.append((target, cond)), loss(net, target, cond, *a))[1])
    monkeypatch.setattr(heldout, "heldout_loss", lambda model, target, cond, *a: (
        scored.append((target, cond)), heldout_loss(model, target, cond, *a))[1])
    model = {**TINY, "first_frame_cond": False, "lowres_factor": 2, "lowres_aug": 0.5, "lowres_residual": 0.25}
    train(train_config(toy, tmp_path / "sr", model=model, steps=2, save_every=2, heldout=str(toy),
                       heldout_every=2, heldout_num=4))
    assert len(targets) == 2
    for video, (target, cond) in zip(videos, targets):
        torch.testing.assert_close(target, (video - lowres_condition(video, 2)) / 0.25)
        assert not torch.allclose(cond.lowres, lowres_condition(video, 2))  # the input itself noise-augmented
    from video_adapter.data.dataset import VideoFolderDataset

    clips = VideoFolderDataset(str(toy), frames=4, size=(8, 16), random_crop=False, progress=False)
    real = torch.stack([clips[i]["video"] for i in range(4)])
    target, cond = scored[0]
    torch.testing.assert_close(target, (real - lowres_condition(real, 2)) / 0.25)
    torch.testing.assert_close(cond.lowres, lowres_condition(real, 2))  # scored on the clean input
