"""Generation in one place: the samples of a set of methods from loaded models, their conditions and the settings.

    videos = generate(models, conds, ("prior", "adapter", "cfg-mix"), SamplingSettings(steps=25), device).videos

`video-adapter sample`, the demo, the evaluation and training's previews all sample through `generate`, so a sampler,
a composition or an x0 treatment added here reaches every one of them. A method is a `composition.MODES` entry: one
model alone with its classifier-free guidance (adapter, prior), Algorithm 1's composition (composed, sec 3.3), CFG
Mix (cfg-mix: the paper's baseline, with a band of noise levels, and the package's default recipe) or the roles
swapped (inverse). Every method starts from the same noise (`settings.seed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ..maths.composition import (COMPOSE_IN, COMPOSITIONS, DEFAULT_COMPOSITION, DEFAULT_MIX, DEFAULT_MIX_MIN_LOGSNR,
                                 DEFAULT_MODE, Conds, PriorStrength, mode_fn)
from ..maths.conditioning import CONDITIONS
from ..maths.guidance import DEFAULT_GUIDANCE, denoised_range
from ..maths.mcmc import LangevinCorrector, MCMCConfig
from ..maths.sampling import SAMPLERS, Callback, sample
from ..models.score_model import ScoreModel

# the paper's Figures 7 and 8 from the same seeds: each model alone, the recipe, and Algorithm 1
COMPARE_ROWS = ("prior", "adapter", DEFAULT_MODE, "composed")

@dataclass(frozen=True)
class SamplingSettings:
    sampler: str = "ddpm"                 # ddpm | ddim | dpmpp-2m | heun
    steps: int = 1000                     # denoising steps (paper: 1000)
    eta: float = 0.0                      # DDIM stochasticity (ddim only)
    guidance: float = DEFAULT_GUIDANCE    # classifier-free guidance alpha (1: none; composed: Algorithm 1's alpha)
    # the conditions guidance drops in its unconditional pass; ("text",) keeps edges or the first frame in both, so
    # alpha sharpens the caption without multiplying the pull of the edges
    guided_conditions: tuple[str, ...] = CONDITIONS
    strength: PriorStrength = PriorStrength()  # the prior strength gamma per noise level (composed, inverse)
    mix: float = DEFAULT_MIX              # cfg-mix: weight w of the prior's guided prediction (the recipe: 0.2)
    mix_min_logsnr: float = DEFAULT_MIX_MIN_LOGSNR  # cfg-mix: mix from this log-SNR up, the adapter alone below
    composition: str = DEFAULT_COMPOSITION  # normalized: Algorithm 1 with exponents summing to 1 | paper: as written
    compose_in: str = "eps"               # combine the models' eps (paper), x0 or v predictions
    mcmc: MCMCConfig | None = None        # MCMC between noise levels (None: none)
    clip_x0: float = 1.0                  # clip each step's x0 prediction to [-v, v] (Imagen; 0: off; pixels only)
    dynamic_threshold: float = 0.0        # Imagen's dynamic thresholding at this quantile of |x0| (0: off)
    seed: int = 0                         # the initial noise and every later draw

    def validate(self, allow_negative_strength: bool = False) -> None:
        """Every problem these settings have before anything loads; a negative gamma (which samples away from the
        prior) only with `allow_negative_strength`."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not math.isfinite(self.guidance) or not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"--guidance must be finite and --mix in [0, 1], got {self.guidance} and {self.mix}")
        if math.isnan(self.mix_min_logsnr) or self.mix_min_logsnr == math.inf:
            raise ValueError(f"--mix-min-logsnr must be a number below inf (-inf: mix at every level), "
                             f"got {self.mix_min_logsnr}")
        strengths = {"--prior-strength": self.strength.gamma}
        if self.strength.decay == "linear":
            strengths["--strength-end"] = self.strength.gamma_end
        negative = [(flag, value) for flag, value in strengths.items() if value < 0]
        if negative and not allow_negative_strength:
            flag, value = negative[0]
            raise ValueError(f"{flag} {value} is negative: a negative gamma samples away from the prior, not toward "
                             f"it; pass a value of at least 0, or --allow-negative-strength to do this on purpose")
        if self.composition not in COMPOSITIONS or self.compose_in not in COMPOSE_IN:
            raise ValueError(f"--composition must be one of {', '.join(COMPOSITIONS)} and --compose-in one of "
                             f"{', '.join(COMPOSE_IN)}; got {self.composition!r} and {self.compose_in!r}")
        unknown = [c for c in self.guided_conditions if c not in CONDITIONS]
        if unknown or not self.guided_conditions:
            raise ValueError(f"--guided-conditions takes one or more of {', '.join(CONDITIONS)}; got "
                             f"{' '.join(self.guided_conditions) or 'none'}")
        if not 0 <= self.dynamic_threshold <= 1:
            raise ValueError(f"--dynamic-threshold is a quantile in (0, 1] (0: off), got {self.dynamic_threshold}")
        if self.mcmc and self.mcmc.kind in ("mala", "hmc") and self.compose_in != "eps":
            raise ValueError(f"--mcmc {self.mcmc.kind} composes energies, which have no x0 or v: use --compose-in eps")


def check_guided(guided: tuple[str, ...], given: set[str]) -> None:
    """An error when guidance would drop none of the conditions the samples are given (`given`): its null pass would
    equal the conditional one, and alpha would do nothing."""
    if not set(guided) & given:
        raise ValueError(f"--guided-conditions {' '.join(guided)} names no condition these samples are given "
                         f"({', '.join(sorted(given))}), so guidance would change nothing; name one of those")


class Generated(NamedTuple):
    videos: dict[str, Tensor]   # method -> [B, C, F, H, W] float32 on the sampling device (pixels in [-1, 1])
    seconds: dict[str, float]   # method -> seconds spent sampling it


def generate(models: dict[str, ScoreModel], conds: Conds, methods: Sequence[str], settings: SamplingSettings,
             device: torch.device, progress: bool = True, callback: Callback | None = None,
             init: Tensor | None = None, t_start: float = 1.0) -> Generated:
    """Samples of each of `methods` for the conditions `conds` (one row per sample), all from `settings.seed`.

    `models` holds the roles the methods need ("small", "prior"), checked compatible by the caller
    (`loading.load_models`); the sampler's state lives on `device`. `callback(info)` is the samplers' per-step
    callback (`maths.sampling`), called at every step of every method. `init` and `t_start` < 1 start every method
    from `init` diffused to that cosine time (SDEdit, `maths.sampling.sample`). A non-finite sample is an error, never a
    black video."""
    spec = next(iter(models.values())).spec
    batch = conds.small.batch_size or conds.prior.batch_size
    videos, seconds = {}, {}
    for method in methods:
        start = time.perf_counter()
        videos[method] = _sample(method, models, conds, settings, (batch, *spec.shape), device, progress, callback,
                                 init, t_start)
        if device.type == "cuda":  # the clock stops when the GPU is done, not when its kernels are queued
            torch.cuda.synchronize(device)
        seconds[method] = time.perf_counter() - start
    return Generated(videos, seconds)


def _sample(method: str, models: dict[str, ScoreModel], conds: Conds, settings: SamplingSettings,
            shape: tuple[int, ...], device: torch.device, progress: bool, callback: Callback | None,
            init: Tensor | None, t_start: float) -> Tensor:
    def composed(attribute: str):
        fns = {role: getattr(model, attribute) for role, model in models.items()}
        return mode_fn(method, fns.get("small"), fns.get("prior"), alpha=settings.guidance, strength=settings.strength,
                       mix=settings.mix, mix_min_logsnr=settings.mix_min_logsnr, composition=settings.composition,
                       compose_in=settings.compose_in, guided=settings.guided_conditions)

    corrector = None
    if settings.mcmc:
        # MCMC targets the composed distribution itself: the unclipped score (and energy, where models have one).
        # (energies [B] have no x0 or v form: only an eps composition has one)
        energy_fn = composed("energy") if settings.compose_in == "eps" and all(
            m.has_energy for m in models.values()) else None
        corrector = LangevinCorrector(settings.mcmc, composed("eps"), energy_fn)
    kwargs = {"eta": settings.eta} if settings.sampler == "ddim" else {}
    pixel_space = next(iter(models.values())).spec.space == "pixels"  # latents have no data range to clip to
    eps_fn = denoised_range(composed("eps"), settings.clip_x0, settings.dynamic_threshold) if pixel_space \
        else composed("eps")
    x = sample(eps_fn, shape, conds, sampler=settings.sampler, steps=settings.steps, seed=settings.seed,
               device=device, progress=progress, corrector=corrector, callback=callback, init=init, t_start=t_start,
               **kwargs)
    if corrector is not None and corrector.mean_acceptance is not None:
        print(f"{method}: MCMC acceptance {corrector.mean_acceptance:.3f} (mean over noise levels)")
    if not bool(torch.isfinite(x).all()):  # clamped, NaN would write a black video as if it were a sample
        raise ValueError(f"the {method} samples hold NaN or Inf: lower --guidance or --prior-strength, or check the "
                         "checkpoints (`video-adapter info DIR`)")
    return x.float().clamp(-1, 1) if pixel_space else x.float()
