"""How fast training gets its clips: one file read, and a cached folder filled by 0 or N worker processes.

    python benchmarks/video_read.py --data data/robot/test [--num 300] [--workers 0,2]

The peer is the read every PyAV tutorial writes, `frame.to_ndarray(format="rgb24")` per frame, which builds a
colour-conversion context for every frame; `video_io.read_video` keeps one per file. Both give the same pixels
(checked here). CPU only: run it on the machine whose cores feed training.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from video_adapter.data.dataset import VideoFolderDataset, find_videos  # noqa: E402
from video_adapter.data.video_io import read_video  # noqa: E402


def peer_read(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])


def per_clip_ms(read, paths) -> float:
    start = time.perf_counter()
    for p in paths:
        read(p)
    return 1000 * (time.perf_counter() - start) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder of mp4 clips with captions (make-data's test/)")
    parser.add_argument("--num", type=int, default=300, help="clips timed per read")
    parser.add_argument("--workers", default="0,2", help="worker counts for filling a cached dataset")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = [p for p in find_videos(Path(args.data)) if p.suffix == ".mp4"][: args.num]
    if not paths:
        raise SystemExit(f"no mp4 clips under {args.data}")
    assert all(np.array_equal(read_video(p), peer_read(p)) for p in paths[:20]), "the two reads disagree"
    peer, ours = per_clip_ms(peer_read, paths), per_clip_ms(read_video, paths)
    print(f"{len(paths)} clips from {args.data}, shape {read_video(paths[0]).shape}\n")
    print("| read | ms / clip | clips/s |\n|---|---:|---:|")
    print(f"| peer: to_ndarray per frame | {peer:.2f} | {1000 / peer:.0f} |")
    print(f"| ours: video_io.read_video | {ours:.2f} | {1000 / ours:.0f} |")
    print(f"\nours/peer: {peer / ours:.2f}x the clips/s\n")
    print("| VideoFolderDataset(cache=True) workers | seconds to fill | clips/s |\n|---:|---:|---:|")
    for workers in map(int, args.workers.split(",")):
        start = time.perf_counter()
        dataset = VideoFolderDataset(args.data, cache=True, workers=workers)
        seconds = time.perf_counter() - start
        print(f"| {workers} | {seconds:.1f} | {len(dataset) / seconds:.0f} |")


if __name__ == "__main__":
    main()
