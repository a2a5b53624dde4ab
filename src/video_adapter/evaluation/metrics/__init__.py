"""Sample-quality metrics: FVD, FID, KID and IS on the public StyleGAN-V / StyleGAN2-ADA detectors (local files only).

`stats` holds the distribution statistics on features, `detectors` loads the feature networks and runs them.
"""

from __future__ import annotations

from .detectors import (
    I3D,
    INCEPTION,
    Detector,
    DetectorSpec,
    cache_dir,
    find_weights,
    i3d_features,
    inception_features,
    inception_probs,
    load_detector,
    load_i3d,
    load_inception,
    sha256_of,
    video_frames,
)
from .stats import FrechetReference, feature_stats, frechet_distance, inception_score, kid

__all__ = [
    "I3D", "INCEPTION", "Detector", "DetectorSpec", "cache_dir", "find_weights", "i3d_features", "inception_features",
    "inception_probs", "load_detector", "load_i3d", "load_inception", "sha256_of", "video_frames",
    "FrechetReference", "feature_stats", "frechet_distance", "inception_score", "kid",
]
