"""Samplers against an analytic Gaussian denoiser, determinism, classifier-free guidance and input errors."""

import math

import numpy as np
import pytest
import torch

from video_adapter.maths.conditioning import Cond
from video_adapter.maths.guidance import with_guidance
from video_adapter.maths.sampling import (
    SAMPLERS,
    logsnr_grid,
    sample,
    sample_ddim,
    sample_ddpm,
)
from video_adapter.maths.schedule import LOGSNR_MAX, LOGSNR_MIN, alpha_sigma, broadcast, logsnr_cosine

ELEMENT = (3, 2, 2, 2)  # [C, F, H, W]: 24 independent Gaussian dimensions, each with its own mean and scale
_g = torch.Generator().manual_seed(1)
MU = torch.empty(ELEMENT).uniform_(-1.0, 1.0, generator=_g)
S = torch.empty(ELEMENT).uniform_(0.5, 1.5, generator=_g)
EDM_LOGSNR_MIN = -2 * math.log(80.0)  # EDM's sigma_max = 80


def gaussian_eps(x, logsnr, cond):
    """Exact E[eps | x_t] for x0 ~ N(MU, diag(S^2)), x_t = alpha x0 + sigma eps: the Bayes-optimal denoiser."""
    alpha, sigma = alpha_sigma(broadcast(logsnr, x).to(x.dtype))
    return sigma * (x - alpha * MU) / (alpha**2 * S**2 + sigma**2)


def gaussian_marginal(logsnr, n, generator, dtype=torch.float32):
    """n exact samples of x_t at `logsnr`: starts the sampler without the (tiny) N(0, I) prior mismatch."""
    alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
    std = (alpha**2 * S.double() ** 2 + sigma**2).sqrt()
    return (alpha * MU.double() + std * torch.randn((n, *ELEMENT), generator=generator, dtype=torch.float64)).to(dtype)


# Tolerance. n samples per dimension, 24 independent dimensions. For an exact sampler the standardized sample mean
# (m - mu) / s has standard error 1 / sqrt(n) and the variance ratio v / s^2 has sqrt(2 / (n - 1)) (Gaussian data).
# We ask every one of the 48 per-dimension statistics to be within 5 standard errors (false alarm <= 48 * 5.7e-7),
# and the averages over the 24 dimensions, 5 times more sensitive, within 5 of their standard errors too. On top we
# allow each sampler a stated discretization bias: O(1/N) for the first-order DDPM/DDIM, O(1/N^2) for the others.
N_SAMPLES = 4000
Z = 5.0
STATISTICAL_CASES = {
    # name: (sampler, grid, kwargs, allowed relative bias)
    "ddpm-1000": ("ddpm", logsnr_grid(1000), {}, 0.01),
    "ddim-eta0-200": ("ddim", logsnr_grid(200), {"eta": 0.0}, 0.02),
    "dpmpp-2m-50": ("dpmpp-2m", logsnr_grid(50), {}, 0.01),
    # Heun steps in sigma_edm, where the cosine grid's first step from logsnr -20 (sigma_edm 2e4 -> ~30) is far too
    # large for its trapezoid rule; EDM's sigma_max = 80 is where it is meant to start.
    "heun-50": ("heun", logsnr_grid(50, EDM_LOGSNR_MIN), {}, 0.01),
}
# DDIM with eta = 1 is checked against DDPM step by step instead (test_ddim_eta1_is_ddpm): ancestral sampling at 200
# steps is still about 2.5% under-dispersed, which would need a budget too loose to mean anything.


def assert_matches_data(x, bias):
    n = x.shape[0]
    z = (x.double() - MU.double()) / S.double()
    mean_err, var_err = z.mean(0), z.var(0) - 1
    mean_se, var_se = 1 / math.sqrt(n), math.sqrt(2 / (n - 1))
    dims = mean_err.numel()
    assert mean_err.abs().max() < Z * mean_se + bias, f"worst mean error {mean_err.abs().max():.4f} (x s)"
    assert var_err.abs().max() < Z * var_se + bias, f"worst variance ratio error {var_err.abs().max():.4f}"
    assert mean_err.mean().abs() < Z * mean_se / math.sqrt(dims) + bias, f"mean error {mean_err.mean():.4f}"
    assert var_err.mean().abs() < Z * var_se / math.sqrt(dims) + bias, f"variance ratio error {var_err.mean():.4f}"


@pytest.mark.parametrize("case", STATISTICAL_CASES)
def test_sampler_reproduces_gaussian_data(case):
    name, grid, kwargs, bias = STATISTICAL_CASES[case]
    generator = torch.Generator().manual_seed(0)
    x = gaussian_marginal(grid[0].item(), N_SAMPLES, generator)
    if name in ("ddpm", "ddim"):
        kwargs = {**kwargs, "generator": generator}
    out = SAMPLERS[name](gaussian_eps, x, grid, Cond(), **kwargs)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_matches_data(out, bias)


@pytest.mark.parametrize("case", ["dpmpp-2m-50", "heun-50"])
def test_sample_draws_standard_normal_prior_and_matches_data(case):
    # `sample` picks each sampler's own grid: Heun's starts at EDM's sigma_max, from N(0, I) as EDM does.
    name = STATISTICAL_CASES[case][0]
    out = sample(gaussian_eps, (N_SAMPLES, *ELEMENT), Cond(), sampler=name, steps=50, seed=0)
    assert_matches_data(out, STATISTICAL_CASES[case][3])


def exact_flow(x, logsnr):
    """Where the probability-flow ODE takes x at `logsnr` to: with Gaussian data every dimension's marginal stays
    Gaussian and the 1-D flow is monotone, so it is the quantile map and (x - alpha mu) / std(x_t) is conserved."""
    alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
    return MU.double() + S.double() * (x - alpha * MU.double()) / (alpha**2 * S.double() ** 2 + sigma**2).sqrt()


@pytest.mark.parametrize("name, order, logsnr_min", [
    ("ddim", 1, LOGSNR_MIN), ("dpmpp-2m", 2, LOGSNR_MIN), ("heun", 2, EDM_LOGSNR_MIN)])
def test_deterministic_sampler_converges_at_its_order(name, order, logsnr_min):
    """Doubling the steps must divide the path-wise error by about 2^order; we accept 2^(order - 1/2)."""
    errors = []
    for steps in (50, 100):
        grid = logsnr_grid(steps, logsnr_min)
        x = gaussian_marginal(grid[0].item(), 64, torch.Generator().manual_seed(0), torch.float64)
        out = SAMPLERS[name](gaussian_eps, x, grid, Cond())
        errors.append((out - exact_flow(x, grid[0].item())).abs().max().item())
    assert errors[0] / errors[1] > 2 ** (order - 0.5), errors


def test_dpmpp_2m_extrapolates_x0_to_the_step_midpoint():
    """Algorithm 2's D_i = (1 + 1/2r) x0_i - 1/2r x0_{i-1}, r = h_{i-1} / h_i, is the line through the last two x0
    predictions evaluated at lambda_i + h_i / 2. With a denoiser whose x0 is a known line in lambda, recover each D_i
    from consecutive states via x_{i+1} = sigma_{i+1} / sigma_i x_i + alpha_{i+1} (1 - e^{-h_i}) D_i and compare."""
    a, b = 0.3, -0.2

    def linear_x0_eps(x, logsnr, cond):
        alpha, sigma = alpha_sigma(broadcast(logsnr, x))
        return (x - alpha * (a + b * broadcast(logsnr, x) / 2)) / sigma

    steps, grid = [], logsnr_grid(12)  # cosine steps are uneven in lambda, so r != 1 and a misplaced r would show
    SAMPLERS["dpmpp-2m"](linear_x0_eps, torch.randn(2, *ELEMENT, dtype=torch.float64), grid, Cond(),
                         callback=steps.append)
    lam = grid / 2
    for i in range(len(steps) - 1):
        (_, sigma), (alpha_next, sigma_next) = alpha_sigma(grid[i]), alpha_sigma(grid[i + 1])
        h = (lam[i + 1] - lam[i]).item()
        d = (steps[i + 1]["x"] - sigma_next / sigma * steps[i]["x"]) / (alpha_next * -math.expm1(-h))
        expected = a + b * lam[i].item() if i == 0 else a + b * (lam[i].item() + h / 2)
        torch.testing.assert_close(d, torch.full_like(d, expected), rtol=0, atol=1e-8)


def test_ddim_eta1_is_ddpm():
    """Same posterior mean and variance, same noise stream: the two derivations must agree step by step."""
    grid = logsnr_grid(50)
    x = torch.randn((8, *ELEMENT), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ddpm = sample_ddpm(gaussian_eps, x, grid, Cond(), generator=torch.Generator().manual_seed(1))
    ddim = sample_ddim(gaussian_eps, x, grid, Cond(), eta=1.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-9)
    ddim0 = sample_ddim(gaussian_eps, x, grid, Cond(), eta=0.0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(ddim0, ddpm)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_walks_the_grid_and_returns_the_last_denoised(name):
    """The callback sees every step once, in order, at the grid's levels (the last step's target is the clean end,
    +inf); the model gets each level as float64 [B]; the sample is the last step's denoised x0."""
    steps, grid, levels, seen = 6, logsnr_grid(6), [], []
    x = torch.randn((5, *ELEMENT), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = SAMPLERS[name](lambda z, logsnr, cond: levels.append(logsnr) or gaussian_eps(z, logsnr, cond), x, grid,
                         Cond(), callback=seen.append)
    assert len(levels) == (2 * steps - 1 if name == "heun" else steps)  # Heun: two calls a step, but the last
    assert levels[0].shape == (5,) and levels[0].dtype == torch.float64 and torch.equal(levels[0], grid[0].expand(5))
    assert [info["i"] for info in seen] == list(range(steps))
    assert [info["logsnr"] for info in seen] == grid[:-1].tolist()
    assert [info["logsnr_next"] for info in seen] == grid[1:-1].tolist() + [math.inf]
    torch.testing.assert_close(seen[0]["x"], x)
    torch.testing.assert_close(out, seen[-1]["denoised"])
    alpha, sigma = alpha_sigma(grid[-2])
    torch.testing.assert_close(seen[-1]["denoised"], (seen[-1]["x"] - sigma * gaussian_eps(
        seen[-1]["x"], grid[-2].expand(5), Cond())) / alpha)
    assert out.dtype == torch.float64


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_keeps_dtype_of_x(name):
    """Even when the model answers in another dtype, as a float32 eps_fn under bf16 sampling does here."""
    out = sample(gaussian_eps, (2, *ELEMENT), Cond(), sampler=name, steps=4, dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_is_deterministic_given_seed(name):
    def run(seed):
        torch.manual_seed(seed + 123)  # the global RNG must play no part
        return sample(gaussian_eps, (4, *ELEMENT), Cond(), sampler=name, steps=8, seed=seed)

    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


def test_sample_hands_the_callback_to_its_sampler():
    seen = []
    sample(gaussian_eps, (2, *ELEMENT), Cond(), sampler="ddim", steps=3, callback=seen.append)
    assert [info["i"] for info in seen] == [0, 1, 2]


def test_progress_bar_counts_steps(capsys):
    sample(gaussian_eps, (2, *ELEMENT), Cond(), sampler="ddim", steps=3, progress=True)
    assert "3/3" in capsys.readouterr().err


def test_ancestral_noise_comes_from_the_seeded_generator():
    """With a deterministic initial x, only the per-step noise can differ between seeds."""
    x = torch.zeros((4, *ELEMENT))
    grid = logsnr_grid(8)
    a = sample_ddpm(gaussian_eps, x, grid, Cond(), generator=torch.Generator().manual_seed(0))
    b = sample_ddpm(gaussian_eps, x, grid, Cond(), generator=torch.Generator().manual_seed(0))
    c = sample_ddpm(gaussian_eps, x, grid, Cond(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_logsnr_grid_runs_noisy_to_clean_on_the_cosine_schedule():
    grid = logsnr_grid(10)
    assert grid.shape == (11,) and grid.dtype == torch.float64
    assert grid[0].item() == LOGSNR_MIN and grid[-1].item() == LOGSNR_MAX
    assert (grid[1:] > grid[:-1]).all()
    torch.testing.assert_close(grid, logsnr_cosine(torch.linspace(1, 0, 11, dtype=torch.float64)))


# Classifier-free guidance. Conditional and unconditional parts are known in closed form: the test eps_fn is
# 2 x + logsnr where text is present and -x / 2 + logsnr where it is absent.

def toy_eps(x, logsnr, cond):
    weight = torch.where(cond.has_text, 2.0, -0.5).to(x)
    return broadcast(weight, x) * x + broadcast(logsnr, x)


class Counting:
    def __init__(self, eps_fn):
        self.eps_fn, self.batches = eps_fn, []

    def __call__(self, x, logsnr, cond):
        assert x.shape[0] == logsnr.shape[0] == cond.batch_size
        self.batches.append(x.shape[0])
        return self.eps_fn(x, logsnr, cond)


def cfg_inputs(batch=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 2, 4, 4, generator=g, dtype=torch.float64)
    logsnr = torch.randn(batch, generator=g, dtype=torch.float64) * 5  # distinct per sample: catches mis-batching
    cond = Cond.make(text=torch.randn(batch, 7, 16, generator=g, dtype=torch.float64))
    return x, logsnr, cond


@pytest.mark.parametrize("scale", [0.0, 0.5, 3.0, 7.5])
def test_cfg_is_the_guidance_formula_in_one_batched_forward(scale):
    x, logsnr, cond = cfg_inputs()
    eps_c = 2 * x + broadcast(logsnr, x)
    eps_u = -0.5 * x + broadcast(logsnr, x)
    fn = Counting(toy_eps)
    out = with_guidance(fn, scale)(x, logsnr, cond)
    torch.testing.assert_close(out, eps_u + scale * (eps_c - eps_u), rtol=0, atol=1e-12)
    assert fn.batches == [2 * len(x)]


def test_cfg_scale_0_is_unconditional_and_1_is_one_conditional_forward():
    x, logsnr, cond = cfg_inputs()
    torch.testing.assert_close(with_guidance(toy_eps, 0.0)(x, logsnr, cond), toy_eps(x, logsnr, cond.null()), rtol=0,
                               atol=0)
    fn = Counting(toy_eps)
    torch.testing.assert_close(with_guidance(fn, 1.0)(x, logsnr, cond), toy_eps(x, logsnr, cond), rtol=0, atol=0)
    assert fn.batches == [len(x)]


def test_cfg_guides_only_the_named_conditions():
    """guided=("text",): the null pass keeps the edges, so guidance scales the caption's part of eps alone. With
    eps = x + 1 [text] + 10 [edges]: x + 10 + scale, where guiding both gives x + 11 scale."""
    x, logsnr, _ = cfg_inputs()
    cond = Cond.make(text=torch.zeros(3, 2, 4, dtype=torch.float64), edges=torch.zeros_like(x))

    def eps(x, logsnr, cond):
        return x + broadcast(cond.has_text.to(x) + 10 * cond.has_edges.to(x), x)

    fn = Counting(eps)
    torch.testing.assert_close(with_guidance(fn, 3.0, guided=("text",))(x, logsnr, cond), x + 13, rtol=0, atol=1e-12)
    assert fn.batches == [2 * len(x)]
    torch.testing.assert_close(with_guidance(eps, 3.0)(x, logsnr, cond), x + 33, rtol=0, atol=1e-12)
    torch.testing.assert_close(with_guidance(eps, 3.0, guided=("edges",))(x, logsnr, cond), x + 31, rtol=0, atol=1e-12)


def test_cfg_leaves_samples_without_a_condition_unguided():
    x, logsnr, cond = cfg_inputs()
    cond = cond.with_flags(text=torch.tensor([True, False, True]))
    out = with_guidance(toy_eps, 4.0)(x, logsnr, cond)
    torch.testing.assert_close(out[1], (-0.5 * x + broadcast(logsnr, x))[1], rtol=0, atol=1e-12)


def test_cfg_runs_inside_a_sampler():
    x, _, cond = cfg_inputs(batch=2)
    fn = Counting(toy_eps)
    out = sample_ddim(with_guidance(fn, 2.0), x, logsnr_grid(4), cond)
    assert out.shape == x.shape and fn.batches == [4] * 4


# Input errors name the fix.

def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown sampler 'euler'.*ddpm, ddim, dpmpp-2m, heun"):
        sample(gaussian_eps, (1, *ELEMENT), Cond(), sampler="euler")


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        logsnr_grid(steps)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        sample(gaussian_eps, (1, *ELEMENT), Cond(), steps=steps)


@pytest.mark.parametrize("name", SAMPLERS)
def test_grid_must_run_noisy_to_clean(name):
    x = torch.randn(2, *ELEMENT)
    with pytest.raises(ValueError, match="strictly increasing"):
        SAMPLERS[name](gaussian_eps, x, logsnr_grid(5).flip(0), Cond())
    with pytest.raises(ValueError, match="at least 2 noise levels"):
        SAMPLERS[name](gaussian_eps, x, torch.tensor([0.0]), Cond())


@pytest.mark.parametrize("eta", [-0.1, 1.5])
def test_ddim_eta_out_of_range(eta):
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        sample_ddim(gaussian_eps, torch.randn(2, *ELEMENT), logsnr_grid(5), Cond(), eta=eta)


def test_clip_denoised_clamps_the_implied_x0_and_nothing_else():
    from video_adapter.maths.guidance import clip_denoised
    from video_adapter.maths.schedule import diffuse, x0_from_eps

    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 2, 2, 2, generator=g) * 4 - 2  # half of it outside [-1, 1]
    eps = torch.randn(x0.shape, generator=g)
    logsnr = torch.tensor([-20.0, -3.0, 0.0, 4.0])
    x = diffuse(x0, eps, logsnr)
    oracle = lambda x_, l_, c_: eps  # noqa: E731  the exact eps, so its implied x0 is x0
    out = clip_denoised(oracle, 1.0)(x, logsnr, Cond())
    torch.testing.assert_close(x0_from_eps(x, out, logsnr)[1:], x0.clamp(-1, 1)[1:], atol=1e-4, rtol=0)
    inside = x0.abs() <= 1
    torch.testing.assert_close(out[inside], eps[inside], atol=1e-3, rtol=0)
    assert clip_denoised(oracle, 0.0) is oracle


def test_dynamic_threshold_rescales_each_sample_by_its_own_quantile():
    """Imagen's dynamic thresholding: s = the quantile of |x0| per sample (at least 1), x0 -> clip(x0, -s, s) / s;
    a sample already inside [-1, 1] is untouched."""
    from video_adapter.maths.guidance import denoised_range, dynamic_threshold
    from video_adapter.maths.schedule import diffuse, x0_from_eps

    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 3, 2, 4, 4, generator=g) * torch.tensor([3.0, 1.5, 0.2]).reshape(3, 1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=g)
    logsnr = torch.tensor([-2.0, 0.0, 3.0])
    x = diffuse(x0, eps, logsnr)
    oracle = lambda x_, l_, c_: eps  # noqa: E731
    got = x0_from_eps(x, dynamic_threshold(oracle, 0.9)(x, logsnr, Cond()), logsnr)
    for i in range(3):
        s = max(1.0, float(np.quantile(x0[i].abs().numpy(), 0.9, method="higher")))
        torch.testing.assert_close(got[i], x0[i].clamp(-s, s) / s, atol=1e-4, rtol=0)
    assert got.abs().max() <= 1 + 1e-4
    torch.testing.assert_close(got[2], x0[2], atol=1e-4, rtol=0)  # std 0.2: inside the range, s = 1
    assert denoised_range(oracle, 0.0, 0.0) is oracle
    with pytest.raises(ValueError, match="percentile"):
        dynamic_threshold(oracle, 1.5)


# SDEdit: a walk that starts from a clean init diffused to an intermediate level.

def test_sdedit_starts_from_the_init_diffused_to_t_start_and_walks_the_rest_of_the_grid():
    """The first x the sampler sees is alpha init + sigma noise at t_start's level, the noise the seed's own first
    draw, and the walk takes its steps on the cosine grid from t_start to the clean end."""
    init = torch.randn((2, *ELEMENT), generator=torch.Generator().manual_seed(3))
    seen = []
    sample(gaussian_eps, (2, *ELEMENT), Cond(), sampler="ddim", steps=4, seed=7, init=init, t_start=0.4,
           callback=seen.append)
    grid = logsnr_grid(4, t_start=0.4)
    torch.testing.assert_close(grid, logsnr_cosine(torch.linspace(0.4, 0, 5, dtype=torch.float64)))
    alpha, sigma = alpha_sigma(grid[0])
    noise = torch.randn((2, *ELEMENT), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(seen[0]["x"], (alpha * init.double() + sigma * noise.double()).float())
    assert [info["logsnr"] for info in seen] == grid[:-1].tolist()


def test_sdedit_from_data_samples_the_data():
    """Started from exact data samples diffused to t_start, an exact sampler with the Bayes-optimal denoiser keeps
    the data distribution: x_t of a data sample is a sample of the marginal at t."""
    g = torch.Generator().manual_seed(11)
    init = MU + S * torch.randn((N_SAMPLES, *ELEMENT), generator=g)
    x = sample(gaussian_eps, (N_SAMPLES, *ELEMENT), Cond(), sampler="ddpm", steps=500, seed=2, init=init, t_start=0.5)
    assert_matches_data(x, 0.01)
    # and it moves them: the output is not the init
    assert (x - init).abs().mean() > 0.1


def test_sdedit_needs_both_an_init_and_a_start_below_1():
    shape = (2, *ELEMENT)
    with pytest.raises(ValueError, match="SDEdit takes both"):
        sample(gaussian_eps, shape, Cond(), sampler="ddim", steps=2, t_start=0.5)
    with pytest.raises(ValueError, match="SDEdit takes both"):
        sample(gaussian_eps, shape, Cond(), sampler="ddim", steps=2, init=torch.zeros(shape))
    with pytest.raises(ValueError, match="init has shape"):
        sample(gaussian_eps, shape, Cond(), sampler="ddim", steps=2, init=torch.zeros(3, *ELEMENT), t_start=0.5)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="cosine time in \\(0, 1\\]"):
            logsnr_grid(4, t_start=bad)
