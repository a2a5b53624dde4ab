"""The broad pretraining corpus: the pybullet family (arms, falling, rolling, pushing) and the procedural one
(shapes, occlusion, camera pans and zooms over photos), mixed per clip. It holds none of the domains' robots,
looks or caption templates (tests/data/test_datagen.py checks), so adapting a prior trained on it is a real test."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Clip, Generator

FAMILY_STREAM = 0xB0AD  # the family choice's own random stream, apart from the clip's


@dataclass(frozen=True)
class BroadGenerator(Generator):
    kind: str = "broad"
    version: str = "1"
    families: dict = field(default_factory=lambda: {"bullet": 0.5, "procedural": 0.5})  # family -> share

    def _family(self, name: str) -> Generator:
        from . import generator

        return generator({"bullet": "broad-bullet", "procedural": "broad-procedural"}[name])

    def __post_init__(self):
        # the families' own templates and looks, gathered when the corpus is first asked for
        object.__setattr__(self, "templates", tuple(t for n in self.families for t in self._family(n).templates))
        object.__setattr__(self, "look", {n: {"share": share, **self._family(n).look}
                                          for n, share in self.families.items()})

    def clip(self, index: int, seed: int, size: tuple[int, int], frames: int) -> Clip:
        names = list(self.families)
        shares = np.array([self.families[n] for n in names], dtype=np.float64)
        name = names[np.random.default_rng([seed, index, FAMILY_STREAM]).choice(len(names), p=shares / shares.sum())]
        clip = self._family(name).clip(index, seed, size, frames)
        return Clip(clip.video, clip.caption, {**clip.meta, "family": name})

    def caption(self, meta: dict) -> str:
        return self._family(meta["family"]).caption(meta)


BROAD = BroadGenerator()
