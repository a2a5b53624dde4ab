"""Loading the models a run samples with: a model directory (our checkpoint, or a diffusers pipeline) becomes a
`ScoreModel` on its device, in its precision; a pair is checked compatible before anything is sampled."""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.tables import human_count
from ..models.checkpoint import read_config
from ..models.remote import RemoteScoreModel, is_url, read_token
from ..models.score_model import ScoreModel, check_compatible, load_score_model
from ..models.unet import PRESETS


def load_model(path: str | Path, device: torch.device, dtype: torch.dtype, *, cuda_graphs: bool = True,
               video: tuple[int, int, int] | None = None, offload: bool = False, token_file: str = "") -> ScoreModel:
    """A model directory as a ScoreModel: a diffusers pipeline (model_index.json) making videos of `video` (frames,
    height, width), its weights kept in CPU memory with `offload`; otherwise our checkpoint, replaying its forward
    from CUDA graphs on CUDA with `cuda_graphs`. An http(s):// URL is a model served by `video-adapter serve-prior`
    there (its token from `token_file`, else $VIDEO_ADAPTER_PRIOR_TOKEN); it computes where it is served."""
    if is_url(path):
        return RemoteScoreModel(str(path), read_token(token_file))
    if (Path(path) / "model_index.json").is_file():
        from ..models.diffusers import load_diffusers_prior

        if video is None:
            raise ValueError("a diffusers prior needs the video size: pass --video-size FRAMESxHEIGHTxWIDTH (an "
                             "adapter trained with --space gives it)")
        return load_diffusers_prior(path, *video, device, dtype, offload=offload)
    return load_score_model(path, device, dtype, cuda_graphs=cuda_graphs and device.type == "cuda")


def load_models(paths: dict[str, str], placements: dict[str, tuple[torch.device, torch.dtype]],
                **options) -> dict[str, ScoreModel]:
    """The models of a run by role ("small", "prior"), each at its (device, dtype) placement (`load_model`'s keyword
    `options` apply to both); a pair is checked compatible and its parameter ratio printed."""
    models = {role: load_model(path, *placements[role], **options) for role, path in paths.items()}
    if len(models) == 2:
        check_compatible(models["small"], models["prior"])
        print(parameter_ratio(models["small"], models["prior"]))
    return models


def parameter_ratio(small: ScoreModel, prior: ScoreModel) -> str:
    """The line that mirrors the paper's Table 1 parameter column."""
    a, b = small.spec.parameters, prior.spec.parameters
    return (f"adapter {human_count(a)} parameters, prior {human_count(b)}: adapter/prior = {100 * a / b:.2f}% "
            "(paper: 70M of 5.6B = 1.25% on Bridge)")


def parse_video_size(text: str) -> tuple[int, int, int]:
    """--video-size FRAMESxHEIGHTxWIDTH -> (frames, height, width)."""
    try:
        frames, height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--video-size must be FRAMESxHEIGHTxWIDTH, e.g. 16x256x256, not {text!r}") from None
    return frames, height, width


def trained_video_size(model_dir: str | Path) -> tuple[int, int, int] | None:
    """(frames, height, width) of the videos a model was trained on, as its config.json records them; a checkpoint
    written before that record gives them only if it was trained in a latent space (its train_config's --model, over
    its preset's)."""
    config = read_config(model_dir)
    if "video" in config:
        return tuple(config["video"][k] for k in ("frames", "height", "width"))
    train_config = config.get("train_config", {})
    if not train_config.get("space"):
        return None
    model, preset = train_config.get("model", {}), PRESETS[train_config.get("preset", "S")]
    return tuple(model.get(k, getattr(preset, k)) for k in ("frames", "height", "width"))
