"""Reading and writing videos, and laying several out side by side.

On disk and in numpy a video is uint8 `[F, H, W, 3]`; in models it is a float tensor `[C, F, H, W]` in [-1, 1]
(`from_uint8` / `to_uint8` convert). Readers accept mp4/webm/avi/mov/mkv (PyAV), gif (Pillow) and a folder of
png/jpg frames (natural sort: `2.png` before `10.png`); anything unreadable raises `VideoReadError`. `read_image`
reads one still image in any format Pillow reads (`ImageReadError` if it cannot); frame folders are read with it,
and `image_rgb` converts an image already opened (a notebook's PIL image) the same way.

Writers are atomic: they write a hidden temp file in the destination folder and `os.replace` it, so an error never
leaves a half-written file (and an existing file stays untouched). Notes on the two formats:

* mp4 is libx264 yuv420p, which needs even height and width: after the nearest-neighbour `upscale`, an odd edge is
  padded by repeating the last row/column (so a read-back can be one pixel larger). yuv420p also halves chroma
  resolution, which smears colour at 24x40; write tiny videos with `upscale=4` (as the toy data does) to keep them
  watchable and their colours recognisable. `crf` sets quality (0 = lossless luma, 17 is visually lossless).
* gif uses an adaptive palette per frame (exact for <= 256 colours) and loops forever. Pillow merges identical
  consecutive frames into one longer frame, so playback timing is right but reading a gif back can give fewer frames.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..common.files import atomic_path

CONTAINER_EXTS = (".mp4", ".webm", ".avi", ".mov", ".mkv")
GIF_EXTS = (".gif",)
FRAME_EXTS = (".png", ".jpg", ".jpeg")
VIDEO_EXTS = CONTAINER_EXTS + GIF_EXTS
IMAGE_EXAMPLES = ".png, .jpg, .tiff, .bmp, .webp"  # a few of the still formats Pillow reads, for error messages


class VideoReadError(ValueError):
    """A video that cannot be read (missing, corrupt, truncated, empty, or of an unsupported kind)."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read video {self.path}: {reason}")


class ImageReadError(ValueError):
    """A still image that cannot be read (missing, not an image, or pixels with no faithful 8-bit RGB)."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically: frame2 < frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The png/jpg frames of a folder in natural order (hidden files ignored)."""
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in FRAME_EXTS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def is_video_path(path: str | os.PathLike) -> bool:
    """A video file by extension, or a folder holding at least one frame image."""
    p = Path(path)
    if p.is_dir():
        return bool(frame_files(p))
    return p.suffix.lower() in VIDEO_EXTS


# ----------------------------------------------------------------------------------------------------------- reading


_SAID_TRANSPARENT: set[Path] = set()  # files whose transparency was warned about, so each is said once


def read_image(path: str | os.PathLike, warn_alpha: bool = True) -> np.ndarray:
    """A still image in any format Pillow reads -> uint8 `[H, W, 3]` (the first frame of an animated one), as
    `image_rgb` converts it; a warning, once per file, when some pixel is not opaque (`warn_alpha`)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            rgb, transparent = image_rgb(im, path)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, f"Pillow does not recognise it as an image; give a still image in a format "
                                   f"Pillow reads ({IMAGE_EXAMPLES}, ...)") from None
    except Exception as e:  # Pillow's decoders raise many types; at this boundary all mean "unreadable"
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from e
    if warn_alpha and transparent and path.resolve() not in _SAID_TRANSPARENT:
        _SAID_TRANSPARENT.add(path.resolve())
        warnings.warn(f"{path} has transparent pixels; they are composited over black (save it without an alpha "
                      "channel to choose another background)", stacklevel=2)
    return rgb


def image_rgb(im, source: str | os.PathLike = "the image") -> tuple[np.ndarray, bool]:
    """An opened Pillow image -> uint8 `[H, W, 3]` as viewers show it, and whether some pixel was transparent.

    It is turned upright by its EXIF orientation (phones store photos unrotated and tag them). 16-bit greyscale is
    scaled to 8 bits; 32-bit float pixels are refused (`ImageReadError` naming `source`), having no white level to
    scale by. Transparency (an alpha channel, or a palette's transparent colour) is composited over black; Pillow's
    own conversion would drop it, showing whatever colour the transparent pixels happen to store.
    """
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode == "F":
        raise ImageReadError(source, "its pixels are 32-bit floats, which have no defined white level; save it as an "
                                     "8- or 16-bit image")
    if im.mode == "I" or im.mode.startswith("I;16"):
        # Pillow's convert("RGB") clips these at 255 (all white); mode I is how it opens 16-bit PGM/PPM
        grey = np.asarray(im).astype(np.int64)
        if grey.min() < 0 or grey.max() > 65535:
            raise ImageReadError(source, f"its pixels span {grey.min()}..{grey.max()}, beyond 16 bits, so their "
                                         "white level is unknown; save it as an 8- or 16-bit image")
        return np.repeat(((grey + 128) // 257).astype(np.uint8)[..., None], 3, axis=-1), False  # round(v / 257)
    if not im.has_transparency_data:
        return np.asarray(im.convert("RGB")), False
    rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
    alpha = rgba[..., 3:]
    return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8), bool((alpha < 255).any())  # round(rgb a / 255)


def _iter_frames(path: Path, rgb: bool = True) -> Iterator:
    """Decoded frames, as uint8 [H, W, 3] arrays when rgb (or from a frame folder) else as the library's own frame
    objects."""
    from PIL import Image, ImageSequence

    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoReadError(path, f"folder has no frame images ({', '.join(FRAME_EXTS)})")
        for i, f in enumerate(files):
            # even when only counting: reading a frame is where bad pixel formats are refused (transparency is said
            # once, at the first frame)
            yield read_image(f, warn_alpha=i == 0)
    elif path.suffix.lower() in GIF_EXTS:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                yield np.asarray(frame.convert("RGB")) if rgb else frame.load()
    elif path.suffix.lower() in CONTAINER_EXTS:
        import av
        from av.video.reformatter import VideoReformatter

        # one conversion context for the whole file: frame.to_ndarray(format=...) builds one per frame, which is
        # half the read time of a small clip
        to_rgb = VideoReformatter()
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield to_rgb.reformat(frame, format="rgb24").to_ndarray() if rgb else frame
    else:
        raise VideoReadError(path, f"unsupported extension; expected one of {', '.join(VIDEO_EXTS)} or a frame folder")


@contextmanager
def _read_errors(path: Path):
    """Turn any decoder failure into a VideoReadError naming the file."""
    try:
        yield
    except VideoReadError:
        raise
    except FileNotFoundError:
        raise VideoReadError(path, "no such file") from None
    except Exception as e:  # PyAV/Pillow raise many types; at this boundary all mean "unreadable"
        raise VideoReadError(path, f"{type(e).__name__}: {e}") from e


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Decode a video (file or frame folder) to uint8 `[F, H, W, 3]`; stops after `max_frames` when given."""
    path = Path(path)
    frames = []
    with _read_errors(path):
        if not path.exists():
            raise VideoReadError(path, "no such file")
        for frame in _iter_frames(path):
            if frames and frame.shape != frames[0].shape:
                raise VideoReadError(path, f"frame {len(frames)} is {frame.shape}, frame 0 is {frames[0].shape}")
            frames.append(frame)
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise VideoReadError(path, "no frames could be decoded")
    return np.stack(frames)


def probe_video(path: str | os.PathLike, decode: bool = True) -> int | None:
    """Check a video can be read and return its frame count.

    decode=True decodes every frame (catches truncated or corrupt data anywhere, costs one full decode);
    decode=False only opens the container/header (catches garbage files and mp4s truncated before their index)
    and returns the frame count the header states, or None when it states none (e.g. webm).
    """
    path = Path(path)
    with _read_errors(path):
        if not path.exists():
            raise VideoReadError(path, "no such file")
        if decode:
            count = sum(1 for _ in _iter_frames(path, rgb=False))
            if count == 0:
                raise VideoReadError(path, "no frames could be decoded")
            return count
        if path.is_dir():
            return len(frame_files(path)) or None
        if path.suffix.lower() in GIF_EXTS:
            from PIL import Image

            with Image.open(path) as im:
                return int(getattr(im, "n_frames", 1))
        if path.suffix.lower() not in CONTAINER_EXTS:
            raise VideoReadError(path, f"unsupported extension; expected one of {', '.join(VIDEO_EXTS)}")
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "the file has no video stream")
            return int(container.streams.video[0].frames) or None


def frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """A video's frame `(height, width)`, from its header (a container or gif) or its first frame image."""
    path = Path(path)
    with _read_errors(path):
        if path.is_dir():
            files = frame_files(path)
            if not files:
                raise VideoReadError(path, f"folder has no frame images ({', '.join(FRAME_EXTS)})")
            path = files[0]
        if path.suffix.lower() in CONTAINER_EXTS:
            import av

            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise VideoReadError(path, "the file has no video stream")
                stream = container.streams.video[0]
                return int(stream.codec_context.height), int(stream.codec_context.width)
        from PIL import Image

        with Image.open(path) as im:
            return int(im.height), int(im.width)


# ------------------------------------------------------------------------------------------------------ conversions


def to_uint8(video: Tensor) -> np.ndarray:
    """Float `[C, F, H, W]` (or `[B, C, F, H, W]`) in [-1, 1] -> uint8 `[F, H, W, C]` (or `[B, F, H, W, C]`)."""
    if video.dim() not in (4, 5):
        raise ValueError(f"expected [C, F, H, W] or [B, C, F, H, W], got shape {tuple(video.shape)}")
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.movedim(-4, -1)  # channels last
    return x.cpu().numpy()


def from_uint8(frames: np.ndarray | Tensor) -> Tensor:
    """uint8 `[F, H, W, C]` -> float `[C, F, H, W]` in [-1, 1]."""
    x = torch.tensor(np.asarray(frames)) if not isinstance(frames, Tensor) else frames  # a copy: inputs may be read-only
    if x.dim() != 4:
        raise ValueError(f"expected uint8 [F, H, W, C], got shape {tuple(x.shape)}")
    return x.permute(3, 0, 1, 2).float() / 127.5 - 1.0


def as_frames(video) -> np.ndarray:
    """Accept uint8 `[F, H, W, 3]` (array or tensor) or float `[C, F, H, W]` in [-1, 1]; return uint8 `[F, H, W, 3]`."""
    if isinstance(video, Tensor) and video.is_floating_point():
        video = to_uint8(video)
    x = np.asarray(video.cpu() if isinstance(video, Tensor) else video)
    if x.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3] or a float tensor [C, F, H, W]; got dtype {x.dtype}")
    if x.ndim == 3:  # [F, H, W] greyscale
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape:
        raise ValueError(f"frames must have shape [F, H, W, 3] with F, H, W > 0; got {x.shape}")
    return np.ascontiguousarray(np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x)


def upscale_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling of uint8 `[F, H, W, C]`."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"upscale must be a positive integer, got {factor}")
    return frames if factor == 1 else frames.repeat(factor, axis=1).repeat(factor, axis=2)


# ----------------------------------------------------------------------------------------------------------- writing


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> the yuv420p planes as PyAV takes them, [H * 3 / 2, W] (BT.601, limited range).

    Converted here rather than by swscale so that what x264 receives is a fixed function of the frame (with one
    encoder thread); x264's lossy modes at sizes that are not multiples of 16 still vary from run to run, so
    datasets are stored with crf 0 (datagen.make)."""
    r, g, b = (frame[..., i].astype(np.float32) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    half = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [y.ravel(), half(cb).ravel(), half(cr).ravel()]
    return np.clip(np.concatenate(planes) + 0.5, 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def write_mp4(path: str | os.PathLike, frames, fps: float = 8, upscale: int = 1, crf: int = 17) -> Path:
    """Write frames (see `as_frames`) as H.264 mp4 (yuv420p), atomically. Odd sizes are edge-padded to even."""
    import av

    x = upscale_frames(as_frames(frames), upscale)
    x = np.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)), mode="edge")
    path = Path(path)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = x.shape[2], x.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1  # frame threads made a clip's bytes depend on the run
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in x:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")))
        container.mux(stream.encode())
    return path


def write_gif(path: str | os.PathLike, frames, fps: float = 8, upscale: int = 1) -> Path:
    """Write frames (see `as_frames`) as a looping gif, atomically."""
    from PIL import Image

    x = upscale_frames(as_frames(frames), upscale)
    images = [Image.fromarray(f) for f in x]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def write_video(path: str | os.PathLike, frames, fps: float = 8, upscale: int = 1) -> Path:
    """Write .mp4 or .gif by the path's extension."""
    ext = Path(path).suffix.lower()
    if ext == ".mp4":
        return write_mp4(path, frames, fps=fps, upscale=upscale)
    if ext == ".gif":
        return write_gif(path, frames, fps=fps, upscale=upscale)
    raise ValueError(f"cannot write {path}: extension must be .mp4 or .gif")


# -------------------------------------------------------------------------------------------------------------- grid


def _text_size(draw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def make_grid(
    videos: Sequence,
    labels: Sequence[str] | None = None,
    nrow: int | None = None,
    upscale: int = 1,
    pad: int = 2,
    row_labels: Sequence[str] | None = None,
    background: int = 255,
    text_color: int = 0,
) -> np.ndarray:
    """Lay videos out in a grid, like the paper's figure rows; returns uint8 `[F, H', W', 3]`.

    videos: each a float `[C, F, H, W]` in [-1, 1] or uint8 `[F, H, W, 3]`; sizes may differ (each is centred in a
        cell of the largest size) and frame counts may differ (shorter ones hold their last frame).
    labels: one per video, drawn above it with Pillow's default font. row_labels: one per row, drawn to the left.
    nrow: videos per row (default: all in one row). upscale: nearest-neighbour factor applied to every video.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not videos:
        raise ValueError("make_grid needs at least one video")
    clips = [upscale_frames(as_frames(v), upscale) for v in videos]
    n = len(clips)
    ncol = n if nrow is None else max(1, min(int(nrow), n))
    rows = -(-n // ncol)
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} videos")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_sizes = [_text_size(measure, str(t), font) for t in labels] if labels else []
    row_sizes = [_text_size(measure, str(t), font) for t in row_labels] if row_labels else []
    line_h = max([h for _, h in label_sizes + row_sizes] + [_text_size(measure, "Ag", font)[1]])

    frames = max(c.shape[0] for c in clips)
    cell_h = max(c.shape[1] for c in clips)
    cell_w = max([c.shape[2] for c in clips] + [w for w, _ in label_sizes])
    label_h = line_h + 2 * pad if labels else 0
    left_w = max(w for w, _ in row_sizes) + 2 * pad if row_labels else 0
    step_y, step_x = label_h + cell_h + pad, cell_w + pad
    height, width = pad + rows * step_y, left_w + pad + ncol * step_x

    # Static parts (background and text) are drawn once, then every frame starts from a copy of them.
    canvas = Image.new("RGB", (width, height), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, ncol)
        if labels:
            w, _ = label_sizes[i]
            draw.text((left_w + pad + c * step_x + (cell_w - w) // 2, pad + r * step_y + pad), str(labels[i]),
                      fill=(text_color,) * 3, font=font)
    for r in range(rows if row_labels else 0):
        w, h = row_sizes[r]
        draw.text((pad, pad + r * step_y + label_h + (cell_h - h) // 2), str(row_labels[r]),
                  fill=(text_color,) * 3, font=font)
    out = np.repeat(np.asarray(canvas)[None], frames, axis=0).copy()
    for i, clip in enumerate(clips):
        r, c = divmod(i, ncol)
        f, h, w = clip.shape[:3]
        y = pad + r * step_y + label_h + (cell_h - h) // 2
        x = left_w + pad + c * step_x + (cell_w - w) // 2
        out[:f, y : y + h, x : x + w] = clip
        out[f:, y : y + h, x : x + w] = clip[-1]
    return out


def write_grid(
    path: str | os.PathLike,
    videos: Sequence,
    labels: Sequence[str] | None = None,
    fps: float = 8,
    formats: Sequence[str] | None = None,
    **grid_kwargs,
) -> list[Path]:
    """`make_grid` then write it; the format follows the extension, or `formats=("gif", "mp4")` writes both
    (same stem). Returns the written paths."""
    path = Path(path)
    grid = make_grid(videos, labels, **grid_kwargs)
    exts = [path.suffix.lower().lstrip(".")] if formats is None else [f.lower().lstrip(".") for f in formats]
    return [write_video(path.with_suffix(f".{ext}"), grid, fps=fps) for ext in exts]
