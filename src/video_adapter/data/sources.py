"""What training reads: a folder of captioned videos (or several end to end), clips of a make-data kind made on the
fly, or both per batch.

Each source is an endless iterator of (batch, data_state) pairs, data_state being where the batch after this one
starts, counted from what training consumed (loader workers draw ahead). A run saves the state of its last batch and
resumes exactly there.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from .dataset import ResumableSampler, VideoFolderDataset, collate, one_thread

STREAM = "stream:"  # --data stream:KIND trains on clips of a make-data kind made on the fly


class Concatenated(torch.utils.data.Dataset):
    """Datasets end to end (several folders as one training set). Keys are an index or (index, epoch), as
    ResumableSampler(with_epoch=True) gives them, and go on to the part as such, so each part's random crops stay
    seeded per epoch; torch's ConcatDataset takes integer keys only."""

    def __init__(self, parts: list):
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(d) for d in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, key) -> tuple[int, int | tuple[int, int]]:
        """(which part, the key within it) of a key of the whole."""
        index, epoch = key if isinstance(key, tuple) else (key, None)
        if not 0 <= int(index) < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        part = int(np.searchsorted(self.starts, int(index), side="right")) - 1
        local = int(index) - int(self.starts[part])
        return part, local if epoch is None else (local, epoch)

    def __getitem__(self, key) -> dict:
        part, local = self.locate(key)
        return self.parts[part][local]


def _loader_generator(seed: int = 0) -> torch.Generator:
    """A DataLoader's own generator. Each iterator a loader starts (every epoch, and a resumed run's first) draws its
    workers' base seed from it; drawn from the global RNG instead, a run resumed mid-epoch would draw once more than an
    uninterrupted one and shift everything else on that RNG (dropout), so it would no longer resume exactly."""
    return torch.Generator().manual_seed(seed)


def folder_batches(dataset: VideoFolderDataset, sampler: ResumableSampler, batch_size: int,
                   num_workers: int) -> Iterator[tuple[dict, dict]]:
    loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=batch_size, drop_last=True,
                                         collate_fn=collate, num_workers=num_workers, worker_init_fn=one_thread,
                                         persistent_workers=num_workers > 0, generator=_loader_generator())
    while True:
        if sampler.position + batch_size > len(sampler):  # too few left for a batch: next epoch
            sampler.set_epoch(sampler.epoch + 1)
        epoch, consumed = sampler.epoch, sampler.position
        loader.generator.manual_seed(sampler.seed + epoch)
        for batch in loader:
            consumed += batch_size
            yield batch, {"epoch": epoch, "position": consumed}


def stream_batches(kind: str, seed: int, size: tuple[int, int], frames: int, batch_size: int, num_workers: int,
                   rank: int, world: int, state: dict | None) -> Iterator[tuple[dict, dict]]:
    from .datagen.stream import ClipStream

    start = (state or {}).get("start", 0)
    stream = ClipStream(kind, seed, size, frames, start=start, rank=rank, world_size=world, batch_size=batch_size)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers,
                                         worker_init_fn=one_thread, persistent_workers=num_workers > 0,
                                         generator=_loader_generator(seed + start))
    for n, batch in enumerate(loader, 1):
        yield batch, {"stream": kind, "start": start + n * world * batch_size}


def _mixed(folder: Iterator, stream: Iterator) -> Iterator[tuple[dict, dict]]:
    for (a, a_state), (b, b_state) in zip(folder, stream):
        yield ({"video": torch.cat([a["video"], b["video"]]), "caption": a["caption"] + b["caption"]},
               {"folder": a_state, "stream": b_state})


def data_source(cfg, size: tuple[int, int], frames: int, rank: int, world: int, state: dict | None,
                space=None, device=None) -> tuple[list | VideoFolderDataset, str, Iterator[tuple[dict, dict]]]:
    """(clips for previews, a description, the batch iterator) for a TrainConfig's --data / --stream; with `space`
    (a models.diffusers.LatentSpace) the folder's clips as cached latents, encoded on `device`."""
    from .datagen.stream import ClipStream

    only_stream = cfg.data.startswith(STREAM)
    kind = cfg.data[len(STREAM):] if only_stream else cfg.stream
    if only_stream and cfg.stream:
        raise ValueError("--data stream:KIND already streams; --stream mixes a stream into a --data folder")
    n_stream = cfg.batch_size if only_stream else round(cfg.batch_size * cfg.stream_share) if kind else 0
    if kind and not only_stream and not 0 < n_stream < cfg.batch_size:
        raise ValueError(f"--stream-share {cfg.stream_share} of --batch-size {cfg.batch_size} leaves "
                         f"{n_stream} streamed clips per batch; it must leave at least one from each source")
    if space is not None and kind:
        raise ValueError("--space trains on a folder's cached latents; streamed clips (--stream, stream:KIND) are "
                         "not encoded")
    n_folder = cfg.batch_size - n_stream
    sources, described, previews = [], [], None
    if n_folder:
        dataset = VideoFolderDataset(cfg.data, frames=frames, size=size, stride=cfg.stride,
                                     random_crop=space is None, keywords=cfg.keywords or None,
                                     skip_bad=cfg.skip_bad, seed=cfg.seed, cache=cfg.cache_videos and space is None,
                                     workers=cfg.num_workers, fit=cfg.fit)
        if space is not None:
            from .latents import cached_latents

            dataset = cached_latents(dataset, space, device)
        if len(dataset) < n_folder * world:
            raise ValueError(f"{len(dataset)} videos in {cfg.data} are fewer than one batch "
                             f"({n_folder} x {world} processes); lower --batch-size")
        # chunk: each step's batches of all processes are one process's batch at the global size
        sampler = ResumableSampler(len(dataset), seed=cfg.seed, rank=rank, world_size=world, drop_last=True,
                                   with_epoch=True, chunk=n_folder)
        if state:
            sampler.load_state_dict(state["folder"] if n_stream else state)
        sources.append(folder_batches(dataset, sampler, n_folder, cfg.num_workers))
        described.append(f"{len(dataset)} videos ({n_folder} per batch)" +
                         (f" as {space.space} latents" if space is not None else ""))
        previews = dataset
    if n_stream:
        stream_state = (state["stream"] if n_folder else state) if state else None
        sources.append(stream_batches(kind, cfg.seed, size, frames, n_stream, cfg.num_workers, rank, world,
                                      stream_state))
        described.append(f"clips of {kind} made on the fly ({n_stream} per batch)")
        # previews show clips far beyond any index training reaches
        previews = previews or list(itertools.islice(ClipStream(kind, cfg.seed, size, frames, start=2**40), 4))
    return previews, " + ".join(described), sources[0] if len(sources) == 1 else _mixed(*sources)
