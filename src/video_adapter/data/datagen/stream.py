"""A generator's clips made on the fly and never written: the broad corpus's streaming form for long pretraining."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..video_io import from_uint8


class ClipStream(IterableDataset):
    """An endless stream of clips of `kind`: items like `VideoFolderDataset`'s ({"video" [C, F, H, W] in [-1, 1],
    "caption", "index"}), or with a `batch_size` whole batches (video [B, C, F, H, W], captions, indices).

    Clip indices from `start` on form chunks of `batch_size` (1 for items); chunk c goes to process `c % world_size`, whose
    DataLoader workers take its chunks in turn, so each process receives its chunks in order and every clip is made
    once. The stream is a deterministic function of (seed, start): a process that consumed n chunks resumes exactly
    with `start + n * world_size * batch_size`.
    """

    def __init__(self, kind: str, seed: int, size: tuple[int, int], frames: int, start: int = 0, rank: int = 0,
                 world_size: int = 1, batch_size: int | None = None):
        from . import generator

        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if (batch_size is not None and batch_size < 1) or start < 0:
            raise ValueError(f"batch_size must be None or >= 1 and start >= 0, got {batch_size} and {start}")
        self.gen = generator(kind)
        self.kind, self.seed, self.size, self.frames = kind, seed, size, frames
        self.start, self.rank, self.world_size, self.batch_size = start, rank, world_size, batch_size

    def chunk_start(self, local: int) -> int:
        """First clip index of this process's `local`-th chunk."""
        return self.start + (local * self.world_size + self.rank) * (self.batch_size or 1)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        local = worker
        while True:
            first = self.chunk_start(local)
            items = [self._item(i) for i in range(first, first + (self.batch_size or 1))]
            yield items[0] if self.batch_size is None else {
                "video": torch.stack([it["video"] for it in items]),
                "caption": [it["caption"] for it in items],
                "index": torch.tensor([it["index"] for it in items]),
            }
            local += workers

    def _item(self, index: int) -> dict:
        clip = self.gen.clip(index, self.seed, self.size, self.frames)
        return {"video": from_uint8(clip.video), "caption": clip.caption, "index": index}
