"""Factorised space-time U-Net denoiser (Imagen Video / VDM style), predicting eps from (x_t, logsnr, cond).

Spatial convolutions and attention run per frame, temporal ones per pixel (Ho et al. 2022, "Video
Diffusion Models"). Text enters twice: cross-attention over token embeddings and the pooled embedding
added to the noise-level embedding. The paper's pixel conditions (appendix B) are concatenated to the
input channels: the first frame replicated over all frames, and the Sobel x-gradient of each frame.
Each has a present flag embedded next to the noise level, so one model trains with and without it.

State shapes are written `[B, C, F, H, W]` throughout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from ..common.config import config_from_dict
from ..maths.conditioning import Cond
from ..maths.schedule import eps_from_v
from .layers import (Attention, FactorisedConv, augmentation_features, conv_space, conv_time, noise_level_features,
                     zero_init)


@dataclass(frozen=True)
class UNetConfig:
    channels: int = 3                                 # video channels in and out
    frames: int = 16                                  # paper: 16 frames
    height: int = 24                                  # paper: 24x40
    width: int = 40
    base_channels: int = 32                           # paper Small (S): 32
    channel_mults: tuple[int, ...] = (1, 2, 4)        # paper: [1, 2, 4]
    num_res_blocks: int = 1                           # paper Small (S): 1; prior: 3
    attention_resolutions: tuple[int, ...] = (6, 12)  # feature-map heights with attention; paper prior: [6, 12, 24]
    head_dim: int = 64                                # width of one attention head; heads = channels // head_dim
    emb_dim: int = 128                                # conditioning embedding width; paper prior: 1024
    text_dim: int = 384                               # text token width (all-MiniLM-L6-v2: 384; T5-XXL: 4096)
    first_frame_cond: bool = True                     # concat the replicated first frame (Bridge, Ego4D)
    edge_cond: bool = False                           # concat the Sobel x-gradient (stylisation, sim-to-real)
    temporal_attention: bool = True                   # temporal self-attention wherever spatial attention runs
    dropout: float = 0.0                              # residual-block dropout
    norm_groups: int = 32                             # GroupNorm groups (fewer where channels are few)
    prediction: str = "v"                             # network output, "v" (Imagen Video) or "eps"; forward returns eps
    space: str = "pixels"                             # what x is: "pixels", or a prior's "latent:<vae>" (diffusers)
    lowres_factor: int = 0                            # >0: a super-resolution stage from 1/this size (cond.lowres)
    lowres_aug: float = 0.0                           # >0: noise augmentation of cond.lowres, levels in [0, this]
    lowres_residual: float = 0.0                      # >0: diffuse the detail over the clean cond.lowres, divided by
                                                      # this (SRDiff), not the video (0)

    def __post_init__(self):
        levels = len(self.channel_mults)
        factor = 2 ** (levels - 1)
        if self.height % factor or self.width % factor:
            raise ValueError(
                f"height x width {self.height}x{self.width} must be divisible by {factor} "
                f"(2^(levels-1) for channel_mults={self.channel_mults}); change the size or use fewer levels")
        heights = {self.height // 2**i for i in range(levels)}
        if bad := sorted(set(self.attention_resolutions) - heights):
            raise ValueError(f"attention_resolutions {bad} are not feature-map heights of this U-Net; "
                             f"choose from {sorted(heights)}")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', not {self.prediction!r}")
        if self.head_dim < 1 or self.base_channels < 1 or self.num_res_blocks < 1:
            raise ValueError("head_dim, base_channels and num_res_blocks must be positive")
        if self.lowres_factor and (self.lowres_factor < 2 or self.height % self.lowres_factor
                                   or self.width % self.lowres_factor):
            raise ValueError(f"lowres_factor {self.lowres_factor} must be 0 (not a super-resolution stage) or at least "
                             f"2 and divide height x width {self.height}x{self.width}")
        if not 0.0 <= self.lowres_aug <= 1.0 or (self.lowres_aug and not self.lowres_factor):
            raise ValueError(f"lowres_aug {self.lowres_aug} must be 0 (off) or the largest noise augmentation level, "
                             "a cosine time in (0, 1], of a super-resolution stage (lowres_factor >= 2)")
        if not (math.isfinite(self.lowres_residual) and self.lowres_residual >= 0) or (
                self.lowres_residual and not self.lowres_factor):
            raise ValueError(f"lowres_residual {self.lowres_residual} must be 0 (off) or the positive scale of a "
                             "super-resolution stage's residual (lowres_factor >= 2)")

    @property
    def in_channels(self) -> int:
        return self.channels * (1 + self.first_frame_cond + self.edge_cond + bool(self.lowres_factor))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        return config_from_dict(cls, d)


# The UNetConfig fields that decide which parameters the network has and their shapes (height: which levels attend;
# frames: the temporal attention's frame offsets). A checkpoint's config.json must give each: a default would build a
# network of another size, and loading would blame the weights.
WEIGHT_SHAPE_FIELDS = ("channels", "frames", "height", "base_channels", "channel_mults", "num_res_blocks",
                       "attention_resolutions", "emb_dim", "text_dim", "first_frame_cond", "edge_cond",
                       "temporal_attention")
# Fields that shape the weights but were added after checkpoints shipped without them (checkpoints/prior). Each
# value here is what every such checkpoint was built with, so a config.json lacking the field loads with it, exactly
# and without a warning: not a guessed default.
ADDED_SHAPE_FIELDS = {"lowres_factor": 0,  # no super-resolution input before the SR cascade (issue 28)
                      "lowres_aug": 0.0}    # and no noise augmentation of it before issue 28's item 3
# Fields added since that change what the weights mean, not their shapes: likewise exactly what every checkpoint
# lacking them was trained with.
ADDED_MEANING_FIELDS = {"lowres_residual": 0.0}  # SR stages denoised the video itself before their residual form


PRESETS: dict[str, UNetConfig] = {
    # paper appendix B, Bridge/Ego4D Small (S): a single residual block with 32 base channels
    "S": UNetConfig(),
    # paper appendix B, Bridge Small (L): a single residual block with 64 base channels
    "L": UNetConfig(base_channels=64, emb_dim=256),
    # about 35M parameters, the size of the training-throughput benchmark (docs/benchmarks.md). Channels
    # double at every level, so each level costs about the same FLOPs while the parameters sit at low resolution.
    "bench-35m": UNetConfig(base_channels=40, channel_mults=(1, 2, 4, 8), num_res_blocks=2,
                            attention_resolutions=(6, 3), emb_dim=256),
    # our pretrained prior (checkpoints/prior): bench-35m taking text, the first frame and edges, each optional
    "prior": UNetConfig(base_channels=40, channel_mults=(1, 2, 4, 8), num_res_blocks=2, attention_resolutions=(6, 3),
                        emb_dim=256, edge_cond=True),
    # Small (S) and (L) at our prior's scale: 1.23% and 2.48% of "prior", as the paper's Bridge models are
    # 1.25% and 2.5% of its 5.6B prior (Table 1)
    "small-s": UNetConfig(base_channels=8, head_dim=16, emb_dim=64),
    "small-l": UNetConfig(base_channels=12, head_dim=16, emb_dim=128),
    # paper appendix B, the 5.6B pretrained prior's shape (T5-XXL text); build it on the meta device
    # spatial super-resolution stages (Imagen Video's SSR models, scaled down): conditioned on the stage below's
    # output upsampled bicubically and concatenated on channels; no first frame, no edges (they came in at the base
    # resolution), spatial attention only at the lowest level: at these sizes it would cost the most. Noise
    # conditioning augmentation (Cascaded Diffusion Models): trained on inputs noised to levels in [0, 0.5], sampled
    # at the cascade's fixed level (generation.cascade.DEFAULT_AUG_LEVEL, 0.2), robust to the base model's artefacts.
    # Each diffuses its detail over the bicubic input (SRDiff), scaled by 1/0.2: that detail's std is 0.04-0.09 on
    # the SR data's parts against a video's 0.23-0.59 (docs/results/sr-cpu-residual/detail_std.txt), so scaled it
    # spans about what a video does; a stage learns the detail alone, and its errors land on that detail
    "sr-48x80": UNetConfig(height=48, width=80, base_channels=32, channel_mults=(1, 2, 4), num_res_blocks=2,
                           attention_resolutions=(12,), emb_dim=128, first_frame_cond=False, lowres_factor=2,
                           lowres_aug=0.5, lowres_residual=0.2),
    "sr-96x160": UNetConfig(height=96, width=160, base_channels=24, channel_mults=(1, 2, 4, 4), num_res_blocks=2,
                            attention_resolutions=(12,), emb_dim=128, first_frame_cond=False, lowres_factor=2,
                            lowres_aug=0.5, lowres_residual=0.2),
    "sr-192x320": UNetConfig(height=192, width=320, base_channels=16, channel_mults=(1, 2, 4, 8, 8),
                             num_res_blocks=2, attention_resolutions=(12,), emb_dim=128, first_frame_cond=False,
                             lowres_factor=4, lowres_aug=0.5, lowres_residual=0.2),
    "paper-5.6b": UNetConfig(base_channels=1024, channel_mults=(1, 2, 4), num_res_blocks=3,
                             attention_resolutions=(6, 12, 24), head_dim=64, emb_dim=1024, text_dim=4096,
                             edge_cond=True),
}


def preset(name: str, **overrides) -> UNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def _groups(channels: int, max_groups: int) -> int:
    return math.gcd(channels, max_groups) if channels >= max_groups else max(1, math.gcd(channels, channels // 4 or 1))


def norm(channels: int, cfg: UNetConfig) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels, cfg.norm_groups), channels)


class ResBlock(nn.Module):
    """Spatial residual block with scale-shift noise conditioning, then a residual temporal convolution."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig):
        super().__init__()
        self.norm1, self.conv1 = norm(cin, cfg), conv_space(cin, cout)
        self.emb = nn.Linear(cfg.emb_dim, 2 * cout)
        self.norm2, self.conv2 = norm(cout, cfg), zero_init(conv_space(cout, cout))
        self.dropout = nn.Dropout(cfg.dropout)
        self.skip = FactorisedConv(cin, cout, (1, 1, 1)) if cin != cout else nn.Identity()
        self.norm_t, self.conv_t = norm(cout, cfg), zero_init(conv_time(cout, cout))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.emb(emb), "b (two c) -> two b c 1 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        x = self.skip(x) + h
        return x + self.conv_t(F.silu(self.norm_t(x)))


class SpaceTimeAttention(nn.Module):
    """Spatial self-attention per frame, text cross-attention, temporal self-attention per pixel."""

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.spatial = Attention(channels, None, cfg.head_dim)
        self.cross = Attention(channels, cfg.text_dim, cfg.head_dim)
        self.temporal = Attention(channels, None, cfg.head_dim) if cfg.temporal_attention else None
        # Temporal attention is otherwise blind to frame order; a learned per-frame offset tells it.
        self.frame_pos = nn.Parameter(torch.zeros(cfg.frames, channels)) if cfg.temporal_attention else None

    def forward(self, x: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        b, c, f, hh, ww = x.shape
        h = rearrange(x, "b c f h w -> (b f) (h w) c")
        h = self.spatial(h)
        # Cross-attention has no interaction between queries, so all frames share one key set per video.
        h = rearrange(h, "(b f) s c -> b (f s) c", b=b)
        h = self.cross(h, text, text_mask[:, None, None, :])
        if self.temporal is not None:
            h = rearrange(h, "b (f h w) c -> (b h w) f c", f=f, h=hh) + self.frame_pos[:f]
            h = self.temporal(h) - self.frame_pos[:f]
            return rearrange(h, "(b h w) f c -> b c f h w", b=b, h=hh)
        return rearrange(h, "b (f h w) c -> b c f h w", f=f, h=hh)


class Level(nn.Module):
    """One resolution of the U-Net: residual blocks, each followed by attention where configured."""

    def __init__(self, cins: list[int], cout: int, attend: bool, cfg: UNetConfig):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(cin, cout, cfg) for cin in cins)
        self.attn = nn.ModuleList(SpaceTimeAttention(cout, cfg) for _ in cins) if attend else None


class SpaceTimeUNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        chans = [cfg.base_channels * m for m in cfg.channel_mults]
        heights = [cfg.height // 2**i for i in range(len(chans))]
        attend = [hgt in cfg.attention_resolutions for hgt in heights]

        self.noise_mlp = nn.Sequential(
            nn.Linear(cfg.base_channels, cfg.emb_dim), nn.SiLU(), nn.Linear(cfg.emb_dim, cfg.emb_dim))
        self.pooled_proj = nn.Linear(cfg.text_dim, cfg.emb_dim)
        self.flag_proj = nn.Linear(3, cfg.emb_dim, bias=False)  # present flags: text, first frame, edges
        # the low-resolution input's noise augmentation level; bias-free, so level 0 adds exactly nothing
        self.aug_proj = nn.Linear(cfg.base_channels, cfg.emb_dim, bias=False) if cfg.lowres_aug else None
        # A learned null token keeps cross-attention defined when every text token is masked (dropped text).
        self.null_text = nn.Parameter(torch.randn(1, 1, cfg.text_dim) * 0.02)

        self.conv_in = conv_space(cfg.in_channels, chans[0])
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, c = [chans[0]], chans[0]
        for i, cout in enumerate(chans):
            self.down.append(Level([c] + [cout] * (cfg.num_res_blocks - 1), cout, attend[i], cfg))
            c = cout
            skips += [c] * cfg.num_res_blocks
            if i < len(chans) - 1:
                self.downsample.append(conv_space(c, c, stride=2))
                skips.append(c)
        self.mid = Level([c, c], c, True, cfg)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, cout in reversed(list(enumerate(chans))):
            cins = []
            for _ in range(cfg.num_res_blocks + 1):
                cins.append(c + skips.pop())
                c = cout
            self.up.append(Level(cins, cout, attend[i], cfg))
            if i > 0:
                self.upsample.append(conv_space(c, c))
        self.norm_out = norm(c, cfg)
        self.conv_out = zero_init(conv_space(c, cfg.channels))

    def embed(self, logsnr: Tensor, cond: Cond, batch: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """Noise-level embedding with pooled text and present flags, and the cross-attention context."""
        cfg, device = self.cfg, logsnr.device
        emb = self.noise_mlp(noise_level_features(logsnr, cfg.base_channels))
        flags = torch.stack([_flag(cond, n, batch, device) for n in ("text", "first_frame", "edges")], dim=1)
        emb = emb + self.flag_proj(flags.to(emb.dtype))
        if self.aug_proj is not None:
            if cond.lowres_level is None or cond.lowres_level.shape != (batch,):
                raise ValueError(f"this super-resolution model was trained with noise augmentation (lowres_aug="
                                 f"{cfg.lowres_aug}) and needs cond.lowres_level [{batch}], the level its cond.lowres "
                                 "was noised to (generation.cascade sets it; 0: a clean input)")
            emb = emb + self.aug_proj(augmentation_features(cond.lowres_level, cfg.base_channels).to(emb.dtype))
        elif cond.lowres_level is not None:
            raise ValueError("this model takes no noise augmentation level (lowres_aug=0); drop cond.lowres_level")
        null = self.null_text.expand(batch, 1, -1)
        if cond.text is None:
            return emb, null.to(dtype), torch.ones(batch, 1, dtype=torch.bool, device=device)
        has_text = flags[:, 0].bool()
        if cond.text.shape[-1] != cfg.text_dim:
            raise ValueError(f"text embeddings have width {cond.text.shape[-1]} but the model expects "
                             f"text_dim={cfg.text_dim}; use the text encoder the model was trained with")
        emb = emb + self.pooled_proj(cond.pooled.to(emb.dtype)) * has_text[:, None].to(emb.dtype)
        context = torch.cat([null.to(cond.text.dtype), cond.text], dim=1).to(dtype)
        mask = torch.cat([torch.ones_like(cond.text_mask[:, :1]), cond.text_mask & has_text[:, None]], dim=1)
        return emb, context, mask

    def condition_channels(self, x: Tensor, cond: Cond) -> Tensor:
        """The noisy video with the paper's pixel conditions concatenated on channels (zeros where absent)."""
        b, device = x.shape[0], x.device
        parts = [x]
        if self.cfg.first_frame_cond:
            ff = torch.zeros_like(x) if cond.first_frame is None else repeat(
                cond.first_frame.to(x), "b c h w -> b c f h w", f=x.shape[2])
            parts.append(ff * _flag(cond, "first_frame", b, device).to(x.dtype).view(b, 1, 1, 1, 1))
        elif cond.first_frame is not None:
            raise ValueError("this model was not built with first-frame conditioning (first_frame_cond=False)")
        if self.cfg.edge_cond:
            edges = torch.zeros_like(x) if cond.edges is None else cond.edges.to(x)
            parts.append(edges * _flag(cond, "edges", b, device).to(x.dtype).view(b, 1, 1, 1, 1))
        elif cond.edges is not None:
            raise ValueError("this model was not built with edge conditioning (edge_cond=False)")
        if self.cfg.lowres_factor:
            if cond.lowres is None or cond.lowres.shape != x.shape:
                raise ValueError(f"this super-resolution model needs cond.lowres, the low-resolution video upsampled to "
                                 f"{list(x.shape)}; got {None if cond.lowres is None else list(cond.lowres.shape)} "
                                 "(generation.cascade builds it)")
            parts.append(cond.lowres.to(x))
        elif cond.lowres is not None:
            raise ValueError("this model is not a super-resolution stage (lowres_factor=0); drop cond.lowres")
        return torch.cat(parts, dim=1)

    def forward(self, x: Tensor, logsnr: Tensor, cond: Cond | None = None, *, output: str = "eps") -> Tensor:
        """eps prediction for x [B, C, F, H, W] at per-sample logsnr [B]; `output="native"` gives the network's own
        `cfg.prediction` (what training regresses). v keeps x0 accurate at logsnr -20, where eps-prediction must
        be exact to 1e-4 for x0 = (x - sigma eps) / alpha to mean anything (Salimans & Ho 2022)."""
        cfg, cond = self.cfg, cond or Cond()
        b, _, f, hh, ww = x.shape
        if x.shape[1] != cfg.channels or f > cfg.frames or (hh, ww) != (cfg.height, cfg.width):
            raise ValueError(f"input {tuple(x.shape)} does not fit the model: expected [B, {cfg.channels}, "
                             f"<= {cfg.frames}, {cfg.height}, {cfg.width}]")
        logsnr = logsnr.expand(b) if logsnr.ndim == 0 else logsnr
        emb, context, mask = self.embed(logsnr, cond, b, x.dtype)
        h = self.conv_in(self.condition_channels(x, cond))
        skips = [h]
        for i, level in enumerate(self.down):
            h = self._run(level, h, emb, context, mask, skips)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self._run(self.mid, h, emb, context, mask)
        for i, level in enumerate(self.up):
            h = self._run(level, h, emb, context, mask, skips, pop=True)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=(1, 2, 2), mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        if output == "native" or self.cfg.prediction == "eps":
            return out
        return eps_from_v(x, out, logsnr)

    @staticmethod
    def _run(level: Level, h, emb, context, mask, skips=None, pop=False):
        for j, res in enumerate(level.res):
            if pop:
                h = torch.cat([h, skips.pop()], dim=1)
            h = res(h, emb)
            if level.attn is not None:
                h = level.attn[j](h, context, mask)
            if skips is not None and not pop:
                skips.append(h)
        return h


def _flag(cond: Cond, name: str, batch: int, device) -> Tensor:
    flag = cond.present(name)
    return torch.zeros(batch, dtype=torch.bool, device=device) if flag is None else flag.to(device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_unet(cfg: UNetConfig, device: torch.device | str | None = None) -> SpaceTimeUNet:
    """Builds the model; `device="meta"` allocates nothing (how the 5.6B preset is sized)."""
    with torch.device(device or "cpu"):
        return SpaceTimeUNet(cfg)


__all__ = ["PRESETS", "SpaceTimeUNet", "UNetConfig", "build_unet", "count_parameters", "preset"]
