"""Samplers for epsilon-prediction diffusion models in the variance-preserving log-SNR convention of `schedule`.

Every sampler is `sample_x(eps_fn, x, logsnrs, cond, ...)`: it starts from `x` at noise level `logsnrs[0]` and walks
the grid `logsnrs` (strictly increasing, noisy to clean) calling `eps_fn(x, logsnr [B], cond) -> eps`, with logsnr
float64 on the CPU whatever device x is on (`noise_levels`). Samplers know
nothing about models, guidance or composition: those are eps_fns wrapping eps_fns. As k-diffusion's do, each takes an
optional `callback`, called once per step, before its update, with the step's `STEP_INFO`: how a caller watches a
trajectory (a progress display, a test) without wrapping the eps_fn.

End of the trajectory: the grid's last entry (logsnr_max = 20, where sigma ~ 4.5e-5) marks the clean end, and the final
step is taken to logsnr = +inf (alpha = 1, sigma = 0) instead, as k-diffusion and EDM end their grids at sigma = 0.
Every update then returns the denoised estimate x0 = (x - sigma eps) / alpha from the last model call, at
`logsnrs[-2]`: no model call is spent at the clean end, and the sample differs from one stepped to 20 by < sigma(20).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from tqdm import tqdm

from .conditioning import Cond
from .schedule import LOGSNR_MAX, LOGSNR_MIN, alpha_sigma, logsnr_cosine

EpsFn = Callable[[Tensor, Tensor, Cond], Tensor]
# MCMC between noise levels (e.g. `mcmc.LangevinCorrector`): corrector(x, logsnr, cond, generator) -> x, run by every
# sampler after each step at the level it reached, except the clean end where there is no noise left to move in.
Corrector = Callable[[Tensor, float, Cond, "torch.Generator | None"], Tensor]
# callback(info) once per step, before its update: k-diffusion's callback, with log-SNRs for sigmas
Callback = Callable[[dict], None]
STEP_INFO = ("i", "x", "logsnr", "logsnr_next", "denoised")  # step index, VP x at logsnr, levels, its x0 estimate


def logsnr_grid(steps: int, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX,
                t_start: float = 1.0) -> Tensor:
    """The cosine schedule at t = linspace(t_start, 0, steps + 1): float64 [steps + 1], from the level of t_start (1:
    logsnr_min) up to logsnr_max."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not logsnr_min < logsnr_max:
        raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min} and {logsnr_max}")
    if not 0.0 < t_start <= 1.0:
        raise ValueError(f"t_start is a cosine time in (0, 1] (1: from pure noise), got {t_start}")
    return logsnr_cosine(torch.linspace(t_start, 0.0, steps + 1, dtype=torch.float64), logsnr_min, logsnr_max)


def _steps(logsnrs: Tensor, progress: bool) -> Iterable[tuple[float, float]]:
    """(logsnr, logsnr_next) per step, the final logsnr_next being +inf (see the module docstring).

    Python floats from the float64 grid, so step coefficients never round to x's dtype or touch x's device.
    """
    grid = torch.as_tensor(logsnrs, dtype=torch.float64)
    if grid.ndim != 1 or len(grid) < 2:
        raise ValueError(f"logsnrs must be a 1-D grid of at least 2 noise levels, got shape {tuple(grid.shape)}; "
                         "build one with logsnr_grid(steps)")
    if not bool(torch.isfinite(grid).all()) or not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError("logsnrs must be finite and strictly increasing (noisy to clean), got "
                         f"{grid[0].item():.4g} ... {grid[-1].item():.4g}; build one with logsnr_grid(steps) "
                         "or reverse yours with .flip(0)")
    values = grid.tolist()[:-1] + [math.inf]
    return tqdm(list(zip(values[:-1], values[1:])), disable=not progress)


def _alpha_sigma(logsnr: float) -> tuple[float, float]:
    alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
    return alpha.item(), sigma.item()


def noise_levels(logsnr: float, batch: int) -> Tensor:
    """The logsnr argument of an eps_fn: float64 [B] on the CPU. Noise levels are schedule values the host knows, so
    an eps_fn may branch on them (e.g. a composition's cutoff) without waiting for the GPU; models move them."""
    return torch.full((batch,), logsnr, dtype=torch.float64)


def _eps(eps_fn: EpsFn, x: Tensor, logsnr: float, cond: Cond) -> Tensor:
    """eps_fn at one noise level for the whole batch; eps comes back in x's dtype (e.g. from an autocast model) so the
    sampler's state keeps the dtype the caller chose."""
    return eps_fn(x, noise_levels(logsnr, x.shape[0]), cond).to(x.dtype)


def _report(callback: Callback | None, i: int, x: Tensor, logsnr: float, logsnr_next: float, eps: Tensor) -> None:
    """Step i's `STEP_INFO` to `callback`, its x0 = (x - sigma eps) / alpha from the step's (first) model call."""
    if callback is not None:
        alpha, sigma = _alpha_sigma(logsnr)
        callback({"i": i, "x": x, "logsnr": logsnr, "logsnr_next": logsnr_next, "denoised": (x - sigma * eps) / alpha})


def _correct(corrector: Corrector | None, x: Tensor, logsnr: float, cond: Cond,
             generator: torch.Generator | None) -> Tensor:
    return x if corrector is None or math.isinf(logsnr) else corrector(x, logsnr, cond, generator)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Drawn on the generator's device, so one CPU generator gives the same noise whatever device x lives on."""
    device = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


@torch.no_grad()
def sample_ddpm(eps_fn: EpsFn, x: Tensor, logsnrs: Tensor, cond: Cond,
                generator: torch.Generator | None = None, progress: bool = False,
                corrector: Corrector | None = None, callback: Callback | None = None) -> Tensor:
    """Ancestral sampling (DDPM, Ho et al. 2020; the paper's eq. 1, with 1000 steps as in its appendix B).

    Each step draws from the exact VP posterior q(x_s | x_t, x0 = x0_hat) in log-SNR form (VDM, Kingma et al. 2021):
    with c = 1 - exp(logsnr_t - logsnr_s),
        x_s = alpha_s / alpha_t * (x_t - c sigma_t eps_hat) + sqrt(c) sigma_s xi,   xi ~ N(0, I),
    i.e. eq. 1's tau^{t-1} = alpha^t (tau^t - gamma^t eps + xi) with alpha^t = alpha_s / alpha_t, gamma^t = c sigma_t
    and xi's std sqrt(c) sigma_s alpha_t / alpha_s.
    """
    for i, (logsnr, logsnr_next) in enumerate(_steps(logsnrs, progress)):
        alpha, sigma = _alpha_sigma(logsnr)
        alpha_next, sigma_next = _alpha_sigma(logsnr_next)
        c = -math.expm1(logsnr - logsnr_next)
        eps = _eps(eps_fn, x, logsnr, cond)
        _report(callback, i, x, logsnr, logsnr_next, eps)
        x = alpha_next / alpha * (x - c * sigma * eps)
        if sigma_next > 0:
            x = x + math.sqrt(c) * sigma_next * _randn_like(x, generator)
        x = _correct(corrector, x, logsnr_next, cond, generator)
    return x


@torch.no_grad()
def sample_ddim(eps_fn: EpsFn, x: Tensor, logsnrs: Tensor, cond: Cond, eta: float = 0.0,
                generator: torch.Generator | None = None, progress: bool = False,
                corrector: Corrector | None = None, callback: Callback | None = None) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12 with the noise scale of eq. 16).

        x_s = alpha_s x0_hat + sqrt(sigma_s^2 - std^2) eps_hat + std xi,   std = eta sqrt(c) sigma_s,
    with c = 1 - exp(logsnr_t - logsnr_s). eta = 0 is deterministic DDIM; eta = 1 has the ancestral posterior variance
    and is then the same update as `sample_ddpm`.
    """
    if not 0.0 <= eta <= 1.0:
        # Above 1 a large step would need more fresh noise than sigma_s, i.e. a negative variance for eps_hat.
        raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM variance), got {eta}")
    for i, (logsnr, logsnr_next) in enumerate(_steps(logsnrs, progress)):
        alpha, sigma = _alpha_sigma(logsnr)
        alpha_next, sigma_next = _alpha_sigma(logsnr_next)
        std = eta * math.sqrt(-math.expm1(logsnr - logsnr_next)) * sigma_next
        eps = _eps(eps_fn, x, logsnr, cond)
        _report(callback, i, x, logsnr, logsnr_next, eps)
        x = alpha_next * (x - sigma * eps) / alpha + math.sqrt(sigma_next**2 - std**2) * eps
        if std > 0:
            x = x + std * _randn_like(x, generator)
        x = _correct(corrector, x, logsnr_next, cond, generator)
    return x


@torch.no_grad()
def sample_dpmpp_2m(eps_fn: EpsFn, x: Tensor, logsnrs: Tensor, cond: Cond,
                    generator: torch.Generator | None = None, progress: bool = False,
                    corrector: Corrector | None = None, callback: Callback | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", algorithm 2), after k-diffusion's `sample_dpmpp_2m`.

    Exponential integrator of the probability-flow ODE for the data prediction x0_hat in lambda = logsnr / 2:
        x_s = sigma_s / sigma_t x_t + alpha_s (1 - exp(-h)) D,   h = lambda_s - lambda_t,
    with D = x0_hat on the first and the final step, and otherwise the multistep extrapolation
    D = (1 + 1 / 2r) x0_hat - 1 / 2r x0_hat_prev, r = h_prev / h, which makes the method second order.
    """
    x0_prev, h_prev = None, None
    for i, (logsnr, logsnr_next) in enumerate(_steps(logsnrs, progress)):
        alpha, sigma = _alpha_sigma(logsnr)
        alpha_next, sigma_next = _alpha_sigma(logsnr_next)
        eps = _eps(eps_fn, x, logsnr, cond)
        _report(callback, i, x, logsnr, logsnr_next, eps)
        x0 = (x - sigma * eps) / alpha
        h = 0.5 * (logsnr_next - logsnr)
        # On the final step h = inf: the step lands on D itself, and extrapolating by h / h_prev would give inf - inf.
        if x0_prev is None or math.isinf(h):
            denoised = x0
        else:
            denoised = (1 + h / (2 * h_prev)) * x0 - h / (2 * h_prev) * x0_prev
        x = sigma_next / sigma * x - alpha_next * math.expm1(-h) * denoised
        x = _correct(corrector, x, logsnr_next, cond, generator)
        x0_prev, h_prev = x0, h
    return x


@torch.no_grad()
def sample_heun(eps_fn: EpsFn, x: Tensor, logsnrs: Tensor, cond: Cond,
                generator: torch.Generator | None = None, progress: bool = False,
                corrector: Corrector | None = None, callback: Callback | None = None) -> Tensor:
    """Heun's second-order method on the EDM probability-flow ODE (Karras et al. 2022, algorithm 1, deterministic).

    In EDM variables x_edm = x / alpha and sigma_edm = sigma / alpha = exp(-logsnr / 2) the ODE is
    dx_edm / dsigma_edm = (x_edm - D) / sigma_edm = eps_hat, so the model's eps is the ODE's slope as it stands.
    Two model calls per step, except the final one to sigma_edm = 0, which is a plain Euler step as in EDM.

    Needs a grid without huge jumps in sigma_edm, like EDM's, which starts at sigma_max = 80. The default cosine grid
    starts at sigma_edm = exp(10) and its first step lands near 2 steps / pi, a jump over which the trapezoid rule is
    far off (samples wrong by whole data standard deviations at 50 steps); use e.g.
    `logsnr_grid(steps, logsnr_min=-2 * math.log(80))`.
    """
    steps = _steps(logsnrs, progress)
    x = x / _alpha_sigma(float(logsnrs[0]))[0]
    for i, (logsnr, logsnr_next) in enumerate(steps):
        alpha, sigma = _alpha_sigma(logsnr)
        alpha_next, sigma_next = _alpha_sigma(logsnr_next)
        dsigma = sigma_next / alpha_next - sigma / alpha
        x_vp = alpha * x
        slope = _eps(eps_fn, x_vp, logsnr, cond)
        _report(callback, i, x_vp, logsnr, logsnr_next, slope)
        if sigma_next > 0:
            slope = 0.5 * (slope + _eps(eps_fn, alpha_next * (x + dsigma * slope), logsnr_next, cond))
        x = x + dsigma * slope
        if corrector is not None and sigma_next > 0:  # the corrector works on VP x, not EDM's x / alpha
            x = _correct(corrector, alpha_next * x, logsnr_next, cond, generator) / alpha_next
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp-2m": sample_dpmpp_2m,
    "heun": sample_heun,
}


# Heun's two-slope average fails on the first jump of the full [-20, 20] grid (sigma_edm = e^10 -> ~30 in one
# step at 50 steps), so it starts where EDM does, at sigma_max = 80: logsnr = -2 log 80. The others start at -20.
DEFAULT_LOGSNR_MIN = {"heun": -2 * math.log(80.0)}


def sample(eps_fn: EpsFn, shape: tuple[int, ...], cond: Cond, *, sampler: str = "ddpm", steps: int = 1000,
           seed: int = 0, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
           progress: bool = False, corrector: Corrector | None = None, callback: Callback | None = None,
           init: Tensor | None = None, t_start: float = 1.0, **kwargs) -> Tensor:
    """Draw x ~ N(0, I) at logsnr_min and run `SAMPLERS[sampler]` over `logsnr_grid(steps)`.

    Deterministic given `seed`: the initial noise and every ancestral draw come from one CPU generator seeded with it,
    so a seed also gives the same noise on every device, MCMC noise of a `corrector` included. `kwargs` go to the
    sampler (e.g. `eta` for "ddim").
    "heun" starts at EDM's sigma_max = 80 instead (`DEFAULT_LOGSNR_MIN`), where its first step is accurate.

    SDEdit (Meng et al. 2022, "SDEdit: guided image synthesis and editing with SDEs"): with `init` (a clean x of
    `shape`) and a cosine time t_start < 1, the walk starts from init diffused to t_start, alpha init + sigma noise
    (the same seeded noise), and takes its `steps` from there: only the detail finer than that level is sampled.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if (init is None) != (t_start == 1.0):
        raise ValueError(f"SDEdit takes both a clean init and a start time t_start < 1; got init "
                         f"{'none' if init is None else 'given'} and t_start {t_start}")
    if init is not None and tuple(init.shape) != tuple(shape):
        raise ValueError(f"init has shape {tuple(init.shape)}, the samples {tuple(shape)}")
    fn = SAMPLERS[sampler]
    logsnrs = logsnr_grid(steps, logsnr_min=DEFAULT_LOGSNR_MIN.get(sampler, LOGSNR_MIN), t_start=t_start)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype).to(device)
    if init is not None:
        alpha, sigma = _alpha_sigma(logsnrs[0].item())
        x = alpha * init.to(device, dtype) + sigma * x
    return fn(eps_fn, x, logsnrs, cond, generator=generator, progress=progress, corrector=corrector, callback=callback,
              **kwargs)
