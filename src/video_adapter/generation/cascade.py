"""A spatial super-resolution cascade (Imagen Video): a base-resolution sample carried up through SR stages.

Each stage is a SpaceTimeUNet with `lowres_factor` k: it denoises a video k times the size of its input, conditioned
on that input upsampled bicubically and concatenated on channels (`Cond.lowres`), and on the same prompt. Video
Adapter's composition happens only at the base resolution, as in the paper: the stages see the composed sample as
their input, never the adapter or the prior.

A residual stage (`lowres_residual` s > 0, the sr-* presets; SRDiff, Li et al. 2022) denoises the detail its input
leaves out, (video - input) / s, and its output is input + s * detail: it learns only what bicubic misses, and its
errors land on that detail (scaled by s), not on the whole frame. Stages without it denoise the video itself.

A stage trained with noise conditioning augmentation (`lowres_aug` > 0; Ho et al. 2021, "Cascaded Diffusion Models")
gets its input noised to one fixed level, `aug_level` (a cosine time; DEFAULT_AUG_LEVEL), with that level as its
`Cond.lowres_level`: the noise hides the base sample's artefacts, which the stage never saw in training. A stage
without it gets the clean input.

    stages = load_stages(["runs/sr-48x80/checkpoint", "runs/sr-96x160/checkpoint"], device)
    videos = upscale(stages, base_videos, prompts, SamplingSettings("ddim", 50, guidance=1.0), device)[-1]

`sample`, `evaluate` (its qualitative grid) and `app` take `--cascade STAGE ...`, `--cascade-aug-level`,
`--cascade-start` (below 1: each stage starts from its upsampled input, SDEdit, rather than from pure noise) and
`--cascade-guidance` (the stages' own text guidance, apart from the base's: DEFAULT_STAGE_GUIDANCE).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from ..maths.composition import Conds
from ..maths.conditioning import Cond, augment_lowres, resize_video, video_from_residual
from ..models.score_model import ModelSpec, ScoreModel
from .generate import SamplingSettings, generate
from .loading import load_model
from .routing import encode_prompts


# The noise augmentation level at sampling: a small fixed one, cosine time 0.2 (the input kept at alpha 0.95, noise
# sigma 0.31, log-SNR 2.25). Cascaded Diffusion Models chooses it by a sweep, as --cascade-aug-level can; the sr-*
# presets train on levels in [0, 0.5]. Not yet tuned on our stages.
DEFAULT_AUG_LEVEL = 0.2
# the stages' text guidance alpha: none, as scripts/sr_eval.py measures them; the base's alpha is for the caption's
# pull on a whole video, while a stage's input already fixes what the video shows
DEFAULT_STAGE_GUIDANCE = 1.0


def check_stages(stages: list[ScoreModel], base: tuple[int, int], aug_level: float = DEFAULT_AUG_LEVEL,
                 start: float = 1.0, guidance: float = DEFAULT_STAGE_GUIDANCE) -> None:
    """Each stage must be an SR model whose input size is the previous output's, `aug_level` within the levels of
    every stage trained with noise augmentation, `start` a cosine time in (0, 1] and `guidance` finite: an error
    naming the stage if not."""
    if not math.isfinite(guidance):
        raise ValueError(f"--cascade-guidance must be finite (1: no guidance), got {guidance}")
    if not (math.isfinite(aug_level) and 0.0 <= aug_level <= 1.0):
        raise ValueError(f"--cascade-aug-level is a cosine time in [0, 1], got {aug_level}")
    if not 0.0 < start <= 1.0:
        raise ValueError(f"--cascade-start is a cosine time in (0, 1] (1: from pure noise), got {start}")
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
        if spec.lowres_aug and aug_level > spec.lowres_aug:
            raise ValueError(f"stage {i + 1} was trained on noise augmentation levels up to {spec.lowres_aug:g}; "
                             f"--cascade-aug-level {aug_level:g} lies beyond them: pass one of at most "
                             f"{spec.lowres_aug:g}")
        height, width = spec.height, spec.width


def load_stages(paths: list[str], device: torch.device, dtype: torch.dtype = torch.float32) -> list[ScoreModel]:
    """The SR stage checkpoints, in order, on `device`."""
    return [load_model(path, device, dtype) for path in paths]


def load_cascade(paths: list[str], base: ModelSpec, device: torch.device, dtype: torch.dtype = torch.float32,
                 aug_level: float = DEFAULT_AUG_LEVEL, start: float = 1.0,
                 guidance: float = DEFAULT_STAGE_GUIDANCE) -> list[ScoreModel]:
    """The stages of `--cascade` for samples of a base model of spec `base`, checked (`check_stages`) before
    anything is sampled; [] for no paths."""
    if not paths:
        return []
    if base.space != "pixels":
        raise ValueError(f"--cascade upsamples pixel videos; these models work in {base.space}: drop --cascade")
    stages = load_stages(list(paths), device, dtype)
    check_stages(stages, (base.height, base.width), aug_level, start, guidance)
    return stages


def zoom_after(stages: list[ScoreModel], zoom: int) -> int:
    """The nearest-neighbour zoom that shows the cascade's output about as large as `zoom` shows a base sample
    (at least 1): a 24x40 sample zoomed 4x and its 48x80 upscale zoomed 2x are shown at one size."""
    return max(1, zoom // math.prod(stage.spec.lowres_factor for stage in stages))


def augmentation_noise(seed: int, stage: int, shape: tuple[int, ...]) -> Tensor:
    """The noise a stage's input is augmented with: drawn on the CPU from (seed, stage), a stream apart from the
    sampler's (its initial noise comes from `seed` alone, with this very shape)."""
    key = np.random.SeedSequence((seed, stage, 1)).generate_state(1, np.uint64)[0]
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(key)))


def upscale(stages: list[ScoreModel], videos: Tensor, prompts: list[str], settings: SamplingSettings,
            device: torch.device, encoders: dict | None = None, aug_level: float = DEFAULT_AUG_LEVEL,
            start: float = 1.0) -> list[Tensor]:
    """`videos` [B, C, F, h, w] in [-1, 1] (base samples for `prompts`) through every stage: each stage's output,
    [B, C, F, H, W] float32 on `device`, the last the largest. Every stage samples from `settings.seed` with its own
    classifier-free guidance on the text (the low-resolution input stays in the null condition); a stage trained with
    noise augmentation gets its input noised to `aug_level` (`augment_lowres`), once, for every step and both
    guidance branches. `start` < 1 (a cosine time) starts each stage from its clean upsampled input diffused to that
    level instead of pure noise (SDEdit): the input's layout is kept and only the finer detail is sampled."""
    if len(prompts) != len(videos):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts; pass the prompt of each video")
    check_stages(stages, tuple(videos.shape[-2:]), aug_level, start)
    outputs, current = [], videos.to(device).float()
    for index, stage in enumerate(stages):
        models = {"small": stage}
        text = encode_prompts(models, prompts, device, encoders)["small"]
        frames = current.shape[2]
        if frames != stage.spec.frames:
            raise ValueError(f"the videos have {frames} frames, the stage takes {stage.spec.frames}")
        lowres = resize_video(current, (stage.spec.height, stage.spec.width), "bicubic").clamp(-1, 1)
        given, level = lowres, None
        if stage.spec.lowres_aug:
            level = torch.full((len(lowres),), float(aug_level), device=device)
            given = augment_lowres(lowres, level, augmentation_noise(settings.seed, index, tuple(lowres.shape)))
        current = sample_stage(stage, text.to_cond(lowres=given, lowres_level=level), lowres, settings, device,
                               start)
        outputs.append(current)
    return outputs


def sample_stage(stage: ScoreModel, cond: Cond, lowres: Tensor, settings: SamplingSettings, device: torch.device,
                 start: float = 1.0) -> Tensor:
    """One stage's videos [B, C, F, H, W] in [-1, 1] for `cond` (the text and the stage's input as it sees it,
    noise-augmented or not), given that input's clean upsampled form `lowres`. A residual stage (lowres_residual > 0)
    samples the detail, its x0 unclipped (the detail's range depends on `lowres`), and puts it back on `lowres`;
    `start` < 1 starts it from no detail at all diffused to that level. Any other stage samples the video itself,
    from `lowres` diffused to `start` when below 1 (SDEdit)."""
    scale = stage.spec.lowres_residual
    init = None if start >= 1.0 else torch.zeros_like(lowres) if scale else lowres
    if scale:
        settings = replace(settings, clip_x0=0.0, dynamic_threshold=0.0)
    made = generate({"small": stage}, Conds(small=cond, prior=Cond()), ("adapter",), settings, device,
                    progress=False, init=init, t_start=start).videos["adapter"]
    return video_from_residual(made, lowres, scale) if scale else made


def upscale_rows(stages: list[ScoreModel], rows: dict[str, Tensor], prompts: list[str], settings: SamplingSettings,
                 device: torch.device, aug_level: float = DEFAULT_AUG_LEVEL,
                 encoders: dict | None = None, start: float = 1.0) -> dict[str, Tensor]:
    """Each row of videos [N, C, F, h, w] (a grid's row, the videos of `prompts`) through the cascade, one row per
    call so a row's upscale is independent of the others: the last stage's output, on the CPU."""
    return {name: upscale(stages, videos, prompts, settings, device, encoders, aug_level, start)[-1].cpu()
            for name, videos in rows.items()}
