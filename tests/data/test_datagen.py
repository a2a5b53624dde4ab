"""make-data: determinism, the loader round trip, data cards, held-out domains, the stream, bad arguments."""

import json
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from video_adapter.data.datagen import DOMAINS, KINDS, generator
from video_adapter.data.datagen.base import downsample, parse_size
from video_adapter.data.datagen.make import CARD_NAME, MakeDataConfig, make_dataset, split_indices
from video_adapter.data.datagen.stream import ClipStream
from video_adapter.data.dataset import VideoFolderDataset
from video_adapter.data.video_io import read_video
from video_adapter.interfaces.cli import main

FAST = "broad-procedural"  # numpy only: quick enough for spawning workers in a test


def make(tmp_path, name, kind=FAST, **kw):
    cfg = MakeDataConfig(out=str(tmp_path / name), **{"num": 20, "frames": 6, "workers": 1, **kw})
    return make_dataset(kind, cfg, progress=False)


def records(root, split):
    return [json.loads(line) for line in (root / split / "captions.jsonl").read_text().splitlines()]


def decoded(root):
    return {p.relative_to(root).as_posix(): read_video(p) for p in sorted(root.rglob("*.mp4"))}


@pytest.mark.slow
def test_same_seed_same_dataset_for_any_number_of_workers(tmp_path):
    one, two = make(tmp_path, "one", workers=1), make(tmp_path, "two", workers=2)
    other = make(tmp_path, "other", seed=1)
    for split in ("train", "test"):
        assert records(one, split) == records(two, split)
        assert records(one, split) != records(other, split)
    a, b = decoded(one), decoded(two)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_dataset_round_trips_through_the_loader(tmp_path):
    root = make(tmp_path, "ds", num=30, frames=6, size="24x40")
    card = json.loads((root / CARD_NAME).read_text())
    assert card["counts"] == {"train": 27, "test": 3} and card["kind"] == FAST and card["seed"] == 0
    assert card["size"] == [24, 40] and card["frames"] == 6 and card["version"] == generator(FAST).version
    assert card["speed"]["clips_per_second_per_core"] > 0 and card["templates"] == list(generator(FAST).templates)
    assert (root / "preview.png").stat().st_size > 0
    train = VideoFolderDataset(root / "train", frames=6, size=(24, 40), random_crop=False)
    assert len(train) == 27
    by_name = {r["video"]: r for r in records(root, "train")}
    gen = generator(FAST)
    for i in range(len(train)):
        item = train[i]
        name = next(k for k in by_name if by_name[k]["caption"] == item["caption"])
        rec = by_name[name]
        assert item["video"].shape == (3, 6, 24, 40) and -1 <= item["video"].min() < item["video"].max() <= 1
        assert gen.caption(rec["meta"]) == rec["caption"]  # captions come from the metadata
        clip = gen.clip(int(name[:6]), 0, (24, 40), 6)
        assert clip.caption == rec["caption"] and clip.meta == rec["meta"]
        # mp4 is lossy: the decoded clip is close to the rendered one, not equal
        assert np.abs(read_video(root / "train" / name).astype(int) - clip.video.astype(int)).mean() < 12


def test_split_is_a_seeded_partition():
    parts = split_indices(1000, 0.1, 3)
    assert len(parts["test"]) == 100 and sorted(parts["train"] + parts["test"]) == list(range(1000))
    assert parts != split_indices(1000, 0.1, 4) and parts == split_indices(1000, 0.1, 3)


def template_regex(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(template)))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["broad-procedural", "broad-bullet"])
def test_no_domain_template_or_look_in_the_broad_corpus(family):
    gen = generator(family)
    clips = [gen.clip(i, 7, (24, 40), 4) for i in range(60 if family == "broad-bullet" else 300)]
    for domain in DOMAINS:
        held = generator(domain).held_out
        patterns = [template_regex(t) for t in generator(domain).templates]
        assert patterns and held, domain
        for clip in clips:
            assert not any(p.fullmatch(clip.caption) for p in patterns), (domain, clip.caption)
            text = json.dumps(clip.meta).lower()
            for key in ("arm", "robot"):
                if isinstance(held.get(key), str):
                    assert held[key].lower() not in text, (domain, key, clip.meta)
    assert not any(t in generator(d).templates for d in DOMAINS for t in gen.templates)


def test_stream_deals_clips_once_and_resumes():
    stream = ClipStream(FAST, seed=5, size=(24, 40), frames=4)
    items = [item for item, _ in zip(stream, range(6))]
    assert [it["index"] for it in items] == list(range(6))
    clip = generator(FAST).clip(3, 5, (24, 40), 4)
    assert items[3]["caption"] == clip.caption and items[3]["video"].shape == (3, 4, 24, 40)
    assert torch.equal(items[3]["video"], torch.from_numpy(clip.video).permute(3, 0, 1, 2).float() / 127.5 - 1)
    loader = DataLoader(ClipStream(FAST, seed=5, size=(24, 40), frames=4, rank=1, world_size=2), batch_size=None,
                        num_workers=2)
    assert [item["index"] for item, _ in zip(loader, range(5))] == [1, 3, 5, 7, 9]  # rank 1 of 2, in order
    resumed = ClipStream(FAST, seed=5, size=(24, 40), frames=4, start=3)
    assert next(iter(resumed))["caption"] == items[3]["caption"]
    # batches: rank 0 of 2 with batch 3 takes clips 0-2, 6-8, ...; two workers still deliver them in order
    batched = DataLoader(ClipStream(FAST, seed=5, size=(24, 40), frames=4, world_size=2, batch_size=3),
                         batch_size=None, num_workers=2)
    got = [b["index"].tolist() for b, _ in zip(batched, range(3))]
    assert got == [[0, 1, 2], [6, 7, 8], [12, 13, 14]]
    first = next(iter(batched))
    assert first["video"].shape == (3, 3, 4, 24, 40) and first["caption"][1] == items[1]["caption"]


def test_downsample_is_area_average():
    video = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    out = downsample(video, (2, 3))
    assert out.shape == (2, 2, 3, 3)
    assert out[0, 0, 0, 0] == int(video[0, :2, :2, 0].mean() + 0.5)  # rounds half up
    with pytest.raises(ValueError, match="multiple"):
        downsample(video, (3, 3))


def fails(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    return str(e.value.code) + capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["make-data", "bridge", "--out", "OUT/x"], ["unknown dataset kind 'bridge'", "robot", "egocentric"]),
    (["make-data", FAST], ["--out DIR is required"]),
    (["make-data", FAST, "--out", "OUT/x", "--size", "24by40"], ["--size", "HEIGHTxWIDTH", "24by40"]),
    (["make-data", FAST, "--out", "OUT/x", "--size", "25x40"], ["even"]),
    (["make-data", FAST, "--out", "OUT/x", "--num", "0"], ["--num must be >= 1"]),
    (["make-data", FAST, "--out", "OUT/x", "--test-fraction", "1"], ["--test-fraction", "[0, 1)"]),
    (["make-data", FAST, "--out", "OUT", "--num", "2"], ["exists", "--overwrite"]),
])
def test_bad_arguments(capsys, tmp_path, argv, words):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    msg = fails(capsys, *argv)
    for w in words:
        assert w in msg, (w, msg)
    assert not (tmp_path / "x").exists()


def test_cli_make_data_and_kinds(capsys, tmp_path):
    main(["make-data", FAST, "--out", str(tmp_path / "d"), "--num", "4", "--frames", "4", "--workers", "1"])
    assert f"wrote {tmp_path / 'd'}" in capsys.readouterr().out
    assert len(list((tmp_path / "d").rglob("*.mp4"))) == 4
    assert parse_size("48x80") == (48, 80)
    assert set(DOMAINS) < set(KINDS) and "broad" in KINDS


def test_a_failure_leaves_nothing_and_overwrite_replaces(tmp_path, monkeypatch):
    import video_adapter.data.datagen.make as make_module

    real = make_module._render

    def failing(job):
        if job[1] == 5:
            raise RuntimeError("renderer crashed")
        return real(job)

    monkeypatch.setattr(make_module, "_render", failing)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        make(tmp_path, "broken")
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its temporary folder
    monkeypatch.setattr(make_module, "_render", real)
    first = make(tmp_path, "ds", num=4)
    make(tmp_path, "ds", num=6, overwrite=True)
    assert len(records(first, "train")) + len(records(first, "test")) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_the_next_run_removes_temp_folders_of_killed_runs_but_not_of_live_ones(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    temp = lambda name, where, pid: tmp_path / f".{name}.tmp-{where}-{pid}-0123abcd"
    stale, live = temp("ds", host, dead.pid), temp("ds", host, os.getpid())
    elsewhere, other_target = temp("ds", "another-host", dead.pid), temp("ds2", host, dead.pid)
    for folder in (stale, live, elsewhere, other_target):
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "000000.mp4").write_bytes(b"half written")
    make(tmp_path, "ds", num=4)
    assert not stale.exists()
    # a live writer's, another host's (its PID is not this machine's) and another target's are left alone
    assert live.exists() and elsewhere.exists() and other_target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds", live.name, elsewhere.name, other_target.name])
