"""What an FVD-VA encoder's features see: the table of its model card (checkpoints/video-encoder/README.md).

    python scripts/encoder_check.py --encoder checkpoints/video-encoder --test data/robot/test --num 128

Two disjoint sets of --num clips each, from procedural broad clips far beyond any training index and, with --test,
from a domain's test split; `metrics.scores.feature_separation` gives the Fréchet distance between them (the floor)
and to the second set shuffled in time, noisy and frozen.
"""

from __future__ import annotations

import argparse
import functools
import itertools

import torch

from video_adapter.data.dataset import VideoFolderDataset
from video_adapter.data.datagen.stream import ClipStream
from video_adapter.evaluation.metrics.scores import feature_separation
from video_adapter.evaluation.metrics.video_net import load_video_net, video_net_features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="checkpoints/video-encoder")
    p.add_argument("--test", help="a domain's test split (optional)")
    p.add_argument("--num", type=int, default=128, help="clips per set")
    args = p.parse_args()
    net = load_video_net(args.encoder)
    shape = (net.cfg.height, net.cfg.width)
    sets = {"procedural broad clips": torch.stack([c["video"] for c in itertools.islice(
        ClipStream("broad-procedural", 0, shape, net.cfg.frames, start=2**41), 2 * args.num)])}
    if args.test:
        data = VideoFolderDataset(args.test, frames=net.cfg.frames, size=shape, random_crop=False)
        if len(data) < 2 * args.num:
            raise SystemExit(f"{args.test} has {len(data)} clips; --num {args.num} needs {2 * args.num}")
        sets[args.test] = torch.stack([data[i]["video"] for i in range(2 * args.num)])
    features = functools.partial(video_net_features, net)
    rows = {name: feature_separation(features, v[:args.num], v[args.num:]) for name, v in sets.items()}
    columns = list(next(iter(rows.values())))
    print(f"| clips ({args.num} vs {args.num}) | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
