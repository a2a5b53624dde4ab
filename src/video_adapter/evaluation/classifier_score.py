"""`video-adapter score-classifier`: a caption classifier's accuracy on a labelled folder, with a bootstrap interval.

    video-adapter score-classifier --classifier runs/robot-task --data data/robot-real/test --out score.json

The downstream test of sim-to-real (paper Figure 10): a task classifier trained on sim clips alone, or on sim clips
plus their generated real versions (`evaluate --save-samples`, `train-video-net --data A B ...`), scored on real
clips. Each clip's caption is its label, rewritten by the classifier's own stored caption rewrites (those it was
trained with), so a folder is scored exactly as the classifier sees its labels. Clips whose caption is none of its
labels cannot be right or wrong: they are left out and counted. The interval is `metrics.scores.mean_with_ci`, the
one evaluate's accuracy column reports, resampling the scored clips with replacement.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..common.devices import resolve_device
from ..common.files import atomic_write_text
from ..data.dataset import VideoFolderDataset
from .metrics.scores import mean_with_ci
from .metrics.video_net import caption_predictions, load_video_net, scorable

CHUNK = 256  # clips decoded and held at once: a whole train split of floats would not need to fit in memory


@dataclass(frozen=True)
class ClassifierScoreConfig:
    classifier: str = ""                  # video_net caption classifier (train-video-net --objective caption)
    data: str = ""                        # folder of captioned clips, their captions the labels (e.g. DIR/test)
    batch_size: int = 32                  # clips per forward pass
    bootstrap: int = 1000                 # bootstrap resamples of the scored clips for the interval
    seed: int = 0                         # seeds the bootstrap
    device: str = "auto"                  # auto (cuda if available) | cpu | cuda
    out: str = ""                         # JSON file to write as well as print ("": print only)


def score_classifier(cfg: ClassifierScoreConfig) -> dict:
    """{"accuracy", "ci95": [low, high], "n": clips scored, "num_unknown": clips left out (caption not a label),
    "chance": 1 / number of labels, and the config}; written to `cfg.out` if set."""
    if not cfg.classifier or not cfg.data:
        raise ValueError("pass --classifier DIR (train-video-net --objective caption) and --data FOLDER (captioned "
                         "clips, e.g. a make-data DIR/test)")
    root = Path(cfg.data)
    if (root / "train").is_dir() and (root / "test").is_dir():
        # the folder is searched recursively: a make-data root would score its train and test clips together
        raise ValueError(f"{root} is a make-data dataset with train/ and test/; pass one split, e.g. {root / 'test'}")
    net = load_video_net(cfg.classifier, resolve_device(cfg.device))
    if net.cfg.objective != "caption":
        raise ValueError(f"{cfg.classifier} is a video_net with objective {net.cfg.objective!r}; score-classifier "
                         "needs a caption classifier (train-video-net --objective caption)")
    data = VideoFolderDataset(root, frames=net.cfg.frames, size=(net.cfg.height, net.cfg.width), random_crop=False)
    known = scorable(net, data.captions, f" under {root}")
    correct = []
    for start in range(0, len(known), CHUNK):
        part = known[start:start + CHUNK]
        videos = torch.stack([data[i]["video"] for i in part])
        correct += caption_predictions(net, videos, [data.captions[i] for i in part], cfg.batch_size).tolist()
    value = mean_with_ci(correct, cfg.bootstrap, cfg.seed)
    result = {"accuracy": value.value, "ci95": [value.low, value.high], "n": len(correct),
              "num_unknown": len(data) - len(known), "chance": 1 / net.cfg.num_classes, "config": asdict(cfg)}
    if cfg.out:
        atomic_write_text(cfg.out, json.dumps(result, indent=1) + "\n")
        print(f"wrote {cfg.out}", file=sys.stderr)
    return result
