"""Image-to-video pipelines: the first frame in the form each pipeline gives its denoiser (docs/diffusers_priors.md).

The prior receives the first frame as RGB pixels [B, 3, H, W] in [-1, 1] at the video size (`ModelSpec.
first_frame_pixels`) and encodes it its own way, once per distinct frame (`FrameEncodings`):

- WanImageToVideoPipeline: the VAE latents of [frame, black frames...] (the whole video's length) behind a mask of
  the temporal ratio's channels marking the first latent frame, concatenated to x on channels; Wan 2.1's transformer
  also takes the CLIP vision encoder's penultimate hidden states. Wan 2.2 TI2V (`expand_timesteps`) instead puts
  the frame's latent in place of the first latent frame, at timestep 0.
- CogVideoXImageToVideoPipeline: the frame's latent, scaled (divided, for CogVideoX 1.5's invert_scale_latents),
  then zero frames, concatenated to x on channels.
- LTXImageToVideoPipeline: the frame's latent in place of the first latent frame, whose tokens get timestep 0.

Where the first latent frame is given clean (`clean_first_frame`), the prior's x0 there is that latent: its eps is
(x_t - alpha c) / sigma, the only eps consistent with the pipeline, which never denoises that frame.
The VAE's posterior mean stands for the frame's latent, where CogVideoX's and LTX's pipelines draw a sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .families import LTX, Call, CogVideoX, Wan


class WanImageToVideo(Wan):
    image = True

    def __init__(self, ctx):
        super().__init__(ctx)
        self.clean_first_frame = bool(ctx.options.get("expand_timesteps"))
        if ctx.config.get("image_dim") and ctx.image_encoder is None:
            raise ValueError("this Wan image-to-video transformer takes a CLIP image embedding (image_dim), but the "
                             "pipeline directory has no image_encoder/ and image_processor/; save the whole pipeline")

    def in_channels(self, channels: int) -> int:
        return channels if self.clean_first_frame else 2 * channels + self.ctx.codec.temporal  # latents, mask, image

    def encode_image(self, frame: Tensor) -> dict[str, Tensor]:
        codec = self.ctx.codec
        if self.clean_first_frame:
            return {"latent": codec.encode(frame[:, :, None]).float()}
        frames, _, _ = self.ctx.video
        video = torch.cat([frame[:, :, None], frame.new_zeros(1, 3, frames - 1, *frame.shape[2:])], dim=2)
        latents = codec.encode(video).float()
        _, f, h, w = latents.shape[1:]
        mask = torch.zeros(1, codec.temporal, f, h, w, device=latents.device)
        mask[:, :, 0] = 1  # WanImageToVideoPipeline.prepare_latents: frame 0 repeated temporal-ratio times
        out = {"condition": torch.cat([mask, latents], dim=1)}
        if self.ctx.config.get("image_dim"):
            out["clip"] = self.clip(frame)
        return out

    def clip(self, frame: Tensor) -> Tensor:
        """CLIPVisionModel's penultimate hidden states of the frame, through the pipeline's CLIPImageProcessor (given
        the frame as 8-bit RGB, as a PIL image would give it)."""
        model, processor = self.ctx.image_encoder
        pixels = ((frame[0].float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        inputs = processor(images=[pixels], return_tensors="pt").to(model.device)
        with torch.no_grad():
            return model(**inputs, output_hidden_states=True).hidden_states[-2].float()

    def forward(self, denoiser, call: Call) -> Tensor:
        dtype = call.sample.dtype
        if self.clean_first_frame:
            sample = torch.cat([call.image["latent"].to(dtype), call.sample[:, :, 1:]], dim=2)
            return denoiser(hidden_states=sample, timestep=self.token_timesteps(call, first_frame_clean=True),
                            encoder_hidden_states=self.text(call), return_dict=False)[0]
        clip = call.image.get("clip")
        return denoiser(hidden_states=torch.cat([call.sample, call.image["condition"].to(dtype)], dim=1),
                        timestep=call.timestep, encoder_hidden_states=self.text(call),
                        encoder_hidden_states_image=None if clip is None else clip.to(dtype), return_dict=False)[0]


class CogVideoXImageToVideo(CogVideoX):
    image = True

    def in_channels(self, channels: int) -> int:
        return 2 * channels  # latents, image latents

    def encode_image(self, frame: Tensor) -> dict[str, Tensor]:
        vae = self.ctx.codec.vae
        with torch.no_grad():
            z = vae.encode(frame[:, :, None].to(vae.device, vae.dtype)).latent_dist.mode().float()
        # CogVideoX 1.5 was trained on image latents divided by the factor (its pipeline's invert_scale_latents)
        scale = vae.config.scaling_factor
        z = z / scale if vae.config.get("invert_scale_latents") else z * scale
        frames = self.ctx.shape[1]
        return {"latents": torch.cat([z, z.new_zeros(1, z.shape[1], frames - 1, *z.shape[3:])], dim=2)}

    def hidden_states(self, call: Call) -> Tensor:
        both = torch.cat([call.sample, call.image["latents"].to(call.sample.dtype)], dim=1)
        return both.permute(0, 2, 1, 3, 4)


class LTXImageToVideo(LTX):
    image = True
    clean_first_frame = True

    def encode_image(self, frame: Tensor) -> dict[str, Tensor]:
        return {"latent": self.ctx.codec.encode(frame[:, :, None]).float()}

    def sample(self, call: Call) -> Tensor:
        return torch.cat([call.image["latent"].to(call.sample.dtype), call.sample[:, :, 1:]], dim=2)

    def timesteps(self, call: Call) -> Tensor:
        """t on every token but the first latent frame's, 0 there (the pipeline's t (1 - conditioning_mask))."""
        _, f, h, w = self.ctx.shape
        mask = torch.zeros(1, 1, f, h, w, device=call.timestep.device)
        mask[:, :, 0] = 1
        return call.timestep[:, None] * (1 - self.pack(mask).squeeze(-1))


class FrameEncodings:
    """`encode(frame)` of each distinct first frame, computed once: a sampler passes the same frames at every step,
    and a guided batch passes them twice. Frames are compared by value; the `size` most recent are kept."""

    def __init__(self, encode, size: int = 8):
        self.encode, self.size, self.entries = encode, size, []

    def __call__(self, frames: Tensor) -> dict[str, Tensor]:
        rows = []
        for frame in frames:
            hit = next((enc for key, enc in self.entries if key.shape == frame.shape and torch.equal(key, frame)), None)
            if hit is None:
                hit = self.encode(frame[None])
                self.entries = [(frame.clone(), hit)] + self.entries[: self.size - 1]
            rows.append(hit)
        return {name: torch.cat([r[name] for r in rows]) for name in rows[0]}
