"""A spatial super-resolution cascade (Imagen Video): a base-resolution sample carried up through SR stages.

Each stage is a SpaceTimeUNet with `lowres_factor` k: it denoises a video k times the size of its input, conditioned
on that input upsampled bicubically and concatenated on channels (`Cond.lowres`), and on the same prompt. Video
Adapter's composition happens only at the base resolution, as in the paper: the stages see the composed sample as
their input, never the adapter or the prior.

    stages = load_stages(["runs/sr-48x80/checkpoint", "runs/sr-96x160/checkpoint"], device)
    videos = upscale(stages, base_videos, prompts, SamplingSettings(sampler="ddim", steps=50), device)[-1]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..maths.composition import Conds
from ..maths.conditioning import Cond, resize_video
from ..models.score_model import ScoreModel
from .generate import SamplingSettings, generate
from .loading import load_model
from .routing import encode_prompts


def check_stages(stages: list[ScoreModel], base: tuple[int, int]) -> None:
    """Each stage must be an SR model whose input size is the previous output's: an error naming the stage if not."""
    height, width = base
    for i, stage in enumerate(stages):
        spec = stage.spec
        if spec.lowres_factor < 2:
            raise ValueError(f"stage {i + 1} is not a super-resolution model (lowres_factor {spec.lowres_factor}); "
                             "train one with a --preset sr-* (or --model lowres_factor=K)")
        if (height * spec.lowres_factor, width * spec.lowres_factor) != (spec.height, spec.width):
            raise ValueError(f"stage {i + 1} makes {spec.height}x{spec.width} from "
                             f"{spec.height // spec.lowres_factor}x{spec.width // spec.lowres_factor}, but its input "
                             f"is {height}x{width}; order the stages from the smallest, each from the last one's size")
        height, width = spec.height, spec.width


def load_stages(paths: list[str], device: torch.device, dtype: torch.dtype = torch.float32) -> list[ScoreModel]:
    """The SR stage checkpoints, in order, on `device`."""
    return [load_model(path, device, dtype) for path in paths]


def upscale(stages: list[ScoreModel], videos: Tensor, prompts: list[str], settings: SamplingSettings,
            device: torch.device, encoders: dict | None = None) -> list[Tensor]:
    """`videos` [B, C, F, h, w] in [-1, 1] (base samples for `prompts`) through every stage: each stage's output,
    [B, C, F, H, W] float32 on `device`, the last the largest. Every stage samples from `settings.seed` with its own
    classifier-free guidance on the text (the low-resolution input stays in the null condition)."""
    if len(prompts) != len(videos):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts; pass the prompt of each video")
    check_stages(stages, tuple(videos.shape[-2:]))
    outputs, current = [], videos.to(device).float()
    for stage in stages:
        models = {"small": stage}
        text = encode_prompts(models, prompts, device, encoders)["small"]
        frames = current.shape[2]
        if frames != stage.spec.frames:
            raise ValueError(f"the videos have {frames} frames, the stage takes {stage.spec.frames}")
        lowres = resize_video(current, (stage.spec.height, stage.spec.width), "bicubic").clamp(-1, 1)
        cond = text.to_cond(lowres=lowres)
        current = generate(models, Conds(small=cond, prior=Cond()), ("adapter",), settings, device,
                           progress=False).videos["adapter"]
        outputs.append(current)
    return outputs
