"""How fast a machine makes data: make-data with all cores, and the clip stream through a DataLoader.

    python benchmarks/datagen_speed.py [--kinds broad-procedural,animation] [--num 4000] [--out results.json]

Run on the GPU machine (16 cores, no pybullet: the procedural kinds) to size the streaming pretraining corpus.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from video_adapter.data.datagen.make import MakeDataConfig, make_dataset  # noqa: E402
from video_adapter.data.datagen.stream import ClipStream  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="broad-procedural,animation")
    parser.add_argument("--num", type=int, default=4000, help="clips per make-data run")
    parser.add_argument("--stream-workers", default="8,15", help="DataLoader worker counts for the stream")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each stream is timed")
    parser.add_argument("--out", default="benchmarks/results/datagen_speed.json")
    args = parser.parse_args()
    out = {"cores": os.cpu_count()}
    for kind in args.kinds.split(","):
        folder = Path(tempfile.mkdtemp()) / kind
        start = time.perf_counter()
        make_dataset(kind, MakeDataConfig(out=str(folder), num=args.num), progress=False)
        wall = time.perf_counter() - start
        card = json.loads((folder / "data_card.json").read_text())
        size = sum(p.stat().st_size for p in folder.rglob("*.mp4"))
        out[kind] = {"num": args.num, "wall_s": round(wall, 1), "clips_per_s": round(args.num / wall, 1),
                     "clips_per_s_per_core": card["speed"]["clips_per_second_per_core"],
                     "kb_per_clip": round(size / args.num / 1024, 2)}
        shutil.rmtree(folder.parent)
        print(kind, out[kind], flush=True)
    for workers in map(int, args.stream_workers.split(",")):
        loader = DataLoader(ClipStream("broad-procedural", seed=0, size=(24, 40), frames=16), batch_size=64,
                            num_workers=workers, prefetch_factor=4)
        batches = iter(loader)
        next(batches)  # workers started and warm
        start, clips = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            clips += next(batches)["video"].shape[0]
        key = f"stream_broad_procedural_{workers}w_clips_per_s"
        out[key] = round(clips / (time.perf_counter() - start), 1)
        print(key, out[key], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
