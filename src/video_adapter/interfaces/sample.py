"""`video-adapter sample`: from checkpoints and user inputs (prompts, a first-frame image, an edge video) to a video
file, for one model alone, or a small adapter composed with a frozen prior (Video Adapter): by default the recipe
(CFG Mix from log-SNR -2 up, docs/analysis.md), Algorithm 1 with --mode composed, and the paper's other baselines.

The command's options are `SampleConfig`; loading, routing the conditions and sampling are `generation`'s. The Python
pipeline (`pipeline.VideoAdapterPipeline`) runs the same steps: `load_sample_models`, `sample_conds`, `generate` and
`to_pixels`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

from torch import Tensor

from ..common.devices import DTYPES, resolve_device, resolve_dtype
from ..common.files import make_out_dir
from ..data.dataset import center_crop_resize
from ..data.video_io import from_uint8, is_video_path, read_image, read_video, write_grid
from ..generation.cascade import DEFAULT_AUG_LEVEL, DEFAULT_STAGE_GUIDANCE, load_cascade, upscale_rows, zoom_after
from ..generation.generate import COMPARE_ROWS, SamplingSettings, check_guided, generate
from ..generation.loading import load_models, parse_video_size, trained_video_size
from ..generation.routing import FLAGS, model_conds, route_conditions
from ..maths.composition import (DEFAULT_COMPOSITION, DEFAULT_MIX, DEFAULT_MIX_MIN_LOGSNR, DEFAULT_MODE, MODES,
                                 PAPER_CUTOFF_LOGSNR, Conds, PriorStrength)
from ..maths.conditioning import CONDITIONS, sobel_x
from ..maths.guidance import DEFAULT_GUIDANCE
from ..maths.mcmc import MCMCConfig
from ..models.score_model import ModelSpec, ScoreModel


# The settings only some methods read: Algorithm 1's (composed, inverse) and CFG Mix's.
ALGORITHM_1_FLAGS = ("prior_strength", "strength_decay", "strength_end", "cutoff_logsnr", "min_logsnr", "composition",
                     "compose_in")
CFG_MIX_FLAGS = ("mix", "mix_min_logsnr")
READS = {"composed": ALGORITHM_1_FLAGS, "inverse": ALGORITHM_1_FLAGS, "cfg-mix": CFG_MIX_FLAGS}


def unread(methods: tuple[str, ...], given: list[str]) -> list[str]:
    """The settings of `given` (those a user set) that none of `methods` reads: an error for the command and the
    pipeline alike, rather than a setting silently ignored."""
    read = {flag for method in methods for flag in READS.get(method, ())}
    return [flag for flag in given if flag not in read]


@dataclass(frozen=True)
class SampleConfig:
    adapter: str = ""                     # checkpoint directory of the small domain model
    prior: str = ""                       # the frozen pretrained prior: a model directory, or http://HOST:PORT
    prior_token_file: str = ""            # token of a prior served over HTTP (else $VIDEO_ADAPTER_PRIOR_TOKEN)
    mode: str = "auto"                    # cfg-mix | composed | adapter | prior | inverse (auto: cfg-mix with both)
    prompt: tuple[str, ...] = ()          # one or more text prompts
    prior_prompt_suffix: str = ""         # appended to each prompt for the prior only (e.g. ", at night")
    first_frame: str = ""                 # image or video whose first frame conditions every sample
    edges_from: str = ""                  # video whose per-frame Sobel x-gradient conditions every sample
    partial_conditions: bool = False      # give a condition only to the models that take it, instead of an error
    num: int = 1                          # samples per prompt
    prior_strength: float = 0.1           # gamma (paper: 0.1 Bridge, 0.2 Ego4D, 0.4 animation)
    allow_negative_strength: bool = False  # accept a negative gamma, which samples away from the prior, on purpose
    strength_decay: str = "constant"      # constant | linear: gamma decays to --strength-end at the cutoff
    strength_end: float = 0.0             # prior strength reached at the cutoff with --strength-decay linear
    cutoff_logsnr: float = PAPER_CUTOFF_LOGSNR  # compose only below this log-SNR (paper: all but the last 100 steps)
    min_logsnr: float = -math.inf         # ... and only at or above this one (a band of noise levels; -inf: none)
    composition: str = DEFAULT_COMPOSITION  # normalized: Algorithm 1 with exponents summing to 1 | paper: as written
    compose_in: str = "eps"               # combine the models' eps (paper), x0 or v predictions
    mix: float = DEFAULT_MIX              # cfg-mix: weight w of the prior's guided prediction (0: adapter, 1: prior)
    mix_min_logsnr: float = DEFAULT_MIX_MIN_LOGSNR  # cfg-mix: mixes from this log-SNR up (-inf: every level)
    guidance: float = DEFAULT_GUIDANCE    # classifier-free guidance alpha (1: none; composed: sec 3.3, Algorithm 1)
    guided_conditions: tuple[str, ...] = CONDITIONS  # what guidance drops in its null pass (text: keep edges in both)
    sampler: str = "ddpm"                 # ddpm | ddim | dpmpp-2m | heun
    steps: int = 1000                     # denoising steps (paper: 1000)
    eta: float = 0.0                      # DDIM stochasticity (ddim only)
    mcmc: str = ""                        # MCMC between noise levels: ula | uhmc (mala | hmc need energy models)
    mcmc_steps: int = 2                   # MCMC steps K at every noise level
    mcmc_step_size: float = 0.1           # MCMC step delta = this * sigma^2 at each noise level
    clip_x0: float = 1.0                  # clip each step's x0 prediction to [-v, v] (Imagen; 0: off; pixels only)
    dynamic_threshold: float = 0.0        # Imagen's dynamic thresholding at this quantile of |x0| (e.g. 0.995; 0: off)
    video_size: str = ""                  # FRAMESxHEIGHTxWIDTH of a diffusers prior's videos ("": the adapter's)
    seed: int = 0                         # samples are a deterministic function of the seed
    compare: bool = False                 # one grid of prior / adapter / cfg-mix / composed rows, the same seeds
    out: str = "outputs/sample.gif"       # .gif or .mp4: one labelled grid of all samples
    device: str = "auto"                  # auto | cpu | cuda | cuda:N, for the adapter and the sampler state
    prior_device: str = ""                # device of the prior ("": same as --device)
    dtype: str = "auto"                   # auto | float32 | bfloat16 | float16 (auto: bfloat16 on CUDA) for the adapter
    prior_dtype: str = ""                 # precision of the prior ("": same as --dtype)
    prior_offload: bool = False           # a diffusers prior's weights stay in CPU memory, moved in per layer
    cuda_graphs: bool = True              # replay each model's forward from a CUDA graph (CUDA only; no CPU effect)
    fps: int = 8                          # frames per second of the written video
    upscale: int = 4                      # nearest-neighbour zoom of 24x40 videos (less after --cascade)
    cascade: tuple[str, ...] = ()         # super-resolution stage checkpoints, smallest first, applied to every sample
    cascade_aug_level: float = DEFAULT_AUG_LEVEL  # noise augmentation level (cosine time) of the stages trained with it
    cascade_start: float = 1.0            # each stage from its upsampled input noised to this time (1: pure noise)
    cascade_guidance: float = DEFAULT_STAGE_GUIDANCE  # the stages' text guidance alpha, apart from --guidance

    @property
    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return DEFAULT_MODE if self.adapter and self.prior else "prior" if self.prior else "adapter"

    def methods(self) -> tuple[str, ...]:
        """The methods this run samples: the compare rows, or its mode."""
        return COMPARE_ROWS if self.compare else (self.resolved_mode,)

    def roles(self) -> tuple[str, ...]:
        """The models this run samples with."""
        if self.compare:
            return ("small", "prior")
        return {"adapter": ("small",), "prior": ("prior",)}.get(self.resolved_mode, ("small", "prior"))

    def settings(self) -> SamplingSettings:
        """The sampling settings of this run (an error for a bad prior strength schedule or MCMC setting)."""
        strength = PriorStrength(self.prior_strength, self.cutoff_logsnr, self.strength_decay, self.strength_end,
                                 self.min_logsnr)
        mcmc = MCMCConfig(kind=self.mcmc, steps=self.mcmc_steps, step_size=self.mcmc_step_size) if self.mcmc else None
        return SamplingSettings(sampler=self.sampler, steps=self.steps, eta=self.eta, guidance=self.guidance,
                                strength=strength, mix=self.mix, mix_min_logsnr=self.mix_min_logsnr,
                                guided_conditions=self.guided_conditions, composition=self.composition,
                                compose_in=self.compose_in, mcmc=mcmc,
                                clip_x0=self.clip_x0, dynamic_threshold=self.dynamic_threshold, seed=self.seed)

    def validate(self) -> None:
        """Every problem that can be seen without loading anything."""
        if not self.adapter and not self.prior:
            raise ValueError("pass --adapter DIR (the small model), --prior DIR (the pretrained prior), or both")
        if self.mode != "auto" and self.mode not in MODES:
            raise ValueError(f"unknown --mode {self.mode!r}; choose one of auto, {', '.join(MODES)}")
        need = {"small": ("--adapter", self.adapter), "prior": ("--prior", self.prior)}
        what = "--compare" if self.compare else f"--mode {self.resolved_mode}"
        for role in self.roles():
            flag, value = need[role]
            if not value:
                raise ValueError(f"{what} needs {flag} DIR")
        if not self.prompt:
            raise ValueError("pass at least one --prompt")
        if self.prior_prompt_suffix and "prior" not in self.roles():
            raise ValueError(f"--prior-prompt-suffix styles the prior's prompts, but {what} samples without the "
                             "prior: drop it, or sample with --prior DIR (--mode cfg-mix or composed)")
        if self.cascade and self.video_size:
            raise ValueError("--cascade upsamples pixel-space samples; a diffusers prior's (--video-size) are decoded "
                             "at their own size: drop --cascade")
        if Path(self.out).suffix.lower() not in (".gif", ".mp4"):
            raise ValueError(f"--out must end in .gif or .mp4, not {self.out!r}")
        for name in ("num", "fps", "upscale"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("dtype", "prior_dtype"):
            if getattr(self, name) not in ("", "auto", *DTYPES) or (name == "dtype" and not self.dtype):
                raise ValueError(f"--{name.replace('_', '-')} must be auto, {', '.join(DTYPES)}")
        for flag in self.unread_flags():
            hint = "; the default mode with both models is cfg-mix (the recipe): pass --mode composed for Algorithm 1" \
                if self.mode == "auto" and flag not in CFG_MIX_FLAGS else ""
            raise ValueError(f"--{flag.replace('_', '-')} is set, but --mode {self.resolved_mode} does not use it"
                             f"{hint}")
        self.settings().validate(self.allow_negative_strength)
        pixels = {"first_frame": self.first_frame, "edges": self.edges_from}
        given = {"text"} | {name for name, path in pixels.items() if path}
        check_guided(self.guided_conditions, given)

    def unread_flags(self) -> list[str]:
        """The settings given (other than their defaults) that none of this run's methods reads: an error, rather
        than a flag silently ignored (e.g. --prior-strength, Algorithm 1's gamma, with the default cfg-mix)."""
        defaults = {f.name: f.default for f in fields(self)}
        return unread(self.methods(), [flag for flag in ALGORITHM_1_FLAGS + CFG_MIX_FLAGS
                                       if getattr(self, flag) != defaults[flag]])

    def video(self) -> tuple[int, int, int] | None:
        """(frames, height, width) of a diffusers prior's videos: --video-size, else the adapter's training size."""
        if self.video_size:
            return parse_video_size(self.video_size)
        return trained_video_size(self.adapter) if self.adapter else None


def read_frames(path: str | Path, frames: int) -> Tensor:
    """An image or video file -> [C, F, h, w] in [-1, 1] at its own size (an image is one frame)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return from_uint8(read_video(path, max_frames=frames) if is_video_path(path) else read_image(path)[None])


def fit_frames(video: Tensor, size: tuple[int, int], source: str | Path) -> Tensor:
    """[C, F, h, w] -> [C, F, *size]: centre-cropped to the size's aspect and resized, with a warning naming `source`
    when that enlarges it more than 2x."""
    (h, w), (th, tw) = video.shape[-2:], size
    if (factor := max(th / h, tw / w)) > 2:  # the centre crop keeps the target's aspect, so this is its enlargement
        warnings.warn(f"{source} is {h}x{w} pixels (height x width): it is enlarged {factor:.1f}x to the model's "
                      f"{th}x{tw}, so it conditions on a blurred image; give one of at least {th}x{tw}", stacklevel=3)
    return center_crop_resize(video, size)


def load_frames(path: str | Path, frames: int, size: tuple[int, int]) -> Tensor:
    """An image or video file -> [C, F, H, W] in [-1, 1] at the model's size (an image is one frame)."""
    return fit_frames(read_frames(path, frames), size, path)


def pixel_conditions(spec: ModelSpec, first_frame: str | Tensor | None, edges_from: str, codec=None,
                     video: tuple[int, int, int] | None = None) -> dict[str, Tensor]:
    """The requested pixel conditions at the model's size: first_frame [C, H, W], edges [C, F, H, W]. The first frame
    is a file (an image, or a video's first frame) or a frame [C, h, w] in [-1, 1] already read, of any size ("" or
    None: none). In a latent space (`codec`, the video size `video`) it is fitted to the video's size and encoded,
    and kept as pixels too (first_frame_pixels)."""
    out = {}
    if codec is not None and edges_from:
        raise ValueError("--edges-from is a pixel-space condition; latent-space models do not take it")
    if isinstance(first_frame, (str, Path)):
        source, frame = first_frame, read_frames(first_frame, 1) if first_frame else None
    else:
        source, frame = "the first frame", None if first_frame is None else first_frame[:, None]
    if frame is not None and codec is not None:
        frame = fit_frames(frame, video[1:], source)
        out["first_frame"] = codec.encode(frame[None]).float().cpu()[0, :, 0]
        out["first_frame_pixels"] = frame[:, 0]  # for an image-to-video prior, which encodes it its own way
    elif frame is not None:
        out["first_frame"] = fit_frames(frame, (spec.height, spec.width), source)[:, 0]
    if edges_from:
        video = load_frames(edges_from, spec.frames, (spec.height, spec.width))
        if video.shape[1] < spec.frames:
            raise ValueError(f"--edges-from {edges_from} has {video.shape[1]} frames; the model needs {spec.frames}")
        out["edges"] = sobel_x(video[None])[0]
    return out


def load_sample_models(cfg: SampleConfig) -> dict[str, ScoreModel]:
    """The models of a run by role ("small", "prior"), each at its placement (--device and --dtype, --prior-device
    and --prior-dtype), a pair checked compatible; a diffusers prior makes videos of `cfg.video()`."""
    device = resolve_device(cfg.device)
    prior_device = resolve_device(cfg.prior_device) if cfg.prior_device else device
    placements = {"small": (device, resolve_dtype(cfg.dtype, device)),
                  "prior": (prior_device, resolve_dtype(cfg.prior_dtype or cfg.dtype, prior_device))}
    paths = {role: path for role, path in (("small", cfg.adapter), ("prior", cfg.prior)) if role in cfg.roles()}
    return load_models(paths, placements, cuda_graphs=cfg.cuda_graphs, video=cfg.video(), offload=cfg.prior_offload,
                       token_file=cfg.prior_token_file)


def check_decodable(models: dict[str, ScoreModel], flags: dict[str, str] = FLAGS) -> None:
    """Models in a latent space need the prior whose VAE decodes their samples (`flags["prior"]` names it)."""
    spec = next(iter(models.values())).spec
    if spec.space != "pixels" and getattr(models.get("prior"), "codec", None) is None:
        raise ValueError(f"these models work in {spec.space}; pass {flags['prior']} (the diffusers pipeline whose VAE "
                         "decodes them)")


def sample_conds(models: dict[str, ScoreModel], prompts: list[str], first_frame: str | Tensor | None,
                 edges_from: str, partial: bool, video: tuple[int, int, int] | None, device,
                 flags: dict[str, str] = FLAGS, prior_suffix: str = "") -> Conds:
    """The `Conds` of a run, one row per prompt: the conditions given (a first frame as `pixel_conditions` takes it,
    an edge video's file) routed to the models that take them, each in its own form; the prior's prompts end in
    `prior_suffix`. Errors name inputs by `flags`, the command's flags by default."""
    has_frame = isinstance(first_frame, Tensor) or bool(first_frame)
    requested = {"text"} | {name for name, given in (("first_frame", has_frame), ("edges", edges_from)) if given}
    routes = route_conditions(models, requested, partial, flags)
    check_decodable(models, flags)
    spec, codec = next(iter(models.values())).spec, getattr(models.get("prior"), "codec", None)
    latent = spec.space != "pixels"
    pixels = pixel_conditions(spec, first_frame, edges_from, codec, video if latent else None)
    return model_conds(models, prompts, pixels, routes, device, prior_suffix=prior_suffix)


def to_pixels(models: dict[str, ScoreModel], videos: Tensor) -> Tensor:
    """Samples as pixel videos [B, 3, F, H, W] in [-1, 1] on the CPU: latents are decoded by the prior's VAE."""
    if next(iter(models.values())).spec.space == "pixels":
        return videos.cpu()
    return models["prior"].codec.decode(videos).float().cpu()


def sample_to_files(cfg: SampleConfig) -> list[Path]:
    cfg.validate()
    if any(not p.strip() for p in cfg.prompt):
        warnings.warn("an empty --prompt gives the models no text: its samples are those of the unconditional model "
                      "(no subject, no action); write what the video should show", stacklevel=2)
    out = Path(cfg.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; pass a file path ending in .gif or .mp4")
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.steps > 100:  # the paper's 1000 DDPM steps, the default, are a GPU budget
        print(f"note: {cfg.steps} {cfg.sampler} steps on the CPU take tens of minutes for the shipped prior; "
              "--sampler dpmpp-2m --steps 25 takes about a minute")
    models = load_sample_models(cfg)
    spec = next(iter(models.values())).spec
    stages = load_cascade(cfg.cascade, spec, device, resolve_dtype(cfg.dtype, device),
                          cfg.cascade_aug_level, cfg.cascade_start, cfg.cascade_guidance)  # before any sampling
    prompts = [p for p in cfg.prompt for _ in range(cfg.num)]
    conds = sample_conds(models, prompts, cfg.first_frame, cfg.edges_from, cfg.partial_conditions, cfg.video(), device,
                         prior_suffix=cfg.prior_prompt_suffix)  # labels (and the cascade's text) keep the prompts
    make_out_dir(out.parent)
    videos = generate(models, conds, cfg.methods(), cfg.settings(), device).videos
    rows = {method: to_pixels(models, videos[method]) for method in cfg.methods()}
    if stages:  # the composition ran at the base size; the stages only upsample its samples (the paper's way)
        rows = upscale_rows(stages, rows, prompts, replace(cfg.settings(), guidance=cfg.cascade_guidance), device,
                            cfg.cascade_aug_level, start=cfg.cascade_start)
    zoom, rows = zoom_after(stages, cfg.upscale), list(rows.values())  # shown about as large as a base sample
    if cfg.compare:
        return write_grid(out, [v for row in rows for v in row], labels=prompts * len(rows), nrow=len(prompts),
                          row_labels=list(COMPARE_ROWS), fps=cfg.fps, upscale=zoom, formats=("gif", "mp4"))
    return write_grid(out, list(rows[0]), labels=prompts, fps=cfg.fps, upscale=zoom)
