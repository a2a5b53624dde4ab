"""Merge make-data folders into one dataset, each under a name, with one captions.jsonl per split.

`train --data` takes one folder; the super-resolution stages train on the broad corpus and the domains together:

    python scripts/merge_datasets.py --out data/sr-mix broad=data/sr-broad anim=data/sr-anim robot=data/sr-robot

gives data/sr-mix/{train,test}/{broad,anim,robot}/ and data/sr-mix/{train,test}/captions.jsonl, whose paths carry
the name ("broad/000000.mp4"). Each part keeps its own captions.jsonl, so data/sr-mix/test/robot is a dataset too.
Videos are hard links where the file system allows (no copy, the sources untouched), else copies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from video_adapter.common.files import atomic_dir
from video_adapter.data.dataset import CAPTIONS_FILE, read_captions_jsonl

SPLITS = ("train", "test")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def parse_parts(specs: list[str]) -> dict[str, Path]:
    """NAME=DIR pairs as {name: folder}, each folder a make-data root with train/ and test/ captioned splits."""
    parts: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or "/" in name or not folder:
            raise SystemExit(f"error: {spec!r} is not NAME=DIR (e.g. broad=data/sr-broad; NAME without '/')")
        if name in parts:
            raise SystemExit(f"error: the name {name!r} is given twice; give each folder its own")
        missing = [s for s in SPLITS if not (Path(folder) / s / CAPTIONS_FILE).is_file()]
        if missing:
            raise SystemExit(f"error: {folder} has no {' or '.join(f'{s}/{CAPTIONS_FILE}' for s in missing)}; "
                             "pass a make-data output folder (it holds train/ and test/)")
        parts[name] = Path(folder)
    return parts


def merge(parts: dict[str, Path], out: Path) -> dict[str, int]:
    """Write the merged dataset into `out` (which must not exist yet), whole or not at all (it is built beside `out`
    and renamed into place); returns the videos per split."""
    if out.exists():
        raise SystemExit(f"error: {out} exists; pass a new --out (merging into a dataset would mix its captions)")
    counts = {}
    with atomic_dir(out) as tmp:
        for split in SPLITS:
            lines = []
            for name, folder in parts.items():
                shutil.copytree(folder / split, tmp / split / name, copy_function=_link_or_copy)
                for video, caption in read_captions_jsonl(folder / split / CAPTIONS_FILE).items():
                    lines.append(json.dumps({"video": f"{name}/{video}", "caption": caption}))
            (tmp / split / CAPTIONS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
            counts[split] = len(lines)
    return counts


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="+", help="NAME=DIR: a make-data folder and the sub-folder name it gets")
    p.add_argument("--out", required=True, help="the merged dataset's folder (new)")
    a = p.parse_args(argv)
    counts = merge(parse_parts(a.parts), Path(a.out))
    print(f"wrote {a.out}: " + ", ".join(f"{n} {s} videos" for s, n in counts.items()))


if __name__ == "__main__":
    main()
