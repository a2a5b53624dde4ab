"""How each pipeline family calls its denoiser: layout, text inputs, position embeddings and micro-conditions, as the
pipeline's own denoising loop passes them (docs/diffusers_priors.md). Image-to-video variants are in `image`.

A `Family` turns one `Call` (the model's own sample and timestep, the text, the first frame's encoding) into the
denoiser's raw output [B, C, F, H, W], which the parameterization (`time`) then converts to eps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor

from .codec import LatentCodec


@dataclass
class Call:
    """One denoiser forward in the model's own terms (rows of one expert)."""

    sample: Tensor                     # [B, C, F, H, W] the model's noisy latents (VP x or flow z), its dtype
    timestep: Tensor                   # [B] float32, the model's time
    text: Tensor                       # [B, L, D] token embeddings from the pipeline's own encoder
    text_mask: Tensor                  # [B, L] bool, True = real token
    pooled: Tensor                     # [B, D] pooled embedding (HunyuanVideo: CLIP's, zero-padded to D)
    image: dict[str, Tensor] | None = None  # the family's encoding of each row's first frame (image-to-video)


@dataclass(frozen=True)
class Context:
    """What a family needs besides the call: fixed per loaded prior."""

    config: dict                       # the denoiser's config (both experts share one architecture)
    shape: tuple[int, int, int, int]   # [C, F', H', W'] of x
    video: tuple[int, int, int]        # frames, height, width of the pixel video
    device: torch.device
    codec: LatentCodec | None = None
    image_encoder: tuple | None = None  # (CLIPVisionModel, CLIPImageProcessor) where the pipeline has one
    options: dict = field(default_factory=dict)  # pipeline options (model_index.json) and load options


class Family:
    """The plain call `denoiser(sample, timestep=t, encoder_hidden_states=text)` (ModelScope's UNet3D)."""

    image = False              # image-to-video: cond.first_frame (RGB at the video size) is encoded by `encode_image`
    clean_first_frame = False  # the first latent frame is the given image's latent, not denoised (see prior.py)

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def in_channels(self, channels: int) -> int:
        """The denoiser's input channels for latents of `channels` (more where the first frame joins on channels)."""
        return channels

    def forward(self, denoiser, call: Call) -> Tensor:
        return denoiser(call.sample, timestep=call.timestep, encoder_hidden_states=call.text, return_dict=False)[0]

    def encode_image(self, frame: Tensor) -> dict[str, Tensor]:
        """The first frame [1, 3, H, W] in [-1, 1] in the form this pipeline gives its denoiser."""
        raise NotImplementedError(f"{type(self).__name__} takes no first frame")


class Wan(Family):
    """WanPipeline: text embeddings zeroed past each prompt's tokens, no attention mask. Wan 2.2 TI2V's
    `expand_timesteps` gives every latent token its own timestep (all equal for text-to-video)."""

    def text(self, call: Call) -> Tensor:
        return call.text * call.text_mask.unsqueeze(-1).to(call.text.dtype)

    def token_timesteps(self, call: Call, first_frame_clean: bool = False) -> Tensor:
        """[B, F' * H'/p * W'/p] per-token timesteps, 0 on the first latent frame when it is the given image."""
        _, f, h, w = self.ctx.shape
        _, ph, pw = self.ctx.config["patch_size"]
        mask = torch.ones(f, h // ph, w // pw, device=call.timestep.device)
        if first_frame_clean:
            mask[0] = 0
        return call.timestep[:, None] * mask.flatten()[None]

    def forward(self, denoiser, call: Call) -> Tensor:
        t = self.token_timesteps(call) if self.ctx.options.get("expand_timesteps") else call.timestep
        return denoiser(hidden_states=call.sample, timestep=t, encoder_hidden_states=self.text(call),
                        return_dict=False)[0]


class CogVideoX(Family):
    """CogVideoXPipeline: frames-first [B, F, C, H, W]; with rotary embeddings (5B), the 3D grid its pipeline builds
    for the latent size: CogVideoX 1.0's crops a base grid, CogVideoX 1.5's (patch_size_t) slices one, over
    F' / patch_size_t temporal patches."""

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        cfg, (_, frames, _, _) = ctx.config, ctx.shape
        p_t = cfg.get("patch_size_t")
        if p_t is not None and frames % p_t:
            f_pixels, ratio = ctx.video[0], ctx.codec.temporal
            # The pipeline adds p_t - F' % p_t noise frames it throws away after sampling; the eps of x alone would
            # be the marginal of that joint model, which one forward cannot give.
            raise ValueError(f"CogVideoX 1.5 groups latent frames in {p_t}s (patch_size_t): {f_pixels} frames make "
                             f"{frames} latent frames. Its pipeline pads them with frames it discards, which a score "
                             f"model of x cannot do exactly; use {f_pixels + ratio * (p_t - frames % p_t)} frames "
                             f"(or {f_pixels - ratio * (frames % p_t)})")
        self.rotary = self._rotary() if cfg.get("use_rotary_positional_embeddings") else None

    def _rotary(self) -> tuple[Tensor, Tensor]:
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

        cfg, (_, frames, height, width) = self.ctx.config, self.ctx.shape
        p, p_t = cfg["patch_size"], cfg.get("patch_size_t")
        grid = (height // p, width // p)
        base_w, base_h = cfg["sample_width"] // p, cfg["sample_height"] // p
        if p_t is None:
            crops = get_resize_crop_region_for_grid(grid, base_w, base_h)
            return get_3d_rotary_pos_embed(embed_dim=cfg["attention_head_dim"], crops_coords=crops, grid_size=grid,
                                           temporal_size=frames, device=self.ctx.device)
        return get_3d_rotary_pos_embed(embed_dim=cfg["attention_head_dim"], crops_coords=None, grid_size=grid,
                                       temporal_size=(frames + p_t - 1) // p_t, grid_type="slice",
                                       max_size=(base_h, base_w), device=self.ctx.device)

    def hidden_states(self, call: Call) -> Tensor:
        return rearrange(call.sample, "b c f h w -> b f c h w")

    def forward(self, denoiser, call: Call) -> Tensor:
        kwargs = {"image_rotary_emb": self.rotary} if self.rotary is not None else {}
        if self.ctx.config.get("ofs_embed_dim"):  # CogVideoX 1.5 image-to-video: its pipeline's constant 2.0
            kwargs["ofs"] = call.sample.new_full((1,), 2.0)
        out = denoiser(hidden_states=self.hidden_states(call), encoder_hidden_states=call.text,
                       timestep=call.timestep, return_dict=False, **kwargs)[0]
        return rearrange(out, "b f c h w -> b c f h w")


class LTX(Family):
    """LTXPipeline: latents packed into tokens by its patchifier (LTXPipeline._pack_latents), the T5 attention mask,
    the latent grid's size, and rotary positions scaled by (VAE temporal ratio / frame_rate, spatial ratio, spatial
    ratio); frame_rate is the pipeline's default, 25, unless the prior is loaded with another."""

    def pack(self, sample: Tensor) -> Tensor:
        from diffusers import LTXPipeline

        cfg = self.ctx.config
        return LTXPipeline._pack_latents(sample, cfg["patch_size"], cfg["patch_size_t"])

    def sample(self, call: Call) -> Tensor:
        return call.sample

    def timesteps(self, call: Call) -> Tensor:
        return call.timestep

    def forward(self, denoiser, call: Call) -> Tensor:
        from diffusers import LTXPipeline

        cfg, codec, (_, f, h, w) = self.ctx.config, self.ctx.codec, self.ctx.shape
        frame_rate = self.ctx.options.get("frame_rate", 25)
        out = denoiser(hidden_states=self.pack(self.sample(call)), encoder_hidden_states=call.text,
                       timestep=self.timesteps(call), encoder_attention_mask=call.text_mask, num_frames=f, height=h,
                       width=w, rope_interpolation_scale=(codec.temporal / frame_rate, codec.spatial, codec.spatial),
                       return_dict=False)[0]
        return LTXPipeline._unpack_latents(out, f, h, w, cfg["patch_size"], cfg["patch_size_t"])


class Hunyuan(Family):
    """HunyuanVideoPipeline: Llama token states with their attention mask, CLIP's pooled text embedding (the first
    pooled_projection_dim entries of `pooled`, see text/hunyuan.py), and, for its guidance-distilled transformer, the
    embedded guidance scale times 1000. The scale defaults to 1, the conditional model the composition needs
    (its pipeline's default, 6, is a guided prediction); load the prior with another to change it."""

    def forward(self, denoiser, call: Call) -> Tensor:
        cfg = self.ctx.config
        width = cfg["pooled_projection_dim"]
        kwargs = {}
        if cfg.get("guidance_embeds"):
            scale = self.ctx.options.get("embedded_guidance", 1.0)
            kwargs["guidance"] = torch.full((len(call.sample),), scale * 1000.0, device=call.sample.device,
                                            dtype=call.sample.dtype)
        return denoiser(hidden_states=call.sample, timestep=call.timestep,
                        encoder_hidden_states=call.text, encoder_attention_mask=call.text_mask,
                        pooled_projections=call.pooled[:, :width], return_dict=False, **kwargs)[0]
