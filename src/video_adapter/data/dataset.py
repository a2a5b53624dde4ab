"""Captioned video datasets, a resumable sampler, and collation.

`VideoFolderDataset` indexes a folder (searched recursively) of videos: mp4/webm/avi/mov/mkv/gif files and folders
of png/jpg frames (a folder whose own files are frames is one video). Captions come from `captions.jsonl` in the
root (lines `{"video": "relative/path.mp4", "caption": "..."}`), else from a sidecar `<stem>.txt` next to the video
(for a frame folder `clip/`, the file `clip.txt`). Hidden files and folders (leading dot) are ignored, which also
hides the temp files of interrupted atomic writes.

Each item is `dict(video=[C, F, H, W] float in [-1, 1], caption=str, path=str)`:

* time: `frames` frames `stride` apart, i.e. a window spanning `(frames - 1) * stride + 1` source frames. With
  `random_crop` the window starts at a random offset drawn from `numpy.random.default_rng((seed, epoch, index))`,
  so it is deterministic per (seed, epoch, index) and independent of worker processes and global RNG state;
  otherwise the first window is used. Videos shorter than the span are padded by repeating their last frame
  (a warning at construction says how many).
* space: centre-crop to the aspect ratio of `size`, then anti-aliased bilinear resize to `size` (paper, appendix B:
  24x40); `fit="pad"` instead letterboxes: resize to fit inside `size` and pad with black (-1). A warning at
  construction says how many videos lose more than half their area to the crop (portrait clips for a landscape
  model). No flips: captions name directions ("moves left").

Construction validates everything it can, so training never fails mid-epoch on data it could have checked: a missing
root, no videos, videos without captions, and unreadable files each raise one `DatasetError` listing the culprits.
By default each file is fully decoded once (`verify="decode"`), which catches truncated and corrupt data anywhere
in a file and costs about one epoch of decoding; `verify="header"` only opens containers (fast, catches garbage and
mp4s cut before their index). `skip_bad=True` drops unreadable files instead, printing how many. A file that goes
bad after construction raises `VideoReadError` naming it.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from .video_io import FRAME_EXTS, VIDEO_EXTS, VideoReadError, frame_size, natural_key, probe_video, read_video

# Paper appendix B: keywords used to curate the anime set (matched case-insensitively; --keywords).
ANIME_KEYWORDS = ("disney", "cartoon", "anime", "animation", "comic", "pixar", "animated", "fantasy")

CAPTIONS_FILE = "captions.jsonl"
FITS = ("crop", "pad")  # how a video of another aspect ratio reaches the model's size


class DatasetError(ValueError):
    """A dataset folder that cannot be used as it is; the message says what is wrong and how to fix it."""


def _listing(items: Sequence, limit: int = 10) -> str:
    shown = "\n".join(f"  {x}" for x in items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{shown}{more}"


def find_videos(root: Path) -> list[Path]:
    """Video files and frame folders under root, in natural order of their relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        visible = [f for f in filenames if not f.startswith(".")]
        if here != root and any(Path(f).suffix.lower() in FRAME_EXTS for f in visible):
            found.append(here)  # a frame folder is one video; do not look inside it further
            dirnames[:] = []
            continue
        found += [here / f for f in visible if Path(f).suffix.lower() in VIDEO_EXTS]
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def read_utf8(path: Path) -> str:
    """A caption file's text; one in another encoding (Windows editors write é as the single byte 0xe9) is a
    DatasetError naming the file and line."""
    data = path.read_bytes()  # decoded whole, so the error's offset counts from the file's start
    try:
        return data.decode("utf-8-sig")  # Windows editors may start UTF-8 with a byte-order mark
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8") from None


def read_captions_jsonl(path: Path) -> dict[str, str]:
    """`captions.jsonl` as {relative posix path: caption}."""
    captions = {}
    for n, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key, caption = Path(rec["video"]).as_posix(), rec["caption"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DatasetError(f'{path}:{n}: expected a JSON object with "video" and "caption" ({e})') from None
        if not isinstance(caption, str):
            raise DatasetError(f"{path}:{n}: caption must be a string, got {type(caption).__name__}")
        captions[key.rstrip("/")] = caption
    return captions


def center_crop_resize(video: Tensor, size: tuple[int, int]) -> Tensor:
    """`[C, F, h, w]` -> `[C, F, *size]`: centre-crop to the target aspect ratio, then anti-aliased bilinear resize."""
    th, tw = size
    h, w = video.shape[-2:]
    if h * tw > w * th:  # too tall
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    top, left = (h - ch) // 2, (w - cw) // 2
    video = video[..., top : top + ch, left : left + cw]
    if (ch, cw) == (th, tw):
        return video
    frames = video.transpose(0, 1)  # [F, C, h, w]: interpolate treats dim 0 as the batch
    out = F.interpolate(frames, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    return out.transpose(0, 1)


def letterbox_resize(video: Tensor, size: tuple[int, int]) -> Tensor:
    """`[C, F, h, w]` in [-1, 1] -> `[C, F, *size]`: anti-aliased bilinear resize to fit inside `size` keeping the
    aspect ratio, then centred on black (-1)."""
    th, tw = size
    h, w = video.shape[-2:]
    scale = min(th / h, tw / w)
    rh, rw = min(th, max(1, round(h * scale))), min(tw, max(1, round(w * scale)))
    if (rh, rw) != (h, w):
        frames = video.transpose(0, 1)  # [F, C, h, w]
        video = F.interpolate(frames, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
        video = video.transpose(0, 1)
    if (rh, rw) == (th, tw):
        return video
    out = video.new_full((*video.shape[:-2], th, tw), -1.0)
    top, left = (th - rh) // 2, (tw - rw) // 2
    out[..., top : top + rh, left : left + rw] = video
    return out


def fit_resize(video: Tensor, size: tuple[int, int], fit: str = "crop") -> Tensor:
    """`center_crop_resize` (fit="crop") or `letterbox_resize` (fit="pad")."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    return letterbox_resize(video, size) if fit == "pad" else center_crop_resize(video, size)


def crop_kept(frame: tuple[int, int], size: tuple[int, int]) -> float:
    """The fraction of a `(h, w)` frame's area that a centre crop to the aspect ratio of `size` keeps."""
    (h, w), (th, tw) = frame, size
    return min(h * tw, w * th) / max(h * tw, w * th)


def window_indices(length: int, frames: int, stride: int, start: int) -> np.ndarray:
    """Source frame indices of a window; past the end they hold the last frame."""
    return np.minimum(start + stride * np.arange(frames), length - 1)


class VideoFolderDataset(Dataset):
    """Captioned videos under `root` (see the module docstring for layout, sampling and validation).

    Beyond the basics: `verify` is "decode" (default) or "header"; `cache=True` keeps every resized whole video in
    memory as float16, decoded once while checking (for small datasets); `workers` processes share that check (0:
    this process; decoding a few thousand clips alone takes minutes); `progress` shows a bar while checking.
    `lengths` holds each video's frame count (None where only a header was read and it gave none), `skipped` the
    unreadable files dropped by `skip_bad`, `num_short` how many videos are padded. Items can also be fetched as
    `dataset[(index, epoch)]`, which ignores `set_epoch`. `fit` is "crop" (default: centre-crop to the aspect
    ratio of `size`) or "pad" (letterbox on black); `frame_sizes` holds each video's `(h, w)` (None if unknown).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        frames: int = 16,
        size: tuple[int, int] = (24, 40),
        stride: int = 1,
        random_crop: bool = True,
        keywords: str | Iterable[str] | None = None,
        skip_bad: bool = False,
        seed: int = 0,
        verify: str = "decode",
        cache: bool = False,
        progress: bool = False,
        workers: int = 0,
        fit: str = "crop",
    ):
        if frames < 1 or stride < 1:
            raise ValueError(f"frames and stride must be >= 1, got frames={frames}, stride={stride}")
        if verify not in ("decode", "header"):
            raise ValueError(f"verify must be 'decode' or 'header', got {verify!r}")
        if fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        self.fit = fit
        self.root = Path(root)
        self.frames, self.size, self.stride = int(frames), (int(size[0]), int(size[1])), int(stride)
        self.random_crop, self.seed, self.epoch, self.cache = random_crop, int(seed), 0, cache
        self._cache: dict[int, Tensor] = {}

        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} does not exist or is not a folder")
        paths = find_videos(self.root)
        if not paths:
            raise DatasetError(
                f"no videos found under {self.root}; accepted: files ending in {', '.join(VIDEO_EXTS)}, "
                f"or sub-folders of frame images ({', '.join(FRAME_EXTS)})"
            )
        self.paths, self.captions = self._caption(paths)

        if keywords is not None:
            kws = [keywords] if isinstance(keywords, str) else list(keywords)
            lowered = [k.lower() for k in kws]
            keep = [i for i, c in enumerate(self.captions) if any(k in c.lower() for k in lowered)]
            if not keep:
                raise DatasetError(
                    f"no caption under {self.root} contains any of the keywords {kws} (case-insensitive); "
                    f"{len(self.paths)} videos were checked"
                )
            self.paths, self.captions = [self.paths[i] for i in keep], [self.captions[i] for i in keep]

        self.lengths, self.frame_sizes, self.skipped = self._probe(verify, skip_bad, progress, workers)
        cropped = [p for p, hw in zip(self.paths, self.frame_sizes)
                   if hw is not None and crop_kept(hw, self.size) < 0.5]
        if cropped and self.fit == "crop":
            names = ", ".join(p.relative_to(self.root).as_posix() for p in cropped[:3])
            warnings.warn(
                f"{len(cropped)} of {len(self)} videos under {self.root} lose more than half their area to the centre "
                f"crop to {self.size[0]}x{self.size[1]} (e.g. {names}{', ...' if len(cropped) > 3 else ''}); "
                f"pass --fit pad (fit='pad') to letterbox them on black instead",
                stacklevel=2,
            )
        span = (self.frames - 1) * self.stride + 1
        self.num_short = sum(1 for n in self.lengths if n is not None and n < span)
        if self.num_short:
            warnings.warn(
                f"{self.num_short} of {len(self)} videos under {self.root} have fewer than {span} frames "
                f"(frames={self.frames}, stride={self.stride}); they are padded by repeating their last frame",
                stacklevel=2,
            )

    def _caption(self, paths: list[Path]) -> tuple[list[Path], list[str]]:
        index = self.root / CAPTIONS_FILE
        listed = read_captions_jsonl(index) if index.is_file() else {}
        if listed:
            missing_files = sorted(set(listed) - {p.relative_to(self.root).as_posix() for p in paths})
            if missing_files:
                raise DatasetError(
                    f"{index} lists {len(missing_files)} videos that are not under {self.root}:\n"
                    f"{_listing(missing_files)}\nremove those lines or restore the files"
                )
        captions, uncaptioned = [], []
        for p in paths:
            caption = listed.get(p.relative_to(self.root).as_posix())
            sidecar = p.with_name(p.stem + ".txt") if p.is_file() else p.with_name(p.name + ".txt")
            if caption is None and sidecar.is_file():
                caption = read_utf8(sidecar).strip()
            if caption is None:
                uncaptioned.append(p.relative_to(self.root).as_posix())
            captions.append(caption)
        if uncaptioned:
            # captions.jsonl is read from the root only, so the splits of a make-data folder (train/, test/) look
            # uncaptioned when the folder above them is given
            splits = sorted(f.parent for f in self.root.rglob(CAPTIONS_FILE) if f.parent != self.root)
            if splits:
                split = next((s for s in splits if s.name == "train"), splits[0])
                raise DatasetError(
                    f"{len(uncaptioned)} of {len(paths)} videos under {self.root} have no caption, but its "
                    f"sub-folders {', '.join(s.relative_to(self.root).as_posix() + '/' for s in splits)} each hold "
                    f"their own {CAPTIONS_FILE}: each is a dataset of its own (make-data writes train/ and test/); "
                    f"pass one as the dataset, e.g. --data {split}"
                )
            raise DatasetError(
                f"{len(uncaptioned)} of {len(paths)} videos under {self.root} have no caption:\n"
                f"{_listing(uncaptioned)}\nadd them to {CAPTIONS_FILE} "
                f'(lines {{"video": "relative/path.mp4", "caption": "..."}}) or write a <stem>.txt next to each'
            )
        return paths, captions

    def _probe(self, verify: str, skip_bad: bool, progress: bool,
               workers: int) -> tuple[list[int | None], list[tuple[int, int] | None], list[Path]]:
        from tqdm.auto import tqdm

        check = _Check(self, verify)
        # its own generator: drawn from the global RNG, the loader's seed would shift a resumed run's dropout
        loader = torch.utils.data.DataLoader(check, batch_size=None, num_workers=workers, collate_fn=_as_is,
                                             worker_init_fn=one_thread, generator=torch.Generator())
        lengths, sizes, bad = [], [], []
        for index, result, hw in tqdm(loader, total=len(check), desc="checking videos", disable=not progress):
            sizes.append(hw)
            if isinstance(result, str):
                lengths.append(None)
                bad.append((self.paths[index], result))
            elif isinstance(result, np.ndarray):
                self._cache[index] = torch.from_numpy(result)
                lengths.append(result.shape[1])
            else:
                lengths.append(result)
        if bad and not skip_bad:
            lines = [f"{p.relative_to(self.root).as_posix()}: {reason}" for p, reason in bad]
            raise DatasetError(
                f"{len(bad)} of {len(self.paths)} videos under {self.root} cannot be read:\n"
                f"{_listing(lines, limit=50)}\nremove them or pass --skip-bad (skip_bad=True) to skip them"
            )
        if bad:
            print(f"skipping {len(bad)} unreadable videos of {len(self.paths)} under {self.root}", file=sys.stderr)
            bad_paths = {p for p, _ in bad}
            keep = [i for i, p in enumerate(self.paths) if p not in bad_paths]
            self.paths = [self.paths[i] for i in keep]
            self.captions = [self.captions[i] for i in keep]
            lengths = [lengths[i] for i in keep]
            sizes = [sizes[i] for i in keep]
            self._cache = {new: self._cache[old] for new, old in enumerate(keep) if old in self._cache}
            if not self.paths:
                raise DatasetError(f"every video under {self.root} is unreadable")
        return lengths, sizes, [p for p, _ in bad]

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the temporal crops of this epoch (workers that persist across epochs do not see this call:
        then let `ResumableSampler(with_epoch=True)` pass the epoch along with each index)."""
        self.epoch = int(epoch)

    def _full_video(self, index: int) -> Tensor:
        """The whole video of `index`, resized: float `[C, F, H, W]` in [-1, 1] (from the float16 cache if asked)."""
        return self._cache[index].float() if self.cache else self._load(index, None)

    def _load(self, index: int, max_frames: int | None) -> Tensor:
        frames = torch.from_numpy(read_video(self.paths[index], max_frames=max_frames))
        video = frames.permute(3, 0, 1, 2).float() / 127.5 - 1.0
        return fit_resize(video, self.size, self.fit).clamp(-1, 1)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        span = (self.frames - 1) * self.stride + 1
        whole = self.cache or self.lengths[index] is None  # None: the header did not say how long it is
        video = self._full_video(index) if whole else None
        length = video.shape[1] if whole else self.lengths[index]
        start = 0
        if self.random_crop and length > span:
            rng = np.random.default_rng((self.seed, int(epoch), index))
            start = int(rng.integers(0, length - span + 1))
        if not whole:  # decode only up to the window's end
            video = self._load(index, max_frames=start + span)
            length = video.shape[1]  # less than probed only if the file changed since
        idx = torch.from_numpy(window_indices(length, self.frames, self.stride, start))
        return {"video": video[:, idx].contiguous(), "caption": self.captions[index], "path": str(self.paths[index])}


class _Check(Dataset):
    """Item i: (i, the video's frame count, or its whole resized video as a float16 array for a caching dataset, or
    why it cannot be read; its frame `(h, w)`, or None when unreadable), so that DataLoader workers can check and decode a folder in parallel. Arrays, not
    tensors: a worker's tensors come back in shared memory, one file descriptor each for as long as they live."""

    def __init__(self, dataset: VideoFolderDataset, verify: str):
        self.dataset, self.verify = dataset, verify

    def __len__(self) -> int:
        return len(self.dataset.paths)

    def __getitem__(self, index: int) -> tuple[int, int | None | np.ndarray | str, tuple[int, int] | None]:
        path = self.dataset.paths[index]
        try:
            if self.dataset.cache:
                result = self.dataset._load(index, None).half().numpy()
            else:
                result = probe_video(path, decode=self.verify == "decode")
            return index, result, frame_size(path)
        except VideoReadError as e:
            return index, e.reason, None


def _as_is(item):
    """A collate_fn that keeps `_Check`'s arrays arrays (the default would turn them into shared-memory tensors)."""
    return item


def one_thread(_worker_id: int) -> None:
    """Each worker is one process; torch's own thread pool in every worker only oversubscribes the CPU."""
    torch.set_num_threads(1)


class ResumableSampler(Sampler[int]):
    """Deterministic per-epoch order that can resume mid-epoch.

    Epoch e's order is `torch.randperm(num_items)` under a generator seeded with `seed + e` (or 0..n-1 without
    shuffle), cut into chunks of `chunk` items; rank r of `world_size` takes chunks r, r + world_size, ..., so ranks
    partition the items (with `drop_last=True` every rank gets the same count, which keeps distributed ranks in
    step). With `chunk` = the per-process batch, step k's batches of all ranks together are chunk k of one process
    taking world_size x that batch: the same global batches for any process count.

    Each `iter()` yields the rest of the current epoch and counts `position` up as items are drawn; the next `iter()`
    after a finished epoch starts the next epoch. `state_dict()` / `load_state_dict()` save and restore
    {"epoch", "position"}. A DataLoader draws ahead of what training has consumed (prefetching), so a trainer that
    checkpoints mid-epoch should save `state_dict(consumed=items_this_rank_has_trained_on)`. `epoch` only advances
    when the next epoch begins, so it is right even when the loader has drawn the whole epoch ahead.
    """

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, with_epoch: bool = False, chunk: int = 1):
        if num_items < 0 or world_size < 1 or not 0 <= rank < world_size or chunk < 1:
            raise ValueError(f"bad sampler arguments: num_items={num_items}, rank={rank}, world_size={world_size}, "
                             f"chunk={chunk}")
        self.num_items, self.seed, self.shuffle = int(num_items), int(seed), shuffle
        self.rank, self.world_size, self.drop_last, self.with_epoch = rank, world_size, drop_last, with_epoch
        self.chunk = int(chunk)
        self.epoch, self.position = 0, 0

    def order(self, epoch: int) -> list[int]:
        """This rank's items for `epoch`, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            items = torch.randperm(self.num_items, generator=g).tolist()
        else:
            items = list(range(self.num_items))
        if self.drop_last:
            items = items[: len(items) - len(items) % (self.world_size * self.chunk)]
        return [item for start in range(self.rank * self.chunk, len(items), self.world_size * self.chunk)
                for item in items[start : start + self.chunk]]

    def __len__(self) -> int:
        total = self.num_items - (self.num_items % (self.world_size * self.chunk) if self.drop_last else 0)
        step = self.world_size * self.chunk
        return sum(min(self.chunk, total - start) for start in range(self.rank * self.chunk, total, step))

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, int]]:
        order = self.order(self.epoch)
        if self.position >= len(order):
            self.epoch, self.position = self.epoch + 1, 0
            order = self.order(self.epoch)
        epoch = self.epoch
        while self.position < len(order):
            item = order[self.position]
            self.position += 1
            yield (item, epoch) if self.with_epoch else item

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning."""
        self.epoch, self.position = int(epoch), 0

    def state_dict(self, consumed: int | None = None) -> dict:
        return {"epoch": self.epoch, "position": self.position if consumed is None else int(consumed)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def collate(items: Sequence[dict]) -> dict:
    """Items of `VideoFolderDataset` -> dict(video=[B, C, F, H, W], caption=list[str], path=list[str])."""
    return {
        "video": torch.stack([it["video"] for it in items]),
        "caption": [it["caption"] for it in items],
        "path": [it["path"] for it in items],
    }
