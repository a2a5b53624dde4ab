"""Training a video denoiser on a folder of captioned videos, with accelerate (CPU, one GPU or many).

    video-adapter train --data DIR --out runs/NAME --preset S --steps 20000
    accelerate launch -m video_adapter.interfaces.cli train ...     # several GPUs, same code

The loop (`train`) fits on one screen; everything it calls is a small function above it.
Exact resume: the online and EMA weights, optimizer, step, data position and RNG state are all in the
checkpoint, so a run killed and resumed ends bit-identical to an uninterrupted one on CPU. Any process count: the
step's noise, times and condition dropout are drawn for its whole global batch, keyed by the step (`step_draws`),
each process keeping its rows, and the folder sampler deals each process its chunk of that batch, so N processes of
batch B train on what one process of batch N x B does (folder or stream data; equal up to float rounding in the
gradient average).
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..models import checkpoint as ckpt
from ..maths.conditioning import CONDITIONS, Cond, drop_conditions, make_cond
from ..evaluation.heldout import HeldOutLog
from ..models.lora import add_lora, is_lora, merged, trainable_parameters
from ..maths.schedule import alpha_sigma, broadcast, diffuse, logsnr_cosine
from ..data.sources import data_source
from ..models.text import load_text_encoder
from ..models.unet import PRESETS, SpaceTimeUNet, UNetConfig, config_from_dict, count_parameters, preset


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""                        # folder of captioned videos, or stream:KIND (clips of a make-data kind)
    stream: str = ""                      # also stream this make-data kind into every batch of a --data folder
    stream_share: float = 0.5             # share of each batch from --stream
    out: str = "runs/train"               # run directory: checkpoints, loss.csv, sample previews
    preset: str = "S"                     # model preset (video_adapter.unet.PRESETS)
    model: dict = field(default_factory=dict)  # UNetConfig field overrides on top of the preset
    text_encoder: str = "minilm"          # "minilm" | "t5:/local/dir" | "clip:/local/dir" (--space: the prior's own)
    space: str = ""                       # a diffusers pipeline dir: train in its VAE's latents (--model: video size)
    steps: int = 20_000                   # optimizer steps (paper: 2M)
    batch_size: int = 8                   # per process (paper: 2048 in total)
    lr: float = 1e-4                      # paper: 1e-4
    warmup_steps: int = -1                # linear warmup (paper: 10k of 2M steps; -1: min(1000, --steps // 10))
    lr_decay: str = "constant"            # after warmup: "constant" | "cosine" (to lr_end at --steps)
    lr_end: float = 0.0                   # the cosine decay's final rate
    weight_decay: float = 0.0             # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    grad_clip: float = 1.0                # max global grad norm
    ema_decay: float = 0.999              # EMA of the weights, warmed up as min(decay, (1+n)/(10+n))
    cond_drop: float = 0.1                # text dropout, for classifier-free guidance
    first_frame_drop: float = 0.1         # first-frame dropout (high for a prior that must also sample without one)
    edges_drop: float = 0.1               # edge dropout (high: with edges the video is nearly given)
    stride: int = 1                       # temporal stride when reading videos
    fit: str = "crop"                     # crop | pad: how clips of another aspect ratio reach the model's
    keywords: tuple[str, ...] = ()        # keep only captions containing one of these (paper's curation)
    skip_bad: bool = False                # skip unreadable videos instead of stopping with a list
    mixed_precision: str = "auto"         # "auto" (bf16 on GPU, fp32 on CPU) | "no" | "bf16"
    compile: bool = False                 # torch.compile the model (GPU)
    num_workers: int = -1                 # DataLoader processes decoding videos (0: the main process; -1: min(4, cores))
    cache_videos: bool = False            # keep decoded, resized videos in RAM (small datasets, many epochs)
    log_every: int = 10                   # steps between loss.csv rows
    heldout: str = ""                     # held-out clips (a folder, or a make-data root's test/) for heldout.csv
    heldout_every: int = 0                # steps between held-out losses of the EMA weights (0: never)
    heldout_num: int = 128                # held-out clips scored (the folder's first N)
    sample_every: int = 1_000             # steps between sample previews (0: never)
    save_every: int = 1_000               # steps between checkpoints (and at the end)
    max_minutes: float = 0.0              # stop with a checkpoint after this long (0: never); the same command resumes
    init: str = ""                        # start from this model directory's weights with a fresh optimizer
    lora_rank: int = 0                    # >0: freeze --init's weights, train LoRA of this rank on attention (lora.py)
    seed: int = 0                         # seeds the weights, data order, crops, noise and dropout

    def model_config(self) -> UNetConfig:
        """The preset with --model overrides or, with --init, the initial model's own config (overrides apply).
        With --space, --model's frames, height and width are the video's; the model gets its latents' shape."""
        # with --space, frames / height / width are the video's, never the (latent) model's
        rest = {k: v for k, v in self.model.items() if k not in ("frames", "height", "width")} if self.space \
            else self.model
        if self.init:
            return replace(ckpt.read_unet_config(self.init)[0], **rest)
        if not self.space:
            return preset(self.preset, **self.model)
        from ..models.diffusers_prior import latent_space

        frames, (height, width) = self.video_shape()
        latents = latent_space(self.space)
        c, f, h, w = latents.latent_shape(frames, height, width)
        if rest.get("edge_cond", PRESETS[self.preset].edge_cond):
            raise ValueError("edges are a pixel-space condition (the Sobel gradient of frames); with --space pass "
                             "--model edge_cond=false")
        return preset(self.preset, **rest, channels=c, frames=f, height=h, width=w, text_dim=latents.text_dim,
                      space=latents.space)

    def video_shape(self) -> tuple[int, tuple[int, int]]:
        """(frames, (height, width)) at which clips are read: the model's own or, with --space, the video's."""
        if self.space:
            frames, height, width = (self.model.get(k, getattr(PRESETS[self.preset], k))
                                     for k in ("frames", "height", "width"))
            return frames, (height, width)
        cfg = self.model_config()
        return cfg.frames, (cfg.height, cfg.width)

    def resolved(self) -> TrainConfig:
        """A copy with the automatic defaults (-1) made concrete: --num-workers min(4, this machine's CPU cores), and
        --warmup-steps min(1000, --steps // 10), so a short run reaches its learning rate, or, resuming the run in
        --out, the warmup it was started with (its schedule must not change midway)."""
        warmup = self.warmup_steps
        if warmup == -1:
            warmup = min(1_000, self.steps // 10)
            checkpoint = Path(self.out) / "checkpoint"
            if (checkpoint / "train_state" / "state.json").exists():
                saved = ckpt.read_config(checkpoint).get("train_config", {}).get("warmup_steps")
                warmup = saved if isinstance(saved, int) and saved >= 0 else warmup
        workers = min(4, os.cpu_count() or 1) if self.num_workers == -1 else self.num_workers
        return replace(self, warmup_steps=warmup, num_workers=workers)

    def validate(self) -> None:
        """Every problem that can be seen without reading data or building the model."""
        for name in ("warmup_steps", "num_workers"):
            if (value := getattr(self, name)) < -1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 0 (or -1: automatic), got {value}")
        if self.lr_decay not in ("constant", "cosine"):
            raise ValueError(f"--lr-decay must be constant or cosine, not {self.lr_decay!r}")
        if self.fit not in ("crop", "pad"):
            raise ValueError(f"--fit must be crop or pad, not {self.fit!r}")
        if self.lora_rank and not self.init:
            raise ValueError("--lora-rank trains LoRA on a pretrained model's frozen weights: pass --init MODEL_DIR")
        at_least = {"steps": 1, "batch_size": 1, "stride": 1, "log_every": 1, "save_every": 1,
                    "sample_every": 0, "heldout_every": 0, "heldout_num": 1, "lora_rank": 0,
                    "max_minutes": 0, "lr": 0, "lr_end": 0,
                    "weight_decay": 0}
        for name, low in at_least.items():
            if not getattr(self, name) >= low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        unit = {"stream_share": self.stream_share, "ema_decay": self.ema_decay, **{
            f"{c}_drop".replace("text_", "cond_"): p for c, p in self.drop.items()}}
        for name, value in unit.items():
            if not 0 <= value <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
        if bool(self.heldout) != bool(self.heldout_every):
            raise ValueError("--heldout DIR and --heldout-every N go together: the clips and how often to score them")
        if not (self.grad_clip > 0 and len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)):
            raise ValueError(f"--grad-clip must be positive and --betas two numbers in [0, 1), got {self.grad_clip} "
                             f"and {self.betas}")

    @property
    def drop(self) -> dict[str, float]:
        return {"text": self.cond_drop, "first_frame": self.first_frame_drop, "edges": self.edges_drop}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d)


def warmup_cosine(step: int, lr: float, warmup_steps: int, steps: int, lr_end: float = 0.0) -> float:
    """Linear warmup to `lr` over `warmup_steps`, then a cosine down to `lr_end` at `steps` (and flat after)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    done = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr_end + (lr - lr_end) * 0.5 * (1 + math.cos(math.pi * done))


def lr_at(step: int, cfg: TrainConfig) -> float:
    cfg = cfg.resolved() if cfg.warmup_steps == -1 else cfg
    if cfg.lr_decay == "constant":
        return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    # a short run ends far better annealed than at its peak rate (continuing it later re-warms from lr_end)
    return warmup_cosine(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.lr_end)


@torch.no_grad()
def ema_update(ema: SpaceTimeUNet, model: SpaceTimeUNet, step: int, decay: float) -> None:
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - d)


def denoising_loss(model, video: Tensor, cond: Cond, t: Tensor, eps: Tensor, prediction: str) -> Tensor:
    """MSE of the network's native prediction (eps or v) for clean `video` noised by `eps` at cosine times `t` [B]
    (paper sec 2). `prediction` is the model's `cfg.prediction`, passed in because `model` may be wrapped (DDP,
    compile)."""
    t, eps = t.to(video.device), eps.to(video.device)
    logsnr = logsnr_cosine(t)
    x_t = diffuse(video, eps, logsnr)
    alpha, sigma = alpha_sigma(broadcast(logsnr, video))
    # v from x0 and eps directly: through x_t it would cancel catastrophically at logsnr -20 (1 - sigma^2 ~ 2e-9).
    target = eps if prediction == "eps" else alpha * eps - sigma * video
    return F.mse_loss(model(x_t, logsnr, cond, output="native").float(), target)


def step_draws(seed: int, step: int, rows: slice, global_shape: tuple[int, ...],
               device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """One training step's randomness, `rows` of the step's global batch of `global_shape` [G, C, F, H, W]: times
    t, noise eps and dropout uniforms [., len(CONDITIONS)]. Every process draws the whole global batch from one
    generator keyed by (seed, step) and keeps its rows, so N processes of batch B draw what one process of batch
    N x B draws, and a resumed run what an uninterrupted one draws. Drawing all G rows costs each process a few
    elementwise kernels; a generator per sample cost 120x more on CUDA (docs/benchmarks.md). Drawn on `device` (a
    CUDA generator's stream differs from the CPU's: compare runs on one device type)."""
    key = np.random.SeedSequence((seed, step)).generate_state(1, np.uint64)[0]
    gen = torch.Generator(device=device).manual_seed(int(key))
    t = torch.rand(global_shape[0], generator=gen, device=device)
    uniforms = torch.rand(global_shape[0], len(CONDITIONS), generator=gen, device=device)
    eps = torch.randn(global_shape, generator=gen, device=device)
    return t[rows], eps[rows], uniforms[rows]


def rng_state() -> dict[str, Tensor]:
    """The global RNG (model dropout, if any; the step's noise and condition dropout come from `step_draws`)."""
    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    return state


def gather_rng_states(acc) -> list[dict[str, Tensor]]:
    """Every process's RNG state, in process order (each process's CUDA generator is its own GPU's)."""
    if acc.num_processes == 1:
        return [rng_state()]
    from accelerate.utils import gather_object

    return gather_object([rng_state()])


def save_run(run: Path, model, ema, opt, rngs: list[dict[str, Tensor]], step: int, data_state: dict,
             cfg: TrainConfig, text_spec: str) -> None:
    """EMA weights as the run's model directory (LoRA merged in) with train_state/ for exact resume inside it, the
    whole directory replaced at once: a save cut short leaves the previous checkpoint, resumable.

    `rngs` holds one RNG state per process (`gather_rng_states`); the data position is the same on every process
    (the sampler and the stream shard by rank themselves)."""
    lora = is_lora(ema)
    with ckpt.atomic_dir(run / "checkpoint") as model_dir:
        ckpt.write_model(model_dir, merged(ema) if lora else ema, text_spec, step=step, train_config=asdict(cfg))
        state_dir = model_dir / "train_state"
        state_dir.mkdir()
        if lora:  # the merged weights cannot be split into base and LoRA again
            save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(state_dir / "ema.safetensors"))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(state_dir / "online.safetensors"))
        opt_tensors, opt_meta = ckpt.optimizer_to_tensors(opt.state_dict())
        save_file({k: v.contiguous().cpu() for k, v in opt_tensors.items()}, str(state_dir / "optimizer.safetensors"))
        save_file({f"{k}.{rank}": v.cpu() for rank, state in enumerate(rngs) for k, v in state.items()},
                  str(state_dir / "rng.safetensors"))
        ckpt.atomic_write_text(state_dir / "state.json", json.dumps(
            {"step": step, "processes": len(rngs), "data": data_state, "optimizer": opt_meta}, indent=1))


def load_run(run: Path, model, ema, opt, rank: int = 0, processes: int = 1) -> tuple[int, dict]:
    state_dir = run / "checkpoint" / "train_state"
    if not (state_dir / "state.json").exists():
        raise ckpt.CheckpointError(f"{run} has no resumable checkpoint ({state_dir}/state.json is missing)")
    state = json.loads((state_dir / "state.json").read_text())
    trained_by = state.get("processes", 1)  # a state without the count was written by one process
    if trained_by != processes:
        raise ValueError(f"{run} was trained by {trained_by} processes and this run has {processes}: resume it with "
                         "as many (the data position and RNG states are per process), or start a new run from its "
                         f"weights with --init {run / 'checkpoint'}")
    model.load_state_dict(load_file(str(state_dir / "online.safetensors")))
    lora_ema = state_dir / "ema.safetensors"
    ema.load_state_dict(load_file(str(lora_ema)) if lora_ema.exists() else ckpt.load_tensors(run / "checkpoint"))
    opt.load_state_dict(ckpt.optimizer_from_tensors(load_file(str(state_dir / "optimizer.safetensors")),
                                                    state["optimizer"]))
    rng = load_file(str(state_dir / "rng.safetensors"))
    # one-process states written before per-process RNG states carried unsuffixed names
    suffix = f".{rank}" if f"torch_cpu.{rank}" in rng else ""
    torch.set_rng_state(rng[f"torch_cpu{suffix}"])
    if f"torch_cuda{suffix}" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng[f"torch_cuda{suffix}"])
    return state["step"], state["data"]


def check_resumable(run: Path, model_cfg: UNetConfig, text_spec: str, seed: int) -> None:
    """A run resumes only with the model, text encoder and seed it was started with (an encoder of the same width
    would load without complaint and silently train on other embeddings; another seed, on other noise and data)."""
    # parsed, not compared as JSON: a field added since the run started takes its default in both
    saved_cfg, saved = ckpt.read_unet_config(run / "checkpoint")
    fix = (f"pass the settings it was started with, or a new --out (--init {run / 'checkpoint'} starts a new run "
           "from its weights)")
    as_json = lambda cfg: json.loads(json.dumps(cfg.to_dict()))  # tuples and lists alike, as config.json holds them
    saved_model, wanted = as_json(saved_cfg), as_json(model_cfg)
    if changed := [f"{k} {v!r} -> {wanted[k]!r}" for k, v in saved_model.items() if wanted[k] != v]:
        raise ValueError(f"{run} holds a model of other settings than this command's ({', '.join(changed)}); {fix}")
    if saved.get("text_encoder") != text_spec:
        raise ValueError(f"{run} was trained with text encoder {saved.get('text_encoder')!r}, this command uses "
                         f"{text_spec!r}; {fix}")
    if (saved_seed := saved["train_config"]["seed"]) != seed:
        raise ValueError(f"{run} was trained with --seed {saved_seed}, this command passes --seed {seed}; pass "
                         f"--seed {saved_seed}, or a new --out (--init {run / 'checkpoint'} starts a new run from its "
                         "weights)")


def init_weights(cfg: TrainConfig, model: SpaceTimeUNet, ema: SpaceTimeUNet, text_spec: str) -> None:
    """--init: online and EMA weights from a model directory (continuing elsewhere, or finetuning a prior)."""
    config = ckpt.read_config(cfg.init)
    if config.get("text_encoder") != text_spec:
        raise ValueError(f"--init {cfg.init} was trained with text encoder {config.get('text_encoder')!r}, this run "
                         f"uses {text_spec!r}; pass --text-encoder {config.get('text_encoder')}")
    state = ckpt.load_tensors(Path(cfg.init))
    ckpt.check_state(model, state, cfg.init)
    model.load_state_dict(state)
    ema.load_state_dict(state)


@contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Holds `run`/.lock for a run's lifetime: two runs with one --out would interleave loss.csv and overwrite each
    other's checkpoints. The kernel releases a flock when its holder dies, so a killed run's lock never blocks (the
    file stays; deleting it would let a third run lock a new file while the second holds the old one)."""
    run.mkdir(parents=True, exist_ok=True)
    with open(run / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"  # unknown: the holder has locked but not yet written its PID
            raise ValueError(f"{run} is in use by another training run (PID {holder}); wait for it to end, or pass "
                             "another --out") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def train(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Trains (or resumes) the run in cfg.out; `stop_after` ends after that step without saving, as a kill would.

    With `max_minutes` the run saves and returns once that much time has passed; running it again continues.
    A second run with the same cfg.out while this one lives is an error (`run_lock`).
    """
    started = time.monotonic()
    from accelerate import Accelerator

    cfg.validate()
    cfg = cfg.resolved()  # the concrete warmup and workers are what the checkpoint's train_config records
    acc = Accelerator(mixed_precision=_precision(cfg.mixed_precision), cpu=not torch.cuda.is_available())
    # the main process locks for all processes of the run (if it cannot, the launcher ends the others)
    with run_lock(Path(cfg.out)) if acc.is_main_process else nullcontext():
        return _train(cfg, acc, started, stop_after)


def _train(cfg: TrainConfig, acc, started: float, stop_after: int | None) -> Path:
    from .preview import write_preview

    run, device = Path(cfg.out), acc.device
    model_cfg = cfg.model_config()
    frames, size = cfg.video_shape()
    space = None
    if cfg.space:
        from ..models.diffusers_prior import latent_space

        space = latent_space(cfg.space)
        latent = space.latent_shape(frames, *size)
        if (model_cfg.space, (model_cfg.channels, model_cfg.frames, model_cfg.height, model_cfg.width)) != \
                (space.space, latent):
            raise ValueError(f"the model works in {model_cfg.space} at {model_cfg.channels}x{model_cfg.frames}x"
                             f"{model_cfg.height}x{model_cfg.width}, but {frames}x{size[0]}x{size[1]} videos in "
                             f"{space.space} give {'x'.join(map(str, latent))} latents; pass the video size the "
                             "model was trained at as --model frames=F height=H width=W")
    text_encoder = load_text_encoder(space.text_encoder if space else cfg.text_encoder, device=device, cache=True)
    torch.manual_seed(cfg.seed)
    # NDHWC activations let cuDNN run the (1,3,3) and (3,1,1) convolutions several times faster (benchmarks.md).
    memory_format = torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format
    model = SpaceTimeUNet(model_cfg).to(device, memory_format=memory_format)
    ema = SpaceTimeUNet(model_cfg).to(device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    resuming = (run / "checkpoint" / "train_state" / "state.json").exists()
    if resuming:
        check_resumable(run, model_cfg, text_encoder.spec, cfg.seed)
    if cfg.init and not resuming:
        init_weights(cfg, model, ema, text_encoder.spec)
        acc.print(f"initialised from {cfg.init}")
    if cfg.lora_rank:
        for m in (model, ema):
            add_lora(m, cfg.lora_rank)
        ema.requires_grad_(False).load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(trainable_parameters(model), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    step, data_state = 0, None
    if resuming:
        step, data_state = load_run(run, model, ema, opt, acc.process_index, acc.num_processes)
        acc.print(f"resumed {run} at step {step}")
    previews, source, stream = data_source(cfg, size, frames, acc.process_index, acc.num_processes, data_state,
                                           space, device)
    decode = space.codec(device).decode if space and cfg.sample_every and acc.is_main_process else None
    run.mkdir(parents=True, exist_ok=True)
    net, opt = acc.prepare(torch.compile(model) if cfg.compile else model, opt)
    trained = sum(p.numel() for p in trainable_parameters(model))
    acc.print(f"model: {count_parameters(model) / 1e6:.2f}M parameters ({trained / 1e6:.2f}M trained), {source}, "
              f"device {device}")
    log = _LossLog(run / "loss.csv", acc.is_main_process, resumed_at=step)
    heldout = HeldOutLog(run / "heldout.csv", heldout_folder(cfg.heldout), cfg.heldout_num, 4 * cfg.batch_size,
                         model_cfg, text_encoder, device, step, cfg.seed) \
        if cfg.heldout and acc.is_main_process else None
    end = min(cfg.steps, stop_after or cfg.steps)
    bar = tqdm(range(step, end), initial=step, total=cfg.steps, disable=not acc.is_main_process, desc="train")
    diverged_at = torch.zeros((), dtype=torch.long, device=device)  # the first non-finite step (0: none)
    for step in bar:
        batch, data_state = next(stream)
        video = batch["video"].to(device).contiguous(memory_format=memory_format)
        text = text_encoder.encode(batch["caption"], device=device)
        rows = slice(acc.process_index * len(video), (acc.process_index + 1) * len(video))
        global_shape = (acc.num_processes * len(video), *video.shape[1:])
        t, eps, uniforms = step_draws(cfg.seed, step, rows, global_shape, device)
        cond = drop_conditions(make_cond(video, text, model_cfg), cfg.drop, uniforms=uniforms)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with acc.autocast():
            loss = denoising_loss(net, video, cond, t, eps, model_cfg.prediction)
        acc.backward(loss)
        grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        # Kept on the device (a host sync per step would stall a small model's launches) and read where the run
        # logs or saves: a save never writes weights that a non-finite step touched. (fp16's loss scaler skips the
        # update of a step whose gradients overflow: that is no divergence.)
        finite = torch.isfinite(loss.detach()) & (torch.isfinite(grad_norm) if acc.scaler is None else True)
        diverged_at = torch.where(finite | (diverged_at > 0), diverged_at, step + 1)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema, model, step, cfg.ema_decay)
        done = step + 1
        if (done % cfg.log_every == 0 or done % cfg.save_every == 0 or done == end) and (bad := int(diverged_at)):
            raise FloatingPointError(f"step {bad}: the loss or its gradient became non-finite; stopped at step {done} "
                                     f"before saving, so the checkpoint of {run} is the last one of finite weights; "
                                     "lower --lr or check the data")
        if done % cfg.log_every == 0 or done == end:
            log.write(done, loss.item(), lr_at(step, cfg), float(grad_norm), video.shape[0] * acc.num_processes)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if heldout is not None and done % cfg.heldout_every == 0:
            acc.print(f"step {done}: held-out loss {heldout(done, ema):.5f}")
        if acc.is_main_process and cfg.sample_every and done % cfg.sample_every == 0:
            write_preview(ema, text_encoder, previews, run / "samples" / f"step_{done:07d}.gif", seed=cfg.seed,
                          decode=decode)
        out_of_time = (bool(cfg.max_minutes) and done % cfg.log_every == 0
                       and _all_agree(acc, time.monotonic() - started > 60 * cfg.max_minutes))
        if done % cfg.save_every == 0 or done == cfg.steps or out_of_time:
            rngs = gather_rng_states(acc)
            if acc.is_main_process:
                save_run(run, model, ema, opt, rngs, done, data_state, cfg, text_encoder.spec)
            acc.wait_for_everyone()
        if out_of_time:
            acc.print(f"stopped at step {done} after --max-minutes {cfg.max_minutes}; run the command again to go on")
            break
    return run / "checkpoint"


def heldout_folder(path: str) -> str:
    """--heldout as given, or a make-data root's test/ split."""
    return str(Path(path) / "test") if (Path(path) / "test").is_dir() else path


def _all_agree(acc, flag: bool) -> bool:
    """One process's clock must not stop it alone: any process out of time stops them all at the same step."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), reduction="max").item())


def _precision(name: str) -> str:
    if name == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    if name not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, not {name!r}")
    return name


class _LossLog:
    """loss.csv, continued across resumes: rows after the resumed step (run again) are dropped first."""

    HEADER = "step,loss,lr,grad_norm,samples_per_s\n"

    def __init__(self, path: Path, enabled: bool, resumed_at: int):
        self.path, self.enabled = path, enabled
        self.last_step, self.last_time = resumed_at, time.perf_counter()
        if enabled:
            rows = path.read_text().splitlines()[1:] if path.exists() else []
            kept = [r for r in rows if int(r.split(",")[0]) <= resumed_at]
            ckpt.atomic_write_text(path, self.HEADER + "".join(r + "\n" for r in kept))

    def write(self, step, loss, lr, grad_norm, samples_per_step):
        now = time.perf_counter()
        samples_per_s = samples_per_step * (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        if self.enabled:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([step, f"{loss:.6f}", f"{lr:.3e}", f"{grad_norm:.4f}", f"{samples_per_s:.2f}"])


