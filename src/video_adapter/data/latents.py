"""Training in a prior's latent space: a video folder encoded once by the prior's VAE and cached on disk.

    video-adapter train --data data/robot/train --space /models/zeroscope --model frames=16 height=256 width=256

The cache holds every clip's latents (its centre window: encoding once rules out random temporal crops) and caption,
in `$VIDEO_ADAPTER_CACHE/latents` (default `~/.cache/video_adapter/latents`), under a key of the clip files (paths,
sizes, modification times), the VAE and the video size, so a changed input is encoded again and never read stale.
Each entry is a directory: latents.safetensors and meta.json (captions, paths).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .dataset import VideoFolderDataset


def cache_dir() -> Path:
    return Path(os.environ.get("VIDEO_ADAPTER_CACHE", "~/.cache/video_adapter")).expanduser() / "latents"


class LatentDataset(torch.utils.data.Dataset):
    """Cached latents as training items, {"video": latents [C, F', H', W'], "caption", "path"} (collate's keys)."""

    def __init__(self, latents: Tensor, captions: list[str], paths: list[str]):
        self.latents, self.captions, self.paths = latents, captions, paths

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i = key[0] if isinstance(key, tuple) else key  # the sampler's (index, epoch): cached latents have one crop
        return {"video": self.latents[i], "caption": self.captions[i], "path": self.paths[i]}


def _key(videos: VideoFolderDataset, space: str) -> str:
    files = [(str(Path(p).resolve()), (s := Path(p).stat()).st_size, s.st_mtime_ns) for p in videos.paths]
    blob = json.dumps({"files": files, "captions": videos.captions, "space": space, "frames": videos.frames,
                       "size": videos.size, "stride": videos.stride})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_latents(videos: VideoFolderDataset, space, device=None, batch_size: int = 16) -> LatentDataset:
    """`videos` encoded by the VAE of `space` (a models.diffusers.LatentSpace), from the cache when it is there.

    An entry is a directory (latents.safetensors + meta.json) written aside and renamed into place, so a crash while
    encoding leaves no entry rather than half of one."""
    from tqdm.auto import tqdm

    from ..common.files import atomic_dir, atomic_write_text

    entry = cache_dir() / _key(videos, space.space)
    if (entry / "meta.json").is_file():
        meta = json.loads((entry / "meta.json").read_text())
        return LatentDataset(load_file(str(entry / "latents.safetensors"))["latents"], meta["captions"], meta["paths"])
    codec, chunks = space.codec(device), []
    for start in tqdm(range(0, len(videos), batch_size), desc=f"encoding latents ({space.space})"):
        clips = torch.stack([videos[i]["video"] for i in range(start, min(start + batch_size, len(videos)))])
        chunks.append(codec.encode(clips).float().cpu())
    latents, paths = torch.cat(chunks), [str(p) for p in videos.paths]
    with atomic_dir(entry) as tmp:
        save_file({"latents": latents.contiguous()}, str(tmp / "latents.safetensors"))
        atomic_write_text(tmp / "meta.json", json.dumps({"captions": videos.captions, "paths": paths,
                                                         "space": space.space}))
    return LatentDataset(latents, list(videos.captions), paths)
