"""From checkpoints and user inputs (prompts, a first-frame image, an edge video) to video files: one model alone, or
a small adapter composed with a frozen prior (Video Adapter) and the paper's baselines."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..models.checkpoint import read_config
from ..maths.composition import (
    COMPOSE_IN,
    COMPOSITIONS,
    DEFAULT_COMPOSITION,
    MODES,
    PAPER_CUTOFF_LOGSNR,
    Conds,
    PriorStrength,
    mode_fn,
)
from ..maths.conditioning import Cond, sobel_x
from ..data.dataset import center_crop_resize
from ..maths.guidance import cfg as cfg_guidance
from ..maths.guidance import clip_denoised, denoised_range
from ..maths.mcmc import LangevinCorrector, MCMCConfig
from ..maths.sampling import SAMPLERS, sample
from ..models.score_model import ModelSpec, NativeScoreModel, ScoreModel, check_compatible, load_score_model
from ..models.text import TextEmbedding, load_text_encoder
from ..models.unet import SpaceTimeUNet
from ..data.video_io import from_uint8, is_video_path, read_image, read_video, write_grid

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
COMPARE_ROWS = ("prior", "adapter", "composed")  # the paper's Figures 7 and 8


@dataclass(frozen=True)
class SampleConfig:
    adapter: str = ""                     # checkpoint directory of the small domain model
    prior: str = ""                       # checkpoint directory of the frozen pretrained prior
    mode: str = "auto"                    # composed | adapter | prior | cfg-mix | inverse (auto: composed with both)
    prompt: tuple[str, ...] = ()          # one or more text prompts
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
    mix: float = 0.5                      # cfg-mix: weight w of the prior's guided prediction (0: adapter, 1: prior)
    guidance: float = 5.0                 # classifier-free guidance alpha (1: none; composed: sec 3.3, Algorithm 1)
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
    compare: bool = False                 # one grid of prior / adapter / composed rows from the same seeds (gif + mp4)
    out: str = "outputs/sample.gif"       # .gif or .mp4: one labelled grid of all samples
    device: str = "auto"                  # auto | cpu | cuda | cuda:N, for the adapter and the sampler state
    prior_device: str = ""                # device of the prior ("": same as --device)
    dtype: str = "auto"                   # auto | float32 | bfloat16 | float16 (auto: bfloat16 on CUDA) for the adapter
    prior_dtype: str = ""                 # precision of the prior ("": same as --dtype)
    prior_offload: bool = False           # a diffusers prior's weights stay in CPU memory, moved in per layer
    cuda_graphs: bool = True              # replay each model's forward from a CUDA graph (CUDA only; no CPU effect)
    fps: int = 8                          # frames per second of the written video
    upscale: int = 4                      # nearest-neighbour zoom, so 24x40 videos are watchable

    @property
    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "composed" if self.adapter and self.prior else "prior" if self.prior else "adapter"

    def roles(self) -> tuple[str, ...]:
        """The models this run samples with."""
        if self.compare:
            return ("small", "prior")
        return {"adapter": ("small",), "prior": ("prior",)}.get(self.resolved_mode, ("small", "prior"))

    def strength(self) -> PriorStrength:
        return PriorStrength(self.prior_strength, self.cutoff_logsnr, self.strength_decay, self.strength_end,
                             self.min_logsnr)

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
        if Path(self.out).suffix.lower() not in (".gif", ".mp4"):
            raise ValueError(f"--out must end in .gif or .mp4, not {self.out!r}")
        for name in ("num", "fps", "upscale"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("dtype", "prior_dtype"):
            if getattr(self, name) not in ("", "auto", *DTYPES) or (name == "dtype" and not self.dtype):
                raise ValueError(f"--{name.replace('_', '-')} must be auto, {', '.join(DTYPES)}")
        self.validate_sampling()

    def validate_sampling(self) -> None:
        """The sampling settings alone (sampler, guidance, composition, x0 handling, MCMC), also for evaluate."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not math.isfinite(self.guidance) or not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"--guidance must be finite and --mix in [0, 1], got {self.guidance} and {self.mix}")
        self.strength()
        strengths = {"--prior-strength": self.prior_strength}
        if self.strength_decay == "linear":
            strengths["--strength-end"] = self.strength_end
        negative = [(flag, value) for flag, value in strengths.items() if value < 0]
        if negative and not self.allow_negative_strength:
            flag, value = negative[0]
            raise ValueError(f"{flag} {value} is negative: a negative gamma samples away from the prior, not toward "
                             f"it; pass a value of at least 0, or --allow-negative-strength to do this on purpose")
        if self.composition not in COMPOSITIONS or self.compose_in not in COMPOSE_IN:
            raise ValueError(f"--composition must be one of {', '.join(COMPOSITIONS)} and --compose-in one of "
                             f"{', '.join(COMPOSE_IN)}; got {self.composition!r} and {self.compose_in!r}")
        if not 0 <= self.dynamic_threshold <= 1:
            raise ValueError(f"--dynamic-threshold is a quantile in (0, 1] (0: off), got {self.dynamic_threshold}")
        if self.mcmc:
            self.mcmc_config()
            if self.mcmc in ("mala", "hmc") and self.compose_in != "eps":
                raise ValueError(f"--mcmc {self.mcmc} composes energies, which have no x0 or v: use --compose-in eps")

    def mcmc_config(self) -> MCMCConfig:
        return MCMCConfig(kind=self.mcmc, steps=self.mcmc_steps, step_size=self.mcmc_step_size)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r} is not a device: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def load_frames(path: str | Path, frames: int, size: tuple[int, int]) -> Tensor:
    """An image or video file -> [C, F, H, W] in [-1, 1] at the model's size (an image is one frame)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    array = read_video(path, max_frames=frames) if is_video_path(path) else read_image(path)[None]
    (h, w), (th, tw) = array.shape[1:3], size
    if (factor := max(th / h, tw / w)) > 2:  # the centre crop keeps the target's aspect, so this is its enlargement
        warnings.warn(f"{path} is {h}x{w} pixels (height x width): it is enlarged {factor:.1f}x to the model's "
                      f"{th}x{tw}, so it conditions on a blurred image; give one of at least {th}x{tw}", stacklevel=2)
    return center_crop_resize(from_uint8(array), size)


def pixel_conditions(spec: ModelSpec, first_frame: str, edges_from: str, codec=None,
                     video: tuple[int, int, int] | None = None) -> dict[str, Tensor]:
    """The requested pixel conditions at the model's size: first_frame [C, H, W], edges [C, F, H, W]. In a latent
    space (`codec`, the video size `video`) the first frame is read at the video's size and encoded."""
    out = {}
    if codec is not None and edges_from:
        raise ValueError("--edges-from is a pixel-space condition; latent-space models do not take it")
    if first_frame and codec is not None:
        frame = load_frames(first_frame, 1, video[1:])
        out["first_frame"] = codec.encode(frame[None]).float().cpu()[0, :, 0]
    elif first_frame:
        out["first_frame"] = load_frames(first_frame, 1, (spec.height, spec.width))[:, 0]
    if edges_from:
        video = load_frames(edges_from, spec.frames, (spec.height, spec.width))
        if video.shape[1] < spec.frames:
            raise ValueError(f"--edges-from {edges_from} has {video.shape[1]} frames; the model needs {spec.frames}")
        out["edges"] = sobel_x(video[None])[0]
    return out


def route_conditions(models: dict[str, ScoreModel], requested: set[str], partial: bool) -> dict[str, set[str]]:
    """Which requested conditions each model receives; an error when a model lacks one (unless `partial`, where
    a condition goes to the models that take it) or when no model takes it."""
    names = {"small": "the adapter", "prior": "the prior"}
    flags = {"first_frame": "--first-frame", "edges": "--edges-from", "text": "--prompt"}
    routes = {}
    for role, model in models.items():
        lacking = sorted(requested - set(model.spec.conditions))
        if lacking and not partial:
            takes = ", ".join(model.spec.conditions) or "nothing"
            raise ValueError(f"{names[role]} does not take {' or '.join(lacking)} (it takes {takes}); drop "
                             f"{' '.join(flags[c] for c in lacking)}, or pass --partial-conditions to give it only "
                             "to the models that take it")
        routes[role] = requested & set(model.spec.conditions)
    for name in sorted(requested - set().union(*routes.values())):
        raise ValueError(f"no model in this run takes {name}; drop {flags[name]}")
    return routes


def encode_prompts(models: dict[str, ScoreModel], prompts: list[str], device: torch.device,
                   encoders: dict | None = None) -> dict[str, TextEmbedding]:
    """Each unique prompt once per distinct text encoder; both models share the embeddings when encoders agree.
    `encoders` (spec -> loaded encoder) keeps the encoders loaded across calls, e.g. over an evaluation's batches."""
    unique = list(dict.fromkeys(prompts))
    index = torch.tensor([unique.index(p) for p in prompts])
    encoders = {} if encoders is None else encoders
    by_spec, out = {}, {}
    for role, model in models.items():
        spec = model.spec.text_encoder
        if not spec:
            raise ValueError(f"the {'adapter' if role == 'small' else 'prior'} names no text_encoder in its "
                             "config.json; it cannot be prompted")
        if spec not in by_spec:
            if spec not in encoders:
                encoders[spec] = load_text_encoder(spec, device=device)
            by_spec[spec] = encoders[spec].encode(unique)
        out[role] = by_spec[spec][index]
    return out


def model_cond(text: TextEmbedding, pixels: dict[str, Tensor], takes: set[str], batch: int) -> Cond:
    """One model's Cond: the pixel conditions it takes, each one tensor for every sample (first_frame [C, H, W],
    edges [C, F, H, W]) or one per sample (with a leading batch dimension)."""
    ff = pixels["first_frame"].expand(batch, -1, -1, -1) if "first_frame" in takes else None
    edges = pixels["edges"].expand(batch, -1, -1, -1, -1) if "edges" in takes else None
    return text.to_cond(first_frame=ff, edges=edges)


def model_conds(models: dict[str, ScoreModel], prompts: list[str], pixels: dict[str, Tensor],
                routes: dict[str, set[str]], device: torch.device, encoders: dict | None = None) -> Conds:
    """The `Conds` pair for `prompts` (one per sample): each model gets its own text embeddings and the pixel
    conditions `routes` gives it; a model not in `models` gets an empty Cond."""
    texts = encode_prompts(models, prompts, device, encoders)
    per_model = {role: model_cond(texts[role], pixels, routes[role], len(prompts)) for role in models}
    return Conds(small=per_model.get("small", Cond()), prior=per_model.get("prior", Cond()))


@torch.no_grad()
def generate(model: SpaceTimeUNet, cond: Cond, *, sampler: str, steps: int, guidance: float, seed: int,
             clip_x0: float = 1.0, progress: bool = False, **sampler_kwargs) -> Tensor:
    """Samples [B, C, F, H, W] in [-1, 1] from one model with classifier-free guidance (bfloat16 on CUDA)."""
    device = next(model.parameters()).device
    score = NativeScoreModel(model, autocast=torch.bfloat16 if device.type == "cuda" else None)
    eps_fn = clip_denoised(cfg_guidance(score, guidance), clip_x0)
    shape = (cond.batch_size, *score.spec.shape)
    x = sample(eps_fn, shape, cond.to(device), sampler=sampler, steps=steps, seed=seed, device=device,
               progress=progress, **sampler_kwargs)
    return x.clamp(-1, 1)


def human_count(n: int) -> str:
    """12345678 -> '12.35M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def parameter_ratio(small: ScoreModel, prior: ScoreModel) -> str:
    """The line that mirrors the paper's Table 1 parameter column."""
    a, b = small.spec.parameters, prior.spec.parameters
    return (f"adapter {human_count(a)} parameters, prior {human_count(b)}: adapter/prior = {100 * a / b:.2f}% "
            "(paper: 70M of 5.6B = 1.25% on Bridge)")


def sample_mode(cfg: SampleConfig, mode: str, models: dict[str, ScoreModel], conds: Conds,
                shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Samples of one mode from `cfg.seed`; every mode starts from the same noise."""
    def composed(method: str):
        fns = {role: getattr(model, method) for role, model in models.items()}
        return mode_fn(mode, fns.get("small"), fns.get("prior"), alpha=cfg.guidance, strength=cfg.strength(),
                       mix=cfg.mix, composition=cfg.composition, compose_in=cfg.compose_in)

    corrector = None
    if cfg.mcmc:
        # MCMC targets the composed distribution itself: the unclipped score (and energy, where models have one).
        # (energies [B] have no x0 or v form: only an eps composition has one)
        energy_fn = composed("energy") if cfg.compose_in == "eps" and all(m.has_energy for m in models.values()) \
            else None
        corrector = LangevinCorrector(cfg.mcmc_config(), composed("eps"), energy_fn)
    kwargs = {"eta": cfg.eta} if cfg.sampler == "ddim" else {}
    pixel_space = next(iter(models.values())).spec.space == "pixels"  # latents have no data range to clip to
    eps_fn = denoised_range(composed("eps"), cfg.clip_x0, cfg.dynamic_threshold) if pixel_space else composed("eps")
    x = sample(eps_fn, shape, conds,
               sampler=cfg.sampler, steps=cfg.steps, seed=cfg.seed, device=device, progress=True, corrector=corrector,
               **kwargs)
    if corrector is not None and corrector.mean_acceptance is not None:
        print(f"{mode}: MCMC acceptance {corrector.mean_acceptance:.3f} (mean over noise levels)")
    if not bool(torch.isfinite(x).all()):  # clamped, NaN would write a black video as if it were a sample
        raise ValueError(f"the {mode} samples hold NaN or Inf: lower --guidance or --prior-strength, or check the "
                         "checkpoints (`video-adapter info DIR`)")
    return x.float().clamp(-1, 1) if pixel_space else x.float()


def load_models(cfg: SampleConfig) -> dict[str, ScoreModel]:
    """The models `cfg` samples with ("small", "prior"), placed as its device and dtype options say; a pair is
    checked for compatibility before anything is sampled, and its parameter ratio printed."""
    device = resolve_device(cfg.device)
    prior_device = resolve_device(cfg.prior_device) if cfg.prior_device else device
    paths = {"small": cfg.adapter, "prior": cfg.prior}
    placement = {"small": (device, resolve_dtype(cfg.dtype, device)),
                 "prior": (prior_device, resolve_dtype(cfg.prior_dtype or cfg.dtype, prior_device))}
    def load(path: str, dev: torch.device, dtype: torch.dtype) -> ScoreModel:
        if (Path(path) / "model_index.json").is_file():  # a diffusers pipeline directory
            from ..models.diffusers_prior import load_diffusers_prior

            frames, height, width = video_size(cfg)
            return load_diffusers_prior(path, frames, height, width, dev, dtype, offload=cfg.prior_offload)
        return load_score_model(path, dev, dtype, cuda_graphs=cfg.cuda_graphs and dev.type == "cuda")

    models = {role: load(paths[role], dev, dtype) for role, (dev, dtype) in placement.items() if role in cfg.roles()}
    if len(models) == 2:
        check_compatible(models["small"], models["prior"])
        print(parameter_ratio(models["small"], models["prior"]))
    return models


def video_size(cfg: SampleConfig) -> tuple[int, int, int]:
    """(frames, height, width) of the videos a diffusers prior makes: --video-size, else the adapter's training size."""
    if cfg.video_size:
        try:
            frames, height, width = (int(v) for v in cfg.video_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--video-size must be FRAMESxHEIGHTxWIDTH, e.g. 16x256x256, not {cfg.video_size!r}")
        return frames, height, width
    train_config = read_config(cfg.adapter).get("train_config", {}) if cfg.adapter else {}
    if not train_config.get("space"):
        raise ValueError("a diffusers prior needs the video size: pass --video-size FRAMESxHEIGHTxWIDTH (an adapter "
                         "trained with --space gives it)")
    from ..training.train import TrainConfig

    frames, (height, width) = TrainConfig.from_dict(train_config).video_shape()
    return frames, height, width


def make_out_dir(folder: Path, flag: str = "--out") -> None:
    """Create the folder results go to, or say why it cannot be: called before sampling, so that a long run is not
    lost at its end for want of somewhere to write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise ValueError(f"{flag}: cannot make the folder {folder}: {e.filename} is a file; pass another path") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: the folder {folder} is not writable; pass a path you can write to")


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
    models = load_models(cfg)
    spec = next(iter(models.values())).spec
    requested = {"text"} | {name for name, given in (("first_frame", cfg.first_frame), ("edges", cfg.edges_from))
                            if given}
    routes = route_conditions(models, requested, cfg.partial_conditions)
    latent = spec.space != "pixels"
    codec = getattr(models.get("prior"), "codec", None)
    if latent and codec is None:
        raise ValueError(f"these models work in {spec.space}; pass --prior DIR (the diffusers pipeline whose VAE "
                         "decodes them)")
    pixels = pixel_conditions(spec, cfg.first_frame, cfg.edges_from, codec, video_size(cfg) if latent else None)
    prompts = [p for p in cfg.prompt for _ in range(cfg.num)]
    conds = model_conds(models, prompts, pixels, routes, device)
    shape = (len(prompts), *spec.shape)
    make_out_dir(out.parent)
    show = (lambda x: codec.decode(x).float().cpu()) if latent else (lambda x: x.cpu())
    if cfg.compare:
        rows = [show(sample_mode(cfg, mode, models, conds, shape, device)) for mode in COMPARE_ROWS]
        return write_grid(out, [v for row in rows for v in row], labels=prompts * len(rows), nrow=len(prompts),
                          row_labels=list(COMPARE_ROWS), fps=cfg.fps, upscale=cfg.upscale, formats=("gif", "mp4"))
    videos = show(sample_mode(cfg, cfg.resolved_mode, models, conds, shape, device))
    return write_grid(out, list(videos), labels=prompts, fps=cfg.fps, upscale=cfg.upscale)
