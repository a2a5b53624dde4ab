"""Feature detectors for FVD, FID, KID and IS, loaded from local TorchScript files only: nothing is downloaded.

Two public detectors define the published numbers, and only they give comparable values:
  * `i3d_torchscript.pt`, StyleGAN-V's TorchScript port of the tf.hub Kinetics-400 I3D used by FVD
    (universome/stylegan-v, src/metrics/frechet_video_distance.py);
  * `inception-2015-12-05.pt`, StyleGAN2-ADA's TorchScript port of the 2015 TF Inception used by FID, KID and IS
    (NVlabs/stylegan2-ada-pytorch, metrics/frechet_inception_distance.py). StyleGAN3 serves the same network as
    `inception-2015-12-05.pkl` from NGC, a Python pickle: that file is not accepted here, the `.pt` archive is.

A file is found from, in order, the `path` argument, the detector's environment variable (VIDEO_ADAPTER_I3D,
VIDEO_ADAPTER_INCEPTION), then the cache directory ($VIDEO_ADAPTER_CACHE, default ~/.cache/video_adapter). The
first location that is given is the only one tried, so a wrong explicit path fails instead of silently measuring
with another file. Files are opened with torch.jit.load alone (a TorchScript archive, whose restricted unpickler
builds no arbitrary Python objects), and a `Detector` records the path and sha256 for the results.

Input conventions follow the reference code exactly: the detectors take uint8 in [0, 255] and do their own
resizing and normalisation (`rescale=True, resize=True` for the I3D; always for the Inception).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

CACHE_ENV = "VIDEO_ADAPTER_CACHE"
DEFAULT_CACHE = "~/.cache/video_adapter"

I3D_FEATURE_DIM = 400         # the I3D's time-averaged Kinetics-400 logits, the layer FVD is defined on
INCEPTION_FEATURE_DIM = 2048  # the Inception's pool3 features, the layer FID and KID are defined on
# The I3D halves time three times (ceil each: conv 1a, pools 4a and 5a) and then averages 2 frames: ceil(F / 8) >= 2.
MIN_I3D_FRAMES = 9


@dataclass(frozen=True)
class DetectorSpec:
    kind: str
    filename: str
    env_var: str
    source: str    # public URL of the file, to fetch on a machine with internet
    used_for: str


I3D = DetectorSpec("i3d", "i3d_torchscript.pt", "VIDEO_ADAPTER_I3D",
                   "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1", "FVD (StyleGAN-V)")
INCEPTION = DetectorSpec(
    "inception", "inception-2015-12-05.pt", "VIDEO_ADAPTER_INCEPTION",
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    "FID, KID and IS (StyleGAN2-ADA)")
SPECS = {spec.kind: spec for spec in (I3D, INCEPTION)}


@dataclass(frozen=True)
class Detector:
    """A loaded TorchScript detector in eval mode, with the file it came from."""
    module: torch.jit.ScriptModule
    path: str
    sha256: str
    kind: str
    device: str

    def record(self) -> dict[str, str]:
        """What a results file stores to say which detector produced its numbers."""
        return {"detector": self.kind, "file": SPECS[self.kind].filename, "path": self.path, "sha256": self.sha256}


# -- finding and loading files

def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def _spec(kind: str) -> DetectorSpec:
    if kind not in SPECS:
        raise ValueError(f"unknown detector kind {kind!r}; choose one of {', '.join(SPECS)}")
    return SPECS[kind]


def find_weights(kind: str, path: str | os.PathLike | None = None) -> Path:
    """The detector file: `path` if given, else $<env var> if set, else <cache dir>/<file name>; it must exist."""
    spec = _spec(kind)
    env = os.environ.get(spec.env_var)
    if path is not None:
        candidate, origin = Path(path), "the path argument"
    elif env:
        candidate, origin = Path(env), f"${spec.env_var}"
    else:
        candidate, origin = cache_dir() / spec.filename, f"the cache directory (${CACHE_ENV}, default {DEFAULT_CACHE})"
    candidate = candidate.expanduser()
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"{spec.used_for} needs the detector file {spec.filename}, which is not at {candidate} (from {origin}). "
        f"Lookup order: the path argument ({path if path is not None else 'not given'}), "
        f"${spec.env_var} ({env or 'not set'}), {cache_dir() / spec.filename}; the first one given is the only one "
        f"tried. Nothing is downloaded: on a machine with internet fetch {spec.source}, copy it to "
        f"{cache_dir() / spec.filename}, or set {spec.env_var}=/path/to/{spec.filename}.")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_detector(kind: str, path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Detector:
    """Find (see `find_weights`), hash and torch.jit.load a detector onto `device`, in eval mode."""
    spec = _spec(kind)
    file = find_weights(kind, path)
    digest = sha256_of(file)
    try:
        module = torch.jit.load(str(file), map_location=device)
    except RuntimeError as err:
        raise ValueError(f"{file} is not a TorchScript archive ({str(err).partition(chr(10))[0]}); {spec.used_for} "
                         f"expects {spec.filename} as published at {spec.source}") from err
    return Detector(module.eval(), str(file), digest, kind, str(torch.device(device)))


def load_i3d(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Detector:
    return load_detector("i3d", path, device)


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Detector:
    return load_detector("inception", path, device)


# -- inputs

def _uint8(x, name: str, layout: str) -> Tensor:
    t = torch.as_tensor(x)
    if t.dtype != torch.uint8:
        raise ValueError(f"{name} must be uint8 {layout} in [0, 255]; got {t.dtype}. The detectors normalise "
                         f"internally; convert float videos in [-1, 1] with video_adapter.video_io.to_uint8.")
    return t


def _videos(videos) -> Tensor:
    v = _uint8(videos, "videos", "[B, F, H, W, 3]")
    if v.dim() != 5 or v.shape[-1] != 3 or v.shape[0] == 0:
        hint = (" This looks like [B, C, F, H, W]: rearrange it with einops 'b c f h w -> b f h w c'."
                if v.dim() == 5 and v.shape[1] == 3 else "")
        raise ValueError(f"videos must be a non-empty uint8 [B, F, H, W, 3] batch (channels last, RGB, as "
                         f"video_io.to_uint8 returns); got shape {tuple(v.shape)}.{hint}")
    return v


def video_frames(videos) -> Tensor:
    """uint8 videos [B, F, H, W, 3] -> their frames [B * F, 3, H, W], video-major, for FID/KID/IS over frames."""
    return rearrange(_videos(videos), "b f h w c -> (b f) c h w")


def _images(images) -> Tensor:
    x = _uint8(images, "images", "[N, 3, H, W]")
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty uint8 [N, 3, H, W] batch (RGB, StyleGAN's layout); got shape "
                         f"{tuple(x.shape)}. For videos use video_frames(videos).")
    return x


# -- running a detector

def _run(detector: Detector, kind: str, x: Tensor, batch_size: int, dim: int | None, **flags) -> np.ndarray:
    """The detector on `x` in batches under inference mode, as float64 [N, dim] on the CPU."""
    if detector.kind != kind:
        raise ValueError(f"this needs the {kind} detector ({SPECS[kind].filename}); got the {detector.kind} one")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    out = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            # Contiguous, as in StyleGAN-V: the I3D port reshapes its input with .view().
            chunk = x[start:start + batch_size].to(detector.device).contiguous()
            y = detector.module(chunk, **flags)
            if y.dim() != 2 or y.shape[0] != chunk.shape[0] or (dim is not None and y.shape[1] != dim):
                raise ValueError(f"{detector.path} returned shape {tuple(y.shape)} for {chunk.shape[0]} inputs; "
                                 f"expected [{chunk.shape[0]}, {dim or 'classes'}]. Is it "
                                 f"{SPECS[kind].filename} from {SPECS[kind].source}?")
            out.append(y.double().cpu())
    return torch.cat(out).numpy()


def i3d_features(detector: Detector, videos, batch_size: int = 16) -> np.ndarray:
    """FVD features [B, 400] (float64) of uint8 videos [B, F, H, W, 3], F >= 9 (FVD's convention is 16 frames).

    Called exactly as StyleGAN-V's metrics do: uint8 [B, C, F, H, W], contiguous, with rescale=True (the port maps
    [0, 255] to [-1, 1]), resize=True (frames to 224 x 224 inside the port) and return_features=True (the 400
    Kinetics logits averaged over time, before the softmax; tf.hub's "RGB/inception_i3d/Mean").
    """
    v = _videos(videos)
    if v.shape[1] < MIN_I3D_FRAMES:
        raise ValueError(f"the I3D needs at least {MIN_I3D_FRAMES} frames per video (its temporal strides leave "
                         f"fewer than its 2-frame average pool); got {v.shape[1]}. FVD is usually on 16 frames.")
    x = rearrange(v, "b f h w c -> b c f h w")
    return _run(detector, "i3d", x, batch_size, I3D_FEATURE_DIM, rescale=True, resize=True, return_features=True)


def inception_features(detector: Detector, images, batch_size: int = 64) -> np.ndarray:
    """FID/KID features [N, 2048] (float64) of uint8 images [N, 3, H, W]: `detector(x, return_features=True)`.

    The port resizes to 299 x 299 and maps [0, 255] to [-1, 1] itself, as StyleGAN2-ADA relies on.
    """
    return _run(detector, "inception", _images(images), batch_size, INCEPTION_FEATURE_DIM, return_features=True)


def inception_probs(detector: Detector, images, batch_size: int = 64) -> np.ndarray:
    """IS class probabilities [N, 1008] (float64) of uint8 images [N, 3, H, W]: `detector(x, no_output_bias=True)`.

    As StyleGAN2-ADA's metrics/inception_score.py: without the output bias, matching the original IS code; the
    port applies the softmax itself, so its output is used as is (a second softmax would flatten it).
    """
    return _run(detector, "inception", _images(images), batch_size, None, no_output_bias=True)
