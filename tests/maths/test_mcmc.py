"""MCMC between noise levels: convergence on Gaussian targets, per-sample Metropolis, the sampler hook."""

import math

import pytest
import torch

from video_adapter.maths.mcmc import LangevinCorrector, MCMCConfig
from video_adapter.maths.sampling import SAMPLERS, logsnr_grid, sample
from video_adapter.models.score_model import NativeScoreModel
from video_adapter.models.unet import SpaceTimeUNet

from helpers import GaussianExpert, random_cov, text_cond

LEVEL = 2.0  # a mid noise level; the target is the expert's noised law there
N = 20_000


@pytest.fixture(scope="module")
def target():
    expert = GaussianExpert([0.5, -0.2], random_cov(2, 1))
    mean, prec = expert.noised(LEVEL, True)
    return expert, mean, prec


def run_chain(expert, kind, steps, step_size, start=3.0, seed=0):
    """`steps` MCMC steps at LEVEL from every sample at `start`; step_size is delta in units of 1 / lambda_max."""
    lam = torch.linalg.eigvalsh(expert.noised(LEVEL, True)[1]).max().item()
    corrector = LangevinCorrector(MCMCConfig(kind, steps=steps), expert.eps, expert.energy,
                                  step_size_fn=lambda logsnr: step_size / lam)
    x = torch.full((N, 2, 1, 1, 1), start, dtype=torch.float64)
    y = corrector(x, LEVEL, text_cond(N), torch.Generator().manual_seed(seed)).flatten(1)
    return y, corrector, step_size / lam


def errors(y, mean, cov):
    """Whitened max |mean error| and max |covariance error| (standard errors at N: 0.007 and 0.01)."""
    white = torch.linalg.inv(torch.linalg.cholesky(cov))
    mean_err = (white @ (y.mean(0) - mean)).abs().max().item()
    cov_err = (white @ torch.cov(y.T) @ white.T - torch.eye(2, dtype=torch.float64)).abs().max().item()
    return mean_err, cov_err


def test_ula_from_far_away_converges_to_its_gaussian_law(target):
    """ULA is exact for a Gaussian up to its known discretisation: the chain x <- (I - d P) x + d P m + sqrt(2d) xi
    has stationary law N(m, (P - d P^2 / 2)^-1), which tends to the target N(m, P^-1) as d -> 0."""
    expert, mean, prec = target
    y, _, delta = run_chain(expert, "ula", steps=300, step_size=0.2)
    assert max(errors(y, mean, torch.linalg.inv(prec - delta * prec @ prec / 2))) < 0.05
    assert max(errors(y, mean, torch.linalg.inv(prec))) < 0.15  # and near the target itself
    y_big, _, delta_big = run_chain(expert, "ula", steps=100, step_size=1.0)
    assert errors(y_big, mean, torch.linalg.inv(prec))[1] > 0.3  # a large step is visibly biased ...
    exact_big = torch.linalg.inv(prec - delta_big * prec @ prec / 2)
    assert max(errors(y_big, mean, exact_big)) < 0.05  # ... exactly as predicted


@pytest.mark.parametrize("kind", ["mala", "hmc"])
def test_metropolis_kinds_are_exact_where_ula_is_biased(target, kind):
    expert, mean, prec = target
    y, corrector, _ = run_chain(expert, kind, steps=60, step_size=1.0)
    assert max(errors(y, mean, torch.linalg.inv(prec))) < 0.05
    [(level, rate)] = corrector.acceptance
    assert level == LEVEL and 0.3 < rate < 1.0 and corrector.mean_acceptance == rate


def test_uhmc_converges_at_a_small_step(target):
    expert, mean, prec = target
    y, corrector, _ = run_chain(expert, "uhmc", steps=100, step_size=0.05)
    assert max(errors(y, mean, torch.linalg.inv(prec))) < 0.08
    assert corrector.mean_acceptance is None  # unadjusted: nothing to report


def test_each_sample_is_accepted_on_its_own(target):
    """One MALA step with a large step: some samples move, others stay exactly where they were."""
    expert, *_ = target
    start = torch.randn(N, 2, 1, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lam = torch.linalg.eigvalsh(expert.noised(LEVEL, True)[1]).max().item()
    corrector = LangevinCorrector(MCMCConfig("mala", steps=1), expert.eps, expert.energy,
                                  step_size_fn=lambda logsnr: 2.0 / lam)
    y = corrector(start, LEVEL, text_cond(N), torch.Generator().manual_seed(2))
    moved = (y != start).flatten(1).any(1)
    assert 0.05 < moved.float().mean() < 0.95
    assert moved.float().mean().item() == pytest.approx(corrector.acceptance[0][1])


def test_metropolis_needs_an_energy(tiny_cfg):
    native = NativeScoreModel(SpaceTimeUNet(tiny_cfg))
    assert not native.has_energy and GaussianExpert([0.0], [[1.0]]).has_energy
    with pytest.raises(NotImplementedError, match="no energy"):
        native.energy(*[None] * 3)
    for kind in ("mala", "hmc"):
        with pytest.raises(ValueError, match="needs an energy.*ula or uhmc"):
            LangevinCorrector(MCMCConfig(kind), native.eps)


@pytest.mark.parametrize("bad", [dict(kind="gibbs"), dict(steps=0), dict(steps=1.5), dict(step_size=0.0),
                                 dict(step_size=math.inf), dict(damping=1.0), dict(leapfrog_steps=0)])
def test_config_errors(bad):
    with pytest.raises(ValueError):
        MCMCConfig(**bad)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_the_corrector_between_levels(sampler):
    """Called once per level the sampler reaches, never at the clean end; seeded like the sampler's own noise."""
    expert = GaussianExpert([0.3, 0.1], random_cov(2, 4))
    levels = []

    def corrector(x, logsnr, cond, generator):
        levels.append(logsnr)
        return x + 0.01 * torch.randn(x.shape, generator=generator, dtype=x.dtype)

    run = lambda: sample(expert.eps, (3, 2, 1, 1, 1), text_cond(3), sampler=sampler, steps=5, seed=4,
                         dtype=torch.float64, corrector=corrector)
    first = run()
    assert len(levels) == 4 and all(math.isfinite(level) for level in levels)
    assert levels == sorted(levels) and levels[-1] < logsnr_grid(5)[-1].item()
    assert torch.equal(run(), first)
    assert not torch.equal(sample(expert.eps, (3, 2, 1, 1, 1), text_cond(3), sampler=sampler, steps=5, seed=4,
                                  dtype=torch.float64), first)
