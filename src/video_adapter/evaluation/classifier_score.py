"""`video-adapter score-classifier`: a caption classifier's accuracy on a labelled folder, with a bootstrap interval.

    video-adapter score-classifier --classifier runs/robot-task --data data/robot-real/test --out score.json

The downstream test of sim-to-real (paper Figure 10): a task classifier trained on sim clips alone, or on sim clips
plus their generated real versions (`evaluate --save-samples`, `train-video-net --data A B ...`), scored on real
clips. Each clip's caption is its label, rewritten by the classifier's own stored caption rewrites (those it was
trained with), so a folder is scored exactly as the classifier sees its labels. Clips whose caption is none of its
labels cannot be right or wrong: they are left out and counted. The interval is `metrics.scores.mean_with_ci`, the
one evaluate's accuracy column reports, resampling the scored clips with replacement.

`--against OTHER` scores a second classifier on the same clips and adds the paired difference (this minus it) over
the same resamples: the downstream test's two arms differ in their training data only and are scored on the same
real clips, so the clip-to-clip luck cancels and the difference's interval is the test, not the two marginal ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
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
    against: str = ""                     # a second one, scored on the same clips: the paired difference ("": none)
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
    device = resolve_device(cfg.device)
    net = _caption_net(cfg.classifier, device)
    data = VideoFolderDataset(root, frames=net.cfg.frames, size=(net.cfg.height, net.cfg.width), random_crop=False)
    known = scorable(net, data.captions, f" under {root}")
    correct = _correct(net, data, known, cfg.batch_size)
    value = mean_with_ci(correct, cfg.bootstrap, cfg.seed)
    result = {"accuracy": value.value, "ci95": [value.low, value.high], "n": len(correct),
              "num_unknown": len(data) - len(known), "chance": 1 / net.cfg.num_classes}
    if cfg.against:
        other = _caption_net(cfg.against, device)
        if (other.cfg.frames, other.cfg.height, other.cfg.width) != (net.cfg.frames, net.cfg.height, net.cfg.width):
            raise ValueError(f"{cfg.against} takes {other.cfg.frames}x{other.cfg.height}x{other.cfg.width} clips and "
                             f"{cfg.classifier} {net.cfg.frames}x{net.cfg.height}x{net.cfg.width}: a paired "
                             "comparison needs both to see the same clips")
        if scorable(other, data.captions, f" under {root}") != known:
            raise ValueError(f"{cfg.classifier} and {cfg.against} know different captions of {root}, so they would "
                             "score different clips: train both arms with the same --caption-rewrites and labels")
        theirs = _correct(other, data, known, cfg.batch_size)
        mine, theirs_ = np.asarray(correct, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
        them = mean_with_ci(theirs_, cfg.bootstrap, cfg.seed)
        diff = mean_with_ci(mine - theirs_, cfg.bootstrap, cfg.seed)  # the same resamples as both accuracies
        result.update(against={"accuracy": them.value, "ci95": [them.low, them.high]},
                      difference={"value": diff.value, "ci95": [diff.low, diff.high]},
                      only_this_right=int(((mine == 1) & (theirs_ == 0)).sum()),
                      only_against_right=int(((mine == 0) & (theirs_ == 1)).sum()))
    result["config"] = asdict(cfg)
    if cfg.out:
        atomic_write_text(cfg.out, json.dumps(result, indent=1) + "\n")
        print(f"wrote {cfg.out}", file=sys.stderr)
    return result


def _caption_net(path: str, device: torch.device):
    net = load_video_net(path, device)
    if net.cfg.objective != "caption":
        raise ValueError(f"{path} is a video_net with objective {net.cfg.objective!r}; score-classifier needs a "
                         "caption classifier (train-video-net --objective caption)")
    return net


def _correct(net, data: VideoFolderDataset, known: list[int], batch_size: int) -> list[bool]:
    """Whether `net` names each clip `known` of `data` right, decoded CHUNK clips at a time."""
    correct = []
    for start in range(0, len(known), CHUNK):
        part = known[start:start + CHUNK]
        videos = torch.stack([data[i]["video"] for i in part])
        correct += caption_predictions(net, videos, [data.captions[i] for i in part], batch_size).tolist()
    return correct
