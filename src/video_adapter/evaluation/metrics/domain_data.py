"""The training data of a domain classifier (video_net objective "domain"): named folders of clips, each clip
labelled with its folder's NAME (`--classes NAME=FOLDER ...`; a NAME may name several folders). `metrics.style` scores
with the trained net."""

from __future__ import annotations

import sys

from ...data.sources import Concatenated


def parse_classes(classes: tuple[str, ...]) -> list[tuple[str, str]]:
    """NAME=FOLDER pairs -> [(name, folder)]; an error naming the bad entry, or when fewer than 2 names are given."""
    pairs = []
    for entry in classes:
        name, sep, folder = entry.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--classes takes NAME=FOLDER pairs (e.g. toon=data/animation/train), got {entry!r}")
        pairs.append((name, folder))
    if len({name for name, _ in pairs}) < 2:
        raise ValueError(f"objective 'domain' needs --classes with at least 2 distinct names, got {list(classes)}")
    return pairs


class Labelled(Concatenated):
    """Folders end to end (`Concatenated`), each item carrying its folder's NAME as caption (the label caption_loss
    reads)."""

    def __init__(self, parts: list[tuple[str, object]]):
        super().__init__([dataset for _, dataset in parts])
        self.names = [name for name, _ in parts]

    def __getitem__(self, key) -> dict:
        part, local = self.locate(key)
        return {**self.parts[part][local], "caption": self.names[part]}


def domain_batches(classes: tuple[str, ...], frames: int, size: tuple[int, int], stride: int, batch_size: int,
                   seed: int, cache: bool, workers: int) -> tuple[str, tuple[str, ...], object]:
    """(a description, the sorted class names, an endless iterator of batches) over the folders of `classes`,
    uniformly over clips (so a class's share of the batches is its share of the clips: balance the folders)."""
    from ...data.dataset import ResumableSampler, VideoFolderDataset
    from ...data.sources import folder_batches

    pairs = parse_classes(classes)
    data = Labelled([(name, VideoFolderDataset(folder, frames=frames, size=size, stride=stride, random_crop=True,
                                               seed=seed, cache=cache, workers=workers)) for name, folder in pairs])
    if len(data) < batch_size:
        raise ValueError(f"--classes hold {len(data)} videos, fewer than one batch of {batch_size}; lower batch_size")
    counts = {}
    for name, part in zip(data.names, data.parts):
        counts[name] = counts.get(name, 0) + len(part)
    print(f"domain classes (clips): {counts}", file=sys.stderr)
    sampler = ResumableSampler(len(data), seed=seed, drop_last=True, with_epoch=True)
    labels = tuple(sorted(counts))
    described = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    return described, labels, (b for b, _ in folder_batches(data, sampler, batch_size, workers))
