"""scripts/merge_datasets.py: the merged splits read as one dataset with every caption at its video, each part stays a
dataset of its own, the sources are untouched, and bad input is refused before anything is written."""

import shutil

import pytest

from helpers import load_script
from video_adapter.data.dataset import DatasetError, VideoFolderDataset
from video_adapter.data.toy import make_toy_dataset


@pytest.fixture(scope="module")
def merger():
    return load_script("merge_datasets")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two make-data-like folders (train/ and test/), of different sizes and seeds."""
    base = tmp_path_factory.mktemp("sources")
    for name, sizes, seed in (("a", (3, 2), 0), ("b", (2, 1), 5)):
        for split, num in zip(("train", "test"), sizes):
            make_toy_dataset(base / name / split, num=num, frames=4, size=(8, 16), seed=seed + len(split),
                             progress=False)
    return base


def read(folder):
    return VideoFolderDataset(folder, frames=4, size=(8, 16), random_crop=False)


def test_merged_splits_hold_every_video_with_its_own_caption(merger, roots, tmp_path):
    out = tmp_path / "mix"
    counts = merger.merge(merger.parse_parts([f"a={roots / 'a'}", f"b={roots / 'b'}"]), out)
    assert counts == {"train": 5, "test": 3}
    for split in ("train", "test"):
        merged = read(out / split)
        expected = {}
        for name in ("a", "b"):
            part = read(roots / name / split)
            expected.update({f"{name}/{p.relative_to(part.root).as_posix()}": c
                             for p, c in zip(part.paths, part.captions)})
            # each part is still a dataset of its own, at its own name
            assert read(out / split / name).captions == part.captions
        assert {p.relative_to(merged.root).as_posix(): c for p, c in zip(merged.paths, merged.captions)} == expected
    # the sources are untouched: still readable, with their own captions
    assert len(read(roots / "a" / "train")) == 3


def test_bad_parts_and_an_existing_out_are_refused(merger, roots, tmp_path):
    with pytest.raises(SystemExit, match="NAME=DIR"):
        merger.parse_parts([str(roots / "a")])
    with pytest.raises(SystemExit, match="given twice"):
        merger.parse_parts([f"a={roots / 'a'}", f"a={roots / 'b'}"])
    with pytest.raises(SystemExit, match="make-data output folder"):
        merger.parse_parts([f"a={roots / 'a' / 'train'}"])
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="exists"):
        merger.merge(merger.parse_parts([f"a={roots / 'a'}"]), tmp_path / "taken")


def test_a_corrupt_part_stops_the_merge_with_its_line_and_leaves_no_output(merger, roots, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(roots / "b", bad)
    with open(bad / "test" / "captions.jsonl", "a") as f:
        f.write("not json\n")
    out = tmp_path / "mix"
    with pytest.raises(DatasetError, match=r"captions.jsonl:2"):
        merger.merge(merger.parse_parts([f"a={roots / 'a'}", f"b={bad}"]), out)
    assert not out.exists() and not list(tmp_path.glob(".mix.*"))  # nothing half-written, no temp left
