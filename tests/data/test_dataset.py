import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from video_adapter.data.dataset import (
    ANIME_KEYWORDS,
    DatasetError,
    ResumableSampler,
    VideoFolderDataset,
    center_crop_resize,
    collate,
)
from video_adapter.data.toy import COLORS, make_toy_dataset
from video_adapter.data.video_io import VideoReadError, read_video, write_gif, write_mp4


def clip(frames=8, h=24, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (frames, h, w, 3), dtype=np.uint8)


def write_jsonl(root, records):
    (root / "captions.jsonl").write_text("".join(json.dumps({"video": v, "caption": c}) + "\n" for v, c in records))


def counter_folder(path, n, h=24, w=40):
    """A frame folder whose frame i is flat grey level 8 * i, so sampled frame indices can be read back exactly."""
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((h, w, 3), 8 * i, np.uint8)).save(path / f"{i}.png")


def frame_ids(video):
    levels = (video[0, :, 0, 0] + 1) * 127.5
    return [round(v / 8) for v in levels.tolist()]


@pytest.fixture
def mixed(tmp_path):
    """mp4 and gif captioned by jsonl, a frame folder captioned by a sidecar, in a sub-folder too."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    write_mp4(root / "a.mp4", clip(seed=1))
    write_gif(root / "sub" / "b.gif", clip(seed=2))
    counter_folder(root / "sub" / "c", 8)
    (root / "sub" / "c.txt").write_text("  frames from a folder \n")
    write_jsonl(root, [("a.mp4", "an mp4"), ("sub/b.gif", "a gif")])
    return root


def test_items_shapes_and_captions(mixed):
    ds = VideoFolderDataset(mixed, frames=4, size=(12, 20))
    assert len(ds) == 3
    by_caption = {}
    for i in range(len(ds)):
        item = ds[i]
        v = item["video"]
        assert v.shape == (3, 4, 12, 20) and v.dtype == torch.float32
        assert v.min() >= -1 and v.max() <= 1
        by_caption[item["caption"]] = item["path"]
    assert by_caption == {
        "an mp4": str(mixed / "a.mp4"),
        "a gif": str(mixed / "sub" / "b.gif"),
        "frames from a folder": str(mixed / "sub" / "c"),
    }
    batch = collate([ds[0], ds[1]])
    assert batch["video"].shape == (2, 3, 4, 12, 20) and len(batch["caption"]) == 2 and len(batch["path"]) == 2


def test_sidecar_txt_captions(tmp_path):
    for i in range(3):
        write_mp4(tmp_path / f"v{i}.mp4", clip(frames=4, seed=i))
        (tmp_path / f"v{i}.txt").write_text(f"caption {i}")
    ds = VideoFolderDataset(tmp_path, frames=4)
    assert ds.captions == ["caption 0", "caption 1", "caption 2"]


def test_keyword_filter(tmp_path):
    captions = ["A DISNEY cartoon of a cat", "a dog runs in a park", "Anime girl waving", "astronaut on the moon"]
    for i, c in enumerate(captions):
        write_gif(tmp_path / f"v{i}.gif", clip(frames=2, seed=i))
        (tmp_path / f"v{i}.txt").write_text(c)
    ds = VideoFolderDataset(tmp_path, frames=2, keywords=ANIME_KEYWORDS)
    assert ds.captions == [captions[0], captions[2]]
    assert VideoFolderDataset(tmp_path, frames=2, keywords="NASA astronaut".split()).captions == [captions[3]]
    with pytest.raises(DatasetError, match="pixar"):
        VideoFolderDataset(tmp_path, frames=2, keywords=["pixar", "comic"])


def test_temporal_sampling_is_deterministic(tmp_path):
    counter_folder(tmp_path / "long", 30, h=4, w=4)
    (tmp_path / "long.txt").write_text("long")
    kwargs = dict(frames=4, stride=3, size=(4, 4))
    ds = VideoFolderDataset(tmp_path, seed=7, **kwargs)
    starts = {}
    for epoch in range(6):
        ds.set_epoch(epoch)
        ids = frame_ids(ds[0]["video"])
        assert np.diff(ids).tolist() == [3, 3, 3] and 0 <= ids[0] <= 30 - 10
        assert frame_ids(ds[0]["video"]) == ids  # same (seed, epoch, index): same window
        starts[epoch] = ids[0]
    assert len(set(starts.values())) > 1, "the window start should change across epochs"
    again = VideoFolderDataset(tmp_path, seed=7, **kwargs)
    again.set_epoch(3)
    assert frame_ids(again[0]["video"])[0] == starts[3]
    assert frame_ids(ds[(0, 3)]["video"])[0] == starts[3]  # (index, epoch) keys, as ResumableSampler(with_epoch=True)
    other_seed = VideoFolderDataset(tmp_path, seed=8, **kwargs)
    assert [frame_ids(other_seed[(0, e)]["video"])[0] for e in range(6)] != list(starts.values())
    first = VideoFolderDataset(tmp_path, random_crop=False, **kwargs)
    assert frame_ids(first[0]["video"]) == [0, 3, 6, 9]


def test_short_videos_are_padded_with_last_frame(tmp_path):
    counter_folder(tmp_path / "short", 5, h=4, w=4)
    (tmp_path / "short.txt").write_text("short")
    with pytest.warns(UserWarning, match="1 of 1 videos"):
        ds = VideoFolderDataset(tmp_path, frames=4, stride=2, size=(4, 4))
    assert ds.num_short == 1
    assert frame_ids(ds[0]["video"]) == [0, 2, 4, 4]


def test_resize_constant_colour_and_center_crop(tmp_path):
    colour = np.array([200, 40, 90], np.uint8)
    frames = np.empty((3, 50, 150, 3), np.uint8)
    frames[:] = colour
    frames[:, :, :20] = 0  # outside the centred 50x83 crop of the 24:40 aspect: must not leak in
    frames[:, :, -20:] = 255
    counter = tmp_path / "wide"
    counter.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(counter / f"{i}.png")
    (tmp_path / "wide.txt").write_text("wide")
    v = VideoFolderDataset(tmp_path, frames=3)[0]["video"]
    assert v.shape == (3, 3, 24, 40)
    expected = torch.tensor(colour / 127.5 - 1, dtype=torch.float32).view(3, 1, 1, 1)
    assert (v - expected).abs().max() < 1e-4
    tall = torch.zeros(3, 1, 100, 40)
    tall[:, :, 30:70] = 1.0  # the centred 24:40 crop of a 100x40 frame is rows 38..62: all ones
    assert torch.allclose(center_crop_resize(tall, (24, 40)), torch.ones(3, 1, 24, 40))


def test_resize_is_antialiased():
    # 1-px checkerboard shrunk 5x (an odd factor: plain bilinear then samples pixel centres and aliases fully)
    board = (torch.arange(120).view(-1, 1) + torch.arange(200).view(1, -1)) % 2 * 2.0 - 1.0
    video = board.expand(3, 2, 120, 200).clone()
    out = center_crop_resize(video, (24, 40))
    assert out.shape == (3, 2, 24, 40)
    assert out.abs().max() < 0.05, "a checkerboard shrunk 5x should average to mid grey"
    aliased = F.interpolate(video.transpose(0, 1), size=(24, 40), mode="bilinear", antialias=False)
    assert aliased.abs().min() > 0.5  # without antialiasing the same resize aliases (the test can tell them apart)


def test_missing_root_and_no_videos(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nowhere")
    (tmp_path / "readme.md").write_text("not a video")
    with pytest.raises(DatasetError, match=r"no videos found.*\.mp4.*\.webm.*\.gif.*\.png"):
        VideoFolderDataset(tmp_path)


def test_missing_captions_are_listed(tmp_path):
    for i in range(14):
        write_gif(tmp_path / f"v{i:02d}.gif", clip(frames=2, h=4, w=4, seed=i))
    write_jsonl(tmp_path, [("v00.gif", "captioned")])
    (tmp_path / "v01.txt").write_text("captioned by sidecar")
    with pytest.raises(DatasetError) as err:
        VideoFolderDataset(tmp_path, frames=2)
    msg = str(err.value)
    assert "12 of 14 videos" in msg and "v02.gif" in msg and "and 2 more" in msg and "v00.gif" not in msg
    write_jsonl(tmp_path, [("v00.gif", "x"), ("gone.mp4", "y")])
    with pytest.raises(DatasetError, match="gone.mp4"):
        VideoFolderDataset(tmp_path, frames=2)


def test_captions_not_in_utf8_name_the_file_and_line(tmp_path):
    write_gif(tmp_path / "a.gif", clip(frames=2, h=4, w=4))
    write_gif(tmp_path / "b.gif", clip(frames=2, h=4, w=4))
    (tmp_path / "captions.jsonl").write_bytes('{"video": "a.gif", "caption": "a cafe"}\n'
                                              '{"video": "b.gif", "caption": "a café"}\n'.encode("cp1252"))
    with pytest.raises(DatasetError) as err:
        VideoFolderDataset(tmp_path, frames=2)
    assert f"{tmp_path / 'captions.jsonl'}:2: not UTF-8 (byte 0xe9); save the file as UTF-8" in str(err.value)
    (tmp_path / "captions.jsonl").unlink()
    (tmp_path / "a.txt").write_text("a cafe")
    (tmp_path / "b.txt").write_bytes("a café".encode("cp1252"))
    with pytest.raises(DatasetError, match=r"b\.txt:1: not UTF-8"):
        VideoFolderDataset(tmp_path, frames=2)
    (tmp_path / "b.txt").write_bytes("a café".encode("utf-8-sig"))  # UTF-8 with a byte-order mark, as Notepad saves
    assert VideoFolderDataset(tmp_path, frames=2).captions == ["a cafe", "a café"]


def test_folder_of_splits_points_at_one(tmp_path):
    for split in ("train", "test"):
        make_toy_dataset(tmp_path / "data" / split, num=2, frames=2, progress=False)
    (tmp_path / "data" / "data_card.json").write_text("{}")
    with pytest.raises(DatasetError) as err:
        VideoFolderDataset(tmp_path / "data", frames=2)
    msg = str(err.value)
    assert "4 of 4 videos" in msg and "test/, train/ each hold their own captions.jsonl" in msg
    assert msg.endswith(f"--data {tmp_path / 'data' / 'train'}")


@pytest.fixture
def with_bad_files(tmp_path):
    for i in range(3):
        write_mp4(tmp_path / f"good{i}.mp4", clip(frames=4, seed=i))
    (tmp_path / "x.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    data = (tmp_path / "good0.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) * 2 // 3])
    names = ["good0.mp4", "good1.mp4", "good2.mp4", "x.mp4", "truncated.mp4"]
    write_jsonl(tmp_path, [(n, f"video {n}") for n in names])
    return tmp_path


@pytest.mark.parametrize("verify", ["decode", "header"])
def test_corrupt_files_are_listed_together(with_bad_files, verify):
    with pytest.raises(DatasetError) as err:
        VideoFolderDataset(with_bad_files, frames=4, verify=verify)
    msg = str(err.value)
    assert "2 of 5 videos" in msg and "x.mp4" in msg and "truncated.mp4" in msg and "good" not in msg
    assert "--skip-bad" in msg


def test_skip_bad(with_bad_files, capsys):
    ds = VideoFolderDataset(with_bad_files, frames=4, skip_bad=True)
    assert len(ds) == 3 and sorted(p.name for p in ds.skipped) == ["truncated.mp4", "x.mp4"]
    assert "skipping 2 unreadable videos" in capsys.readouterr().err
    assert all(ds[i]["caption"].startswith("video good") for i in range(3))


def test_checking_in_worker_processes_gives_the_same_dataset(with_bad_files):
    """workers=2 checks (and with cache, decodes) in 2 processes: the same files, lengths, skips and clips, in
    order, with the cache of the kept files shifted past the dropped ones."""
    (with_bad_files / "a.mp4").write_bytes(b"\x00" * 100)  # sorts first: every kept file moves down one
    with (with_bad_files / "captions.jsonl").open("a") as f:
        f.write(json.dumps({"video": "a.mp4", "caption": "video a"}) + "\n")
    for cache in (False, True):
        one, two = (VideoFolderDataset(with_bad_files, frames=4, skip_bad=True, cache=cache, workers=w)
                    for w in (0, 2))
        assert (one.paths, one.lengths, one.skipped) == (two.paths, two.lengths, two.skipped)
        assert sorted(p.name for p in two.skipped) == ["a.mp4", "truncated.mp4", "x.mp4"]
        for i in range(len(one)):
            assert two[i]["path"] == one[i]["path"] and torch.equal(two[i]["video"], one[i]["video"])
    with pytest.raises(DatasetError, match="3 of 6 videos"):
        VideoFolderDataset(with_bad_files, frames=4, cache=True, workers=2)


def test_file_going_bad_mid_epoch_names_it(tmp_path):
    for i in range(2):
        write_mp4(tmp_path / f"v{i}.mp4", clip(frames=4, seed=i))
        (tmp_path / f"v{i}.txt").write_text("c")
    ds = VideoFolderDataset(tmp_path, frames=4)
    (tmp_path / "v1.mp4").write_bytes(b"\x00" * 100)
    ds[0]
    with pytest.raises(VideoReadError, match="v1.mp4"):
        ds[1]


def test_cache_matches_uncached(mixed):
    plain, cached = VideoFolderDataset(mixed, frames=4), VideoFolderDataset(mixed, frames=4, cache=True)
    for i in range(len(plain)):
        assert (plain[i]["video"] - cached[i]["video"]).abs().max() < 2e-3
        assert (cached[i]["video"] - cached[i]["video"]).abs().max() == 0


def test_sampler_resumes_mid_epoch():
    full = ResumableSampler(10, seed=3)
    epoch0 = list(full)
    epoch1 = list(full)
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10)) and epoch0 != epoch1
    assert full.state_dict() == {"epoch": 1, "position": 10}

    run = ResumableSampler(10, seed=3)
    it = iter(run)
    drawn = [next(it) for _ in range(4)]
    state = run.state_dict()
    assert drawn == epoch0[:4] and state == {"epoch": 0, "position": 4}
    del it  # the run is killed here
    resumed = ResumableSampler(10, seed=3)
    resumed.load_state_dict(state)
    assert list(resumed) == epoch0[4:]
    assert list(resumed) == epoch1  # and carries on into the next epoch
    # a trainer saves what it consumed, not what the loader prefetched
    assert run.state_dict(consumed=2) == {"epoch": 0, "position": 2}
    assert list(ResumableSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_sampler_shards_partition():
    for n, world in [(10, 3), (7, 2), (4, 4)]:
        shards = [list(ResumableSampler(n, seed=1, rank=r, world_size=world)) for r in range(world)]
        flat = [i for s in shards for i in s]
        assert sorted(flat) == list(range(n)), (n, world)
        assert [len(ResumableSampler(n, rank=r, world_size=world)) for r in range(world)] == [len(s) for s in shards]
        even = [list(ResumableSampler(n, seed=1, rank=r, world_size=world, drop_last=True)) for r in range(world)]
        assert len({len(s) for s in even}) == 1 and len(set(sum(even, []))) == n - n % world
    with pytest.raises(ValueError):
        ResumableSampler(4, rank=2, world_size=2)


def test_chunked_shards_make_the_global_batches_of_one_process():
    """chunk = per-process batch: step k's batches of 2 ranks, joined, are step k's batch of 1 process at twice
    the batch, for every epoch; shards still partition the items, and len() counts them, partial chunks too."""
    one = list(ResumableSampler(11, seed=4, drop_last=True, chunk=4))
    ranks = [list(ResumableSampler(11, seed=4, rank=r, world_size=2, drop_last=True, chunk=2)) for r in range(2)]
    assert len(one) == 8 and [len(r) for r in ranks] == [4, 4]
    for k in range(2):
        assert ranks[0][2 * k: 2 * k + 2] + ranks[1][2 * k: 2 * k + 2] == one[4 * k: 4 * k + 4]
    for n, world, chunk in [(10, 3, 2), (7, 2, 3), (5, 2, 4)]:
        shards = [ResumableSampler(n, seed=1, rank=r, world_size=world, chunk=chunk) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(n)), (n, world, chunk)
        assert [len(s) for s in shards] == [len(list(s)) for s in shards]


def test_dataloader_with_epoch_keys(mixed):
    ds = VideoFolderDataset(mixed, frames=4)
    sampler = ResumableSampler(len(ds), seed=0, with_epoch=True)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate)
    batches = list(loader)
    assert [b["video"].shape[0] for b in batches] == [2, 1]
    assert batches[0]["video"].shape == (2, 3, 4, 24, 40)


def test_toy_dataset(tmp_path):
    a = make_toy_dataset(tmp_path / "a", num=5, frames=6, seed=0, progress=False)
    b = make_toy_dataset(tmp_path / "b", num=5, frames=6, seed=0, progress=False)
    c = make_toy_dataset(tmp_path / "c", num=5, frames=6, seed=1, progress=False)
    recs = [json.loads(line) for line in (a / "captions.jsonl").read_text().splitlines()]
    assert (a / "captions.jsonl").read_text() == (b / "captions.jsonl").read_text()
    assert (a / "captions.jsonl").read_text() != (c / "captions.jsonl").read_text()
    for r in recs:
        np.testing.assert_array_equal(read_video(a / r["video"]), read_video(b / r["video"]))
        assert r["caption"] == f"a {r['color']} {r['shape']} moves {r['direction']}"

    ds = VideoFolderDataset(a, frames=6, size=(24, 40), random_crop=False)
    assert len(ds) == 5 and not [p for p in a.iterdir() if p.name.startswith(".")]
    for i, r in enumerate(recs):
        item = ds[i]
        assert item["caption"] == r["caption"]
        frames = ((item["video"] + 1) * 127.5).permute(1, 2, 3, 0)  # [F, H, W, C] levels
        target = torch.tensor(COLORS[r["color"]], dtype=torch.float32)
        close = (frames - target).abs().max(-1).values < 20  # pixels recognisably of the caption's colour
        assert close.sum(dim=(1, 2)).min() >= 10, r
        ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(40.0), indexing="ij")
        centre = torch.stack([(ys * m).sum() / m.sum() for m in close.float()]), \
            torch.stack([(xs * m).sum() / m.sum() for m in close.float()])
        dy, dx = (centre[0][-1] - centre[0][0]).item(), (centre[1][-1] - centre[1][0]).item()
        moved = {"left": -dx, "right": dx, "up": -dy, "down": dy}[r["direction"]]
        assert moved > 3, (r, dy, dx)


def test_webm_with_header_probe_reads_whole_video(tmp_path):
    """webm headers state no frame count: with verify="header" the length is found by decoding at first use."""
    import av

    with av.open(str(tmp_path / "v.webm"), "w") as c:
        s = c.add_stream("libvpx-vp9", rate=8)
        s.width, s.height, s.pix_fmt = 40, 24, "yuv420p"
        for i in range(10):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((24, 40, 3), 8 * i, np.uint8), format="rgb24")))
        c.mux(s.encode())
    (tmp_path / "v.txt").write_text("webm")
    ds = VideoFolderDataset(tmp_path, frames=4, stride=2, verify="header", seed=5)
    assert ds.lengths == [None]
    for epoch in range(3):
        ids = frame_ids(ds[(0, epoch)]["video"])
        assert np.diff(ids).tolist() == [2, 2, 2] and 0 <= ids[0] <= 3  # lossy codec: levels are near, not exact
    assert VideoFolderDataset(tmp_path, frames=4).lengths == [10]


def test_portrait_clip_warns_about_the_crop(tmp_path):
    write_mp4(tmp_path / "portrait.mp4", clip(frames=4, h=80, w=48))  # taller than wide: a 24x40 crop keeps 36%
    write_mp4(tmp_path / "wide.mp4", clip(frames=4, h=24, w=40))
    write_jsonl(tmp_path, [("portrait.mp4", "tall"), ("wide.mp4", "wide")])
    with pytest.warns(UserWarning, match=r"1 of 2 videos .* lose more than half .*--fit pad") as record:
        ds = VideoFolderDataset(tmp_path, frames=4, verify="header")
    assert sum("lose more than half" in str(w.message) for w in record) == 1  # said once, for the dataset
    assert ds.frame_sizes == [(80, 48), (24, 40)]


def test_fit_pad_letterboxes_on_black(tmp_path):
    folder = tmp_path / "portrait"
    counter_folder(folder, 3, h=80, w=48)  # frame i is flat grey 8 * i: fits in 24x40 as 24 rows by 14 columns
    (tmp_path / "portrait.txt").write_text("tall")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # padding loses nothing: no crop warning
        v = VideoFolderDataset(tmp_path, frames=3, fit="pad", random_crop=False)[0]["video"]
    assert v.shape == (3, 3, 24, 40)
    left, right = (40 - 14) // 2, (40 - 14) // 2 + 14
    assert (v[..., :left] == -1).all() and (v[..., right:] == -1).all()
    expected = torch.tensor([8 * i / 127.5 - 1 for i in range(3)]).view(1, 3, 1, 1)
    assert (v[..., left:right] - expected).abs().max() < 1e-4
    with pytest.warns(UserWarning, match="--fit pad"):
        cropped = VideoFolderDataset(tmp_path, frames=3, random_crop=False)[0]["video"]  # default: the centre crop
    assert (cropped - expected).abs().max() < 1e-4


def test_bad_fit_is_refused(mixed):
    with pytest.raises(ValueError, match="fit must be one of crop, pad"):
        VideoFolderDataset(mixed, fit="stretch")
    from video_adapter.training.train import TrainConfig

    TrainConfig(fit="pad").validate()
    with pytest.raises(ValueError, match="--fit must be crop or pad"):
        TrainConfig(fit="stretch").validate()
