"""Checkpoints as safetensors plus a JSON config, written atomically; never a pickle.

A model directory holds `config.json` and the weights, either `model.safetensors` or shards
`model-00001-of-0000N.safetensors` with `model.safetensors.index.json` (the Hugging Face layout), so a
checkpoint can be kept in git in files of at most 16 MiB. A training run adds `train_state/` with the
online weights, the optimizer, and `state.json` (step, data position, RNG) for exact resume.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..common.files import atomic_dir, atomic_write_text, is_disk_full
from .unet import ADDED_MEANING_FIELDS, ADDED_SHAPE_FIELDS, WEIGHT_SHAPE_FIELDS, SpaceTimeUNet, UNetConfig

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"


class CheckpointError(ValueError):
    pass


@contextmanager
def atomic_model_dir(directory: str | Path) -> Iterator[Path]:
    """`files.atomic_dir` for a model directory: a full disk is one line naming the folder and the previous checkpoint,
    which is left intact (the temp directory is removed first, so that checkpoint is all there is)."""
    directory = Path(directory)
    try:
        with atomic_dir(directory) as tmp:
            yield tmp
    except (OSError, SafetensorError) as e:
        if not is_disk_full(e):
            raise
        raise CheckpointError(f"the disk is full: writing {directory} failed ({e}); {_previous(directory)}; free "
                              "space on that disk (or write elsewhere) and run the command again") from e


def _previous(directory: Path) -> str:
    """What a failed `atomic_model_dir` left at `directory`: the checkpoint there before, untouched."""
    if not directory.exists():
        return "there is no previous checkpoint there"
    try:
        step = json.loads((directory / CONFIG_NAME).read_text()).get("step")
    except (OSError, ValueError, AttributeError):  # no config.json, or not a JSON object: no step to name
        step = None
    return f"the previous checkpoint there, at step {step}, is intact" if isinstance(step, int) \
        else "the previous one there is intact"


def save_tensors(tensors: dict[str, Tensor], directory: Path, prefix: str = "model",
                 max_shard_bytes: int | None = None) -> list[str]:
    """Writes `tensors` into `directory` as one file or as shards of at most `max_shard_bytes`."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if max_shard_bytes and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    if len(shards) == 1:
        names = [f"{prefix}.safetensors"]
    else:
        names = [f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        weight_map = {k: n for n, shard in zip(names, shards) for k in shard}
        atomic_write_text(directory / f"{prefix}.safetensors.index.json",
                          json.dumps({"metadata": {"format": "pt"}, "weight_map": weight_map}, indent=1))
    for name, shard in zip(names, shards):
        save_file(shard, str(directory / name), metadata={"format": "pt"})
    return names


def load_tensors(directory: Path, prefix: str = "model") -> dict[str, Tensor]:
    directory = Path(directory)
    single, index = directory / f"{prefix}.safetensors", directory / f"{prefix}.safetensors.index.json"
    if single.exists():
        files = [single]
    elif index.exists():
        files = [directory / n for n in sorted(set(read_weight_map(index).values()))]
    else:
        raise CheckpointError(f"no weights in {directory}: expected {single.name} or {index.name}")
    out = {}
    for f in files:
        if not f.exists():
            raise CheckpointError(f"weight shard {f} is missing; the checkpoint directory is incomplete")
        try:
            tensors = load_file(str(f))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"cannot read {f}: {e}; the file is corrupt or not safetensors") from e
        check_finite(tensors, f)
        out.update(tensors)
    return out


def check_finite(tensors: dict[str, Tensor], where) -> None:
    """NaN or Inf weights load without complaint and then sample black videos: an error naming the first one."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"tensor {name} in {where} holds NaN or Inf: the checkpoint is corrupt (saved "
                                  "after training diverged?); retrain, or use an earlier checkpoint")


def read_weight_map(index: Path) -> dict[str, str]:
    """A shard index's weight_map: tensor name -> file name."""
    try:
        weight_map = json.loads(Path(index).read_text())["weight_map"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise TypeError("weight_map must map tensor names to file names")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index} is not a valid shard index (JSON with a weight_map): {e!r}") from e
    return weight_map


def model_config(model: SpaceTimeUNet, text_encoder: str, **extra) -> dict:
    return {"format_version": FORMAT_VERSION, "model_type": "SpaceTimeUNet", "unet": model.cfg.to_dict(),
            "text_encoder": text_encoder, **extra}


def write_model(directory: Path, model: SpaceTimeUNet, text_encoder: str, *, dtype: torch.dtype | None = None,
                max_shard_bytes: int | None = None, **extra) -> None:
    """Writes a self-describing model (weights + config.json) into an existing directory, e.g. an `atomic_model_dir`."""
    state = {k: v.to(dtype) if dtype and v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_tensors(state, directory, "model", max_shard_bytes)
    atomic_write_text(directory / CONFIG_NAME, json.dumps(model_config(model, text_encoder, **extra), indent=2))


def save_model(directory: str | Path, model: SpaceTimeUNet, text_encoder: str, **kwargs) -> Path:
    """Writes a self-describing model directory atomically (`write_model`'s keywords)."""
    with atomic_model_dir(directory) as tmp:
        write_model(tmp, model, text_encoder, **kwargs)
    return Path(directory)


SHIP_SHARD_BYTES = 16 * 2**20  # a file that git hosts comfortably, and the device tool's largest return


def export_model(src: str | Path, dst: str | Path, dtype: torch.dtype = torch.bfloat16,
                 max_file_bytes: int = SHIP_SHARD_BYTES) -> Path:
    """A model directory re-written in `dtype` as shards whose files (header included) stay under `max_file_bytes`.

    `dst` is replaced whole, so it must be new or hold nothing but an earlier export's files: a run directory, a
    folder of checkpoints or a model card beside the weights is never deleted."""
    check_export_target(Path(dst))
    model, config = load_model(src)
    # dtype_name is written anew: a directory that was itself exported must not pass it twice
    extra = {k: v for k, v in config.items()
             if k not in ("format_version", "model_type", "unet", "text_encoder", "dtype_name")}
    # each safetensors header is a few KiB of JSON: 64 KiB of room per 100 tensors is plenty
    headroom = 64 * 1024 * (1 + len(model.state_dict()) // 100)
    name, largest = max(((k, v.numel() * dtype.itemsize) for k, v in model.state_dict().items()), key=lambda kv: kv[1])
    if largest + headroom > max_file_bytes:
        raise CheckpointError(f"a shard limit of {max_file_bytes / 2**20:g} MiB cannot hold the largest tensor, "
                              f"{name} ({largest / 2**20:.3g} MiB in {dtype}) with its file's header; pass a limit of "
                              f"at least {(largest + headroom) / 2**20:.3g} MiB")
    return save_model(dst, model, config["text_encoder"], dtype=dtype, max_shard_bytes=max_file_bytes - headroom,
                      dtype_name=str(dtype).removeprefix("torch."), **extra)


def check_export_target(dst: Path) -> None:
    """An error unless `dst` is absent or a directory of model files alone (what `export` writes)."""
    if not dst.exists():
        return
    if not dst.is_dir():
        raise CheckpointError(f"export --out {dst} is a file; pass a directory path to write the model into")
    model_file = lambda p: p.is_file() and (p.name in (CONFIG_NAME, INDEX_NAME) or
                                            (p.name.startswith("model") and p.suffix == ".safetensors"))
    if others := sorted(p.name for p in dst.iterdir() if not model_file(p)):
        raise CheckpointError(f"export --out {dst} exists and holds more than model files ({', '.join(others[:5])}"
                              f"{', ...' if len(others) > 5 else ''}); export replaces the whole directory, so pass a "
                              "new directory (and copy the files in), or empty it first")


# config.json's dtype_name -> (the safetensors header's dtype, `video-adapter export --dtype`)
_EXPORT_DTYPES = {"bfloat16": ("BF16", "bf16"), "float16": ("F16", "fp16"), "float32": ("F32", "fp32")}


def verify_model_dir(directory: str | Path, max_file_bytes: int | None = None) -> tuple[SpaceTimeUNet, dict]:
    """Checks a model directory as it would be shipped (e.g. in git) and returns `load_model`'s (model, config).

    Raises CheckpointError naming each problem with its fix: a file (in any subfolder) larger than `max_file_bytes`;
    the shard index and the weight files disagreeing (a file the index names is missing, a weight file it does not
    name, a tensor in another file than it says); floating weights not in config.json's `dtype_name` (written by
    `export`); config.json's model not matching the weights (`load_model`). Only file headers are read before that.
    """
    directory = Path(directory)
    config = read_config(directory)
    try:  # export replaces a directory of model files alone; beside a model card it writes elsewhere
        check_export_target(directory)
        export = lambda *flags: " ".join([f"`video-adapter export SRC --out {directory}", *flags]) + "`"
    except CheckpointError:
        export = lambda *flags: (" ".join(["`video-adapter export SRC --out NEW_DIR", *flags]) +
                                 f"`, then copy NEW_DIR's files over {directory}'s")
    problems = []
    if max_file_bytes is not None:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            if (size := path.stat().st_size) > max_file_bytes:
                fix = (f"re-export with {export(f'--max-shard-mib {max_file_bytes / 2**20:g}')}"
                       if path.suffix == ".safetensors" else "make it smaller or move it out of the directory")
                problems.append(f"{path.relative_to(directory)} is {size} bytes, over the limit of {max_file_bytes}; "
                                f"fix: {fix}")
    single, index = directory / "model.safetensors", directory / INDEX_NAME
    present = {p.name for p in directory.glob("model*.safetensors")}
    weight_map = read_weight_map(index) if index.exists() else None
    if weight_map is not None:
        named = set(weight_map.values())
        if single.exists():
            problems.append(f"both {single.name} and {INDEX_NAME} are present, and only {single.name} would be "
                            f"loaded; fix: delete the stale one, or re-export with {export()}")
        problems += [f"{INDEX_NAME} names {name}, which is missing; fix: copy the directory again or re-export "
                     f"with {export()}" for name in sorted(named - present)]
        problems += [f"{name} is not in {INDEX_NAME}; fix: delete it (a leftover of an earlier export)"
                     for name in sorted(present - named - {single.name})]
        files = [directory / n for n in sorted(named & present)]
    elif single.exists():
        problems += [f"{name} is never loaded (there is no {INDEX_NAME}, so {single.name} is the weights); "
                     f"fix: delete it" for name in sorted(present - {single.name})]
        files = [single]
    else:
        raise CheckpointError(f"no weights in {directory}: expected {single.name} or {INDEX_NAME}")
    want, flag = _EXPORT_DTYPES.get(config.get("dtype_name"), (None, None))
    for path in files:
        try:
            with safe_open(str(path), "pt") as f:
                dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (not iterable)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"cannot read {path}: {e}; the file is corrupt or not safetensors") from e
        if weight_map is not None:
            expected = {k for k, v in weight_map.items() if v == path.name}
            if stray := sorted(dtypes.keys() - expected):
                problems.append(f"{path.name} holds {len(stray)} tensor(s) that {INDEX_NAME} puts elsewhere or "
                                f"nowhere ({stray[:3]}); fix: re-export with {export()}")
            if lacking := sorted(expected - dtypes.keys()):
                problems.append(f"{INDEX_NAME} puts {len(lacking)} tensor(s) in {path.name}, which lacks them "
                                f"({lacking[:3]}); fix: re-export with {export()}")
        if want and (wrong := sorted(k for k, d in dtypes.items() if d.startswith(("F", "BF")) and d != want)):
            problems.append(f"{path.name} has {len(wrong)} floating tensor(s) not in {want}, the dtype_name of "
                            f"config.json ({wrong[0]} is {dtypes[wrong[0]]}); fix: re-export with "
                            f"{export(f'--dtype {flag}')}")
    if problems:
        raise CheckpointError(f"{directory} is not a consistent model directory (SRC below: the training "
                              f"checkpoint it came from):\n  " + "\n  ".join(problems))
    try:
        return load_model(directory)
    except CheckpointError as e:
        raise CheckpointError(f"{e}\n  fix: config.json must be the one written with these weights; re-export with "
                              f"{export()} (SRC: the training checkpoint it came from)") from e


def read_config(directory: str | Path, model_type: str = "SpaceTimeUNet", key: str = "unet",
                written_by: str = "video-adapter train") -> dict:
    """config.json of a model directory, checked to describe a `model_type` (its config under `key`)."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} is not a directory; pass a model directory written by "
                              f"`{written_by}` (config.json + model*.safetensors)")
    if not path.exists():
        inside = directory / "checkpoint" / CONFIG_NAME  # a training run keeps its model in checkpoint/
        hint = f"; {directory} is a training run: pass {inside.parent}" if inside.exists() else ""
        raise CheckpointError(f"{path} is missing: a checkpoint directory needs config.json beside its weights{hint}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("model_type") != model_type or key not in config:
        found = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointError(f"{path} does not describe a {model_type} (model_type={found!r})")
    return config


def read_unet_config(directory: str | Path) -> tuple[UNetConfig, dict]:
    """The model's UNetConfig and the whole config.json of a model directory.

    A field that sets the weights' shapes must be there (`WEIGHT_SHAPE_FIELDS`); any other missing field (one added
    since the checkpoint was written) takes its default, with a warning naming it."""
    config = read_config(directory)
    path, unet = Path(directory) / CONFIG_NAME, config["unet"]
    if isinstance(unet, dict) and (missing := [name for name in WEIGHT_SHAPE_FIELDS if name not in unet]):
        raise CheckpointError(f"{path}: the unet config lacks {', '.join(missing)}, which set the shapes of the "
                              "weights (a default would build a model of another size); write the value(s) the "
                              "model was trained with into it")
    if isinstance(unet, dict):
        unet = {**ADDED_SHAPE_FIELDS, **ADDED_MEANING_FIELDS, **unet}  # what checkpoints before these fields had
    try:
        cfg = UNetConfig.from_dict(unet)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid unet config: {e}") from e
    if filled := [f"{f.name}={getattr(cfg, f.name)!r}" for f in fields(UNetConfig) if f.name not in unet]:
        warnings.warn(f"{path} lacks unet fields added since it was written; their defaults apply: "
                      f"{', '.join(filled)}", stacklevel=2)
    return cfg, config


def load_model(directory: str | Path, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> tuple[SpaceTimeUNet, dict]:
    """Builds the model from config.json and loads its weights strictly; returns (model in eval mode, config)."""
    cfg, config = read_unet_config(directory)
    with torch.device("meta"):
        model = SpaceTimeUNet(cfg)
    state = load_tensors(Path(directory))
    check_state(model, state, directory)
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device=device, dtype=dtype or torch.float32)
    return model.eval().requires_grad_(False), config


def check_state(model: nn.Module, state: dict[str, Tensor], where) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    if missing or unexpected or wrong:
        lines = [f"weights in {where} do not match config.json:"]
        if missing:
            lines.append(f"  missing {len(missing)}: {missing[:5]}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)}: {unexpected[:5]}")
        if wrong:
            lines.append("  wrong shape: " + ", ".join(f"{k} {got[k]} != {expected[k]}" for k in wrong[:5]))
        raise CheckpointError("\n".join(lines))


def optimizer_to_tensors(state: dict) -> tuple[dict[str, Tensor], dict]:
    """Splits an optimizer state_dict into tensors (for safetensors) and JSON (param groups, scalars)."""
    tensors, scalars = {}, {}
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}
