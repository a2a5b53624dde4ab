"""Writing generated clips as a training folder: NNNNNN.mp4 + captions.jsonl, the layout of a make-data split, so
`train`, `train-video-net` and `VideoFolderDataset` read it as they read real clips (e.g. sim clips plus their
generated real versions as one training set, paper Figure 10)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from torch import Tensor

from ..common.files import atomic_dir
from .dataset import CAPTIONS_FILE
from .video_io import write_mp4


def safe_name(label: str) -> str:
    """`label` as a folder name: each run of characters other than letters, digits, '.', '-' and '_' becomes one '_'
    ("small-s+prior gamma 0.2" -> "small-s_prior_gamma_0.2"), so the name needs no quoting in a shell."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
    if name in ("", ".", ".."):
        raise ValueError(f"{label!r} leaves no usable folder name; give it letters or digits")
    return name


def write_captioned_folder(folder: str | Path, videos: Tensor, captions: list[str], fps: int = 8) -> Path:
    """Writes `videos` [N, C, F, H, W] in [-1, 1] as `folder`/000000.mp4 ... with captions.jsonl lines
    {"video", "caption"}, clip i captioned `captions[i]`. The folder is filled beside `folder` and renamed into place
    when complete (an existing one is replaced), so a run cut off midway never leaves a folder that trains on part
    of the clips. The mp4s are lossless (crf 0) as make-data's are: a lossy encode would add artefacts the
    generated clips do not have."""
    if videos.dim() != 5 or len(videos) != len(captions):
        raise ValueError(f"expected videos [N, C, F, H, W] and N captions, got shape {list(videos.shape)} and "
                         f"{len(captions)} captions")
    if not all(isinstance(c, str) for c in captions):
        raise TypeError("captions must be strings, one per video")
    with atomic_dir(folder) as tmp:
        lines = []
        for i, (video, caption) in enumerate(zip(videos, captions)):
            write_mp4(tmp / f"{i:06d}.mp4", video, fps=fps, crf=0)
            lines.append(json.dumps({"video": f"{i:06d}.mp4", "caption": caption}) + "\n")
        (tmp / CAPTIONS_FILE).write_text("".join(lines))
    return Path(folder)
