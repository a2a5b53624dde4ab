"""What every data generator provides, and the pieces they share (photos, colours, anti-aliased downsampling).

A generator renders clip `index` of a dataset from `seed` alone (`rng(seed, index)`), so clips can be made in any
order on any number of processes and the dataset is still a deterministic function of the seed. Its caption is a
function of the clip's scene metadata only: `gen.caption(clip.meta) == clip.caption`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np


@dataclass
class Clip:
    video: np.ndarray  # uint8 [F, H, W, 3] at the requested size
    caption: str       # generated from `meta` by the generator's caption(); never hand-written per clip
    meta: dict         # JSON-serialisable scene metadata (objects, colours, motion, camera, look)


@dataclass(frozen=True)
class Generator:
    """Base class: subclasses set the class attributes and implement `clip` and `caption`."""

    kind: str = ""                               # dataset name for make-data (robot, egocentric, broad, ...)
    version: str = "1"                           # bump whenever the output for a seed changes
    templates: tuple[str, ...] = ()              # every caption template (str.format over meta) it may use
    look: dict = field(default_factory=dict)     # look parameters for the data card (renderer, textures, palette...)
    held_out: dict = field(default_factory=dict)  # what of this domain the broad corpus never contains

    def clip(self, index: int, seed: int, size: tuple[int, int], frames: int) -> Clip:
        raise NotImplementedError

    def caption(self, meta: dict) -> str:
        raise NotImplementedError


def rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of one clip: independent of every other clip, whatever order they are made in."""
    return np.random.default_rng([seed, index])


COLORS = {  # name -> RGB in [0, 1]; names are what captions say
    "red": (0.85, 0.12, 0.10), "green": (0.12, 0.65, 0.20), "blue": (0.10, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.10), "orange": (0.95, 0.50, 0.05), "purple": (0.55, 0.15, 0.70),
    "white": (0.92, 0.92, 0.92), "black": (0.08, 0.08, 0.08), "pink": (0.95, 0.45, 0.65),
    "cyan": (0.10, 0.75, 0.80),
}


@cache
def photos() -> dict[str, np.ndarray]:
    """The real photographs bundled with scikit-image and scikit-learn (no download), uint8 [H, W, 3], read-only."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "hubble_deep_field",
                 "colorwheel"):
        out[name] = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
    for name in ("brick", "grass", "gravel", "camera", "moon", "coins"):
        gray = getattr(skimage.data, name)()
        out[name] = np.repeat(gray[..., None], 3, axis=-1)
    sample = load_sample_images()
    for name, image in zip(("china", "flower"), sample.images):
        out[name] = np.ascontiguousarray(image)
    for image in out.values():  # shared by every clip of the process: writing into one would change later clips
        image.setflags(write=False)
    return out


def downsample(video: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [F, h, w, 3] rendered at a multiple of `size` -> uint8 [F, H, W, 3] by area averaging (anti-aliased)."""
    f, h, w, c = video.shape
    height, width = size
    if h % height or w % width:
        raise ValueError(f"render size {h}x{w} must be a multiple of the output size {height}x{width}")
    blocks = video.reshape(f, height, h // height, width, w // width, c).astype(np.float32)
    return np.clip(blocks.mean(axis=(2, 4)) + 0.5, 0, 255).astype(np.uint8)


def parse_size(text: str) -> tuple[int, int]:
    """'24x40' -> (24, 40): height x width, both even (mp4's yuv420p needs even sides)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"--size must be HEIGHTxWIDTH such as 24x40, not {text!r}") from e
    if height < 8 or width < 8 or height % 2 or width % 2:
        raise ValueError(f"--size {text}: height and width must be even and at least 8")
    return height, width
