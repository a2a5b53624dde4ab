"""`video-adapter app --adapter A --prior P`: a local web page (Gradio) to look at the composition and steer it.

    video-adapter app --adapter runs/robot/checkpoint --prior checkpoints/prior --data data/robot
    video-adapter app --adapter runs/robot/checkpoint --prior http://127.0.0.1:8765 --prior-token-file prior.token

Inputs: a prompt, a first frame (uploaded, or the first frame of a test clip picked from --data, which also fills in
its caption), the prior's weight w of the recipe (CFG Mix from log-SNR -2 up), Algorithm 1's prior strength gamma,
the guidance, the sampler, its steps and the seed. Output: the prior, the adapter and the two composed, by the recipe
and by Algorithm 1 (sec 3.3), from the same seed side by side as looping videos, and, on request, a gamma strip:
Algorithm 1's sample from the same seed at each of --gammas (the paper's Figure 6). With
--cascade STAGE ..., every video is shown upscaled through those super-resolution stages, the prompt their text; the
composition itself runs at the base resolution, as in the paper. Sampling
runs through `generation.generate`, the one function `sample`, the demo and the evaluation use; an error is shown on
the page and the page keeps serving.
"""

from __future__ import annotations

import contextvars
import math
import shutil
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from ..common.devices import resolve_device, resolve_dtype
from ..common.extras import require
from ..data.video_io import make_grid, read_video, write_mp4
from ..generation.cascade import DEFAULT_AUG_LEVEL, DEFAULT_STAGE_GUIDANCE, load_cascade, upscale, zoom_after
from ..generation.generate import COMPARE_ROWS, SamplingSettings, generate
from ..generation.loading import load_models, parameter_ratio
from ..generation.routing import model_conds, route_conditions
from ..maths.composition import DEFAULT_MIX, PriorStrength
from ..maths.guidance import DEFAULT_GUIDANCE
from ..maths.sampling import SAMPLERS
from .sample import pixel_conditions

TITLES = {"prior": "Prior alone", "adapter": "Adapter alone", "cfg-mix": "Composed: the recipe (CFG Mix)",
          "composed": "Composed: Algorithm 1"}


@dataclass(frozen=True)
class AppConfig:
    adapter: str = ""                     # the small domain model's checkpoint directory
    prior: str = ""                       # the prior: a checkpoint directory, or http://HOST:PORT (serve-prior)
    prior_token_file: str = ""            # token of a prior served over HTTP (else $VIDEO_ADAPTER_PRIOR_TOKEN)
    data: str = ""                        # test clips to pick a first frame and caption from (a make-data folder)
    clips: int = 32                       # how many of them the page lists
    partial_conditions: bool = False      # give the first frame only to the models that take it, instead of an error
    gammas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.8)  # the gamma strip's prior strengths (Figure 6)
    steps: int = 25                       # the steps slider's start
    max_steps: int = 200                  # ... and its end
    host: str = "127.0.0.1"               # address of the page (127.0.0.1: this machine only)
    port: int = 7860                      # port of the page (0: any free one)
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"                   # auto (bfloat16 on CUDA) | float32 | bfloat16 | float16
    fps: int = 8                          # frames per second of the videos
    upscale: int = 4                      # nearest-neighbour zoom of the base-size videos (less after --cascade)
    cascade: tuple[str, ...] = ()         # SR stages, smallest first: every video shown upscaled through them
    cascade_aug_level: float = DEFAULT_AUG_LEVEL  # noise augmentation level (cosine time) of the stages trained with it
    cascade_start: float = 1.0            # each stage from its upsampled input noised to this time (1: pure noise)
    cascade_guidance: float = DEFAULT_STAGE_GUIDANCE  # the stages' text guidance alpha, apart from the page's

    def validate(self) -> None:
        if not self.adapter or not self.prior:
            raise ValueError("pass --adapter DIR (the small model) and --prior DIR or --prior http://HOST:PORT")
        if not 1 <= self.steps <= self.max_steps or self.clips < 0 or self.fps < 1 or self.upscale < 1:
            raise ValueError("--steps must lie in [1, --max-steps], and --clips, --fps and --upscale be positive")
        if not self.gammas or not all(math.isfinite(g) and g >= 0 for g in self.gammas):
            raise ValueError(f"--gammas must be prior strengths of at least 0, got {self.gammas}")


class Studio:
    """The models of the page, loaded once, and what one press of Generate does (no Gradio in here: the tests and
    the page call the same methods)."""

    def __init__(self, cfg: AppConfig):
        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        placement = (self.device, resolve_dtype(cfg.dtype, self.device))
        self.models = load_models({"small": cfg.adapter, "prior": cfg.prior}, {"small": placement, "prior": placement},
                                  token_file=cfg.prior_token_file)
        self.spec = self.models["small"].spec
        if self.spec.space != "pixels":
            raise ValueError(f"the app shows pixel videos; these models work in {self.spec.space}")
        self.ratio = parameter_ratio(self.models["small"], self.models["prior"])
        self.stages = load_cascade(cfg.cascade, self.spec, *placement, cfg.cascade_aug_level, cfg.cascade_start,
                                   cfg.cascade_guidance)
        self.zoom = zoom_after(self.stages, cfg.upscale)
        self.encoders, self.runs = {}, 0
        self.thread = ThreadPoolExecutor(1, "sampling", initializer=torch.set_num_threads,
                                         initargs=(torch.get_num_threads(),))
        self.root = Path(tempfile.mkdtemp(prefix="video-adapter-app-"))
        self.clips = listed_clips(cfg.data, cfg.clips, self.spec) if cfg.data else {}

    def clip_frame(self, name: str) -> tuple[str, str]:
        """A listed clip's caption and its first frame as a PNG file."""
        from PIL import Image

        path, caption = self.clips[name]
        image = self.root / f"clip-{Path(path).stem}.png"
        if not image.exists():
            Image.fromarray(read_video(path, max_frames=1)[0]).save(image)
        return caption, str(image)

    def settings(self, gamma: float, guidance: float, sampler: str, steps: int, seed: int,
                 mix: float = DEFAULT_MIX) -> SamplingSettings:
        settings = SamplingSettings(sampler=sampler, steps=int(steps), guidance=float(guidance), mix=float(mix),
                                    strength=PriorStrength(float(gamma)), seed=int(seed))
        settings.validate()
        if not 1 <= settings.steps <= self.cfg.max_steps:
            raise ValueError(f"steps must lie in [1, {self.cfg.max_steps}], got {settings.steps}")
        return settings

    def generate(self, *args, **kwargs) -> tuple[dict[str, str], str]:
        """`_generate` on the studio's one sampling thread: the page calls from whichever worker thread serves the
        press, and a sample must not depend on that thread (its CPU thread count changes the float sums). The
        context travels along, so the page's progress bar follows the sampler there."""
        return self.thread.submit(contextvars.copy_context().run, self._generate, *args, **kwargs).result()

    def _generate(self, prompt: str, first_frame: str | None, gamma: float, guidance: float, sampler: str,
                  steps: int, seed: int, strip: bool, mix: float = DEFAULT_MIX) -> tuple[dict[str, str], str]:
        """Videos of the prior, the adapter and the two compositions from one seed (and the gamma strip): method ->
        mp4 path, and a line of timings."""
        if not prompt or not prompt.strip():
            raise ValueError("write a prompt: what the video should show")
        settings = self.settings(gamma, guidance, sampler, steps, seed, mix)
        pixels = pixel_conditions(self.spec, first_frame or "", "")
        routes = route_conditions(self.models, {"text", *pixels}, self.cfg.partial_conditions)
        conds = model_conds(self.models, [prompt], pixels, routes, self.device, self.encoders)
        start = time.perf_counter()
        done = generate(self.models, conds, COMPARE_ROWS, settings, self.device)
        shown = dict(zip(COMPARE_ROWS, self.shown([done.videos[m][0] for m in COMPARE_ROWS], prompt, settings)))
        out = self._next_folder()
        # lossless (crf 0): x264's lossy output varied from run to run here, and the page must show the sample
        # itself, so that the same seed shows the same video
        paths = {m: str(write_mp4(out / f"{m}.mp4", shown[m], fps=self.cfg.fps, upscale=self.zoom, crf=0))
                 for m in COMPARE_ROWS}
        if strip:
            others = [g for g in self.cfg.gammas if g != settings.strength.gamma]
            made = [generate(self.models, conds, ("composed",), replace(settings, strength=PriorStrength(g)),
                             self.device).videos["composed"][0] for g in others]
            made = dict(zip(others, self.shown(made, prompt, settings))) if others else {}
            videos = [made.get(g, shown["composed"]) for g in self.cfg.gammas]
            grid = make_grid(videos, labels=[f"gamma {g:g}" for g in self.cfg.gammas], nrow=len(videos),
                             upscale=self.zoom)
            paths["strip"] = str(write_mp4(out / "strip.mp4", grid, fps=self.cfg.fps, crf=0))
        timing = ", ".join(f"{TITLES[m].lower()} {done.seconds[m]:.1f} s" for m in COMPARE_ROWS)
        upscaled = f"; upscaled to {self.stages[-1].spec.height}x{self.stages[-1].spec.width} by " \
            f"{len(self.stages)} SR stage(s)" if self.stages else ""
        return paths, (f"Sampled in {time.perf_counter() - start:.1f} s ({timing}); seed {settings.seed}, "
                       f"{settings.sampler} {settings.steps} steps, guidance {settings.guidance:g}, w {settings.mix:g} "
                       f"from log-SNR {settings.mix_min_logsnr:g}, gamma {settings.strength.gamma:g}{upscaled}.")

    def shown(self, videos: list[Tensor], prompt: str, settings: SamplingSettings) -> list[Tensor]:
        """Base-size videos [C, F, h, w] as the page shows them, on the CPU: upscaled through --cascade (in one
        batch, from the press's seed and sampler) if given, else as they are."""
        if not self.stages:
            return [v.cpu() for v in videos]
        big = upscale(self.stages, torch.stack([v.to(self.device) for v in videos]), [prompt] * len(videos),
                      replace(settings, guidance=self.cfg.cascade_guidance), self.device, self.encoders,
                      self.cfg.cascade_aug_level, self.cfg.cascade_start)[-1]
        return list(big.cpu())

    def _next_folder(self) -> Path:
        """A fresh folder for this press's files; the one before the last is removed (the page has shown it)."""
        self.runs += 1
        shutil.rmtree(self.root / f"run-{self.runs - 2}", ignore_errors=True)
        folder = self.root / f"run-{self.runs}"
        folder.mkdir()
        return folder


def listed_clips(data: str, limit: int, spec) -> dict[str, tuple[str, str]]:
    """The first `limit` clips of a dataset's test split (or of the folder): "name: caption" -> (path, caption)."""
    from ..data.dataset import VideoFolderDataset

    root = Path(data)
    folder = root / "test" if (root / "test").is_dir() else root
    dataset = VideoFolderDataset(folder, frames=spec.frames, size=(spec.height, spec.width), verify="header")
    return {f"{Path(p).stem}: {c}": (str(p), c) for p, c in list(zip(dataset.paths, dataset.captions))[:limit]}


def build_page(studio: Studio):
    """The Gradio page of `studio`."""
    import gradio as gr

    cfg = studio.cfg
    with gr.Blocks(title="Video Adapter") as page:
        gr.Markdown(f"## Video Adapter: an adapter composed with a frozen prior\n{studio.ratio}. "
                    f"Prior: `{cfg.prior}`; adapter: `{cfg.adapter}`.")
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Prompt", elem_id="prompt", placeholder="push the blue block to the left")
                with gr.Row():
                    clip = gr.Dropdown(choices=list(studio.clips), value=None, label="Test clip (sets the prompt "
                                       "and the first frame)", elem_id="clip", visible=bool(studio.clips))
                    first = gr.Image(label="First frame", type="filepath", elem_id="first-frame", height=160)
            with gr.Column(scale=2):
                mix = gr.Slider(0.0, 1.0, value=DEFAULT_MIX, step=0.05, label="The recipe's prior weight w",
                                elem_id="mix")
                gamma = gr.Slider(0.0, 1.0, value=0.1, step=0.05, label="Algorithm 1's prior strength gamma",
                                  elem_id="gamma")
                guidance = gr.Slider(1.0, 10.0, value=DEFAULT_GUIDANCE, step=0.5, label="Guidance alpha", elem_id="guidance")
                with gr.Row():
                    sampler = gr.Dropdown(choices=list(SAMPLERS), value="dpmpp-2m", label="Sampler",
                                          elem_id="sampler")
                    steps = gr.Slider(1, cfg.max_steps, value=cfg.steps, step=1, label="Steps", elem_id="steps")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                gammas = ", ".join(f"{g:g}" for g in cfg.gammas)
                strip = gr.Checkbox(label=f"Gamma strip: Algorithm 1 at gamma {gammas} (Figure 6)",
                                    elem_id="strip")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            videos = [gr.Video(label=TITLES[m], elem_id=f"video-{m}", autoplay=True, loop=True, interactive=False)
                      for m in COMPARE_ROWS]
        # no label over it: the strip's panels carry their own (gamma 0 would be hidden under it)
        strip_video = gr.Video(label="Gamma strip (Algorithm 1)", show_label=False, elem_id="video-strip",
                               autoplay=True, loop=True, interactive=False)

        # Gradio fills in `progress` (a default it recognises), following the sampler's tqdm bars
        def run(prompt, first, gamma, guidance, sampler, steps, seed, strip, mix,
                progress=gr.Progress(track_tqdm=True)):  # noqa: B008
            try:
                paths, line = studio.generate(prompt, first, gamma, guidance, sampler, steps, seed, strip, mix)
            except Exception as e:  # noqa: BLE001 -- the page's boundary: any failure is shown, the page lives on
                traceback.print_exc()
                return [None] * (len(COMPARE_ROWS) + 1) + [f"**Error:** {type(e).__name__}: {e}"]
            return [paths[m] for m in COMPARE_ROWS] + [paths.get("strip"), line]

        button.click(run, [prompt, first, gamma, guidance, sampler, steps, seed, strip, mix],
                     [*videos, strip_video, status])
        clip.change(lambda name: studio.clip_frame(name) if name else (gr.update(), gr.update()), clip,
                    [prompt, first])
    return page


def run_app(cfg: AppConfig) -> None:
    """Load the models and serve the page until interrupted."""
    require("app", "gradio")
    studio = Studio(cfg)
    page = build_page(studio)
    print(f"the page: http://{cfg.host}:{cfg.port} (adapter {cfg.adapter}, prior {cfg.prior}, on {studio.device})")
    page.queue().launch(server_name=cfg.host, server_port=cfg.port or None, allowed_paths=[str(studio.root)],
                        show_error=True)

