"""`VideoAdapterPipeline`: Video Adapter from Python, in diffusers' style, for notebooks.

    import torch
    from diffusers.utils import export_to_video
    from video_adapter import VideoAdapterPipeline

    pipe = VideoAdapterPipeline.from_pretrained(prior="checkpoints/prior", adapter="runs/robot/checkpoint")
    out = pipe("push the blue block to the left", image=Image.open("start.png"), num_inference_steps=25,
               generator=torch.Generator().manual_seed(0))
    export_to_video(out.frames[0], "robot.mp4", fps=8)

It is `video-adapter sample` without the files: the same loading (`sample.load_sample_models`), the same routing of
the prompt and the first frame to each model in its own form (`sample.sample_conds`), the one sampling path
(`generation.generate`) and the same decoding (`sample.to_pixels`). Only the inputs (a PIL image, an array or a
tensor rather than a file) and the output (the layouts of diffusers' video pipelines, by diffusers' own
`VideoProcessor`) are its own.

Seeds: the package samples every video of a run from one integer seed (`SamplingSettings.seed`, the command's
`--seed`), on a CPU generator, so a seed gives the same video on every device. A `generator` gives its seed,
`generator.initial_seed()`: `torch.Generator().manual_seed(7)` samples what `--seed 7` does. Its state is neither
read nor advanced, so two calls with one generator give the same videos; without one, the seed is drawn from torch's
global generator (`torch.manual_seed` makes a run repeatable, and each call differs). The output's `seed` says which
seed it was.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..common.devices import DTYPES, resolve_device
from ..common.tables import human_count
from ..data.video_io import image_rgb
from ..generation.generate import SamplingSettings, generate
from ..models.remote import is_url
from ..maths.composition import COMPOSITIONS, DEFAULT_MODE, MODES, PriorStrength
from ..maths.guidance import DEFAULT_GUIDANCE
from ..maths.sampling import SAMPLERS, Callback
from ..models.score_model import ScoreModel, check_compatible
from .sample import CFG_MIX_FLAGS, SampleConfig, check_decodable, load_sample_models, sample_conds, to_pixels, unread

OUTPUT_TYPES = ("np", "pt", "pil", "latent")
# what the routing's errors call each input: the pipeline's arguments, not the command's flags
ARGUMENTS = {"first_frame": "image=", "edges": "edges", "text": "prompt=", "partial": "partial_conditions=True",
             "give first_frame": "image= (its first frame: a PIL image, an HxWx3 uint8 array or a [3, H, W] tensor "
                                 "in [0, 1])",
             "prior": "prior=DIR"}
ROLES = {"adapter": ("small",), "prior": ("prior",)}  # the models a mode samples with; the others take both


@dataclass
class VideoAdapterPipelineOutput:
    """What a `VideoAdapterPipeline` call returns, as diffusers' video pipelines do (`.frames[i]` is video i, for
    `diffusers.utils.export_to_video`), with the seed it was sampled from."""

    # output_type "np": float32 [B, F, H, W, 3] in [0, 1]; "pt": [B, F, 3, H, W] in [0, 1]; "pil": B lists of F
    # PIL images; "latent": the samples as drawn, [B, C, F, H, W] (latents, or pixels in [-1, 1])
    frames: np.ndarray | Tensor | list
    seed: int  # `--seed` on the command line, or generator=torch.Generator().manual_seed(seed), samples these again


class VideoAdapterPipeline:
    """A small domain adapter composed with a frozen prior (Video Adapter, paper sec 3.3, Algorithm 1), or either
    model alone: `from_pretrained(prior=DIR, adapter=DIR)`, then `pipe(prompt, image=None, ...)`.

    From models already loaded: `VideoAdapterPipeline(adapter=ScoreModel, prior=ScoreModel, device=...,
    video_size=...)`, where `video_size` (frames, height, width) is the pixel video a latent-space prior was loaded
    for."""

    def __init__(self, adapter: ScoreModel | None = None, prior: ScoreModel | None = None, *,
                 device: str | torch.device | None = None, video_size: tuple[int, int, int] | None = None):
        self.models = {role: model for role, model in (("small", adapter), ("prior", prior)) if model is not None}
        if not self.models:
            raise ValueError("pass adapter= (the small domain model), prior= (the frozen prior), or both")
        if len(self.models) == 2:
            check_compatible(adapter, prior)
        check_decodable(self.models, ARGUMENTS)
        self.spec = next(iter(self.models.values())).spec
        if self.spec.space != "pixels" and video_size is None:
            raise ValueError(f"these models work in {self.spec.space}: pass video_size=(frames, height, width), the "
                             "pixel videos the prior was loaded for")
        self.device = resolve_device("auto" if device is None else str(device))  # the sampler's state
        self.video_size = tuple(video_size) if video_size is not None else None
        self.progress = True

    @property
    def adapter(self) -> ScoreModel | None:
        return self.models.get("small")

    @property
    def prior(self) -> ScoreModel | None:
        return self.models.get("prior")

    def __repr__(self) -> str:
        models = ", ".join(f"{name}={human_count(model.spec.parameters)} parameters"
                           for name, model in (("adapter", self.adapter), ("prior", self.prior)) if model is not None)
        c, f, h, w = self.spec.shape
        return f"VideoAdapterPipeline({models}; {self.spec.space} {c}x{f}x{h}x{w}; device={self.device})"

    @classmethod
    def from_pretrained(cls, prior: str | os.PathLike | None = None, adapter: str | os.PathLike | None = None, *,
                        device: str | torch.device | None = None, dtype: torch.dtype | str | None = None,
                        prior_device: str | torch.device | None = None, prior_dtype: torch.dtype | str | None = None,
                        prior_offload: bool = False, video_size: tuple[int, int, int] | None = None,
                        cuda_graphs: bool = True, prior_token_file: str = "") -> VideoAdapterPipeline:
        """The pipeline of a prior and an adapter, as `video-adapter sample --prior DIR --adapter DIR` loads them.

        prior: our checkpoint directory, a local diffusers pipeline directory (model_index.json), or the
            http(s) URL of a prior served by `video-adapter serve-prior` (its token read from prior_token_file, else
            $VIDEO_ADAPTER_PRIOR_TOKEN). adapter: our checkpoint directory. Either may be left out, to sample the
            other alone.
        device / dtype: where the adapter and the sampler's state live and the adapter's precision (None: CUDA where
            there is one, else the CPU; bfloat16 on CUDA, float32 elsewhere). prior_device / prior_dtype: the
            prior's (None: the same); prior_offload keeps a diffusers prior's weights in CPU memory.
        video_size: (frames, height, width) of a diffusers prior's videos (None: the adapter's training videos).
        cuda_graphs: replay our checkpoints' forward from CUDA graphs on CUDA.
        """
        if prior is None and adapter is None:
            raise ValueError("pass prior=DIR (the frozen prior), adapter=DIR (the small domain model), or both")
        if video_size is not None and (len(video_size) != 3 or not all(isinstance(v, int) and v > 0
                                                                        for v in video_size)):
            raise ValueError(f"video_size must be (frames, height, width), three positive integers, got {video_size!r}")
        size = "" if video_size is None else "x".join(map(str, video_size))
        cfg = SampleConfig(adapter=_location(adapter, "adapter"), prior=_location(prior, "prior"),
                           device=_device_name(device, "auto"), prior_device=_device_name(prior_device, ""),
                           dtype=_dtype_name(dtype, "dtype", "auto"),
                           prior_dtype=_dtype_name(prior_dtype, "prior_dtype", ""), prior_offload=prior_offload,
                           video_size=size, cuda_graphs=cuda_graphs, prior_token_file=prior_token_file)
        video = cfg.video()
        if cfg.prior and not is_url(cfg.prior) and (Path(cfg.prior) / "model_index.json").is_file() and not video:
            raise ValueError(f"{cfg.prior} is a diffusers pipeline: pass video_size=(frames, height, width), the size "
                             "of the videos to make (an adapter trained in its latent space gives it)")
        models = load_sample_models(cfg)
        return cls(adapter=models.get("small"), prior=models.get("prior"), device=resolve_device(cfg.device),
                   video_size=video)

    def set_progress_bar_config(self, disable: bool = False) -> None:
        """Show (the default) or hide the per-step progress bar, as diffusers' pipelines do."""
        self.progress = not disable

    def check_inputs(self, prompts: Any, prior_strength: Any, guidance_scale: Any,
                     num_inference_steps: Any, generator: Any, output_type: str, sampler: str, composition: str,
                     mode: str, num_videos_per_prompt: Any, callback: Any, mix: Any = None,
                     mix_min_logsnr: Any = None) -> None:
        """Every problem of a call's arguments that can be seen before anything runs, named by argument (the
        image's are `first_frame`'s); None is an argument left at its default."""
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompt must be a string or a non-empty list of strings, got {prompts!r}")
        if any(not p.strip() for p in prompts):
            warnings.warn("an empty prompt gives the models no text: its samples are those of the unconditional "
                          "model (no subject, no action); write what the video should show", stacklevel=3)
        if mode != "auto" and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of auto, {', '.join(MODES)}")
        missing = [name for name, role in (("adapter", "small"), ("prior", "prior"))
                   if role in ROLES.get(self._method(mode), ("small", "prior")) and role not in self.models]
        if missing:
            raise ValueError(f"mode {self._method(mode)!r} needs the {' and the '.join(missing)}: load it with "
                             f"VideoAdapterPipeline.from_pretrained({', '.join(m + '=DIR' for m in missing)}, ...)")
        given = {"prior_strength": prior_strength, "composition": composition, "mix": mix,
                 "mix_min_logsnr": mix_min_logsnr}
        ignored = unread((self._method(mode),), [name for name, value in given.items() if value is not None])
        if ignored:
            hint = " (the default with both models is cfg-mix, the recipe: mode='composed' is Algorithm 1)" \
                if mode == "auto" and ignored[0] not in CFG_MIX_FLAGS else ""
            raise ValueError(f"{ignored[0]} is set, but mode {self._method(mode)!r} does not use it{hint}")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer of at least 1, got {num_inference_steps!r}")
        if isinstance(num_videos_per_prompt, bool) or not isinstance(num_videos_per_prompt, int) \
                or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be an integer of at least 1, got {num_videos_per_prompt!r}")
        if not isinstance(guidance_scale, (int, float)) or not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number (1: no guidance), got {guidance_scale!r}")
        gamma = prior_strength.gamma if isinstance(prior_strength, PriorStrength) else prior_strength
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float))
                                  or not math.isfinite(gamma)):
            raise ValueError(f"prior_strength must be a finite number (or a PriorStrength), got {prior_strength!r}")
        if gamma is not None and gamma < 0:
            raise ValueError(f"prior_strength {gamma} is negative: a negative gamma samples away from the prior, not "
                             "toward it; pass a value of at least 0 (0: the adapter alone)")
        if mix is not None and (isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0 <= mix <= 1):
            raise ValueError(f"mix is CFG Mix's prior weight, a number in [0, 1], got {mix!r}")
        if mix_min_logsnr is not None and (isinstance(mix_min_logsnr, bool) or not isinstance(
                mix_min_logsnr, (int, float)) or math.isnan(mix_min_logsnr) or mix_min_logsnr == math.inf):
            raise ValueError(f"mix_min_logsnr must be a number below inf (-inf: mix at every level), "
                             f"got {mix_min_logsnr!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if composition is not None and composition not in COMPOSITIONS:
            raise ValueError(f"unknown composition {composition!r}; choose one of {', '.join(COMPOSITIONS)}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; choose one of {', '.join(OUTPUT_TYPES)}")
        if isinstance(generator, (list, tuple)):
            raise TypeError("pass one torch.Generator, not a list: the package samples every video of a call from "
                            "one seed (give each video its own seed by calling once per seed)")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, as callback(info) at every step, got {callback!r}")

    def __call__(self, prompt: str | Sequence[str], image: Any = None,
                 prior_strength: float | PriorStrength | None = None,
                 guidance_scale: float = DEFAULT_GUIDANCE, num_inference_steps: int = 50, generator: torch.Generator | None = None,
                 *, output_type: str = "np", sampler: str = "ddim", eta: float = 0.0,
                 composition: str | None = None, mode: str = "auto", mix: float | None = None,
                 mix_min_logsnr: float | None = None, num_videos_per_prompt: int = 1,
                 partial_conditions: bool = False, callback: Callback | None = None,
                 return_dict: bool = True) -> VideoAdapterPipelineOutput | tuple:
        """Videos for `prompt` (one, or a list: `num_videos_per_prompt` each, in order), as `video-adapter sample`
        makes them from the same settings.

        image: the first frame every video starts from (a PIL image; a numpy uint8 [H, W, 3]; a float tensor
            [3, H, W] in [0, 1]; a file, as `--first-frame` takes), centre-cropped and resized to the model's size
            as `--first-frame` is; an image-to-video prior needs one.
        prior_strength: Algorithm 1's gamma, the prior's weight (mode "composed" or "inverse"; paper: 0.1 Bridge,
            0.2 Ego4D, 0.4 animation; 0: the adapter alone), or a `PriorStrength` (a cutoff, a decay over levels).
        guidance_scale: classifier-free guidance alpha of each model (composed: Algorithm 1's alpha; 1: none).
        num_inference_steps, sampler (ddim | ddpm | dpmpp-2m | heun), eta (DDIM's stochasticity): the sampling.
        generator: its seed, `generator.initial_seed()`, is the run's seed (the module's docstring says why).
        output_type: "np" (default), "pt", "pil" or "latent" (`VideoAdapterPipelineOutput.frames`).
        mode: "auto" (cfg-mix with both models, the recipe of docs/analysis.md; else the one loaded), cfg-mix,
            composed (Algorithm 1), adapter, prior or inverse.
        composition: Algorithm 1's form, "normalized" (the default) or "paper" (modes composed and inverse).
        mix, mix_min_logsnr: cfg-mix's prior weight w (default 0.2), and the log-SNR from which it mixes (default
            -2; below it the guided adapter alone; -inf: every level), as `--mix` and `--mix-min-logsnr`.
        A setting the mode does not use is an error, as the command's flags are (None: not set).
        partial_conditions: give the image only to the models that take it, instead of an error.
        callback: `callback(info)` at every step, as the samplers call it (`maths.sampling`: step i, x, logsnr,
            logsnr_next, denoised).
        return_dict: False returns the tuple (frames,), as diffusers' pipelines do.
        """
        # 1. Check inputs
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) \
            else prompt
        self.check_inputs(prompts, prior_strength, guidance_scale, num_inference_steps, generator,
                          output_type, sampler, composition, mode, num_videos_per_prompt, callback, mix,
                          mix_min_logsnr)
        frame = first_frame(image) if image is not None else None
        method = self._method(mode)
        models = {role: model for role, model in self.models.items() if role in ROLES.get(method, self.models)}

        # 2. The seed and the sampling settings
        seed = generator.initial_seed() if generator is not None else int(torch.randint(2**63 - 1, ()).item())
        given = {"strength": prior_strength if isinstance(prior_strength, PriorStrength) or prior_strength is None
                 else PriorStrength(float(prior_strength)), "composition": composition,
                 "mix": None if mix is None else float(mix),
                 "mix_min_logsnr": None if mix_min_logsnr is None else float(mix_min_logsnr)}
        settings = SamplingSettings(sampler=sampler, steps=num_inference_steps, eta=eta, guidance=float(guidance_scale),
                                    seed=seed, **{k: v for k, v in given.items() if v is not None})
        settings.validate()

        # 3. The conditions: each model's own text embeddings, the first frame in each model's form
        rows = [p for p in prompts for _ in range(num_videos_per_prompt)]
        conds = sample_conds(models, rows, frame, "", partial_conditions, self.video_size, self.device, ARGUMENTS)

        # 4. Sample
        videos = generate(models, conds, (method,), settings, self.device, progress=self.progress,
                          callback=callback).videos[method]

        # 5. Decode and postprocess into diffusers' layouts
        if output_type == "latent":
            frames = videos
        else:
            from diffusers.video_processor import VideoProcessor

            frames = VideoProcessor(do_resize=False).postprocess_video(to_pixels(models, videos), output_type)
        return VideoAdapterPipelineOutput(frames=frames, seed=seed) if return_dict else (frames,)

    def _method(self, mode: str) -> str:
        """The method a mode samples: auto is the recipe with both models, else the one loaded (as the command's)."""
        if mode != "auto":
            return mode
        return DEFAULT_MODE if len(self.models) == 2 else "adapter" if "small" in self.models else "prior"


def first_frame(image: Any) -> Tensor | str:
    """A first frame as the pipeline takes it -> [3, H, W] float32 in [-1, 1] at its own size: a PIL image (read as
    `--first-frame` reads a file: upright by its EXIF orientation, 16-bit scaled, transparency over black), a numpy
    uint8 [H, W, 3], or a float tensor [3, H, W] (or [1, 3, H, W]) in [0, 1], as diffusers and torchvision give; a
    file's path (an image, or a video whose first frame is taken) is kept, for `--first-frame`'s reader."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        if not str(image):
            raise ValueError("image is an empty path; pass None for no first frame")
        return str(image)
    if isinstance(image, Image.Image):
        rgb, transparent = image_rgb(image, "image")
        if transparent:
            warnings.warn("image has transparent pixels; they are composited over black (pass it without an alpha "
                          "channel to choose another background)", stacklevel=3)
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
            raise ValueError(f"an image array must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}; for "
                             "floats in [0, 1] pass (image * 255).round().astype(np.uint8), or a tensor")
        return torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 127.5 - 1
    if isinstance(image, Tensor):
        frame = image[0] if image.dim() == 4 and len(image) == 1 else image
        if frame.dim() != 3 or frame.shape[0] != 3 or 0 in frame.shape or not frame.is_floating_point():
            raise ValueError(f"an image tensor must be float [3, H, W] (or [1, 3, H, W]) in [0, 1], got "
                             f"{image.dtype} {list(image.shape)}")
        frame = frame.detach().float().cpu()
        if not bool(torch.isfinite(frame).all()) or frame.min() < 0 or frame.max() > 1:
            raise ValueError(f"an image tensor's values must lie in [0, 1], as diffusers and torchvision give them; "
                             f"this one spans [{frame.min().item():.3g}, {frame.max().item():.3g}] (from [-1, 1]: "
                             "pass (image + 1) / 2)")
        return frame * 2 - 1
    raise TypeError(f"image must be a PIL image, a numpy uint8 [H, W, 3], a tensor [3, H, W] in [0, 1] or a file's "
                    f"path, got {type(image).__name__}")


def _location(path: str | os.PathLike | None, name: str) -> str:
    if path is None:
        return ""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a directory (a str or a path), got {type(path).__name__}")
    return str(path)


def _device_name(device: str | torch.device | None, default: str) -> str:
    return default if device is None else str(device)


def _dtype_name(dtype: torch.dtype | str | None, name: str, default: str) -> str:
    """A torch dtype or its name -> the name `SampleConfig` takes."""
    if dtype is None:
        return default
    names = {v: k for k, v in DTYPES.items()}
    if isinstance(dtype, torch.dtype) and dtype in names:
        return names[dtype]
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    raise ValueError(f"{name} must be one of torch.float32, torch.bfloat16, torch.float16 (or their names), got "
                     f"{dtype!r}")
