import errno
import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import video_adapter.models.checkpoint as ckpt
from video_adapter.models.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_model,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_config,
    save_model,
)
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

from helpers import model_inputs, randomize


def inputs(cfg, b=2, seed=0):
    return model_inputs(cfg, b, seed, logsnr_range=3.0)


@pytest.fixture
def model(tiny_cfg):
    return randomize(SpaceTimeUNet(tiny_cfg), seed=1).eval()


def assert_state_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def hidden_leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# ------------------------------------------------------------------------------------------------ round trip


def test_round_trip_is_bit_exact(model, tiny_cfg, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm", step=7)
    assert out == tmp_path / "ck"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded, config = load_model(out)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert_state_equal(loaded.state_dict(), model.state_dict())
    x, logsnr, cond = inputs(tiny_cfg)
    with torch.no_grad():
        assert torch.equal(loaded(x, logsnr, cond), model(x, logsnr, cond))

    on_disk = json.loads((out / "config.json").read_text())
    assert on_disk == config
    assert UNetConfig.from_dict(on_disk["unet"]) == tiny_cfg
    assert on_disk["text_encoder"] == "minilm" and on_disk["step"] == 7
    assert on_disk["model_type"] == "SpaceTimeUNet" and on_disk["format_version"] == ckpt.FORMAT_VERSION
    assert read_config(out) == on_disk


def test_bf16_saving(model, tmp_path):
    save_model(tmp_path / "ck", model, "minilm", dtype=torch.bfloat16)
    raw = load_file(str(tmp_path / "ck" / "model.safetensors"))
    state = model.state_dict()
    assert raw.keys() == state.keys()
    assert all(v.dtype == torch.bfloat16 for v in raw.values())
    loaded, _ = load_model(tmp_path / "ck")
    got = loaded.state_dict()
    rounded = {k: v.to(torch.bfloat16).float() for k, v in state.items()}
    assert_state_equal(got, rounded)
    # The rounding is real: some weight changed, so the test above could tell bf16 from fp32.
    assert any(not torch.equal(rounded[k], state[k]) for k in state)


# ---------------------------------------------------------------------------------------------------- shards


@pytest.mark.parametrize("limit", [200_000, 50_000])
def test_sharded_saving(model, tmp_path, limit):
    state = model.state_dict()
    sizes = {k: tensor_bytes(v) for k, v in state.items()}
    assert sum(sizes.values()) > 2 * limit  # several shards are needed
    out = save_model(tmp_path / "ck", model, "minilm", max_shard_bytes=limit)
    files = sorted(p.name for p in out.iterdir())
    shards = [f for f in files if f.endswith(".safetensors")]
    n = len(shards)
    assert n >= 3
    assert files == sorted(["config.json", ckpt.INDEX_NAME] + shards)
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]

    index = json.loads((out / ckpt.INDEX_NAME).read_text())
    contents = [load_file(str(out / s)) for s in shards]
    # The index maps every tensor to the shard that holds it, and nothing else.
    assert index["weight_map"] == {k: s for s, c in zip(shards, contents) for k in c}
    assert sum(len(c) for c in contents) == len(state)
    # Shards keep the state-dict order and are packed greedily: a shard exceeds the limit only when it
    # is a single tensor larger than the limit, and the next tensor would not have fitted.
    order = [shards.index(index["weight_map"][k]) for k in state]
    assert order == sorted(order) and set(order) == set(range(n))
    for i, c in enumerate(contents):
        total = sum(tensor_bytes(t) for t in c.values())
        assert total <= limit or len(c) == 1, (shards[i], total)
        if i + 1 < n:
            first_of_next = state[list(state)[order.index(i + 1)]]
            assert total + tensor_bytes(first_of_next) > limit
    oversize = [k for k, s in sizes.items() if s > limit]
    assert (limit == 50_000) == bool(oversize)
    for k in oversize:
        assert len(contents[shards.index(index["weight_map"][k])]) == 1

    loaded, _ = load_model(out)
    assert_state_equal(loaded.state_dict(), state)
    assert_state_equal(load_tensors(out), state)


def test_missing_shard_is_named(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm", max_shard_bytes=200_000)
    shards = sorted(p for p in out.iterdir() if p.name.startswith("model-"))
    assert len(shards) >= 3
    shards[1].unlink()
    with pytest.raises(CheckpointError, match=f"{shards[1].name}.*missing"):
        load_model(out)


def test_corrupt_index_is_a_checkpoint_error(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm", max_shard_bytes=200_000)
    (out / ckpt.INDEX_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match=ckpt.INDEX_NAME):
        load_model(out)
    (out / ckpt.INDEX_NAME).write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="weight_map"):
        load_model(out)


# ---------------------------------------------------------------------------------------------------- errors


def test_directory_without_config(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm")
    (out / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_model(out)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_model(tmp_path / "nowhere")


def test_file_instead_of_directory(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm")
    with pytest.raises(CheckpointError, match="not a directory"):
        load_model(out / "model.safetensors")


def test_no_weights(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm")
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights.*model.safetensors"):
        load_model(out)


@pytest.mark.parametrize("text, match", [("{\"unet\": ", "not valid JSON"), ("[1, 2]", "does not describe"),
                                         ('{"model_type": "Other", "unet": {}}', "does not describe")])
def test_bad_config_json(model, tmp_path, text, match):
    out = save_model(tmp_path / "ck", model, "minilm")
    (out / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_model(out)


def test_unknown_config_field(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm")
    config = json.loads((out / "config.json").read_text())
    config["unet"]["bogus_field"] = 3
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="bogus_field"):
        load_model(out)


def test_invalid_config_values(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm")
    config = json.loads((out / "config.json").read_text())
    config["unet"]["attention_resolutions"] = [5]  # not a feature-map height
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="attention_resolutions"):
        load_model(out)


def _edit_unet(directory: Path, **changes) -> UNetConfig:
    config = json.loads((directory / "config.json").read_text())
    config["unet"].update(changes)
    (directory / "config.json").write_text(json.dumps(config))
    return UNetConfig.from_dict(config["unet"])


def _expected_mismatch(cfg: UNetConfig, state: dict) -> tuple[list, list, list]:
    with torch.device("meta"):
        expected = {k: v.shape for k, v in SpaceTimeUNet(cfg).state_dict().items()}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k] != state[k].shape)
    return missing, unexpected, wrong


def test_config_disagrees_with_weights_shapes(model, tmp_path):
    out = save_model(tmp_path / "ck", model, "minilm")
    cfg = _edit_unet(out, base_channels=8)
    missing, unexpected, wrong = _expected_mismatch(cfg, model.state_dict())
    assert wrong and not missing and not unexpected
    with pytest.raises(CheckpointError) as e:
        load_model(out)
    msg = str(e.value)
    assert "do not match config.json" in msg and "missing" not in msg and "unexpected" not in msg
    assert "wrong shape" in msg
    for k in wrong[:5]:
        assert f"{k} {tuple(model.state_dict()[k].shape)} != " in msg


@pytest.mark.parametrize("saved_blocks, config_blocks, kind", [(1, 2, "missing"), (2, 1, "unexpected")])
def test_config_disagrees_with_weights_keys(tiny_cfg, tmp_path, saved_blocks, config_blocks, kind):
    model = SpaceTimeUNet(replace(tiny_cfg, num_res_blocks=saved_blocks))
    out = save_model(tmp_path / "ck", model, "minilm")
    cfg = _edit_unet(out, num_res_blocks=config_blocks)
    missing, unexpected, _ = _expected_mismatch(cfg, model.state_dict())
    keys = missing if kind == "missing" else unexpected
    assert keys and not (missing and unexpected)
    with pytest.raises(CheckpointError) as e:
        load_model(out)
    msg = str(e.value)
    assert f"{kind} {len(keys)}: {keys[:5]}" in msg


@pytest.mark.parametrize("garbage", ["random", "truncated", "tiny", "empty"])
def test_corrupt_weights(model, tmp_path, garbage):
    out = save_model(tmp_path / "ck", model, "minilm")
    path = out / "model.safetensors"
    data = path.read_bytes()
    bad = {"random": bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()),
           "truncated": data[: len(data) // 2], "tiny": b"\x01\x02\x03", "empty": b""}[garbage]
    path.write_bytes(bad)
    with pytest.raises(CheckpointError, match="corrupt") as e:
        load_model(out)
    assert "model.safetensors" in str(e.value)


@pytest.mark.parametrize("limit", [None, 200_000])
def test_non_finite_weights_are_named_with_their_file(model, tmp_path, limit):
    with torch.no_grad():
        model.conv_out.bias[1] = float("nan")
    out = save_model(tmp_path / "ck", model, "minilm", max_shard_bytes=limit)
    index = out / ckpt.INDEX_NAME
    holder = out / (json.loads(index.read_text())["weight_map"]["conv_out.bias"] if limit else "model.safetensors")
    for load in (load_model, load_tensors):
        with pytest.raises(CheckpointError, match=re.escape(
                f"tensor conv_out.bias in {holder} holds NaN or Inf: the checkpoint is corrupt (saved after training "
                "diverged?); retrain, or use an earlier checkpoint")):
            load(out)


def saved_without(model, folder, *names):
    """`model` saved to `folder`, then its config.json's unet fields `names` deleted."""
    out = save_model(folder, model, "minilm")
    config = json.loads((out / "config.json").read_text())
    for name in names:
        del config["unet"][name]
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_config_without_a_weight_shape_field_is_an_error(model, tmp_path):
    """A default base_channels would build a model of another size, and the error would blame the weights."""
    out = saved_without(model, tmp_path / "ck", "base_channels", "edge_cond")
    with pytest.raises(CheckpointError, match=re.escape(
            f"{out / 'config.json'}: the unet config lacks base_channels, edge_cond, which set the shapes of the "
            "weights")):
        load_model(out)


def test_config_without_a_later_field_loads_with_its_default_and_a_warning(model, tmp_path):
    out = saved_without(model, tmp_path / "ck", "dropout", "space")
    with pytest.warns(UserWarning, match=re.escape(
            f"{out / 'config.json'} lacks unet fields added since it was written; their defaults apply: "
            "dropout=0.0, space='pixels'")):
        loaded, _ = load_model(out)
    assert loaded.cfg == model.cfg
    assert_state_equal(loaded.state_dict(), model.state_dict())


def test_weight_shape_fields_are_exactly_those_that_change_the_weights(tiny_cfg):
    """Each field of WEIGHT_SHAPE_FIELDS has a value that changes the state dict's names or shapes; no other does."""
    from dataclasses import fields

    from video_adapter.models.unet import ADDED_SHAPE_FIELDS, WEIGHT_SHAPE_FIELDS

    # another valid value of every field (with what it needs to stay valid)
    others = {"channels": {"channels": 4}, "frames": {"frames": 6}, "width": {"width": 16},
              "height": {"height": 4}, "base_channels": {"base_channels": 8},
              "channel_mults": {"channel_mults": (1, 1)}, "num_res_blocks": {"num_res_blocks": 2},
              "attention_resolutions": {"attention_resolutions": (8,)}, "head_dim": {"head_dim": 4},
              "emb_dim": {"emb_dim": 16}, "text_dim": {"text_dim": 8}, "first_frame_cond": {"first_frame_cond": False},
              "edge_cond": {"edge_cond": False}, "temporal_attention": {"temporal_attention": False},
              "dropout": {"dropout": 0.5}, "norm_groups": {"norm_groups": 4}, "prediction": {"prediction": "eps"},
              "space": {"space": "latent:vae"}, "lowres_factor": {"lowres_factor": 2},
              "lowres_aug": {"lowres_aug": 0.5}, "lowres_residual": {"lowres_residual": 0.2}}
    assert others.keys() == {f.name for f in fields(UNetConfig)}  # a new field must be sorted in too
    bases = {"lowres_aug": {"lowres_factor": 2}, "lowres_residual": {"lowres_factor": 2}}  # a field that exists only on top of another: changed from there

    def shapes(cfg):
        with torch.device("meta"):
            return {k: v.shape for k, v in SpaceTimeUNet(cfg).state_dict().items()}

    changes = {name for name, change in others.items()
               if shapes(replace(tiny_cfg, **bases.get(name, {}), **change)) !=
               shapes(replace(tiny_cfg, **bases.get(name, {})))}
    assert changes == set(WEIGHT_SHAPE_FIELDS) | set(ADDED_SHAPE_FIELDS)


def test_a_checkpoint_written_before_lowres_factor_loads_unchanged_without_a_warning(model, tmp_path):
    import warnings

    out = saved_without(model, tmp_path / "ck", "lowres_factor")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _ = load_model(out)
    assert loaded.cfg == model.cfg and loaded.cfg.lowres_factor == 0
    assert_state_equal(loaded.state_dict(), model.state_dict())


def test_an_sr_stage_written_before_lowres_aug_loads_unchanged_without_a_warning(tiny_cfg, tmp_path):
    """A super-resolution stage saved before noise augmentation existed has no lowres_aug in its config.json: it loads
    with augmentation off (no aug_proj), its weights exactly, and no warning."""
    import warnings

    sr = randomize(SpaceTimeUNet(replace(tiny_cfg, lowres_factor=2)), seed=2)
    out = saved_without(sr, tmp_path / "ck", "lowres_aug")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _ = load_model(out)
    assert loaded.cfg == sr.cfg and loaded.cfg.lowres_aug == 0.0 and loaded.aug_proj is None
    assert_state_equal(loaded.state_dict(), sr.state_dict())
    # one written with it keeps it, and its aug_proj
    aug = randomize(SpaceTimeUNet(replace(tiny_cfg, lowres_factor=2, lowres_aug=0.5)), seed=3)
    again, _ = load_model(save_model(tmp_path / "aug", aug, "minilm"))
    assert again.cfg.lowres_aug == 0.5 and "aug_proj.weight" in again.state_dict()
    assert_state_equal(again.state_dict(), aug.state_dict())


def test_an_sr_stage_written_before_lowres_residual_loads_as_a_video_denoiser_without_a_warning(tiny_cfg, tmp_path):
    """The stages shipped before the residual form denoise the video: lacking lowres_residual, they load with 0."""
    import warnings

    sr = randomize(SpaceTimeUNet(replace(tiny_cfg, lowres_factor=2)), seed=2)
    out = saved_without(sr, tmp_path / "ck", "lowres_residual")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _ = load_model(out)
    assert loaded.cfg == sr.cfg and loaded.cfg.lowres_residual == 0.0
    residual = SpaceTimeUNet(replace(tiny_cfg, lowres_factor=2, lowres_residual=0.2))
    assert load_model(save_model(tmp_path / "res", residual, "minilm"))[0].cfg.lowres_residual == 0.2


# ------------------------------------------------------------------------------------------------- atomicity


def test_failed_overwrite_keeps_old_checkpoint(model, tiny_cfg, tmp_path, monkeypatch):
    target = tmp_path / "ck"
    save_model(target, model, "minilm", step=1)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    new = randomize(SpaceTimeUNet(tiny_cfg), seed=2)
    calls = []
    real_save_file = ckpt.save_file

    def failing_save_file(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_model(target, new, "minilm", step=2, max_shard_bytes=200_000)
    assert len(calls) == 2
    # The first shard was really written somewhere: into a temp directory beside the target, not the target.
    assert Path(calls[0]).parent.parent == tmp_path and Path(calls[0]).parent.name.startswith(".ck.")
    assert hidden_leftovers(tmp_path, "ck") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    loaded, config = load_model(target)
    assert config["step"] == 1
    assert_state_equal(loaded.state_dict(), model.state_dict())

    monkeypatch.undo()  # a later save goes through and replaces it completely, leaving nothing behind
    save_model(target, new, "minilm", step=2, max_shard_bytes=200_000)
    loaded, config = load_model(target)
    assert config["step"] == 2 and not (target / "model.safetensors").exists()
    assert_state_equal(loaded.state_dict(), new.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


# safetensors reports a full disk as a SafetensorError whose errno is only in its message
DISK_FULL = [OSError(errno.ENOSPC, "No space left on device"),
             SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")]


@pytest.mark.parametrize("error", DISK_FULL, ids=["oserror", "safetensors"])
def test_a_full_disk_is_one_line_naming_the_folder_and_the_intact_previous_step(model, tmp_path, monkeypatch,
                                                                                error):
    target = tmp_path / "ck"

    def disk_full(*args, **kwargs):
        raise error

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(CheckpointError, match=f"disk is full: writing {re.escape(str(target))} failed.*there is no "
                                              "previous checkpoint") as info:
        save_model(target, model, "minilm", step=1)
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    save_model(target, model, "minilm", step=4)
    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(CheckpointError, match="disk is full.*the previous checkpoint there, at step 4, is intact"):
        save_model(target, model, "minilm", step=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert load_model(target)[1]["step"] == 4


def test_failed_swap_restores_old_checkpoint(model, tiny_cfg, tmp_path, monkeypatch):
    # An error (or Ctrl-C) after the old directory was moved aside, but before the new one is in place.
    target = tmp_path / "ck"
    save_model(target, model, "minilm", step=1)
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(dst) == target and Path(src).name.endswith(".tmp"):  # the new directory into place
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        save_model(target, randomize(SpaceTimeUNet(tiny_cfg), seed=2), "minilm", step=2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    loaded, config = load_model(target)
    assert config["step"] == 1
    assert_state_equal(loaded.state_dict(), model.state_dict())


def test_overwrite_replaces_stale_files(model, tmp_path):
    # Sharded, then single-file: no stale shard or index of the first save survives the second.
    target = tmp_path / "ck"
    save_model(target, model, "minilm", max_shard_bytes=200_000)
    save_model(target, model, "minilm")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_written_files_honour_the_umask(model, tmp_path):
    """Checkpoints are readable by others where the umask allows it, as plainly created files are (mkstemp, mkdtemp
    and safetensors alone would make them private: 0600 / 0700)."""
    old = os.umask(0o022)
    try:
        target = save_model(tmp_path / "ck", model, "minilm", max_shard_bytes=200_000)
        atomic_write_text(tmp_path / "note.txt", "hi")
        atomic_write_text(tmp_path / "note.txt", "again")  # replacing keeps it so
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    files = [*target.iterdir(), tmp_path / "note.txt"]
    assert len(files) > 3 and {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o644 for p in files}


# ------------------------------------------------------------------------------------------------- optimizer


def test_optimizer_state_round_trip(tiny_cfg, tmp_path):
    cfg = replace(tiny_cfg, base_channels=8, head_dim=4, emb_dim=16)
    x, logsnr, cond = inputs(cfg)

    def step(model, opt):
        opt.zero_grad()
        model(x, logsnr, cond).square().mean().backward()
        opt.step()

    model = randomize(SpaceTimeUNet(cfg), seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(3):
        step(model, opt)

    tensors, meta = optimizer_to_tensors(opt.state_dict())
    assert tensors  # the moments are tensors and go to safetensors
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "opt.safetensors"))
    meta = json.loads(json.dumps(meta))  # as it is stored: JSON
    restored = optimizer_from_tensors(load_file(str(tmp_path / "opt.safetensors")), meta)

    clone = SpaceTimeUNet(cfg)
    clone.load_state_dict(model.state_dict())
    fresh = torch.optim.AdamW(clone.parameters(), lr=0.5, betas=(0.1, 0.2), weight_decay=0.0)
    fresh.load_state_dict(restored)
    assert fresh.param_groups[0]["lr"] == 1e-2 and tuple(fresh.param_groups[0]["betas"]) == (0.8, 0.95)
    reference = opt.state_dict()["state"]
    assert fresh.state_dict()["state"].keys() == reference.keys()
    for idx, slots in reference.items():
        for name, value in slots.items():
            assert torch.equal(fresh.state_dict()["state"][idx][name], value), (idx, name)

    for _ in range(2):
        step(model, opt)
        step(clone, fresh)
    assert_state_equal(clone.state_dict(), model.state_dict())
    # A fresh optimizer without the restored state would have diverged, so the check above can fail.
    lost = SpaceTimeUNet(cfg)
    lost.load_state_dict(clone.state_dict())
    step(lost, torch.optim.AdamW(lost.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1))
    step(clone, fresh)
    assert any(not torch.equal(a, b) for a, b in zip(lost.parameters(), clone.parameters()))
