import numpy as np
import pytest
import torch
from PIL import Image

from video_adapter.data import video_io
from video_adapter.data.video_io import (
    ImageReadError,
    VideoReadError,
    from_uint8,
    make_grid,
    probe_video,
    read_image,
    read_video,
    to_uint8,
    write_gif,
    write_grid,
    write_mp4,
)

MP4_MEAN_TOL = 8.0  # mean absolute error in uint8 levels allowed for the lossy H.264/yuv420p round trip


def moving_bar(frames=16, h=24, w=40):
    """Two flat halves (red/blue) with a green bar moving right: smooth areas plus sharp edges."""
    x = np.zeros((frames, h, w, 3), np.uint8)
    x[:, : h // 2] = (255, 0, 0)
    x[:, h // 2 :] = (0, 0, 255)
    for i in range(frames):
        x[i, :, 2 * i : 2 * i + 4] = (0, 255, 0)
    return x


def no_temp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name] == []


def test_mp4_round_trip(tmp_path):
    x = moving_bar()
    write_mp4(tmp_path / "a.mp4", x, fps=8)
    y = read_video(tmp_path / "a.mp4")
    assert y.dtype == np.uint8 and y.shape == x.shape
    assert np.abs(y.astype(int) - x).mean() < MP4_MEAN_TOL
    assert probe_video(tmp_path / "a.mp4") == 16 and probe_video(tmp_path / "a.mp4", decode=False) == 16
    assert (tmp_path / "a.mp4").stat().st_mode & 0o044  # honours the umask rather than a private temp file's 0600


def test_mp4_upscale_and_odd_sizes(tmp_path):
    x = moving_bar(frames=4, h=5, w=7)
    write_mp4(tmp_path / "odd.mp4", x)
    assert read_video(tmp_path / "odd.mp4").shape == (4, 6, 8, 3)  # padded to even by repeating the edge
    write_mp4(tmp_path / "up.mp4", moving_bar(), upscale=4)
    y = read_video(tmp_path / "up.mp4")
    assert y.shape == (16, 96, 160, 3)
    # a float [C, F, H, W] tensor in [-1, 1] is accepted too
    write_mp4(tmp_path / "t.mp4", from_uint8(moving_bar()))
    assert read_video(tmp_path / "t.mp4").shape == (16, 24, 40, 3)


def test_gif_round_trip_exact(tmp_path):
    x = moving_bar()  # 3 colours, every frame distinct
    write_gif(tmp_path / "a.gif", x, fps=10)
    y = read_video(tmp_path / "a.gif")
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, x)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.info.get("loop") == 0
    write_gif(tmp_path / "b.gif", x, upscale=2)
    assert read_video(tmp_path / "b.gif").shape == (16, 48, 80, 3)


def test_frame_folder_natural_order(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for n in (10, 2, 1):  # natural order is 1, 2, 10 (lexicographic would be 1, 10, 2)
        Image.fromarray(np.full((6, 8, 3), n * 20, np.uint8)).save(folder / f"frame{n}.png")
    (folder / "notes.txt").write_text("ignored")
    y = read_video(folder)
    assert y.shape == (3, 6, 8, 3)
    assert [int(f[0, 0, 0]) for f in y] == [20, 40, 200]
    assert read_video(folder, max_frames=2).shape[0] == 2


GREY16 = np.array([[0, 128, 129, 257], [32896, 60000, 65407, 65535]], np.uint16)


@pytest.mark.parametrize("ext, mode", [("png", "I;16"), ("tiff", "I;16B"), ("pgm", "I")])
def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path, ext, mode):
    big_endian = Image.frombytes("I;16B", (4, 2), GREY16.astype(">u2").tobytes())
    (big_endian if ext == "tiff" else Image.fromarray(GREY16)).save(tmp_path / f"grey.{ext}")
    with Image.open(tmp_path / f"grey.{ext}") as im:
        assert im.mode == mode
    expected = np.repeat(np.round(GREY16 / 257).astype(np.uint8)[..., None], 3, axis=-1)  # 65535 -> 255, 257 -> 1
    np.testing.assert_array_equal(read_image(tmp_path / f"grey.{ext}"), expected)
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(GREY16).save(folder / "0.png")
    np.testing.assert_array_equal(read_video(folder), expected[None])


@pytest.mark.parametrize("mode, values, reason", [("F", [0.0, 0.5], "32-bit floats"),
                                                  ("I", [-1, 70000], "span -1..70000, beyond 16 bits")])
def test_images_without_a_white_level_are_refused(tmp_path, mode, values, reason):
    Image.frombytes(mode, (2, 1), np.array(values, "<f4" if mode == "F" else "<i4").tobytes()).save(tmp_path / "x.tif")
    with pytest.raises(ImageReadError, match=reason) as err:
        read_image(tmp_path / "x.tif")
    assert str(tmp_path / "x.tif") in str(err.value) and "save it as an 8- or 16-bit image" in str(err.value)


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, 8:] = 255  # left half black, right half white, as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: show rotated 90 degrees clockwise, which brings the left half to the top
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(stored).save(folder / "photo.jpg", exif=exif, quality=95)
    for upright in (read_image(folder / "photo.jpg"), read_video(folder)[0]):
        assert upright.shape == (16, 8, 3)
        assert upright[:6].max() < 30 and upright[10:].min() > 225


def test_read_image_takes_any_pillow_format_and_names_the_problem(tmp_path):
    x = moving_bar(frames=1)[0]
    Image.fromarray(x).save(tmp_path / "still.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "still.tiff"), x)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.txt: Pillow does not recognise it as an image.*\.jpg, \.tiff"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(ImageReadError, match=r"gone\.png: no such file"):
        read_image(tmp_path / "gone.png")


def test_transparency_is_composited_over_black_and_said_once_per_file(tmp_path, recwarn):
    """Pillow's convert("RGB") dropped alpha, showing whatever colour the transparent pixels stored (here white)."""
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = [[0, 51, 128, 255, 255, 255]] * 4
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    for _ in range(3):
        out = read_image(tmp_path / "logo.png")
        assert out.shape == (4, 6, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[0, :, 0], [0, 51, 128, 255, 255, 255])
    said = [str(w.message) for w in recwarn.list]
    assert said == [(f"{tmp_path / 'logo.png'} has transparent pixels; they are composited over black (save it "
                     "without an alpha channel to choose another background)")]
    # a palette image with a transparent colour, and greyscale + alpha, alike
    Image.fromarray(rgba, "RGBA").convert("LA").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png")[0, :, 1], [0, 51, 128, 255, 255, 255])
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0])
    palette.putdata([0, 1])
    palette.save(tmp_path / "palette.png", transparency=0)
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png")[0], [[0, 0, 0], [0, 255, 0]])
    assert len(recwarn.list) == 3
    # an alpha channel that is opaque everywhere changes nothing and is not mentioned
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_image(tmp_path / "opaque.png"), rgba[..., :3])
    assert len(recwarn.list) == 3


def test_a_frame_folder_of_transparent_frames_is_said_once(tmp_path, recwarn):
    rgba = np.full((4, 6, 4), 200, dtype=np.uint8)
    for i in range(3):
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{i}.png")
    video = read_video(tmp_path)
    assert video.shape == (3, 4, 6, 3) and (video == round(200 * 200 / 255)).all()
    assert len(recwarn.list) == 1 and "0.png has transparent pixels" in str(recwarn.list[0].message)


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "empty_folder", "extension", "empty_file"])
def test_read_errors_name_the_file(tmp_path, case):
    if case == "missing":
        path = tmp_path / "nope.mp4"
    elif case == "garbage":
        path = tmp_path / "x.mp4"
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif case == "truncated":
        write_mp4(tmp_path / "good.mp4", moving_bar())
        data = (tmp_path / "good.mp4").read_bytes()
        path = tmp_path / "cut.mp4"
        path.write_bytes(data[: len(data) // 2])
    elif case == "empty_folder":
        path = tmp_path / "frames"
        path.mkdir()
    elif case == "extension":
        path = tmp_path / "x.txt"
        path.write_text("hello")
    else:
        path = tmp_path / "x.gif"
        path.write_bytes(b"")
    with pytest.raises(VideoReadError) as err:
        read_video(path)
    assert isinstance(err.value, ValueError) and err.value.path == str(path) and str(path) in str(err.value)
    with pytest.raises(VideoReadError):
        probe_video(path)


def test_atomic_write_leaves_nothing_on_error(tmp_path, monkeypatch):
    dest = tmp_path / "out.mp4"
    # invalid frames: nothing is created
    with pytest.raises(ValueError):
        write_mp4(dest, np.zeros((4, 8, 8, 3), np.float64))
    assert not dest.exists() and no_temp_files(tmp_path)

    # the encoder fails late, after the temp file has data in it (x264 buffers ~40 frames before the first
    # packet): an existing file is left untouched and the temp file is removed
    write_mp4(dest, moving_bar())
    before = dest.read_bytes()
    import av

    seen = {"n": 0, "temp_existed": False}
    real = av.VideoFrame.from_ndarray

    def flaky(*args, **kwargs):
        seen["n"] += 1
        if seen["n"] > 70:
            seen["temp_existed"] = not no_temp_files(tmp_path)
            raise RuntimeError("encoder exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", flaky)
    with pytest.raises(RuntimeError, match="exploded"):
        write_mp4(dest, np.concatenate([moving_bar()] * 5))
    assert seen["temp_existed"], "the failure should happen after the temp file was written to"
    assert dest.read_bytes() == before and no_temp_files(tmp_path)

    # same for gif: a writer that fails after writing part of the file
    def partial_save(self, fp, *args, **kwargs):
        open(fp, "wb").write(b"GIF89a partial")
        raise RuntimeError("gif exploded")

    monkeypatch.setattr(Image.Image, "save", partial_save)
    with pytest.raises(RuntimeError, match="gif exploded"):
        write_gif(tmp_path / "out.gif", moving_bar())
    assert not (tmp_path / "out.gif").exists() and no_temp_files(tmp_path)


def test_uint8_conversions():
    x = moving_bar(frames=3)
    t = from_uint8(x)
    assert t.shape == (3, 3, 24, 40) and t.dtype == torch.float32
    assert t.min() == -1 and t.max() == 1
    np.testing.assert_array_equal(to_uint8(t), x)
    batch = torch.stack([t, t]) * 3  # out of range values are clamped
    out = to_uint8(batch)
    assert out.shape == (2, 3, 24, 40, 3) and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 255}
    with pytest.raises(ValueError):
        to_uint8(torch.zeros(3, 24, 40))


def test_make_grid_layout_and_padding():
    a = from_uint8(moving_bar(frames=16))
    b = moving_bar(frames=5)  # uint8 input, fewer frames
    c = from_uint8(moving_bar(frames=8, h=12, w=20))  # smaller: centred in its cell
    pad = 2
    grid = make_grid([a, b, c], nrow=2, pad=pad)
    assert grid.dtype == np.uint8 and grid.shape == (16, pad + 2 * (24 + pad), pad + 2 * (40 + pad), 3)
    # video b (row 0, column 1) holds its last frame after it ends
    cell_b = grid[:, pad : pad + 24, pad + 42 : pad + 42 + 40]
    np.testing.assert_array_equal(cell_b[:5], b)
    np.testing.assert_array_equal(cell_b[15], b[-1])
    # upscale multiplies the cell size
    assert make_grid([a], upscale=3, pad=0).shape == (16, 72, 120, 3)


def test_make_grid_labels_are_drawn():
    videos = [from_uint8(moving_bar(frames=2)) for _ in range(2)]
    plain = make_grid(videos, pad=2)
    labelled = make_grid(videos, labels=["prior", "adapter"], pad=2)
    extra = labelled.shape[1] - plain.shape[1]
    assert extra > 5 and labelled.shape[2] >= plain.shape[2]
    band = labelled[0, :extra]
    assert (band < 128).any(), "label text should appear above the videos"
    other = make_grid(videos, labels=["xxxxx", "adapter"], pad=2)
    assert not np.array_equal(other[0, :extra], band)
    rows = make_grid(videos, labels=["a", "b"], nrow=1, row_labels=["prior", "ours"], pad=2)
    assert rows.shape[2] > make_grid(videos, labels=["a", "b"], nrow=1, pad=2).shape[2]
    with pytest.raises(ValueError):
        make_grid(videos, labels=["only one"])


def test_write_grid_both_formats(tmp_path):
    videos = [from_uint8(moving_bar(frames=4)), from_uint8(moving_bar(frames=6))]
    paths = write_grid(tmp_path / "grid.mp4", videos, ["a", "b"], formats=("gif", "mp4"), upscale=2)
    assert sorted(p.name for p in paths) == ["grid.gif", "grid.mp4"]
    gif = read_video(tmp_path / "grid.gif")
    mp4 = read_video(tmp_path / "grid.mp4")
    assert mp4.shape[0] == 6 and gif.shape[0] >= 2
    assert abs(mp4.shape[1] - gif.shape[1]) <= 1 and abs(mp4.shape[2] - gif.shape[2]) <= 1
    (only,) = write_grid(tmp_path / "single.gif", videos)
    assert only.suffix == ".gif" and only.exists()
    with pytest.raises(ValueError):
        write_grid(tmp_path / "grid.avi", videos)
    assert video_io.is_video_path(tmp_path / "grid.mp4")
