"""Our own offline video network for metrics: the FVD-VA encoder and per-domain caption classifiers.

One compact factorised (2+1)D conv net (R(2+1)D, Tran et al. 2018: each 3x3x3 conv split into a 1x3x3 spatial and a
3x1x1 temporal one) with two objectives:

* "text": CLIP-style symmetric InfoNCE (Radford et al. 2021) between the video's embedding and its caption's pooled
  text embedding (all-MiniLM-L6-v2 by default), each through a learned linear projection, with a learnable
  temperature. Trained on the broad corpus, its pooled features give "FVD-VA": a Fréchet distance on our own
  features, in the spirit of FVD (Unterthiner et al. 2018) but NOT comparable with any published FVD number.
* "caption": cross-entropy over the distinct captions of a domain's train split (or of several folders, e.g. sim
  clips plus their generated real versions). Its accuracy on the real test split and on generated videos measures
  whether a video shows what its caption says (`classifier_score` scores it on a labelled folder).
* "domain": cross-entropy over named folders (`classes`, NAME=FOLDER), e.g. toon versus not, or real versus sim: the
  share of generated videos it puts in a class is style retention / realness (`metrics.style`).

`features` are the raw globally average-pooled activations, not L2-normalised, as FID's Inception pool3 and FVD's
I3D features are: a Fréchet distance fits Gaussians to them, and normalising would throw away the feature norm.
Videos are `[B, C, F, H, W]` floats in [-1, 1]. A trained net is a directory `config.json` + `model.safetensors`,
written atomically and loaded without pickle.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...common.config import config_from_dict
from ...common.devices import resolve_device
from ...common.files import atomic_write_text
from ...common.lr_schedule import warmup_cosine
from ...models.checkpoint import (
    CONFIG_NAME,
    CheckpointError,
    atomic_model_dir,
    check_state,
    load_tensors,
    read_config,
    save_tensors,
)
from ...models.layers import FactorisedConv, conv_space, conv_time

FORMAT_VERSION = 1
MODEL_TYPE = "VideoNet"
OBJECTIVES = ("text", "caption", "domain")
CLASSIFIERS = ("caption", "domain")  # objectives with a classification head over `labels`
STREAM = "stream:"  # as in video_adapter.data.sources: --data stream:KIND trains on clips made on the fly
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps its learned temperature so logits stay at most 100


@dataclass(frozen=True)
class VideoNetConfig:
    channels: int = 3                         # video channels
    frames: int = 16                          # input frames (paper: 16)
    height: int = 24                          # input height (paper: 24x40)
    width: int = 40                           # input width
    widths: tuple[int, ...] = (32, 64, 128)   # channels per stage; each stage after the first halves F, H and W
    blocks: int = 1                           # (2+1)D residual blocks per stage
    feature_dim: int = 256                    # width of the pooled features (FVD-VA's feature space)
    norm_groups: int = 8                      # GroupNorm groups (fewer where a width is not divisible)
    objective: str = "text"                   # "text": contrastive with caption embeddings | "caption" | "domain"
    labels: tuple[str, ...] = ()              # the classes: sorted distinct (rewritten) captions, or folder names
    caption_rewrites: tuple[str, ...] = ()    # "old=>new" substring rewrites applied in order to every caption
    text_encoder: str = "minilm"              # "text": spec of the encoder whose pooled caption embedding is matched
    text_dim: int = 384                       # "text": that pooled embedding's width (all-MiniLM-L6-v2: 384)
    embed_dim: int = 128                      # "text": width of the joint video-text space

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {self.objective!r}")
        if not self.widths or min(self.widths) < 1 or min(self.feature_dim, self.blocks, self.norm_groups) < 1:
            raise ValueError(f"widths {self.widths}, feature_dim, blocks and norm_groups must be positive")
        if min(self.channels, self.frames, self.height, self.width) < 1:
            raise ValueError(f"channels, frames, height and width must be positive, got "
                             f"{(self.channels, self.frames, self.height, self.width)}")
        if self.objective in CLASSIFIERS:
            if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
                raise ValueError(f"a {self.objective} classifier needs at least 2 distinct labels, got {len(self.labels)} "
                                 f"({len(set(self.labels))} distinct)")
        elif self.labels:
            raise ValueError("labels are the classes of objectives 'caption' and 'domain'; a 'text' encoder has none")
        check_rewrites(self.caption_rewrites)

    @property
    def num_classes(self) -> int:
        """Classifier outputs: one per label, 0 for a pure encoder."""
        return len(self.labels)

    def rewrite(self, caption: str) -> str:
        return rewrite_caption(caption, self.caption_rewrites)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VideoNetConfig:
        return config_from_dict(cls, d)


def check_rewrites(rules: tuple[str, ...]) -> None:
    if bad := [r for r in rules if "=>" not in r or not r.split("=>", 1)[0]]:
        raise ValueError(f"caption_rewrites must look like 'old=>new' with a non-empty old part, got {bad}")


def rewrite_caption(caption: str, rules: tuple[str, ...]) -> str:
    """`caption` with the "old=>new" substring rewrites applied in order: how synonymous captions become one label
    (a classifier cannot tell "push the red block left" from "slide the red block left" if the videos are alike)."""
    for rule in rules:
        old, new = rule.split("=>", 1)
        caption = caption.replace(old, new)
    return caption


def norm(channels: int, cfg: VideoNetConfig) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, cfg.norm_groups), channels)


class Block(nn.Module):
    """Pre-activation residual (2+1)D block: GroupNorm, SiLU, 1x3x3 spatial conv, then the same with a 3x1x1 temporal
    conv. The temporal conv starts at zero, so each block starts as the identity (a per-frame net) and learns motion."""

    def __init__(self, channels: int, cfg: VideoNetConfig):
        super().__init__()
        self.space = nn.Sequential(norm(channels, cfg), nn.SiLU(), conv_space(channels, channels))
        self.time = nn.Sequential(norm(channels, cfg), nn.SiLU(), conv_time(channels, channels))
        nn.init.zeros_(self.time[-1].weight)
        nn.init.zeros_(self.time[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.time(self.space(x))


def down(cin: int, cout: int, cfg: VideoNetConfig) -> nn.Sequential:
    """Halves H and W with a strided spatial conv, then F with a strided temporal conv (lengths round up)."""
    return nn.Sequential(norm(cin, cfg), nn.SiLU(), conv_space(cin, cout, stride=2), conv_time(cout, cout, stride=2))


class VideoNet(nn.Module):
    """Stem, stages of (2+1)D blocks with downsampling between them, a 1x1x1 conv to `feature_dim`, global average
    pool; then a linear head: caption logits ("caption") or the L2-normalised video embedding ("text")."""

    def __init__(self, cfg: VideoNetConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.stem = nn.Sequential(conv_space(cfg.channels, w[0]), conv_time(w[0], w[0]))
        self.stages = nn.Sequential(*[
            nn.Sequential(*([down(w[i - 1], w[i], cfg)] if i else []), *[Block(w[i], cfg) for _ in range(cfg.blocks)])
            for i in range(len(w))])
        self.to_features = nn.Sequential(norm(w[-1], cfg), nn.SiLU(), FactorisedConv(w[-1], cfg.feature_dim, (1, 1, 1)),
                                         norm(cfg.feature_dim, cfg), nn.SiLU())
        if cfg.objective in CLASSIFIERS:
            self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)
        else:
            self.head = nn.Linear(cfg.feature_dim, cfg.embed_dim)
            self.text_proj = nn.Linear(cfg.text_dim, cfg.embed_dim)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature 0.07

    def check_video(self, video: Tensor) -> None:
        """Raises a ValueError / TypeError saying what is wrong with an input that this net cannot score."""
        c = self.cfg
        want = (c.channels, c.frames, c.height, c.width)
        if not isinstance(video, Tensor):
            raise TypeError(f"video must be a torch.Tensor [B, C, F, H, W], got {type(video).__name__}")
        if not video.is_floating_point():
            raise TypeError(f"video must be float in [-1, 1], got {video.dtype}; convert uint8 frames with "
                            f"video_adapter.data.video_io.from_uint8 (or x / 127.5 - 1)")
        if video.dim() != 5 or tuple(video.shape[1:]) != want:
            raise ValueError(f"this video_net takes [B, C, F, H, W] = [B, {', '.join(map(str, want))}] (its config's "
                             f"channels, frames, height, width); got {list(video.shape)}. Resize the clips or "
                             f"score them with a net trained at that size")
        # generated videos may overshoot [-1, 1] a little; far outside it the input is in another range ([0, 255])
        if video.numel() and video.detach().abs().max() > 1.5:
            raise ValueError(f"video values must be in [-1, 1]; got a maximum |value| of "
                             f"{video.detach().abs().max().item():.3g}")

    def features(self, video: Tensor) -> Tensor:
        """Raw pooled features `[B, feature_dim]` (not normalised: the standard input of a Fréchet distance)."""
        self.check_video(video)
        x = self.to_features(self.stages(self.stem(video)))
        return x.mean(dim=(2, 3, 4))

    def forward(self, video: Tensor) -> Tensor:
        """Caption logits `[B, num_classes]` ("caption") or the unit-norm video embedding `[B, embed_dim]` ("text")."""
        out = self.head(self.features(video))
        return out if self.cfg.objective in CLASSIFIERS else F.normalize(out, dim=-1)

    def embed_text(self, pooled: Tensor) -> Tensor:
        """The unit-norm embedding `[B, embed_dim]` of pooled caption embeddings `[B, text_dim]` ("text" only)."""
        if self.cfg.objective != "text":
            raise ValueError("embed_text needs a net trained with objective 'text'")
        return F.normalize(self.text_proj(pooled), dim=-1)


def contrastive_loss(net: VideoNet, video: Tensor, pooled: Tensor, captions: list[str]) -> Tensor:
    """Symmetric InfoNCE over the batch. Clips sharing a caption are all positives of each other (targets spread
    evenly over them): with a few hundred distinct captions, duplicates in a batch are common, and calling them
    negatives would push apart exactly the clips the caption says are alike."""
    logits = net.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * net(video) @ net.embed_text(pooled).T
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    label = torch.tensor([ids[c] for c in captions], device=video.device)
    same = (label[:, None] == label[None]).float()
    target = same / same.sum(dim=1, keepdim=True)  # symmetric, so it serves both directions
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def caption_loss(net: VideoNet, video: Tensor, captions: list[str]) -> Tensor:
    index = {c: i for i, c in enumerate(net.cfg.labels)}
    label = torch.tensor([index[net.cfg.rewrite(c)] for c in captions], device=video.device)
    return F.cross_entropy(net(video), label)


@dataclass(frozen=True)
class VideoNetTrainConfig:
    data: tuple[str, ...] = ()            # folders of captioned videos (a domain's train/ split), or stream:KIND
    out: str = "runs/video-net"           # model directory written at the end: config.json + model.safetensors
    objective: str = "text"               # "text": FVD-VA encoder | "caption": a domain's classifier | "domain"
    classes: tuple[str, ...] = ()         # "domain": NAME=FOLDER pairs, each folder's clips labelled NAME (may repeat)
    frames: int = 16                      # clip length the net takes (scored clips must match)
    height: int = 24                      # clip height
    width: int = 40                       # clip width
    model: dict = field(default_factory=dict)  # VideoNetConfig field overrides (widths, feature_dim, embed_dim, ...)
    caption_rewrites: tuple[str, ...] = ()  # "old=>new" substring rewrites, in order, merging synonymous captions
    text_encoder: str = "minilm"          # "text": the caption encoder ("minilm" | "t5:/local/dir" | "clip:/local/dir")
    steps: int = 5_000                    # optimizer steps
    batch_size: int = 32                  # clips per step (for "text" also the contrastive negatives)
    lr: float = 1e-3                      # AdamW peak learning rate
    warmup_steps: int = 100               # linear warmup, then cosine decay to 0 at --steps
    weight_decay: float = 0.05            # AdamW decoupled weight decay on conv and linear weights only
    grad_clip: float = 1.0                # max global grad norm
    shift: int = 2                        # random translation by up to this many pixels (no flips: captions say left)
    stride: int = 1                       # temporal stride when reading videos (windows start at random offsets)
    num_workers: int = 0                  # DataLoader worker processes (0: in the main process)
    cache_videos: bool = True             # keep decoded videos in RAM (domain splits are small)
    device: str = "auto"                  # auto (cuda if available) | cpu | cuda
    seed: int = 0                         # seeds the weights, data order, temporal crops and shifts

    def __post_init__(self):
        if isinstance(self.data, str):  # one folder, as `data` was before it took several
            object.__setattr__(self, "data", (self.data,) if self.data else ())

    def model_config(self, labels: tuple[str, ...] = ()) -> VideoNetConfig:
        """The net for this run; `labels` are the classes of objective "caption" (from the data)."""
        if unknown := sorted(set(self.model) - {f.name for f in fields(VideoNetConfig)}):
            raise ValueError(f"unknown VideoNetConfig fields in model overrides: {unknown}")
        fixed = dict(frames=self.frames, height=self.height, width=self.width, objective=self.objective,
                     labels=tuple(labels), caption_rewrites=self.caption_rewrites, text_encoder=self.text_encoder)
        if clash := sorted(set(self.model) & set(fixed)):
            raise ValueError(f"set {clash} as train options, not model overrides")
        return VideoNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.model.items()}, **fixed)

    @classmethod
    def from_dict(cls, d: dict) -> VideoNetTrainConfig:
        if isinstance(d, dict) and isinstance(d.get("data"), str):  # a config.json saved when data was one folder
            d = {**d, "data": [d["data"]] if d["data"] else []}
        return config_from_dict(cls, d)


def batches(cfg: VideoNetTrainConfig) -> tuple[str, tuple[str, ...], object]:
    """(a description, the sorted distinct rewritten captions of the folders, an endless iterator of batches)."""
    from ...data.dataset import ResumableSampler, VideoFolderDataset
    from ...data.sources import Concatenated, folder_batches, stream_batches

    size = (cfg.height, cfg.width)
    if cfg.objective == "domain":
        from .domain_data import domain_batches

        if cfg.data:
            raise ValueError(f"objective 'domain' reads --classes NAME=FOLDER ..., not --data {' '.join(cfg.data)}")

        return domain_batches(cfg.classes, cfg.frames, size, cfg.stride, cfg.batch_size, cfg.seed, cfg.cache_videos,
                              cfg.num_workers)
    if cfg.classes:
        raise ValueError("--classes names the folders of objective 'domain'; pass --objective domain or drop it")
    if not cfg.data:
        raise ValueError("pass data: folders of captioned videos (e.g. a make-data DIR/train) or stream:KIND")
    if streams := [d for d in cfg.data if d.startswith(STREAM)]:
        if len(cfg.data) > 1:
            raise ValueError(f"{streams[0]} streams on its own; pass it alone or pass folders, not "
                             f"{' '.join(cfg.data)}")
        if cfg.objective == "caption":
            raise ValueError(f"objective 'caption' needs folders (their distinct captions are the classes), not "
                             f"{streams[0]}; a stream suits objective 'text'")
        kind = streams[0][len(STREAM):]
        stream = stream_batches(kind, cfg.seed, size, cfg.frames, cfg.batch_size, cfg.num_workers, 0, 1, None)
        return f"clips of {kind} made on the fly", (), (b for b, _ in stream)
    parts = [VideoFolderDataset(folder, frames=cfg.frames, size=size, stride=cfg.stride, random_crop=True,
                                seed=cfg.seed, cache=cfg.cache_videos, workers=cfg.num_workers) for folder in cfg.data]
    dataset = parts[0] if len(parts) == 1 else Concatenated(parts)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"{' + '.join(cfg.data)}: {len(dataset)} videos, fewer than one batch of {cfg.batch_size}; "
                         f"lower batch_size")
    sampler = ResumableSampler(len(dataset), seed=cfg.seed, drop_last=True, with_epoch=True)
    # the classes are the union over the folders: a caption found in one folder only is still a class
    distinct = tuple(sorted({rewrite_caption(c, cfg.caption_rewrites) for part in parts for c in part.captions}))
    folder = folder_batches(dataset, sampler, cfg.batch_size, cfg.num_workers)
    labels = distinct if cfg.objective == "caption" else ()
    where = f" in {len(parts)} folders" if len(parts) > 1 else ""
    return f"{len(dataset)} videos{where}, {len(distinct)} distinct captions", labels, (b for b, _ in folder)


def random_shift(video: Tensor, shift: int, gen: torch.Generator) -> Tensor:
    """Each clip translated by its own (dy, dx) in [-shift, shift], edges replicated. Meaning-preserving, unlike a
    horizontal flip (captions say "left") or time reversal (it turns "moves left" into "moves right")."""
    if shift <= 0:
        return video
    b, _, f, h, w = video.shape
    padded = rearrange(F.pad(rearrange(video, "b c f h w -> b (c f) h w"), (shift,) * 4, mode="replicate"),
                       "b (c f) h w -> b c f h w", f=f)
    offsets = torch.randint(0, 2 * shift + 1, (b, 2), generator=gen).tolist()
    return torch.stack([padded[i, ..., dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def lr_at(step: int, cfg: VideoNetTrainConfig) -> float:
    return warmup_cosine(step, cfg.lr, cfg.warmup_steps, cfg.steps)


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights only: decaying norms, biases or the temperature only hurts."""
    decay = [p for p in net.parameters() if p.ndim >= 2]
    rest = [p for p in net.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def train_video_net(cfg: VideoNetTrainConfig) -> Path:
    """Trains a VideoNet on `cfg.data` and writes it to `cfg.out`; deterministic given the seed on CPU."""
    from tqdm.auto import tqdm

    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {cfg.objective!r}")
    if cfg.steps < 1 or cfg.batch_size < 2:
        raise ValueError(f"steps must be >= 1 and batch_size >= 2, got {cfg.steps} and {cfg.batch_size}")
    device = resolve_device(cfg.device)
    check_rewrites(cfg.caption_rewrites)
    described, labels, data = batches(cfg)
    net_cfg = cfg.model_config(labels)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
        torch.manual_seed(cfg.seed)
        net = VideoNet(net_cfg)
    net.to(device)
    text = None
    if cfg.objective == "text":
        from ...models.text import load_text_encoder

        text = load_text_encoder(cfg.text_encoder, device=device, cache=True)
        if text.dim != net_cfg.text_dim:
            raise ValueError(f"text encoder {text.spec} gives {text.dim}-d embeddings; set model text_dim={text.dim}")
    opt = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = sum(p.numel() for p in net.parameters())
    print(f"video_net ({cfg.objective}): {params / 1e6:.2f}M parameters, {described}, device {device}", file=sys.stderr)
    recent, initial = deque(maxlen=20), None  # final_loss: the mean of the last 20 steps, less noisy than one
    bar = tqdm(range(cfg.steps), desc=f"train-video-net ({cfg.objective})")
    for step in bar:
        batch = next(data)
        video = random_shift(batch["video"], cfg.shift, gen).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        if text is not None:
            loss = contrastive_loss(net, video, text.encode(batch["caption"], device=device).pooled, batch["caption"])
        else:
            loss = caption_loss(net, video, batch["caption"])
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}; lower lr or check the data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        initial = loss.item() if initial is None else initial
        recent.append(loss.item())
        if step % 10 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{np.mean(recent):.4f}")
    record = {"train": asdict(cfg), "step": cfg.steps, "initial_loss": initial,
              "final_loss": float(np.mean(recent)), "final_loss_steps": len(recent)}
    return save_video_net(cfg.out, net, **record)


def save_video_net(directory: str | Path, net: VideoNet, **extra) -> Path:
    """Writes config.json (the net's config and `extra`) + model.safetensors into a temp directory renamed into place,
    so a crash never leaves a half-written net where a complete one is expected."""
    with atomic_model_dir(directory) as tmp:
        save_tensors(net.state_dict(), tmp, "model")
        config = {"format_version": FORMAT_VERSION, "model_type": MODEL_TYPE, "model": net.cfg.to_dict(), **extra}
        atomic_write_text(tmp / CONFIG_NAME, json.dumps(config, indent=2))
    return Path(directory)


def read_video_net_config(directory: str | Path) -> dict:
    """config.json of a video_net directory, checked to describe one; CheckpointError says what is wrong."""
    try:
        return read_config(directory, MODEL_TYPE, "model", "video-adapter train-video-net")
    except CheckpointError as e:
        if "'SpaceTimeUNet'" in str(e):
            raise CheckpointError(f"{e} (a denoiser checkpoint, not a video_net)") from e
        raise


def load_video_net(directory: str | Path, device: torch.device | str | None = None) -> VideoNet:
    """The trained net of a directory (safetensors + JSON only, never pickle), in eval mode without gradients."""
    config = read_video_net_config(directory)
    try:
        cfg = VideoNetConfig.from_dict(config["model"])
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{Path(directory) / CONFIG_NAME}: invalid video_net config: {e}") from e
    net = VideoNet(cfg)
    state = load_tensors(Path(directory))
    check_state(net, state, directory)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval().requires_grad_(False)


def _batched(net: VideoNet, videos: Tensor, batch_size: int, fn) -> list[Tensor]:
    if not isinstance(videos, Tensor):
        raise TypeError(f"videos must be a torch.Tensor [N, C, F, H, W], got {type(videos).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(net.parameters())
    with torch.no_grad():  # GroupNorm and no dropout: train and eval mode compute the same, so the mode is left alone
        return [fn(videos[i:i + batch_size].to(param.device, param.dtype)).float().cpu()
                for i in range(0, len(videos), batch_size)]


def video_net_features(net: VideoNet, videos: Tensor, batch_size: int = 32) -> np.ndarray:
    """Pooled features of `videos` [N, C, F, H, W] in [-1, 1] as float64 [N, feature_dim], for FVD-VA."""
    out = _batched(net, videos, batch_size, net.features)
    return torch.cat(out).double().numpy() if out else np.zeros((0, net.cfg.feature_dim))


def _require_classifier(net: VideoNet) -> None:
    if net.cfg.objective not in CLASSIFIERS:
        raise ValueError("predicting labels needs a video_net trained with objective 'caption' or 'domain' (a "
                         "classifier); this one is a 'text' encoder")


def predict_captions(net: VideoNet, videos: Tensor, batch_size: int = 32) -> list[str]:
    """The label a classifier (objective caption or domain) gives each video."""
    _require_classifier(net)
    out = _batched(net, videos, batch_size, net)
    return [net.cfg.labels[i] for i in torch.cat(out).argmax(dim=1).tolist()] if out else []


def scorable(net: VideoNet, captions: list[str], where: str = "") -> list[int]:
    """Indices of the captions a caption classifier can score: those whose (rewritten) caption is one of its labels.
    None is an error; some missing is a warning saying how many are left out (`where`: " under FOLDER", say)."""
    labels = set(net.cfg.labels)
    known = [i for i, c in enumerate(captions) if net.cfg.rewrite(c) in labels]
    if not known:
        raise ValueError(f"none of the {len(captions)} captions{where} is among this classifier's "
                         f"{net.cfg.num_classes} labels (e.g. {captions[0]!r}); use the classifier trained on their "
                         "domain")
    if len(known) < len(captions):
        warnings.warn(f"{len(captions) - len(known)} of {len(captions)} captions{where} are not among the "
                      f"classifier's labels; accuracy counts only the other {len(known)}", stacklevel=3)
    return known


def caption_predictions(net: VideoNet, videos: Tensor, captions: list[str], batch_size: int = 32) -> np.ndarray:
    """Per-video correctness (bool) of the classifier's prediction, for the videos whose (rewritten) caption is one
    of its labels, in order. Others cannot be scored: they are left out, with a warning saying how many."""
    _require_classifier(net)
    captions = _check_captions(videos, captions)
    known = scorable(net, captions)
    predicted = predict_captions(net, videos[known], batch_size)
    return np.array([p == net.cfg.rewrite(captions[i]) for p, i in zip(predicted, known)], dtype=bool)


def caption_accuracy(net: VideoNet, videos: Tensor, captions: list[str], batch_size: int = 32) -> dict:
    """How often the classifier names each video's caption: {"accuracy" over the `num` videos with a known caption,
    "num", "num_unknown": videos whose caption is not among the labels (excluded, never counted wrong), "unknown":
    those distinct captions, "chance": 1 / number of labels}. accuracy is NaN when no caption is known."""
    _require_classifier(net)
    captions, labels = _check_captions(videos, captions), set(net.cfg.labels)
    unknown = sorted({c for c in captions if net.cfg.rewrite(c) not in labels})
    num_unknown = sum(net.cfg.rewrite(c) not in labels for c in captions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the return says how many were left out
        correct = caption_predictions(net, videos, captions, batch_size) if num_unknown < len(captions) else []
    return {"accuracy": float(np.mean(correct)) if len(correct) else float("nan"), "num": len(correct),
            "num_unknown": num_unknown, "unknown": unknown, "chance": 1 / net.cfg.num_classes}


def _check_captions(videos: Tensor, captions) -> list[str]:
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise TypeError("captions must be a list of strings, one per video")
    if len(captions) != len(videos):
        raise ValueError(f"{len(videos)} videos but {len(captions)} captions; pass one caption per video")
    return list(captions)

