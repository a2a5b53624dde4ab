"""A pipeline's VAE between pixel video and the normalised latents its denoiser sees (docs/diffusers_priors.md).

Each VAE family normalises its latents its own way, exactly as its pipeline does before the denoiser sees them:

- per-frame image VAEs (ModelScope's AutoencoderKL), CogVideoX's and HunyuanVideo's video VAEs: z * scaling_factor;
- Wan's AutoencoderKLWan: (z - latents_mean) / latents_std, per channel from its config;
- LTX-Video's AutoencoderKLLTXVideo: (z - latents_mean) * scaling_factor / latents_std, per channel from buffers saved
  with its weights; a VAE with timestep conditioning (LTX 0.9.1 and later) decodes at timestep 0.

Encoding takes the posterior mean (its mode).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor


def vae_geometry(cfg, per_frame: bool) -> tuple[int, int, int]:
    """(latent channels, spatial factor, temporal factor) from a VAE's config (a dict or diffusers' FrozenDict),
    counted from its down-sampling blocks (what the weights do, whatever ratios the config also declares)."""
    if "z_dim" in cfg:  # AutoencoderKLWan; Wan 2.2's VAE also patchifies space by patch_size
        spatial = 2 ** (len(cfg["dim_mult"]) - 1) * (cfg.get("patch_size") or 1)
        return cfg["z_dim"], spatial, 2 ** sum(cfg["temperal_downsample"])
    if "spatio_temporal_scaling" in cfg:  # AutoencoderKLLTXVideo: patchify, then one 2x per scaling block
        scaled = sum(cfg["spatio_temporal_scaling"])
        return cfg["latent_channels"], cfg["patch_size"] * 2 ** scaled, cfg["patch_size_t"] * 2 ** scaled
    if "spatial_compression_ratio" in cfg:  # AutoencoderKLHunyuanVideo
        return cfg["latent_channels"], cfg["spatial_compression_ratio"], cfg["temporal_compression_ratio"]
    levels = len(cfg["block_out_channels"]) - 1  # every block but the last downsamples space
    # AutoencoderKLCogVideoX: the first log2(ratio) of those blocks also downsample time
    temporal = 1 if per_frame else 2 ** min(int(math.log2(cfg.get("temporal_compression_ratio", 1))), levels)
    return cfg["latent_channels"], 2 ** levels, temporal


def latent_shape(channels: int, spatial: int, temporal: int, frames: int, height: int,
                 width: int) -> tuple[int, int, int, int]:
    """[C, F', H', W'] of the latents of a frames x height x width video."""
    if height % spatial or width % spatial:
        raise ValueError(f"height and width must be multiples of the VAE's {spatial}x downsampling, got "
                         f"{height}x{width}")
    if (frames - 1) % temporal:
        raise ValueError(f"this VAE compresses time {temporal}x: frames must be 1 + a multiple of {temporal} "
                         f"(e.g. {1 + temporal * max(1, frames // temporal)}), got {frames}")
    return channels, (frames - 1) // temporal + 1, height // spatial, width // spatial


class LatentCodec:
    """A pipeline's VAE between pixel video [B, 3, F, H, W] in [-1, 1] and the normalised latents its denoiser sees."""

    def __init__(self, vae, per_frame: bool):
        self.vae, self.per_frame = vae, per_frame
        cfg = vae.config
        self.channels, self.spatial, self.temporal = vae_geometry(cfg, per_frame)
        if "z_dim" in cfg:
            self.norm = "mean_std"
            if len(cfg.latents_mean) != self.channels or len(cfg.latents_std) != self.channels:
                raise ValueError(f"the VAE's latents_mean / latents_std need {self.channels} entries (z_dim)")
        else:
            buffers = dict(vae.named_buffers(recurse=False))
            self.norm = "mean_std_buffers" if "latents_mean" in buffers else "scale"

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return latent_shape(self.channels, self.spatial, self.temporal, frames, height, width)

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor, float]:
        """(mean, std, scale) with z_normalised = (z - mean) * scale / std."""
        if self.norm == "mean_std":
            mean, std = (torch.tensor(v) for v in (self.vae.config.latents_mean, self.vae.config.latents_std))
            scale = 1.0
        elif self.norm == "mean_std_buffers":
            mean, std, scale = self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        else:
            mean, std, scale = torch.zeros(1), torch.ones(1), self.vae.config.scaling_factor
        return (*(v.to(like.device, like.dtype).view(1, -1, 1, 1, 1) for v in (mean, std)), scale)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        video = video.to(self.vae.device, self.vae.dtype)
        if self.per_frame:
            b = video.shape[0]
            mean = self.vae.encode(rearrange(video, "b c f h w -> (b f) c h w")).latent_dist.mode()
            return rearrange(mean, "(b f) c h w -> b c f h w", b=b) * self.vae.config.scaling_factor
        z = self.vae.encode(video).latent_dist.mode()
        mean, std, scale = self._stats(z)
        return (z - mean) * scale / std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        latents = latents.to(self.vae.device, self.vae.dtype)
        if self.per_frame:
            b = latents.shape[0]
            frames = self.vae.decode(rearrange(latents / self.vae.config.scaling_factor,
                                               "b c f h w -> (b f) c h w")).sample
            return rearrange(frames, "(b f) c h w -> b c f h w", b=b).clamp(-1, 1)
        mean, std, scale = self._stats(latents)
        z = latents * std / scale + mean
        if self.vae.config.get("timestep_conditioning", False):  # LTX 0.9.1+: the pipeline's decode_timestep 0
            return self.vae.decode(z, torch.zeros(len(z), device=z.device, dtype=z.dtype)).sample.clamp(-1, 1)
        return self.vae.decode(z).sample.clamp(-1, 1)
