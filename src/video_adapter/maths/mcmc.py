"""MCMC between noise levels on a (composed) score: paper sec 3.2, last paragraph, after Du et al. 2023,
"Reduce, Reuse, Recycle" (RRR).

Summing two diffusion models' scores gives the score of the product of their *noised* distributions at each level,
which is not the noised product: a plain sampler on it is biased (tests/maths/test_composition.py measures how much on
Gaussians). A few MCMC steps at every level pull the samples back onto each level's composed distribution.

Supported:
- "ula" (unadjusted Langevin) and "uhmc" (unadjusted underdamped HMC, RRR's UHA) on any `EpsFn`: they need the
  score only, score = -eps / sigma.
- "mala" and "hmc" (Metropolis-corrected) only with an energy, E(x_t) with eps = sigma grad E, which only
  energy-parameterized models provide (`ScoreModel.has_energy`); native eps-predicting checkpoints have none. Each
  sample is accepted or rejected on its own, and acceptance rates are recorded per noise level.

Step sizes scale with the noise level: delta = step_size * sigma^2 at log-SNR level logsnr, so one setting means the
same for any step count. Langevin: x <- x + delta score + sqrt(2 delta) xi. HMC: leapfrog step sqrt(2 delta), so one
leapfrog step with full momentum refresh is MALA.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .sampling import noise_levels
from .schedule import alpha_sigma

EnergyFn = Callable[[Tensor, Tensor, object], Tensor]  # E(x_t, logsnr [B], cond) -> [B]
KINDS = ("ula", "uhmc", "mala", "hmc")
METROPOLIS = ("mala", "hmc")


@dataclass(frozen=True)
class MCMCConfig:
    kind: str = "ula"          # ula | uhmc (any model) | mala | hmc (Metropolis-corrected, energy models only)
    steps: int = 2             # K MCMC steps at every noise level
    step_size: float = 0.1     # delta = step_size * sigma^2 at each level (leapfrog step: sqrt(2 delta))
    leapfrog_steps: int = 3    # uhmc, hmc: leapfrog steps per MCMC step (RRR: 3)
    damping: float = 0.9       # uhmc: fraction of the momentum kept at each step, the rest refreshed (RRR: 0.9)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown MCMC kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"MCMC steps must be an integer >= 1, got {self.steps!r}")
        if not self.step_size > 0 or not math.isfinite(self.step_size):
            raise ValueError(f"MCMC step_size must be a positive number, got {self.step_size}")
        if self.leapfrog_steps < 1 or not 0.0 <= self.damping < 1.0:
            raise ValueError("leapfrog_steps must be >= 1 and damping in [0, 1)")


def _sum(v: Tensor) -> Tensor:
    """Per-sample sum over all but the batch dimension."""
    return v.flatten(1).sum(1)


class LangevinCorrector:
    """A `sampling.Corrector` running `cfg.steps` MCMC steps of `cfg.kind` at each level it is called at.

    `eps_fn` gives the score; `energy_fn` (mala, hmc) the energy of the same distribution. `step_size_fn(logsnr)`,
    if given, replaces the default per-level step delta = cfg.step_size * sigma^2 (e.g. a schedule tuned to the data's
    own scale, where sigma^2 is far below it). `acceptance` collects (logsnr, mean acceptance over samples and steps)
    per level for the Metropolis kinds.
    """

    def __init__(self, cfg: MCMCConfig, eps_fn: Callable, energy_fn: EnergyFn | None = None,
                 step_size_fn: Callable[[float], float] | None = None):
        if cfg.kind in METROPOLIS and energy_fn is None:
            raise ValueError(f"MCMC kind {cfg.kind!r} is Metropolis-corrected and needs an energy, which these models "
                             "do not expose (eps-predicting models have none); use --mcmc ula or uhmc")
        self.cfg, self.eps_fn, self.energy_fn, self.step_size_fn = cfg, eps_fn, energy_fn, step_size_fn
        self.acceptance: list[tuple[float, float]] = []

    def __call__(self, x: Tensor, logsnr: float, cond, generator: torch.Generator | None) -> Tensor:
        sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))[1].item()
        delta = self.step_size_fn(logsnr) if self.step_size_fn else self.cfg.step_size * sigma**2
        logsnr_b = noise_levels(logsnr, x.shape[0])
        # float32 at least: delta * score is ~1e-3 of x at small steps, below bf16's resolution near 1
        state = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x

        def score(z: Tensor) -> Tensor:
            return -self.eps_fn(z.to(x.dtype), logsnr_b, cond).to(z.dtype) / sigma

        def energy(z: Tensor) -> Tensor:
            return self.energy_fn(z.to(x.dtype), logsnr_b, cond).to(z.dtype)

        def draw(shape, fn=torch.randn) -> Tensor:  # on the generator's device, so a seed means the same everywhere
            device = x.device if generator is None else generator.device
            return fn(shape, generator=generator, device=device, dtype=state.dtype).to(x.device)

        noise = lambda: draw(state.shape)
        uniform = lambda: draw(state.shape[:1], torch.rand)
        if self.cfg.kind in METROPOLIS:
            state, accepted = getattr(self, "_" + self.cfg.kind)(state, delta, score, energy, noise, uniform)
            self.acceptance.append((logsnr, torch.stack(accepted).float().mean().item()))
        else:
            state = getattr(self, "_" + self.cfg.kind)(state, delta, score, noise, uniform)
        return state.to(x.dtype)

    def _ula(self, x, delta, score, noise, uniform):
        for _ in range(self.cfg.steps):
            x = x + delta * score(x) + math.sqrt(2 * delta) * noise()
        return x

    def _mala(self, x, delta, score, energy, noise, uniform):
        """Metropolis-adjusted Langevin (Roberts & Tweedie 1996), one accept/reject per sample."""
        g, e = score(x), energy(x)
        accepted = []
        for _ in range(self.cfg.steps):
            prop = x + delta * g + math.sqrt(2 * delta) * noise()
            g_prop, e_prop = score(prop), energy(prop)
            log_q_fwd = -_sum((prop - x - delta * g) ** 2) / (4 * delta)
            log_q_bwd = -_sum((x - prop - delta * g_prop) ** 2) / (4 * delta)
            log_ratio = e - e_prop + log_q_bwd - log_q_fwd
            x, g, e, ok = self._accept(log_ratio, (prop, g_prop, e_prop), (x, g, e), uniform())
            accepted.append(ok)
        return x, accepted

    def _leapfrog(self, x, v, g, eps, score, uniform):
        # Step jittered by +-20% per sample and trajectory: a fixed step can make trajectories periodic, e.g. half a
        # turn in a Gaussian's stiff direction, which then never mixes (Neal 2011, "MCMC using Hamiltonian dynamics").
        eps = eps * (0.8 + 0.4 * uniform()).view((-1,) + (1,) * (x.ndim - 1))
        for _ in range(self.cfg.leapfrog_steps):
            v = v + 0.5 * eps * g
            x = x + eps * v
            g = score(x)
            v = v + 0.5 * eps * g
        return x, v, g

    def _uhmc(self, x, delta, score, noise, uniform):
        """Unadjusted underdamped HMC (RRR's UHA): partial momentum refresh, leapfrog, no accept step."""
        eps, rho = math.sqrt(2 * delta), self.cfg.damping
        v, g = noise(), score(x)
        for _ in range(self.cfg.steps):
            v = rho * v + math.sqrt(1 - rho**2) * noise()
            x, v, g = self._leapfrog(x, v, g, eps, score, uniform)
        return x

    def _hmc(self, x, delta, score, energy, noise, uniform):
        """Hamiltonian Monte Carlo (Neal 2011) with full momentum refresh, one accept/reject per sample."""
        eps = math.sqrt(2 * delta)
        g, e = score(x), energy(x)
        accepted = []
        for _ in range(self.cfg.steps):
            v = noise()
            prop, v_prop, g_prop = self._leapfrog(x, v, g, eps, score, uniform)
            e_prop = energy(prop)
            log_ratio = (e + 0.5 * _sum(v**2)) - (e_prop + 0.5 * _sum(v_prop**2))
            x, g, e, ok = self._accept(log_ratio, (prop, g_prop, e_prop), (x, g, e), uniform())
            accepted.append(ok)
        return x, accepted

    @staticmethod
    def _accept(log_ratio: Tensor, proposed: tuple, current: tuple, u: Tensor) -> tuple:
        """Per-sample Metropolis-Hastings: sample b moves to its proposal with probability min(1, exp(log_ratio[b]))."""
        ok = u.log() < log_ratio
        out = [torch.where(ok.view((-1,) + (1,) * (p.ndim - 1)), p, c) for p, c in zip(proposed, current)]
        return (*out, ok)

    @property
    def mean_acceptance(self) -> float | None:
        """Mean acceptance over all levels so far (None for the unadjusted kinds)."""
        return sum(r for _, r in self.acceptance) / len(self.acceptance) if self.acceptance else None
