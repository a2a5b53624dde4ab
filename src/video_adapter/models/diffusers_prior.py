"""Open text-to-video models from diffusers as priors, in their own latent space (maths: docs/diffusers_priors.md).

    prior = load_diffusers_prior("/models/zeroscope", frames=16, height=256, width=256, device="cuda")
    eps = prior(x_t, logsnr, cond)     # x_t: the prior's VAE latents [B, C, F', H', W'], canonical VP at logsnr

A diffusers pipeline directory (saved with save_pretrained; nothing downloads) becomes a `ScoreModel`: our
canonical log-SNR and variance-preserving x_t go in, eps comes out, whatever the model's own time variable and
prediction type. Two parameterizations cover today's open video models:

- `DiscreteVP`: a DDPM training grid of N steps (TextToVideoSDPipeline: ModelScope, ZeroScope), eps or v prediction;
- `RectifiedFlow`: flow matching, z_s = (1 - s) x0 + s eps, velocity output (WanPipeline).

A pipeline is one `PIPELINES` entry (its denoiser class and folder, parameterization, text encoder and VAE):
CogVideoXPipeline (v prediction on a shifted, zero-terminal-SNR DDPM grid, frames-first layout) is the third.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from ..maths.conditioning import Cond
from ..maths.schedule import LOGSNR_MIN, eps_from_flow_velocity, eps_from_v, flow_from_vp, flow_time_from_logsnr
from .score_model import ModelSpec, ScoreModel

# ------------------------------------------------------------------------------------------------ noise levels


@dataclass(frozen=True)
class DiscreteVP:
    """A DDPM grid: step k in [0, N) has log-SNR lambda_k = log(abar_k / (1 - abar_k)), decreasing in k.

    The model takes a continuous k where lambda(k) = logsnr, linear in log-SNR between grid steps (k-diffusion's
    sigma_to_t: log sigma is -logsnr / 2), because the networks' sinusoidal time embeddings accept any real k.
    `quantize` rounds to the nearest trained step instead. Outside [lambda_{N-1}, lambda_0] k is clamped to the grid's
    end: the model then denoises as if x were at that end's level (`mismatch` gives the gap).
    """

    logsnrs: Tensor             # [N] float64, decreasing
    prediction: str             # "epsilon" | "v_prediction"
    quantize: bool = False      # nearest integer step instead of the continuous one

    @classmethod
    def from_scheduler_config(cls, config: dict, quantize: bool = False) -> DiscreteVP:
        """The grid of the scheduler class the config names (its own betas, SNR shift and zero-terminal-SNR rescale);
        a zero-SNR last step (abar = 0) stands at our lowest level, LOGSNR_MIN."""
        import diffusers

        scheduler = getattr(diffusers, config.get("_class_name", "DDPMScheduler")).from_config(config)
        abar = scheduler.alphas_cumprod.double()
        prediction = config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type {prediction!r} is not supported; epsilon and v_prediction are")
        return cls((torch.log(abar) - torch.log1p(-abar)).clamp_min(LOGSNR_MIN), prediction, quantize)

    def timestep(self, logsnr: Tensor) -> Tensor:
        ascending = self.logsnrs.flip(0).to(logsnr.device)
        lam = logsnr.double().clamp(ascending[0], ascending[-1])
        i = torch.searchsorted(ascending, lam).clamp(1, len(ascending) - 1)
        frac = (lam - ascending[i - 1]) / (ascending[i] - ascending[i - 1]).clamp_min(1e-12)
        k = (len(ascending) - 1) - (i - 1 + frac)
        return k.round() if self.quantize else k

    def logsnr_at(self, k: Tensor) -> Tensor:
        grid = self.logsnrs.to(k.device)
        lo = k.floor().long().clamp(0, len(grid) - 1)
        hi = (lo + 1).clamp(max=len(grid) - 1)
        return torch.lerp(grid[lo], grid[hi], k.double() - lo.double())

    def mismatch(self, logsnr: Tensor) -> Tensor:
        """The model's log-SNR minus the asked one (0 inside the grid with quantize off)."""
        return self.logsnr_at(self.timestep(logsnr)) - logsnr.double()

    def inputs(self, x: Tensor, logsnr: Tensor) -> tuple[Tensor, Tensor]:
        return x, self.timestep(logsnr)

    def to_eps(self, out: Tensor, x: Tensor, logsnr: Tensor) -> Tensor:
        if self.prediction == "epsilon":
            return out
        # v at the level the model was evaluated at: eps = alpha v + sigma x
        model_logsnr = self.logsnr_at(self.timestep(logsnr)).to(x.device, torch.float32)
        return eps_from_v(x, out, model_logsnr)


@dataclass(frozen=True)
class RectifiedFlow:
    """z_s = (1 - s) x0 + s eps at time s * num_train_timesteps; the network predicts the velocity eps - x0.

    The same noise level as VP x_t at logsnr has s = sigma / (alpha + sigma) and z = x_t / (alpha + sigma), exactly,
    for every logsnr. A pipeline's timestep shift only chooses which s its own sampler visits, so it plays no part here.
    """

    num_train_timesteps: int = 1000

    def inputs(self, x: Tensor, logsnr: Tensor) -> tuple[Tensor, Tensor]:
        return flow_from_vp(x, logsnr), flow_time_from_logsnr(logsnr) * self.num_train_timesteps

    def to_eps(self, out: Tensor, x: Tensor, logsnr: Tensor) -> Tensor:
        return eps_from_flow_velocity(flow_from_vp(x, logsnr), out, flow_time_from_logsnr(logsnr))


# ------------------------------------------------------------------------------------------------------ latents


def vae_geometry(cfg, per_frame: bool) -> tuple[int, int, int]:
    """(latent channels, spatial factor, temporal factor) from a VAE's config (a dict or diffusers' FrozenDict)."""
    if "z_dim" in cfg:  # AutoencoderKLWan
        return cfg["z_dim"], 2 ** (len(cfg["dim_mult"]) - 1), 2 ** sum(cfg["temperal_downsample"])
    levels = len(cfg["block_out_channels"]) - 1  # every block but the last downsamples space
    # AutoencoderKLCogVideoX: the first log2(ratio) of those blocks also downsample time
    temporal = 1 if per_frame else 2 ** min(int(math.log2(cfg.get("temporal_compression_ratio", 1))), levels)
    return cfg["latent_channels"], 2 ** levels, temporal


class LatentCodec:
    """A pipeline's VAE between pixel video [B, 3, F, H, W] in [-1, 1] and the normalised latents its denoiser sees.

    Per-frame image VAEs (ModelScope's AutoencoderKL) and CogVideoX's video VAE scale by `scaling_factor`; Wan's video
    VAE normalises by the per-channel `latents_mean` / `latents_std` of its config. Video VAEs compress time 4x in the
    real models. Encoding takes the posterior mean.
    """

    def __init__(self, vae, per_frame: bool):
        self.vae, self.per_frame = vae, per_frame
        cfg = vae.config
        self.channels, self.spatial, self.temporal = vae_geometry(cfg, per_frame)
        self.mean_std = "z_dim" in cfg
        if self.mean_std and (len(cfg.latents_mean) != self.channels or len(cfg.latents_std) != self.channels):
            raise ValueError(f"the VAE's latents_mean / latents_std need {self.channels} entries (z_dim)")

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return self.shape(self.channels, self.spatial, self.temporal, frames, height, width)

    @staticmethod
    def shape(channels: int, spatial: int, temporal: int, frames: int, height: int,
              width: int) -> tuple[int, int, int, int]:
        """[C, F', H', W'] of the latents of a frames x height x width video."""
        if height % spatial or width % spatial:
            raise ValueError(f"height and width must be multiples of the VAE's {spatial}x downsampling, got "
                             f"{height}x{width}")
        if (frames - 1) % temporal:
            raise ValueError(f"this VAE compresses time {temporal}x: frames must be 1 + a multiple of {temporal} "
                             f"(e.g. {1 + temporal * max(1, frames // temporal)}), got {frames}")
        return channels, (frames - 1) // temporal + 1, height // spatial, width // spatial

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.vae.config
        mean, std = (torch.tensor(v, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
                     for v in (cfg.latents_mean, cfg.latents_std))
        return mean, std

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        video = video.to(self.vae.device, self.vae.dtype)
        if self.per_frame:
            b = video.shape[0]
            mean = self.vae.encode(rearrange(video, "b c f h w -> (b f) c h w")).latent_dist.mode()
            return rearrange(mean, "(b f) c h w -> b c f h w", b=b) * self.vae.config.scaling_factor
        mean = self.vae.encode(video).latent_dist.mode()
        if not self.mean_std:
            return mean * self.vae.config.scaling_factor
        mu, std = self._stats(mean)
        return (mean - mu) / std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        latents = latents.to(self.vae.device, self.vae.dtype)
        if self.per_frame:
            b = latents.shape[0]
            frames = self.vae.decode(rearrange(latents / self.vae.config.scaling_factor,
                                               "b c f h w -> (b f) c h w")).sample
            return rearrange(frames, "(b f) c h w -> b c f h w", b=b).clamp(-1, 1)
        if not self.mean_std:
            return self.vae.decode(latents / self.vae.config.scaling_factor).sample.clamp(-1, 1)
        mu, std = self._stats(latents)
        return self.vae.decode(latents * std + mu).sample.clamp(-1, 1)


# --------------------------------------------------------------------------------------------------- the prior


@dataclass(frozen=True)
class Pipeline:
    denoiser: str                                 # diffusers class of the denoiser ...
    folder: str                                   # ... and its sub-folder
    vae: str                                      # diffusers class of the VAE (in vae/)
    per_frame_vae: bool                           # an image VAE applied frame by frame
    text_encoder: str                             # text.load_text_encoder kind for text_encoder/ + tokenizer/
    max_length: int                               # prompt tokens, as the pipeline pads them
    time: Callable[[dict, bool], DiscreteVP | RectifiedFlow]  # parameterization from (scheduler config, quantize)
    zero_padding: bool = False                    # embeddings past the prompt's tokens set to 0 (Wan's pipeline)
    frames_first: bool = False                    # the denoiser takes [B, F, C, H, W] (CogVideoX)
    extra: Callable | None = None                 # (denoiser, latent shape, device) -> more forward kwargs


def cogvideox_rotary(transformer, shape: tuple[int, ...], device) -> dict:
    """CogVideoX 1.0's 3D rotary position embeddings of a latent grid, as its pipeline makes them (the 2B model has
    none); CogVideoX 1.5's temporal patches are not supported."""
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return {}
    if cfg.patch_size_t is not None:
        raise ValueError("CogVideoX 1.5 (patch_size_t) is not supported yet; CogVideoX 1.0 (2B, 5B) is")
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    _, frames, height, width = shape
    grid = (height // cfg.patch_size, width // cfg.patch_size)
    base = (cfg.sample_width // cfg.patch_size, cfg.sample_height // cfg.patch_size)
    crops = get_resize_crop_region_for_grid(grid, *base)
    rotary = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops, grid_size=grid,
                                     temporal_size=frames, device=device)
    return {"image_rotary_emb": rotary}


PIPELINES = {
    "TextToVideoSDPipeline": Pipeline("UNet3DConditionModel", "unet", "AutoencoderKL", True, "clip", 77,
                                      DiscreteVP.from_scheduler_config),
    "WanPipeline": Pipeline("WanTransformer3DModel", "transformer", "AutoencoderKLWan", False, "umt5", 512,
                            lambda c, _: RectifiedFlow(c.get("num_train_timesteps", 1000)), zero_padding=True),
    "CogVideoXPipeline": Pipeline("CogVideoXTransformer3DModel", "transformer", "AutoencoderKLCogVideoX", False, "t5",
                                  226, DiscreteVP.from_scheduler_config, frames_first=True, extra=cogvideox_rotary),
}


class DiffusersPrior(ScoreModel):
    """A diffusers denoiser in canonical terms: `time.inputs` maps (x_t, logsnr) to the model's sample and timestep,
    `time.to_eps` its output to eps. An absent text condition (classifier-free guidance's unconditional branch) is
    the embedding of the empty prompt, as the pipelines' default negative prompt."""

    def __init__(self, denoiser, time, spec: ModelSpec, null_text: Tensor, codec: LatentCodec | None = None,
                 zero_padding: bool = False, device=None, frames_first: bool = False, extra: dict | None = None):
        self.denoiser, self.time, self.spec, self.codec = denoiser, time, spec, codec
        self.null_text, self.zero_padding, self.frames_first, self.extra = null_text, zero_padding, frames_first, extra
        param = next(denoiser.parameters())
        # offloaded weights live on the CPU between calls; the inputs go where the forward runs
        self.device, self.dtype = torch.device(device) if device is not None else param.device, param.dtype

    def _text(self, cond: Cond, batch: int) -> Tensor:
        null = self.null_text.to(self.device, self.dtype).expand(batch, -1, -1)
        if cond.text is None:
            return null
        text = cond.text.to(self.device, self.dtype)
        if text.shape[1:] != null.shape[1:]:
            raise ValueError(f"text embeddings are {tuple(text.shape[1:])}, this prior takes {tuple(null.shape[1:])} "
                             f"(encode prompts with its own encoder, {self.spec.text_encoder!r})")
        if self.zero_padding:
            text = text * cond.text_mask.to(self.device, self.dtype).unsqueeze(-1)
        present = cond.has_text.to(self.device).view(-1, 1, 1)
        return torch.where(present, text, null)

    @torch.no_grad()
    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        x_dev, lam = x.to(self.device, torch.float32), logsnr.to(self.device, torch.float32)
        sample, timestep = self.time.inputs(x_dev, lam)
        layout = "b c f h w -> b f c h w"
        if self.frames_first:
            sample = rearrange(sample, layout)
        out = self.denoiser(sample.to(self.dtype), timestep=timestep.to(torch.float32),
                            encoder_hidden_states=self._text(cond, x.shape[0]), return_dict=False,
                            **(self.extra or {}))[0].float()
        if self.frames_first:
            out = rearrange(out, "b f c h w -> b c f h w")
        return self.time.to_eps(out, x_dev, lam).to(x.device, x.dtype)


def _fingerprint(folder: Path) -> str:
    """Names the latent space: the VAE's config and the size of its weights (cheap, and changes with either)."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class LatentSpace:
    """What an adapter trained in a pipeline's latents needs, read from the directory's JSON files (no weights)."""

    root: Path
    pipeline: Pipeline
    space: str                    # "latent:<fingerprint of vae/>"
    text_encoder: str             # text.load_text_encoder spec of the pipeline's own encoder
    text_dim: int                 # its token width

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        cfg = json.loads((self.root / "vae" / "config.json").read_text())
        return LatentCodec.shape(*vae_geometry(cfg, self.pipeline.per_frame_vae), frames, height, width)

    def codec(self, device=None) -> LatentCodec:
        import diffusers

        vae = from_safetensors(getattr(diffusers, self.pipeline.vae), self.root / "vae")
        return LatentCodec(vae.to(device).eval().requires_grad_(False), self.pipeline.per_frame_vae)


def from_safetensors(model_class, folder: Path, **kwargs):
    """`model_class.from_pretrained(folder)` from safetensors only: pickled weights (.bin) can run code on load."""
    if not folder.is_dir():
        raise FileNotFoundError(f"the pipeline directory lacks its {folder.name}/ folder ({folder}); save the whole "
                                "pipeline with pipeline.save_pretrained(DIR)")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder} has no .safetensors weights; pickled weights (.bin) are never loaded here. "
                                "Re-save the pipeline where you trust its files: "
                                "pipeline.save_pretrained(DIR, safe_serialization=True)")
    return model_class.from_pretrained(folder, use_safetensors=True, **kwargs)


def latent_space(path: str | Path) -> LatentSpace:
    """The latent space of a local diffusers pipeline directory, with a clear error for anything else."""
    root = Path(path)
    index = root / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{root} is not a diffusers pipeline directory (no model_index.json); save one with "
                                "pipeline.save_pretrained(DIR) on a machine that has the model")
    name = json.loads(index.read_text()).get("_class_name", "")
    if name not in PIPELINES:
        raise ValueError(f"{root} holds a {name or 'unnamed'} pipeline; supported: {', '.join(PIPELINES)}")
    kind = PIPELINES[name]
    text_cfg = json.loads((root / "text_encoder" / "config.json").read_text())
    text_dim = text_cfg.get("d_model") or text_cfg.get("hidden_size") or text_cfg["text_config"]["hidden_size"]
    return LatentSpace(root, kind, f"latent:{_fingerprint(root / 'vae')}",
                       f"{kind.text_encoder}:{root.resolve()}?max_length={kind.max_length}", int(text_dim))


def load_diffusers_prior(path: str | Path, frames: int, height: int, width: int, device=None,
                         dtype: torch.dtype = torch.float32, quantize: bool = False,
                         offload: bool = False) -> DiffusersPrior:
    """A local diffusers pipeline directory as a prior sampling `frames` x `height` x `width` pixel videos, its
    denoiser in `dtype` on `device` or, with `offload`, kept in CPU memory and moved to `device` layer by layer for
    each forward (accelerate's cpu_offload: a prior larger than the GPU's memory, at the cost of the transfers)."""
    import diffusers

    from .text import load_text_encoder

    latents = latent_space(path)
    kind, root = latents.pipeline, latents.root
    denoiser = from_safetensors(getattr(diffusers, kind.denoiser), root / kind.folder, torch_dtype=dtype)
    denoiser = denoiser.eval().requires_grad_(False)
    device = torch.device(device or "cpu")
    if offload:
        from accelerate import cpu_offload

        cpu_offload(denoiser, execution_device=device)
    else:
        denoiser.to(device)
    scheduler = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    time = kind.time(scheduler, quantize)  # quantize only means something on a discrete grid
    null = load_text_encoder(latents.text_encoder, device=device).encode([""])
    null_text = null.tokens * null.mask.unsqueeze(-1) if kind.zero_padding else null.tokens
    channels, f, h, w = latents.latent_shape(frames, height, width)
    if denoiser.config.in_channels != channels:
        raise ValueError(f"the denoiser takes {denoiser.config.in_channels} channels, the VAE makes {channels}")
    spec = ModelSpec(space=latents.space, channels=channels, frames=f, height=h, width=w, conditions=("text",),
                     value_range=(-math.inf, math.inf), prediction=getattr(time, "prediction", "flow velocity"),
                     time="timestep" if isinstance(time, DiscreteVP) else "flow time",
                     parameters=sum(p.numel() for p in denoiser.parameters()), text_encoder=latents.text_encoder)
    extra = kind.extra(denoiser, spec.shape, device) if kind.extra else None
    return DiffusersPrior(denoiser, time, spec, null_text, latents.codec(device), kind.zero_padding, device,
                          kind.frames_first, extra)
