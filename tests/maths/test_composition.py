"""Video Adapter composition: exact equations on Gaussian experts, the sampler on them, cutoff, cost and baselines."""

import math

import pytest
import torch

from video_adapter.maths.composition import (
    MODES,
    PAPER_CUTOFF_LOGSNR,
    Conds,
    PriorStrength,
    cfg_mix,
    low_temperature,
    mode_fn,
    where_active,
)
from video_adapter.maths.mcmc import LangevinCorrector, MCMCConfig
from video_adapter.maths.sampling import logsnr_grid, sample
from video_adapter.maths.schedule import alpha_sigma
from video_adapter.models.score_model import NativeScoreModel
from video_adapter.models.unet import SpaceTimeUNet

from helpers import GaussianExpert, model_inputs, product, random_cov, randomize, text_cond

D = 2
NO_CUTOFF = math.inf


@pytest.fixture(scope="module")
def experts():
    small = GaussianExpert([0.5, -0.2], random_cov(D, 1), mean_u=[0.0, 0.1], cov_u=random_cov(D, 2, 0.5))
    prior = GaussianExpert([-0.4, 0.3], random_cov(D, 3))
    return small, prior


def conds(batch: int) -> Conds:
    return Conds(small=text_cond(batch), prior=text_cond(batch))


def target_terms(small, prior, gamma, alpha, level=None, composition="paper"):
    """(weight, mean, cov) of p_small(x)^(1-alpha) p_small(x|c)^alpha p_prior(x|c)^(alpha gamma), clean or noised;
    for the normalized composition p_small(x|c)'s exponent is alpha (1 - gamma), so the exponents sum to 1."""
    def law(expert, text):
        if level is None:
            return (expert.mean, expert.cov) if text else (expert.mean_u, expert.cov_u)
        mean, prec = expert.noised(level, text)
        return mean, torch.linalg.inv(prec)

    small_weight = alpha * (1 - gamma) if composition == "normalized" else alpha
    terms = [(small_weight, *law(small, True)), (alpha * gamma, *law(prior, True))]
    if alpha != 1:
        terms.append((1 - alpha, *law(small, False)))
    return terms


CASES = [(0.1, 1.0), (1.0, 1.0), (0.4, 3.0), (0.2, 2.0)]  # (gamma, alpha): paper's Bridge gamma, large, guided


@pytest.mark.parametrize("composition", ["paper", "normalized"])
@pytest.mark.parametrize("gamma, alpha", CASES)
def test_composed_eps_and_energy_are_the_product_at_every_level(experts, gamma, alpha, composition):
    """Sec 3.2/3.3 exactly: the composed eps is sigma times minus the score of the weighted product of the noised
    experts, and the composed energy is that product's energy, whose gradient gives the same eps; for the paper's
    Algorithm 1 and for its normalized form (exponents summing to 1)."""
    small, prior = experts
    strength = PriorStrength(gamma, cutoff_logsnr=NO_CUTOFF)
    eps_fn = mode_fn("composed", small.eps, prior.eps, alpha=alpha, strength=strength, composition=composition)
    energy_fn = mode_fn("composed", small.energy, prior.energy, alpha=alpha, strength=strength,
                        composition=composition)
    x = torch.randn(16, D, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for level in (-8.0, -1.0, 0.5, 4.0, 12.0):
        logsnr = torch.full((16,), level, dtype=torch.float64)
        terms = target_terms(small, prior, gamma, alpha, level, composition)
        assert sum(w for w, _, _ in terms) == pytest.approx(1 + alpha * gamma if composition == "paper" else 1)
        prec = sum(w * torch.linalg.inv(c) for w, _, c in terms)
        shift = sum(w * torch.linalg.inv(c) @ m for w, m, c in terms)
        sigma = alpha_sigma(torch.tensor(level, dtype=torch.float64))[1]
        z = x.flatten(1)
        expected = sigma * (z @ prec - shift)
        torch.testing.assert_close(eps_fn(x, logsnr, conds(16)).flatten(1), expected, rtol=1e-10, atol=1e-12)
        xr = x.clone().requires_grad_(True)
        energy_fn(xr, logsnr, conds(16)).sum().backward()
        torch.testing.assert_close(sigma * xr.grad.flatten(1), expected, rtol=1e-10, atol=1e-12)


def sample_error(small, prior, gamma, alpha, corrector_kind=None, n=12_000, steps=100):
    """Whitened errors (max |mean error|, max |cov error|) of composed DDPM samples against the clean product."""
    strength = PriorStrength(gamma, cutoff_logsnr=NO_CUTOFF)
    eps_fn = mode_fn("composed", small.eps, prior.eps, alpha=alpha, strength=strength)
    corrector = None
    if corrector_kind:
        energy_fn = mode_fn("composed", small.energy, prior.energy, alpha=alpha, strength=strength)

        def step_size(level):  # per level: half the inverse of the composed precision's largest eigenvalue
            terms = target_terms(small, prior, gamma, alpha, level)
            prec = sum(w * torch.linalg.inv(c) for w, _, c in terms)
            return 0.5 / torch.linalg.eigvalsh(prec).max().item()

        corrector = LangevinCorrector(MCMCConfig(corrector_kind, steps=5), eps_fn, energy_fn, step_size_fn=step_size)
    x = sample(eps_fn, (n, D, 1, 1, 1), conds(n), sampler="ddpm", steps=steps, seed=0, dtype=torch.float64,
               corrector=corrector).flatten(1)
    mean, cov = product(target_terms(small, prior, gamma, alpha))
    white = torch.linalg.inv(torch.linalg.cholesky(cov))
    mean_err = (white @ (x.mean(0) - mean)).abs().max().item()
    cov_err = (white @ torch.cov(x.T) @ white.T - torch.eye(D, dtype=torch.float64)).abs().max().item()
    return mean_err, cov_err, corrector


# With n = 12000 the whitened sample mean has standard error 0.009 and the whitened covariance entries 0.013.
MEAN_TOL, COV_TOL = 0.05, 0.065


@pytest.mark.slow
@pytest.mark.parametrize("gamma, alpha", CASES)
def test_composed_sampler_with_mcmc_samples_the_product_gaussian(experts, gamma, alpha):
    """Composed DDPM with MALA between levels (Gaussian experts expose energies) samples the product's mean and
    covariance within the stated tolerances, for each (gamma, alpha)."""
    mean_err, cov_err, corrector = sample_error(*experts, gamma, alpha, "mala")
    assert mean_err < MEAN_TOL and cov_err < COV_TOL, (mean_err, cov_err)
    assert 0.4 < corrector.mean_acceptance < 1.0


def test_plain_composed_sampler_is_biased_and_mcmc_fixes_it(experts):
    """Summing noised scores is not the noised product's score: without MCMC the same test fails (RRR's point)."""
    _, cov_err, _ = sample_error(*experts, 1.0, 1.0, None)
    assert cov_err > 3 * COV_TOL


def counted(expert):
    expert.calls.clear()
    return expert


@pytest.mark.parametrize("sampler, steps, expected", [("ddpm", 1000, 900), ("ddim", 50, 45), ("dpmpp-2m", 20, 18)])
def test_prior_is_never_called_below_the_cutoff(experts, sampler, steps, expected):
    """The paper's "all but the last 100 of 1000 steps" as a log-SNR cutoff: the same fraction for any step count
    or sampler, and each step costs one batched small forward (2B) and one prior forward (B) above the cutoff."""
    small, prior = map(counted, experts)
    eps_fn = mode_fn("composed", small.eps, prior.eps, alpha=3.0, strength=PriorStrength(0.1))
    sample(eps_fn, (4, D, 1, 1, 1), conds(4), sampler=sampler, steps=steps, seed=0, dtype=torch.float64)
    assert len(small.calls) == steps and all(batch == 8 for batch, _ in small.calls)
    assert len(prior.calls) == expected and all(batch == 4 for batch, _ in prior.calls)
    assert max(level for _, levels in prior.calls for level in levels) < PAPER_CUTOFF_LOGSNR
    below = [levels for _, levels in small.calls if levels[0] < PAPER_CUTOFF_LOGSNR]
    assert [levels for _, levels in prior.calls] == below


def test_gamma_zero_and_cfg_mix_endpoints_are_the_single_models(experts):
    small, prior = map(counted, experts)
    x = torch.randn(6, D, 1, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logsnr = torch.full((6,), -1.5, dtype=torch.float64)
    fn = lambda mode, **kw: mode_fn(mode, small.eps, prior.eps, alpha=4.0, **kw)(x, logsnr, conds(6))
    adapter, prior_alone = fn("adapter"), fn("prior")
    assert torch.equal(fn("cfg-mix", mix=0.0), adapter) and torch.equal(fn("cfg-mix", mix=1.0), prior_alone)
    assert not torch.equal(fn("cfg-mix", mix=0.5), adapter)
    prior.calls.clear()
    assert torch.equal(fn("composed", strength=PriorStrength(0.0)), adapter) and prior.calls == []
    assert torch.equal(fn("inverse", strength=PriorStrength(0.0)), prior_alone)
    # the inverse variant is Algorithm 1 with the roles swapped
    c, u = prior.eps(x, logsnr, text_cond(6)), prior.eps(x, logsnr, text_cond(6).null())
    expected = low_temperature(u, c, small.eps(x, logsnr, text_cond(6)), 4.0, 0.3)
    torch.testing.assert_close(fn("inverse", strength=PriorStrength(0.3)), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cfg_mix(adapter, prior_alone, 0.25), 0.75 * adapter + 0.25 * prior_alone)
    with pytest.raises(ValueError, match="unknown mode 'mix'"):
        mode_fn("mix", small.eps, prior.eps, alpha=1.0)
    assert set(MODES) == {"composed", "adapter", "prior", "cfg-mix", "inverse"}


def test_cfg_mix_band_is_the_adapter_below_and_the_mix_above(experts):
    """--mix-min-logsnr: below it CFG Mix is the guided adapter bit for bit, with no prior call; at or above it the
    constant-weight mix; a batch across the edge gets each sample's own."""
    small, prior = map(counted, experts)
    x = torch.randn(4, D, 1, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fn = lambda logsnr, **kw: mode_fn("cfg-mix", small.eps, prior.eps, alpha=3.0, mix=0.4, **kw)(x, logsnr, conds(4))
    low, high = torch.full((4,), -5.0, dtype=torch.float64), torch.full((4,), 1.0, dtype=torch.float64)
    adapter = mode_fn("adapter", small.eps, prior.eps, alpha=3.0)(x, low, conds(4))
    prior.calls.clear()
    assert torch.equal(fn(low, mix_min_logsnr=-2.0), adapter) and prior.calls == []
    assert torch.equal(fn(high, mix_min_logsnr=-2.0), fn(high))
    assert not torch.equal(fn(low), adapter)
    both = torch.tensor([-5.0, 1.0, -5.0, 1.0], dtype=torch.float64)
    prior.calls.clear()
    mixed = fn(both, mix_min_logsnr=-2.0)
    assert [batch for batch, _ in prior.calls] == [4]  # one batched guided pass (c, u) of the two samples above
    whole = fn(both)
    torch.testing.assert_close(mixed[1::2], whole[1::2], rtol=1e-12, atol=1e-12)
    adapter_both = mode_fn("adapter", small.eps, prior.eps, alpha=3.0)(x, both, conds(4))
    torch.testing.assert_close(mixed[0::2], adapter_both[0::2], rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def native_pair(tiny_cfg_module):
    small = NativeScoreModel(randomize(SpaceTimeUNet(tiny_cfg_module), seed=1).eval())
    prior = NativeScoreModel(randomize(SpaceTimeUNet(tiny_cfg_module), seed=2).eval())
    return small, prior


@pytest.fixture(scope="module")
def tiny_cfg_module():
    from video_adapter.models.unet import UNetConfig

    return UNetConfig(frames=3, height=8, width=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                      attention_resolutions=(4,), head_dim=8, emb_dim=32, text_dim=16, edge_cond=True)


@pytest.mark.parametrize("composition", ["paper", "normalized"])
@pytest.mark.parametrize("alpha", [1.0, 5.0])
def test_gamma_zero_reproduces_the_adapter_sample_bit_for_bit(native_pair, tiny_cfg_module, alpha, composition):
    small, prior = native_pair
    calls = []
    prior_eps = lambda *a: calls.append(1) or prior.eps(*a)
    _, _, cond = model_inputs(tiny_cfg_module, b=2)
    pair = Conds(small=cond, prior=cond)
    shape = (2, *small.spec.shape)
    run = lambda mode, gamma: sample(mode_fn(mode, small.eps, prior_eps, alpha=alpha, strength=PriorStrength(gamma),
                                             composition=composition), shape, pair, sampler="ddpm", steps=6, seed=3)
    adapter = run("adapter", 0.1)
    assert torch.equal(run("composed", 0.0), adapter) and calls == []
    assert not torch.equal(run("composed", 0.5), adapter) and calls


@pytest.mark.parametrize("composition", ["paper", "normalized"])
@pytest.mark.parametrize("space", ["x0", "v"])
def test_composing_x0_or_v_adds_the_weights_deficit_times_x(experts, composition, space):
    """Composing x0 (or v) predictions with weights w_i is composing eps with them plus (1 - sum w_i) x / sigma
    (or (1 - sum w_i) sigma x): the normalized composition, whose weights sum to 1, is the same in every space."""
    small, prior = experts
    gamma, alpha = 0.2, 3.0
    strength = PriorStrength(gamma, cutoff_logsnr=NO_CUTOFF)
    fn = lambda s: mode_fn("composed", small.eps, prior.eps, alpha=alpha, strength=strength, composition=composition,
                           compose_in=s)
    x = torch.randn(8, D, 1, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for level in (-6.0, 0.0, 5.0):
        logsnr = torch.full((8,), level, dtype=torch.float64)
        sigma = alpha_sigma(torch.tensor(level, dtype=torch.float64))[1]
        deficit = 0.0 if composition == "normalized" else -alpha * gamma
        scale = 1 / sigma if space == "x0" else sigma
        torch.testing.assert_close(fn(space)(x, logsnr, conds(8)), fn("eps")(x, logsnr, conds(8)) + deficit * scale * x,
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_normalized_composition_samples_the_product_gaussian_with_mcmc(experts):
    """Sampled, the normalized composition reaches its own target p_small(x)^(1-alpha) p_small(x|c)^(alpha (1-gamma))
    p_prior(x|c)^(alpha gamma) on Gaussian experts (MALA between levels), as Algorithm 1 reaches its own."""
    small, prior = experts
    gamma, alpha = 0.4, 2.0
    strength = PriorStrength(gamma, cutoff_logsnr=NO_CUTOFF)
    eps_fn = mode_fn("composed", small.eps, prior.eps, alpha=alpha, strength=strength, composition="normalized")
    energy_fn = mode_fn("composed", small.energy, prior.energy, alpha=alpha, strength=strength,
                        composition="normalized")

    def step_size(level):
        prec = sum(w * torch.linalg.inv(c) for w, _, c in target_terms(small, prior, gamma, alpha, level,
                                                                        "normalized"))
        return 0.5 / torch.linalg.eigvalsh(prec).max().item()

    corrector = LangevinCorrector(MCMCConfig("mala", steps=5), eps_fn, energy_fn, step_size_fn=step_size)
    n = 12_000
    x = sample(eps_fn, (n, D, 1, 1, 1), conds(n), sampler="ddpm", steps=100, seed=0, dtype=torch.float64,
               corrector=corrector).flatten(1)
    mean, cov = product(target_terms(small, prior, gamma, alpha, composition="normalized"))
    white = torch.linalg.inv(torch.linalg.cholesky(cov))
    assert (white @ (x.mean(0) - mean)).abs().max().item() < MEAN_TOL
    assert (white @ torch.cov(x.T) @ white.T - torch.eye(D, dtype=torch.float64)).abs().max().item() < COV_TOL


def test_prior_strength_band():
    """--min-logsnr: the prior acts only inside [min_logsnr, cutoff), and is not called outside it."""
    grid = logsnr_grid(100)
    band = PriorStrength(0.3, cutoff_logsnr=2.0, min_logsnr=-4.0)(grid)
    inside = (grid >= -4.0) & (grid < 2.0)
    assert torch.equal(band, inside.double() * 0.3) and 0 < int(inside.sum()) < 100
    with pytest.raises(ValueError, match="band is empty"):
        PriorStrength(0.3, cutoff_logsnr=2.0, min_logsnr=2.0)


def test_prior_strength_schedule():
    grid = logsnr_grid(1000)
    constant = PriorStrength(0.2)(grid)
    assert torch.equal(constant, (grid < PAPER_CUTOFF_LOGSNR).double() * 0.2)
    assert int((constant > 0).sum()) == 900
    linear = PriorStrength(0.4, decay="linear", gamma_end=0.1)(grid)
    assert linear[0].item() == pytest.approx(0.4) and linear[899].item() == pytest.approx(0.1, abs=1e-3)
    assert linear[900:].abs().max() == 0
    steps = linear[:900].diff()
    torch.testing.assert_close(steps, torch.full_like(steps, -0.3 / 900), rtol=0, atol=1e-5)  # linear over steps
    # the schedule lives in log-SNR, so it means the same on a 50-step grid
    coarse = logsnr_grid(50)
    torch.testing.assert_close(PriorStrength(0.4, decay="linear", gamma_end=0.1)(coarse)[:45], linear[::20][:45])
    for bad in (dict(decay="cosine"), dict(gamma=math.nan)):
        with pytest.raises(ValueError, match="decay|finite"):
            PriorStrength(**bad)


def test_where_active_calls_the_model_on_active_rows_only(experts):
    small, _ = experts
    counted(small)
    x = torch.randn(5, D, 1, 1, 1, dtype=torch.float64)
    logsnr = torch.tensor([-3.0, 5.0, -1.0, 6.0, 0.0], dtype=torch.float64)
    active = PriorStrength(0.3)(logsnr) != 0
    out = where_active(small.eps, x, logsnr, text_cond(5), active)
    assert small.calls[-1][0] == 3 and sorted(small.calls[-1][1]) == [-3.0, -1.0, 0.0]
    full = small.eps(x, logsnr, text_cond(5))
    assert torch.equal(out[active], full[active]) and out[~active].abs().max() == 0
    assert where_active(small.eps, x, logsnr, text_cond(5), torch.zeros(5, dtype=torch.bool)) == 0.0


def test_models_in_different_precisions_compose(native_pair, tiny_cfg_module):
    """A bfloat16 prior next to a float32 adapter: eps comes back in the sampler's dtype, close to all-float32."""
    small, prior = native_pair
    half = NativeScoreModel(SpaceTimeUNet(tiny_cfg_module).to(torch.bfloat16), autocast=torch.bfloat16)
    half.unet.load_state_dict({k: v.to(torch.bfloat16) for k, v in prior.unet.state_dict().items()})
    x, logsnr, cond = model_inputs(tiny_cfg_module, b=2)
    pair = Conds(small=cond, prior=cond)
    fn = lambda p: mode_fn("composed", small.eps, p.eps, alpha=2.0, strength=PriorStrength(0.5, NO_CUTOFF))
    full, mixed = fn(prior)(x, logsnr, pair), fn(half)(x, logsnr, pair)
    assert mixed.dtype == torch.float32
    assert (mixed - full).abs().max() < 0.05 * full.abs().max()


@pytest.mark.parametrize("mode", MODES)
def test_guided_conditions_reach_every_null_pass_of_every_mode(mode):
    """guided=("text",) keeps the edges in every unconditional pass of every mode (the default drops them), and the
    composed eps is Algorithm 1's normalized equation with that null: for eps = x + 1 [text] + 10 [edges] (small)
    and x + 100 [text] + 1000 [edges] (prior), each guided model is x + its edge term + alpha times its text term."""
    from video_adapter.maths.conditioning import Cond

    calls = []

    def expert(text_weight, edge_weight):
        def eps(x, logsnr, cond):
            calls.append(cond.has_edges.clone())
            return x + (text_weight * cond.has_text.to(x) + edge_weight * cond.has_edges.to(x)).view(-1, 1)
        return eps

    x, logsnr = torch.randn(4, 2, dtype=torch.float64), torch.full((4,), -1.0, dtype=torch.float64)
    cond = Cond.make(text=torch.zeros(4, 3, 2), edges=torch.zeros(4, 1))
    small, prior = expert(1.0, 10.0), expert(100.0, 1000.0)
    strength, alpha, gamma = PriorStrength(0.2, cutoff_logsnr=NO_CUTOFF), 3.0, 0.2
    kwargs = dict(alpha=alpha, strength=strength, mix=0.25, composition="normalized")
    out = mode_fn(mode, small, prior, guided=("text",), **kwargs)(x, logsnr, Conds(cond, cond))
    assert all(bool(c.all()) for c in calls)
    small_cfg, prior_cfg = x + 10 + alpha * 1, x + 1000 + alpha * 100
    want = {"adapter": small_cfg, "prior": prior_cfg, "cfg-mix": 0.75 * small_cfg + 0.25 * prior_cfg,
            # u + alpha ((1 - gamma) c + gamma p - u), u the null pass of the base, c its conditional, p the expert's
            "composed": x + 10 + alpha * (0.8 * 11 + gamma * 1100 - 10),
            "inverse": x + 1000 + alpha * (0.8 * 1100 + gamma * 11 - 1000)}[mode]
    torch.testing.assert_close(out, want, rtol=0, atol=1e-9)
    calls.clear()
    mode_fn(mode, small, prior, **kwargs)(x, logsnr, Conds(cond, cond))
    assert any(not bool(c.all()) for c in calls)  # by default the null pass drops the edges too
