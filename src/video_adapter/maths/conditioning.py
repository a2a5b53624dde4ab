"""What a denoiser is conditioned on, and the two pixel-space conditions of the paper (appendix B).

`Cond` holds per-sample tensors plus a per-sample "present" flag for each condition, so one model
trains with and without each condition (dropout) and classifier-free guidance is only a flag flip.
A missing condition is represented by zeros and a False flag, never by None inside a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

CONDITIONS = ("text", "first_frame", "edges")


@dataclass(frozen=True)
class Cond:
    text: Tensor | None = None  # [B, L, D] token embeddings
    text_mask: Tensor | None = None  # [B, L] bool, True = real token
    pooled: Tensor | None = None  # [B, D] pooled sentence embedding
    first_frame: Tensor | None = None  # [B, C, H, W] in [-1, 1]
    edges: Tensor | None = None  # [B, C, F, H, W] Sobel x-gradient of each frame
    has_text: Tensor | None = None  # [B] bool present flags
    has_first_frame: Tensor | None = None
    has_edges: Tensor | None = None
    # [B, C, F, H, W] a super-resolution stage's input: the low-resolution video upsampled to this size. It has no
    # present flag: an SR model always takes it (Imagen Video), so the CFG null condition keeps it and drops the text.
    lowres: Tensor | None = None
    # [B] the noise augmentation level of `lowres` (`augment_lowres`), for a stage built with lowres_aug > 0; kept by
    # the null condition like lowres itself
    lowres_level: Tensor | None = None

    @staticmethod
    def make(text=None, text_mask=None, pooled=None, first_frame=None, edges=None, lowres=None,
             lowres_level=None) -> Cond:
        """A batch where every given condition is present for every sample."""
        given = [v for v in (text, pooled, first_frame, edges, lowres) if v is not None]
        if not given:
            return Cond()
        batch, device = given[0].shape[0], given[0].device
        flag = lambda v: None if v is None else torch.ones(batch, dtype=torch.bool, device=device)
        if text is not None and text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=device)
        if text is not None and pooled is None:
            pooled = masked_mean(text, text_mask)
        return Cond(text, text_mask, pooled, first_frame, edges, flag(text), flag(first_frame), flag(edges), lowres,
                    lowres_level)

    @property
    def batch_size(self) -> int | None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                return v.shape[0]
        return None

    def present(self, name: str) -> Tensor | None:
        return getattr(self, f"has_{name}")

    def with_flags(self, **flags: Tensor | bool) -> Cond:
        """Override present flags, e.g. `cond.with_flags(text=False)` for the unconditional branch of CFG."""
        out = {}
        for name, value in flags.items():
            if name not in CONDITIONS:
                raise ValueError(f"unknown condition {name!r}; expected one of {CONDITIONS}")
            current = self.present(name)
            if current is None:
                continue
            out[f"has_{name}"] = (value.to(current) if isinstance(value, Tensor) else torch.full_like(current, value)) & current
        return replace(self, **out)

    def null(self, conditions: tuple[str, ...] = CONDITIONS) -> Cond:
        """The null condition of classifier-free guidance: `conditions` absent (by default every one), the others
        kept. Keeping a pixel condition (edges) guides towards the caption alone, at the given edges."""
        return self.with_flags(**{n: False for n in conditions})

    def map(self, fn) -> Cond:
        return Cond(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device=None, dtype=None) -> Cond:
        """Moves to `device`; casts only floating tensors to `dtype` (flags and masks stay bool)."""
        return self.map(lambda v: v.to(device=device, dtype=dtype if v.is_floating_point() else None))

    def cat(self, other: Cond) -> Cond:
        """Concatenate along the batch, e.g. conditional and unconditional halves in one forward."""
        def pair(name):
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                raise ValueError(f"cannot concatenate conditions: {name!r} is set in only one of them")
            return None if a is None else torch.cat([a, b])
        return Cond(**{f.name: pair(f.name) for f in fields(self)})


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


def drop_conditions(cond: Cond, p: float | dict[str, float], generator: torch.Generator | None = None,
                    uniforms: Tensor | None = None) -> Cond:
    """Conditioning dropout for classifier-free guidance: each condition is dropped per sample with prob p.

    The coin flips come from `generator`, or from `uniforms` [B, len(CONDITIONS)] in [0, 1) (column j for
    CONDITIONS[j]) when the caller draws its own per sample."""
    probs = p if isinstance(p, dict) else {n: p for n in CONDITIONS}
    flags = {}
    for j, name in enumerate(CONDITIONS):
        current = cond.present(name)
        if current is None or probs.get(name, 0.0) <= 0.0:
            continue
        u = uniforms[:, j] if uniforms is not None else torch.rand(
            current.shape, generator=generator, device=current.device if generator is None else generator.device)
        flags[name] = u.to(current.device) >= probs[name]
    return cond.with_flags(**flags)


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def sobel_x(video: Tensor) -> Tensor:
    """Sobel x-gradient of each frame and channel, [B, C, F, H, W] -> same shape (paper appendix B).

    Divided by 8 so that the sharpest edge in [-1, 1] video (a -1 to 1 step) gives a response of magnitude 1; replicate
    padding keeps the borders free of false edges.
    """
    b, c, f, h, w = video.shape
    frames = video.permute(0, 2, 1, 3, 4).reshape(b * f * c, 1, h, w)
    kernel = _SOBEL_X.to(video).view(1, 1, 3, 3)
    grad = F.conv2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), kernel)
    return grad.view(b, f, c, h, w).permute(0, 2, 1, 3, 4).contiguous()


def resize_video(video: Tensor, size: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """Each frame of [B, C, F, H, W] resized to `size` (height, width): "area" averages (downsampling without
    aliasing), "bicubic" / "bilinear" interpolate (upsampling). Not clamped: bicubic overshoots a little at edges."""
    b, c, f, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * f, c, h, w)
    kwargs = {} if mode in ("area", "nearest") else {"align_corners": False}
    out = F.interpolate(frames, size=tuple(size), mode=mode, **kwargs)
    return out.reshape(b, f, c, *out.shape[-2:]).transpose(1, 2).contiguous()


def lowres_condition(video: Tensor, factor: int) -> Tensor:
    """What a super-resolution stage of `factor` is conditioned on when trained on `video`: the video averaged down
    by `factor` (what the stage below it makes) and upsampled bicubically back to its size (Imagen Video's SR input,
    concatenated on channels)."""
    h, w = video.shape[-2:]
    if factor < 2 or h % factor or w % factor:
        raise ValueError(f"a {h}x{w} video cannot be downsampled by {factor}: the factor must be at least 2 and "
                         "divide the height and width")
    small = resize_video(video, (h // factor, w // factor), "area")
    return resize_video(small, (h, w), "bicubic").clamp(-1, 1)


def diffusion_target(video: Tensor, model_cfg) -> Tensor:
    """What a model (`model_cfg`: its UNetConfig) learns to denoise for the clean `video`: the video itself, or for a
    residual super-resolution stage (lowres_residual > 0; SRDiff, Li et al. 2022) the detail its clean input leaves
    out, (video - lowres_condition(video)) / lowres_residual. `video_from_residual` inverts it."""
    if not model_cfg.lowres_residual:
        return video
    return (video - lowres_condition(video, model_cfg.lowres_factor)) / model_cfg.lowres_residual


def video_from_residual(detail: Tensor, lowres: Tensor, scale: float) -> Tensor:
    """A residual stage's sample `detail` put back on its clean upsampled input `lowres`, in the data range [-1, 1]:
    clip(lowres + scale * detail). Its x0 predictions are not clipped on the way (their range depends on `lowres`),
    so the range is enforced here, once."""
    return (lowres + scale * detail).clamp(-1, 1)


def augment_lowres(lowres: Tensor, level: Tensor, noise: Tensor) -> Tensor:
    """Noise conditioning augmentation (Ho et al. 2021, "Cascaded Diffusion Models"; Imagen Video): a super-resolution
    stage's input [B, C, F, H, W] noised to a per-sample level [B] in [0, 1], the time u of the unclipped cosine
    schedule: cos(pi u / 2) lowres + sin(pi u / 2) noise, variance-preserving like the denoiser's own noising. A row
    at level 0 is `lowres` itself, bit for bit. Training (random levels) and the cascade (one fixed level) both noise
    through here; the level goes to the network as `Cond.lowres_level`. Levels are not range-checked here (that
    would cost training a host sync per step): the callers draw or check them."""
    if level.shape != lowres.shape[:1] or noise.shape != lowres.shape:
        raise ValueError(f"augment_lowres takes a level per sample [B] and noise shaped like the input "
                         f"{list(lowres.shape)}; got {list(level.shape)} and {list(noise.shape)}")
    angle = (level.to(lowres.device, torch.float32) * (math.pi / 2)).view(-1, 1, 1, 1, 1)
    noised = (torch.cos(angle) * lowres.float() + torch.sin(angle) * noise.to(lowres.device).float()).to(lowres.dtype)
    return torch.where(angle == 0, lowres, noised)


def make_cond(video: Tensor, text, model_cfg, augment: tuple[Tensor, Tensor] | None = None) -> Cond:
    """Every condition the model accepts (`model_cfg`: its UNetConfig), taken from the clean video itself and its
    caption's `TextEmbedding`. A stage with noise augmentation (lowres_aug > 0) gets its low-resolution input noised
    by `augment` = (levels [B], noise like the video) through `augment_lowres`, or at level 0 without it."""
    factor, lowres, level = model_cfg.lowres_factor, None, None
    if factor:
        lowres = lowres_condition(video, factor)
    if factor and model_cfg.lowres_aug:
        if augment is None:
            level = torch.zeros(len(video), device=video.device)
        else:
            level, noise = augment
            lowres = augment_lowres(lowres, level.to(video.device), noise)
    elif augment is not None:
        raise ValueError("noise augmentation is for a super-resolution stage built with lowres_aug > 0")
    return Cond.make(text=text.tokens, text_mask=text.mask, pooled=text.pooled,
                     first_frame=video[:, :, 0] if model_cfg.first_frame_cond else None,
                     edges=sobel_x(video) if model_cfg.edge_cond else None, lowres=lowres, lowres_level=level)
