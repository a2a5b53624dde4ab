"""Style retention and realness: what share of videos a binary (or n-way) domain classifier puts in one class.

The classifier is a `video_net` trained with objective "domain" on named folders of real clips, e.g.

    video-adapter train-video-net --objective domain --out runs/toon-classifier \
        --classes toon=data/animation/train other=data/robot/train other=data/egocentric/train other=data/broad/train

so "toon" is the animation style and "other" everything else. A folder's clips all carry its NAME as their label
(a NAME may name several folders). The share of generated videos classified "toon" is the stylisation's style
retention; trained on robot-real versus robot, the share classified real is sim-to-real's realness.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor


def class_hits(net, videos: Tensor, label: str, batch_size: int = 32) -> np.ndarray:
    """Per video, whether the domain classifier `net` puts it in class `label` (bool [N]); their mean is the style
    retention (label: the style) or realness (label: real)."""
    from .video_net import predict_captions

    check_class(net, label)
    return np.array([p == label for p in predict_captions(net, videos, batch_size)], dtype=bool)


def check_class(net, label: str) -> None:
    """An error unless `net` is a domain classifier with class `label`."""
    if net.cfg.objective != "domain":
        raise ValueError(f"style and realness need a video_net trained with objective 'domain', not "
                         f"{net.cfg.objective!r} (train-video-net --objective domain --classes NAME=FOLDER ...)")
    if label not in net.cfg.labels:
        raise ValueError(f"class {label!r} is not one of this classifier's {list(net.cfg.labels)}; pass one of them "
                         "(--style-label)")
