"""Offline captioned video data: a broad corpus for pretraining a prior and the paper's domain analogues.

Generators are imported on first use, so the procedural ones work where pybullet is not installed.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from .base import Clip, Generator

# kind -> (module, generator instance); "broad" is the pretraining corpus, the rest its families and the domains
KINDS: dict[str, tuple[str, str]] = {
    "broad": ("broad", "BROAD"),
    "broad-procedural": ("procedural", "BROAD_PROCEDURAL"),
    "broad-bullet": ("broad_bullet", "BROAD_BULLET"),
    "robot": ("robot", "ROBOT"),
    "robot-real": ("robot", "ROBOT_REAL"),
    "egocentric": ("egocentric", "EGOCENTRIC"),
    "animation": ("animation", "ANIMATION"),
}
DOMAINS = ("robot", "robot-real", "egocentric", "animation")


@cache
def generator(kind: str) -> Generator:
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    module, name = KINDS[kind]
    try:
        return getattr(import_module(f"{__name__}.{module}"), name)
    except ImportError as e:
        raise ImportError(f"dataset kind {kind!r} needs {e.name}, which is not installed here "
                          f"(pip install {e.name}); broad-procedural and animation need only numpy and "
                          "scikit-image") from e


__all__ = ["DOMAINS", "KINDS", "Clip", "Generator", "generator"]
