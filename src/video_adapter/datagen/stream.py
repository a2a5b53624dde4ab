"""A generator's clips made on the fly and never written: the broad corpus's streaming form for long pretraining."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import IterableDataset, get_worker_info

from ..video_io import from_uint8


class ClipStream(IterableDataset):
    """An endless stream of clips of `kind`, items like `VideoFolderDataset`'s: {"video" [C, F, H, W] in [-1, 1],
    "caption", "index"}.

    Clip indices start at `start` and are dealt round-robin over processes (`rank` of `world_size`) and their
    DataLoader workers, so every clip is made once and the stream is a deterministic function of (seed, start):
    resuming at `start = clips already seen` continues it.
    """

    def __init__(self, kind: str, seed: int, size: tuple[int, int], frames: int, start: int = 0, rank: int = 0,
                 world_size: int = 1):
        from . import generator

        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.gen = generator(kind)
        self.kind, self.seed, self.size, self.frames = kind, seed, size, frames
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        stride = self.world_size * workers
        index = self.start + self.rank * workers + worker
        while True:
            clip = self.gen.clip(index, self.seed, self.size, self.frames)
            yield {"video": from_uint8(clip.video), "caption": clip.caption, "index": index}
            index += stride
