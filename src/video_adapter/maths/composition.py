"""Video Adapter's composition of a small domain model with a frozen prior (paper sec 3.2, 3.3), and its baselines.

The equations are pure functions of model outputs; they are linear, so they compose eps predictions and energies
alike (an energy function has the EpsFn signature with a [B] output). The builders below wrap two models into one
`EpsFn` that any sampler in `sampling` runs unchanged; its
`cond` is a `Conds` pair, each model receiving its own (text embeddings from its own encoder, and only the pixel
conditions it accepts). Cost per step: one batched small-model forward (conditional and unconditional halves) and
one conditional prior forward, and no prior forward at all where the prior strength is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .conditioning import CONDITIONS, Cond
from .guidance import classifier_free, cond_uncond, with_guidance
from .sampling import EpsFn
from .schedule import (
    LOGSNR_MAX,
    LOGSNR_MIN,
    broadcast,
    eps_from_v,
    eps_from_x0,
    logsnr_cosine,
    t_from_logsnr_cosine,
    v_from_eps,
    x0_from_eps,
)

# Paper appendix B: scores are combined "for all timesteps except the last 100" of 1000. On the cosine grid of
# `sampling.logsnr_grid`, the last 100 of 1000 steps start at t = 0.1; as a log-SNR the cutoff means the same for
# any step count or sampler.
PAPER_CUTOFF_LOGSNR = float(logsnr_cosine(torch.tensor(0.1, dtype=torch.float64)))


class Conds(NamedTuple):
    """The `cond` a composed eps_fn receives: one Cond per model."""
    small: Cond
    prior: Cond


# -- the equations

def product_of_experts(small: Tensor, prior: Tensor, gamma: Tensor | float) -> Tensor:
    """Sec 3.2: eps(x|text) = eps_small(x|text) + gamma eps_prior(x|text), the score of p_small p_prior^gamma."""
    return small + gamma * prior


def geometric_mean(small: Tensor, prior: Tensor, gamma: Tensor | float) -> Tensor:
    """eps_small(x|text) + gamma (eps_prior(x|text) - eps_small(x|text)): the score of the weighted geometric mean
    p_small^(1 - gamma) p_prior^gamma, whose exponents sum to 1 (the product's sum to 1 + gamma)."""
    return small + gamma * (prior - small)


def low_temperature(small_uncond: Tensor, small_cond: Tensor, prior_cond: Tensor, alpha: float,
                    gamma: Tensor | float) -> Tensor:
    """Sec 3.3, Algorithm 1: eps_small(x) + alpha (eps_small(x|text) + gamma eps_prior(x|text) - eps_small(x)).

    Guidance sharpens the product p_small(x|text) p_prior(x|text)^gamma against the small model's unconditional
    p_small(x) alone: the prior needs no unconditional pass. The exponents of p_small(x), p_small(x|text) and
    p_prior(x|text) sum to 1 + alpha gamma, so at low SNR, where every expert's eps is about x / sigma, the composed
    eps is (1 + alpha gamma) times too long and the implied x0 overshoots (docs/analysis.md)."""
    return classifier_free(small_uncond, product_of_experts(small_cond, prior_cond, gamma), alpha)


def normalized_low_temperature(small_uncond: Tensor, small_cond: Tensor, prior_cond: Tensor, alpha: float,
                               gamma: Tensor | float) -> Tensor:
    """Algorithm 1 with exponents summing to 1: eps_small(x) + alpha (eps_small(x|text) - eps_small(x))
    + alpha gamma (eps_prior(x|text) - eps_small(x|text)), i.e. guidance alpha towards
    p_small(x|text)^(1 - gamma) p_prior(x|text)^gamma. Exponents 1 - alpha, alpha (1 - gamma) and alpha gamma: the
    same prior weight relative to the guided small model as Algorithm 1, at the temperature of plain CFG."""
    return classifier_free(small_uncond, geometric_mean(small_cond, prior_cond, gamma), alpha)


# Algorithm 1 as the paper writes it, and with its exponents summing to 1 (`--composition`); each entry is
# (the guided equation, the same combination without guidance, alpha = 1, where no unconditional pass is needed).
COMPOSITIONS = {
    "paper": (low_temperature, product_of_experts),
    "normalized": (normalized_low_temperature, geometric_mean),
}


# The default of sample, evaluate and demo: Algorithm 1's exponents sum to 1 + alpha gamma, and at low SNR its x0
# overshoots by hundreds of times the data range (docs/analysis.md); "paper" keeps the exact Algorithm 1.
DEFAULT_COMPOSITION = "normalized"

# The recipe: what `sample`, `evaluate`, `demo`, the app and the pipeline compose with by default (docs/analysis.md,
# "The recipe"). Both models guided, then mixed with the prior's weight w from log-SNR -2 up, the guided adapter
# alone below. At N = 128 it is the one form measured below both experts in both domains; every form of Algorithm 1
# was above the adapter. `--mode composed` is Algorithm 1.
DEFAULT_MODE = "cfg-mix"
DEFAULT_MIX = 0.2
DEFAULT_MIX_MIN_LOGSNR = -2.0


# Composing predictions of x0 or v with weights w_i equals composing eps with the same weights plus
# (1 - sum w_i) x / sigma (x0) or (1 - sum w_i) sigma x (v): the three agree whenever the weights sum to 1.
_PREDICTIONS = {"x0": (x0_from_eps, eps_from_x0), "v": (v_from_eps, eps_from_v)}
COMPOSE_IN = ("eps", "x0", "v")


def in_prediction(equation, space: str):
    """`equation(*predictions, *scalars)` applied to the models' x0 or v predictions instead of their eps,
    returning eps: fn(x, logsnr, eps_tuple, *scalars). Space "eps" is the equation itself, bit for bit."""
    if space == "eps":
        return lambda x, logsnr, eps, *scalars: equation(*eps, *scalars)
    if space not in _PREDICTIONS:
        raise ValueError(f"unknown prediction space {space!r}; choose one of {', '.join(COMPOSE_IN)}")
    to, back = _PREDICTIONS[space]

    def composed(x: Tensor, logsnr: Tensor, eps: tuple, *scalars):
        dtype = torch.promote_types(x.dtype, torch.float32)  # 1/alpha reaches e^10: not for bf16
        xf, logsnr_f = x.to(dtype), logsnr.to(x.device, dtype)
        # an absent expert (0.0: its weight is zero here) stays 0; its conversion would not change the result
        preds = [e if not isinstance(e, Tensor) else to(xf, e.to(dtype), logsnr_f) for e in eps]
        return back(xf, equation(*preds, *scalars), logsnr_f).to(x.dtype)

    return composed


def cfg_mix(small_cfg: Tensor, prior_cfg: Tensor | float, w: Tensor | float) -> Tensor:
    """Baseline "CFG Mix" (Fig. 6, Table 9): interpolate the two models' guided predictions, (1 - w) small + w prior."""
    return (1 - w) * small_cfg + w * prior_cfg


# -- the prior strength over noise levels

@dataclass(frozen=True)
class PriorStrength:
    gamma: float = 0.1                          # prior strength gamma (paper: 0.1 Bridge, 0.2 Ego4D, 0.4 animation)
    cutoff_logsnr: float = PAPER_CUTOFF_LOGSNR  # compose only where logsnr < this (paper: all but the last 100 of 1000 steps)
    decay: str = "constant"                     # constant | linear: from gamma at pure noise to gamma_end at the cutoff
    gamma_end: float = 0.0                      # strength reached at the cutoff by the linear decay
    min_logsnr: float = -math.inf               # and only where logsnr >= this: a band of noise levels

    def __post_init__(self):
        if self.decay not in ("constant", "linear"):
            raise ValueError(f"prior strength decay must be 'constant' or 'linear', not {self.decay!r}")
        if not (math.isfinite(self.gamma) and math.isfinite(self.gamma_end)):
            raise ValueError(f"prior strengths must be finite, got gamma={self.gamma}, gamma_end={self.gamma_end}")
        if not self.min_logsnr < self.cutoff_logsnr:
            raise ValueError(f"the composition's band is empty: --min-logsnr {self.min_logsnr} must be below "
                             f"--cutoff-logsnr {self.cutoff_logsnr}")

    def __call__(self, logsnr: Tensor) -> Tensor:
        """gamma per sample [B] (float64; callers cast to their dtype), exactly 0 outside [min_logsnr,
        cutoff_logsnr)."""
        logsnr = logsnr.double()
        gamma = torch.full_like(logsnr, self.gamma)
        if self.decay == "linear":
            # Linear in the cosine schedule's time t, i.e. linear over the steps of a uniform-t grid of any length.
            t = t_from_logsnr_cosine(logsnr.clamp(LOGSNR_MIN, LOGSNR_MAX))
            t_cut = t_from_logsnr_cosine(torch.tensor(min(max(self.cutoff_logsnr, LOGSNR_MIN), LOGSNR_MAX),
                                                      dtype=torch.float64))
            frac = ((t - t_cut) / (1 - t_cut)).clamp(0, 1) if t_cut < 1 else torch.ones_like(logsnr)
            gamma = self.gamma_end + (self.gamma - self.gamma_end) * frac
        inside = (logsnr < self.cutoff_logsnr) & (logsnr >= self.min_logsnr)
        return torch.where(inside, gamma, torch.zeros_like(gamma))


# -- model calls

def where_active(fn: EpsFn, x: Tensor, logsnr: Tensor, cond: Cond, active: Tensor) -> Tensor | float:
    """fn on the samples where `active` [B] is True, 0 elsewhere; no call at all when none is active.

    The samplers pass one noise level for the whole batch, so this is all or nothing there; a per-sample mix (e.g.
    a caller's own schedule) calls the model on the active rows only."""
    if not bool(active.any()):
        return 0.0
    if bool(active.all()):
        return fn(x, logsnr, cond)
    idx = active.nonzero().squeeze(1)
    part = fn(x[idx], logsnr[idx], cond.map(lambda v: v[idx]))
    out = part.new_zeros((x.shape[0],) + part.shape[1:])
    out[idx] = part
    return out


# -- eps_fns (EpsFn over Conds), one per sampling mode

def adapter_only(small: EpsFn, alpha: float, guided: tuple[str, ...] = CONDITIONS) -> EpsFn:
    """Baseline: the small model alone, with its own guidance."""
    small_cfg = with_guidance(small, alpha, guided)
    return lambda x, logsnr, cond: small_cfg(x, logsnr, cond.small)


def prior_only(prior: EpsFn, alpha: float, guided: tuple[str, ...] = CONDITIONS) -> EpsFn:
    """Baseline: the prior alone, with its own guidance."""
    prior_cfg = with_guidance(prior, alpha, guided)
    return lambda x, logsnr, cond: prior_cfg(x, logsnr, cond.prior)


def _low_temperature_fn(base: EpsFn, expert: EpsFn, alpha: float, strength: PriorStrength, base_role: str,
                        composition: str, compose_in: str, guided: tuple[str, ...]) -> EpsFn:
    expert_role = "prior" if base_role == "small" else "small"
    if composition not in COMPOSITIONS:
        raise ValueError(f"unknown composition {composition!r}; choose one of {', '.join(COMPOSITIONS)}")
    guided_eq, unguided_eq = (in_prediction(eq, compose_in) for eq in COMPOSITIONS[composition])

    def composed(x: Tensor, logsnr: Tensor, cond: Conds) -> Tensor:
        gamma = strength(logsnr)
        expert_eps = where_active(expert, x, logsnr, getattr(cond, expert_role), gamma.cpu() != 0)
        gamma = gamma.to(x.device, non_blocking=True)
        base_cond = getattr(cond, base_role)
        if alpha == 1:  # sec 3.2 without guidance: no unconditional pass at all
            base_eps = base(x, logsnr, base_cond)
            return unguided_eq(x, logsnr, (base_eps, expert_eps), broadcast(gamma, base_eps).to(base_eps.dtype))
        c, u = cond_uncond(base, x, logsnr, base_cond, guided)
        return guided_eq(x, logsnr, (u, c, expert_eps), alpha, broadcast(gamma, c).to(c.dtype))

    return composed


def video_adapter(small: EpsFn, prior: EpsFn, alpha: float, strength: PriorStrength, composition: str = "paper",
                  compose_in: str = "eps", guided: tuple[str, ...] = CONDITIONS) -> EpsFn:
    """Video Adapter (sec 3.3, Algorithm 1): `low_temperature` with the prior weighted by `strength` per level;
    `composition` "normalized" uses `normalized_low_temperature`, and `compose_in` "x0" or "v" combines those
    predictions instead of eps. The small model's unconditional pass drops the `guided` conditions only."""
    return _low_temperature_fn(small, prior, alpha, strength, "small", composition, compose_in, guided)


def inverse_adapter(small: EpsFn, prior: EpsFn, alpha: float, strength: PriorStrength, composition: str = "paper",
                    compose_in: str = "eps", guided: tuple[str, ...] = CONDITIONS) -> EpsFn:
    """Baseline with the roles swapped: the prior with its guidance is the base, the small model the added expert,
    eps_prior(x) + alpha (eps_prior(x|text) + gamma eps_small(x|text) - eps_prior(x))."""
    return _low_temperature_fn(prior, small, alpha, strength, "prior", composition, compose_in, guided)


def cfg_mix_fn(small: EpsFn, prior: EpsFn, alpha: float, w: float, min_logsnr: float = -math.inf,
               guided: tuple[str, ...] = CONDITIONS) -> EpsFn:
    """Baseline "CFG Mix" (Fig. 6, Table 9): both models guided with alpha, then interpolated with weight w, at
    log-SNR >= `min_logsnr`; below it the guided small model alone, and no prior call. Where the prior lays out a
    domain's scene worse than the adapter, the weight that minimises the error is near 0 at low SNR and 0.4-0.65
    from log-SNR 0 up (`diagnose`, docs/analysis.md): this band is that shape's simplest form."""
    small_cfg, prior_cfg = with_guidance(small, alpha, guided), with_guidance(prior, alpha, guided)

    def mixed(x: Tensor, logsnr: Tensor, cond: Conds) -> Tensor:
        small_eps = small_cfg(x, logsnr, cond.small)
        active = None if min_logsnr == -math.inf else logsnr.cpu() >= min_logsnr  # samplers pass it on the CPU: no sync
        if active is None or bool(active.all()):
            return cfg_mix(small_eps, prior_cfg(x, logsnr, cond.prior), w)
        prior_eps = where_active(prior_cfg, x, logsnr, cond.prior, active)
        weight = broadcast(active.to(x.device, small_eps.dtype) * w, small_eps)
        return cfg_mix(small_eps, prior_eps, weight)

    return mixed


MODES = ("composed", "adapter", "prior", "cfg-mix", "inverse")


def mode_fn(mode: str, small: EpsFn | None, prior: EpsFn | None, *, alpha: float,
            strength: PriorStrength = PriorStrength(), mix: float = 0.5, mix_min_logsnr: float = -math.inf,
            composition: str = "paper", compose_in: str = "eps", guided: tuple[str, ...] = CONDITIONS) -> EpsFn:
    """The eps_fn (over `Conds`) of one sampling mode; `small` and `prior` are model eps (or energy) functions, and
    guidance drops the `guided` conditions in its unconditional passes (`Cond.null`)."""
    builders = {
        "composed": lambda: video_adapter(small, prior, alpha, strength, composition, compose_in, guided),
        "adapter": lambda: adapter_only(small, alpha, guided),
        "prior": lambda: prior_only(prior, alpha, guided),
        "cfg-mix": lambda: cfg_mix_fn(small, prior, alpha, mix, mix_min_logsnr, guided),
        "inverse": lambda: inverse_adapter(small, prior, alpha, strength, composition, compose_in, guided),
    }
    if mode not in builders:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return builders[mode]()
