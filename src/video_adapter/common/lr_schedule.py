"""The learning-rate schedule shared by the denoiser's training and the metric network's."""

from __future__ import annotations

import math


def warmup_cosine(step: int, lr: float, warmup_steps: int, steps: int, lr_end: float = 0.0) -> float:
    """Linear warmup to `lr` over `warmup_steps`, then a cosine down to `lr_end` at `steps` (and flat after)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    done = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr_end + (lr - lr_end) * 0.5 * (1 + math.cos(math.pi * done))
