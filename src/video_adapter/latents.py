"""Training in a prior's latent space: a video folder encoded once by the prior's VAE and cached on disk.

    video-adapter train --data data/robot/train --space /models/zeroscope --model frames=16 height=256 width=256

The cache holds every clip's latents (its centre window: encoding once rules out random temporal crops) and caption,
in `$VIDEO_ADAPTER_CACHE/latents` (default `~/.cache/video_adapter/latents`), under a key of the clip files (paths,
sizes, modification times), the VAE and the video size, so a changed input is encoded again and never read stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .data import VideoFolderDataset


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
    """`videos` encoded by the VAE of `space` (a diffusers_prior.LatentSpace), from the cache when it is there."""
    from tqdm.auto import tqdm

    from .checkpoint import atomic_write_text

    path = cache_dir() / f"{_key(videos, space.space)}.safetensors"
    if path.is_file():
        meta = json.loads(path.with_suffix(".json").read_text())
        return LatentDataset(load_file(str(path))["latents"], meta["captions"], meta["paths"])
    codec, chunks = space.codec(device), []
    for start in tqdm(range(0, len(videos), batch_size), desc=f"encoding latents ({space.space})"):
        clips = torch.stack([videos[i]["video"] for i in range(start, min(start + batch_size, len(videos)))])
        chunks.append(codec.encode(clips).float().cpu())
    latents, paths = torch.cat(chunks), [str(p) for p in videos.paths]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"latents": latents.contiguous()}, str(tmp))
    atomic_write_text(path.with_suffix(".json"), json.dumps({"captions": videos.captions, "paths": paths,
                                                             "space": space.space}))
    os.replace(tmp, path)  # the tensors last: a cache file is never read without its captions
    return LatentDataset(latents, list(videos.captions), paths)
