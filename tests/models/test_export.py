"""`video-adapter export` (checkpoint.export_model) and the shipped-directory checker (checkpoint.verify_model_dir)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from video_adapter.interfaces.cli import main
from video_adapter.models.checkpoint import (
    INDEX_NAME,
    SHIP_SHARD_BYTES,
    CheckpointError,
    export_model,
    load_model,
    load_tensors,
    save_model,
    verify_model_dir,
)
from video_adapter.models.unet import SpaceTimeUNet

from helpers import randomize

LIMIT_MIB = 0.25  # the tiny model is 0.47 MB in bf16: several shards


@pytest.fixture
def source(tiny_cfg, tmp_path):
    """A training run's checkpoint of a tiny model: fp32 weights that bf16 rounds, a step, a train_state/ folder."""
    model = randomize(SpaceTimeUNet(tiny_cfg), seed=3)
    directory = save_model(tmp_path / "run" / "checkpoint", model, "minilm", step=42, train_config={"lr": 0.001})
    (directory / "train_state").mkdir()
    (directory / "train_state" / "online.safetensors").write_bytes(b"not copied")
    return directory, model.state_dict()


@pytest.fixture
def exported(source, tmp_path, capsys):
    """`source` exported through the CLI in bf16 shards of at most LIMIT_MIB: (directory, what it printed)."""
    out = tmp_path / "export" / "prior"
    capsys.readouterr()
    main(["export", str(source[0]), "--out", str(out), "--max-shard-mib", str(LIMIT_MIB)])
    return out, capsys.readouterr().out


def weight_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.safetensors"))


# ---------------------------------------------------------------------------------------------------------- export


def test_bf16_export_in_shards_under_the_limit(source, exported):
    out, printed = exported
    src, state = source
    files = weight_files(out)
    assert len(files) >= 4
    assert sorted(p.name for p in out.iterdir()) == sorted(["config.json", INDEX_NAME] + [f.name for f in files])
    sizes = [f.stat().st_size for f in files]
    assert max(sizes) <= LIMIT_MIB * 2**20
    # the CLI's one-line summary states what it wrote
    assert printed == (f"wrote {out}: {len(files)} weight file(s), largest {max(sizes) / 2**20:.2f} MiB "
                       f"(limit {LIMIT_MIB:g} MiB; default {SHIP_SHARD_BYTES / 2**20:g})\n")
    # every tensor, in bf16, exactly the original rounded to bf16; and the rounding changed something
    raw = load_tensors(out)
    assert raw.keys() == state.keys()
    for k, v in state.items():
        assert raw[k].dtype == torch.bfloat16 and torch.equal(raw[k], v.to(torch.bfloat16)), k
    assert any(not torch.equal(raw[k].float(), v) for k, v in state.items())
    model, config = load_model(out)
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, state[k].to(torch.bfloat16).float()), k
    # the config is the source's, with the dtype; the optimizer state (train_state/) is not copied
    source_config = json.loads((src / "config.json").read_text())
    assert config == {**source_config, "dtype_name": "bfloat16"}
    assert config["step"] == 42 and config["train_config"] == {"lr": 0.001}


def test_fp32_export_round_trips_exactly(source, tmp_path, capsys):
    src, state = source
    main(["export", str(src), "--out", str(tmp_path / "fp32"), "--dtype", "fp32", "--max-shard-mib", "0.5"])
    assert re.fullmatch(r"wrote \S+: [3-9] weight file\(s\), largest 0\.\d\d MiB \(limit 0\.5 MiB; default 16\)\n",
                        capsys.readouterr().out)
    raw = load_tensors(tmp_path / "fp32")
    assert raw.keys() == state.keys()
    assert all(raw[k].dtype == torch.float32 and torch.equal(raw[k], v) for k, v in state.items())
    assert json.loads((tmp_path / "fp32" / "config.json").read_text())["dtype_name"] == "float32"


def test_an_export_can_be_exported_again(exported, tmp_path):
    """Re-exporting (another dtype or limit) replaces dtype_name rather than passing it twice."""
    out = export_model(exported[0], tmp_path / "again", torch.float16, max_file_bytes=SHIP_SHARD_BYTES)
    assert [p.name for p in weight_files(out)] == ["model.safetensors"]  # the whole model fits in one file
    raw = load_file(str(out / "model.safetensors"))
    bf16 = load_tensors(exported[0])
    assert all(raw[k].dtype == torch.float16 and torch.equal(raw[k], v.to(torch.float16)) for k, v in bf16.items())
    assert verify_model_dir(out)[1]["dtype_name"] == "float16"


def test_export_never_deletes_what_is_not_a_model(source, tmp_path):
    """--out is replaced whole, so a run directory, a folder of models, a model card's folder or a file is refused,
    untouched; an earlier export is replaced."""
    run = source[0].parent
    (run / "loss.csv").write_text("step,loss\n")
    card = tmp_path / "card"
    card.mkdir()
    (card / "README.md").write_text("the model card")
    (tmp_path / "config.json").write_text("{}")
    before = {p: p.read_bytes() for p in [*run.rglob("*"), *card.rglob("*"), tmp_path / "config.json"] if p.is_file()}
    for out, complaint in [(run, "holds more than model files (checkpoint, loss.csv)"),
                           (tmp_path, "holds more than model files"),
                           (card, "holds more than model files (README.md)"),
                           (tmp_path / "config.json", "is a file")]:
        with pytest.raises(SystemExit, match=re.escape(complaint)):
            main(["export", str(source[0]), "--out", str(out)])
    assert {p: p.read_bytes() for p in before} == before
    out = export_model(source[0], tmp_path / "new")
    assert export_model(source[0], out, torch.float16) == out  # an export is replaced by the next
    assert verify_model_dir(out)[1]["dtype_name"] == "float16"


@pytest.mark.parametrize("mib", [0, -5, 0.05])
def test_a_shard_limit_below_the_largest_tensor_is_refused(source, tmp_path, mib):
    largest = max(v.numel() * 2 for v in source[1].values())  # bf16
    with pytest.raises(SystemExit, match=r"cannot hold the largest tensor, \S+ \([\d.]+ MiB in torch.bfloat16") as e:
        main(["export", str(source[0]), "--out", str(tmp_path / "x"), "--max-shard-mib", str(mib)])
    assert float(re.search(r"\(([\d.]+) MiB", str(e.value))[1]) == pytest.approx(largest / 2**20, rel=1e-2)
    least = float(re.search(r"at least ([\d.]+) MiB", str(e.value))[1])
    assert not (tmp_path / "x").exists()
    main(["export", str(source[0]), "--out", str(tmp_path / "x"), "--max-shard-mib", str(least * 1.01)])
    assert max(p.stat().st_size for p in weight_files(tmp_path / "x")) <= least * 1.01 * 2**20


# ---------------------------------------------------------------------------------------------- verify_model_dir


@pytest.fixture
def copy(exported, tmp_path):
    """A copy of the export to corrupt."""
    return Path(shutil.copytree(exported[0], tmp_path / "copy"))


def problems(directory: Path, max_file_bytes=None) -> str:
    with pytest.raises(CheckpointError) as e:
        verify_model_dir(directory, max_file_bytes)
    return str(e.value)


def test_verify_accepts_an_export_and_returns_the_model(copy, source):
    model, config = verify_model_dir(copy, max_file_bytes=int(LIMIT_MIB * 2**20))
    assert config["dtype_name"] == "bfloat16"
    assert all(torch.equal(v, source[1][k].to(torch.bfloat16).float()) for k, v in model.state_dict().items())


def test_verify_names_files_over_the_limit(copy):
    sizes = {p.name: p.stat().st_size for p in weight_files(copy)}
    limit = max(sizes.values()) - 1  # exported under LIMIT_MIB, checked against a smaller limit
    msg = problems(copy, limit)
    too_big = [name for name, size in sizes.items() if size > limit]
    assert too_big and len(too_big) < len(sizes)
    for name, size in sizes.items():
        assert (f"{name} is {size} bytes, over the limit of {limit}" in msg) == (name in too_big)
    assert f"video-adapter export SRC --out {copy} --max-shard-mib {limit / 2**20:g}`" in msg
    # any file counts, not only weights, and in subfolders too
    (copy / "logs").mkdir()
    (copy / "logs" / "loss.csv").write_bytes(b"x" * (limit + 1))
    assert "logs/loss.csv is" in problems(copy, limit) and "make it smaller or move it out" in problems(copy, limit)


def test_verify_edited_config_disagrees_with_weights(copy):
    config = json.loads((copy / "config.json").read_text())
    config["unet"]["base_channels"] = 8
    (copy / "config.json").write_text(json.dumps(config))
    msg = problems(copy)
    assert "do not match config.json" in msg and "wrong shape" in msg
    assert "fix: config.json must be the one written with these weights" in msg and "video-adapter export" in msg


def test_verify_deleted_shard(copy):
    victim = weight_files(copy)[1]
    victim.unlink()
    msg = problems(copy)
    assert f"{INDEX_NAME} names {victim.name}, which is missing" in msg and "video-adapter export" in msg


def test_verify_file_not_in_index(copy):
    shutil.copy(weight_files(copy)[0], copy / "model-00099-of-00099.safetensors")
    assert f"model-00099-of-00099.safetensors is not in {INDEX_NAME}; fix: delete it" in problems(copy)
    # so is a single-file model.safetensors beside the index, which load_model would load alone
    (copy / "model-00099-of-00099.safetensors").rename(copy / "model.safetensors")
    assert f"both model.safetensors and {INDEX_NAME} are present" in problems(copy)


def test_verify_index_points_to_the_wrong_shard(copy):
    index = json.loads((copy / INDEX_NAME).read_text())
    first, second = (f.name for f in weight_files(copy)[:2])
    name = next(k for k, v in index["weight_map"].items() if v == first)
    index["weight_map"][name] = second
    (copy / INDEX_NAME).write_text(json.dumps(index))
    msg = problems(copy)
    assert f"{first} holds 1 tensor(s) that {INDEX_NAME} puts elsewhere or nowhere (['{name}'])" in msg
    assert f"{INDEX_NAME} puts 1 tensor(s) in {second}, which lacks them (['{name}'])" in msg
    load_model(copy)  # loading alone would not notice: it merges every file the index names


def test_verify_dtype_differs_from_config(copy):
    config = json.loads((copy / "config.json").read_text())
    config["dtype_name"] = "float16"
    (copy / "config.json").write_text(json.dumps(config))
    msg = problems(copy)
    assert "floating tensor(s) not in F16, the dtype_name of config.json" in msg and "is BF16" in msg
    assert "--dtype fp16`" in msg
