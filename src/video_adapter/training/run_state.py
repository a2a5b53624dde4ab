"""A training run's state on disk, for exact resume: its checkpoint (EMA weights as a model directory, with the online
weights, optimizer, every process's RNG state and the data position in train_state/), its starting weights (--init),
its lock and its loss log.

A run killed and resumed ends bit-identical to an uninterrupted one on CPU: everything that decides what the next
step computes is in the checkpoint, and `check_resumable` refuses a resume with other settings.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..common.files import atomic_write_text, continue_csv
from ..models import checkpoint as ckpt
from ..models.lora import is_lora, merged
from ..models.unet import SpaceTimeUNet, UNetConfig


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
             cfg, text_spec: str) -> None:
    """EMA weights as the run's model directory (LoRA merged in) with train_state/ for exact resume inside it, the
    whole directory replaced at once: a save cut short leaves the previous checkpoint, resumable.

    `rngs` holds one RNG state per process (`gather_rng_states`); the data position is the same on every process
    (the sampler and the stream shard by rank themselves). config.json records `cfg` (the TrainConfig) and the
    shape of the videos trained on, which sampling with a diffusers prior reads."""
    lora = is_lora(ema)
    frames, (height, width) = cfg.video_shape()
    video = {"frames": frames, "height": height, "width": width}
    with ckpt.atomic_model_dir(run / "checkpoint") as model_dir:
        ckpt.write_model(model_dir, merged(ema) if lora else ema, text_spec, step=step, train_config=asdict(cfg),
                         video=video)
        state_dir = model_dir / "train_state"
        state_dir.mkdir()
        if lora:  # the merged weights cannot be split into base and LoRA again
            save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(state_dir / "ema.safetensors"))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(state_dir / "online.safetensors"))
        opt_tensors, opt_meta = ckpt.optimizer_to_tensors(opt.state_dict())
        save_file({k: v.contiguous().cpu() for k, v in opt_tensors.items()}, str(state_dir / "optimizer.safetensors"))
        save_file({f"{k}.{rank}": v.cpu() for rank, state in enumerate(rngs) for k, v in state.items()},
                  str(state_dir / "rng.safetensors"))
        atomic_write_text(state_dir / "state.json", json.dumps(
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


def init_weights(cfg, model: SpaceTimeUNet, ema: SpaceTimeUNet, text_spec: str) -> None:
    """--init: online and EMA weights from a model directory (continuing elsewhere, or finetuning a prior)."""
    config = ckpt.read_config(cfg.init)
    if config.get("text_encoder") != text_spec:
        raise ValueError(f"--init {cfg.init} was trained with text encoder {config.get('text_encoder')!r}, this run "
                         f"uses {text_spec!r}; pass --text-encoder {config.get('text_encoder')}")
    # the same shapes can mean other things: a video denoiser's weights would start a residual SR stage
    init_cfg, _ = ckpt.read_unet_config(cfg.init)
    if init_cfg.lowres_residual != model.cfg.lowres_residual:
        raise ValueError(f"--init {cfg.init} denoises {_target(init_cfg)}, this run's model {_target(model.cfg)}; "
                         f"pass --model lowres_residual={init_cfg.lowres_residual:g} to continue it in its own form, "
                         "or drop --init to train this form from scratch")
    state = ckpt.load_tensors(Path(cfg.init))
    ckpt.check_state(model, state, cfg.init)
    model.load_state_dict(state)
    ema.load_state_dict(state)


def _target(cfg: UNetConfig) -> str:
    """What a model denoises, in words, for errors."""
    return f"the detail over its input (lowres_residual {cfg.lowres_residual:g})" if cfg.lowres_residual \
        else "the video itself (lowres_residual 0)"


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


class LossLog:
    """loss.csv, continued across resumes: rows after the resumed step (run again) are dropped first."""

    HEADER = "step,loss,lr,grad_norm,samples_per_s\n"

    def __init__(self, path: Path, enabled: bool, resumed_at: int):
        self.path, self.enabled = path, enabled
        self.last_step, self.last_time = resumed_at, time.perf_counter()
        if enabled:
            continue_csv(path, self.HEADER, resumed_at)

    def write(self, step, loss, lr, grad_norm, samples_per_step):
        now = time.perf_counter()
        samples_per_s = samples_per_step * (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        if self.enabled:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([step, f"{loss:.6f}", f"{lr:.3e}", f"{grad_norm:.4f}", f"{samples_per_s:.2f}"])
