"""Noise schedule and exact conversions between parameterizations (video_adapter.maths.schedule)."""

import math

import pytest
import torch

from video_adapter.maths.schedule import (
    LOGSNR_MAX,
    LOGSNR_MIN,
    alpha_sigma,
    diffuse,
    eps_from_flow_velocity,
    eps_from_v,
    eps_from_x0,
    flow_from_vp,
    flow_time_from_logsnr,
    flow_velocity_from_eps,
    logsnr_cosine,
    logsnr_from_flow_time,
    t_from_logsnr_cosine,
    v_from_eps,
    vp_from_flow,
    x0_from_eps,
    x0_from_v,
)

# Conversions divide by alpha or sigma, i.e. amplify rounding by up to 1 / min(alpha, sigma) ~ exp(|logsnr| / 2).
# float64 (eps ~ 1e-16) stays far below 1e-5 over the whole [-20, 20] (factor 2e4); float32 (eps ~ 6e-8) only where
# that factor is <= e^3 ~ 20, so float32 round trips are checked on |logsnr| <= 6 and float64 on the full range.
RANGES = {torch.float64: LOGSNR_MAX, torch.float32: 6.0}
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def batch(request):
    """x0, eps [B, C, F, H, W] and a random logsnr [B] within the well-conditioned range of the dtype."""
    dtype = request.param
    g = torch.Generator().manual_seed(0)
    bound = RANGES[dtype]
    logsnr = (torch.rand(64, generator=g, dtype=torch.float64) * 2 - 1) * bound
    logsnr = torch.cat([logsnr, torch.tensor([-bound, bound], dtype=torch.float64)]).to(dtype)
    x0 = torch.randn(len(logsnr), 3, 2, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64).to(dtype)
    return x0, eps, logsnr


def test_cosine_endpoints_are_exact_and_curve_is_monotone():
    for dtype in (torch.float32, torch.float64):
        ends = logsnr_cosine(torch.tensor([0.0, 1.0], dtype=dtype))
        assert ends.tolist() == [LOGSNR_MAX, LOGSNR_MIN]
        assert ends.dtype == dtype
    curve = logsnr_cosine(torch.linspace(0, 1, 10001, dtype=torch.float64))
    assert (curve[1:] < curve[:-1]).all()
    custom = logsnr_cosine(torch.tensor([0.0, 1.0], dtype=torch.float64), -7.0, 11.0)
    assert custom.tolist() == [11.0, -7.0]


def test_cosine_time_round_trip():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    torch.testing.assert_close(t_from_logsnr_cosine(logsnr_cosine(t)), t, rtol=0, atol=1e-10)
    logsnr = torch.linspace(LOGSNR_MIN, LOGSNR_MAX, 1001, dtype=torch.float64)
    torch.testing.assert_close(logsnr_cosine(t_from_logsnr_cosine(logsnr)), logsnr, rtol=0, atol=1e-8)


def test_alpha_sigma_is_variance_preserving():
    logsnr = torch.linspace(LOGSNR_MIN, LOGSNR_MAX, 401, dtype=torch.float64)
    alpha, sigma = alpha_sigma(logsnr)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(logsnr), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.log(alpha**2 / sigma**2), logsnr)


def test_eps_x0_v_round_trips(batch):
    x0, eps, logsnr = batch
    x = diffuse(x0, eps, logsnr)
    torch.testing.assert_close(x0_from_eps(x, eps, logsnr), x0, **TOL)
    torch.testing.assert_close(eps_from_x0(x, x0, logsnr), eps, **TOL)
    torch.testing.assert_close(eps_from_x0(x, x0_from_eps(x, eps, logsnr), logsnr), eps, **TOL)
    torch.testing.assert_close(x0_from_eps(x, eps_from_x0(x, x0, logsnr), logsnr), x0, **TOL)

    alpha, sigma = (v.reshape(-1, 1, 1, 1, 1) for v in alpha_sigma(logsnr))
    v = alpha * eps - sigma * x0  # the definition (Salimans & Ho 2022)
    torch.testing.assert_close(v_from_eps(x, eps, logsnr), v, **TOL)
    torch.testing.assert_close(eps_from_v(x, v, logsnr), eps, **TOL)
    torch.testing.assert_close(x0_from_v(x, v, logsnr), x0, **TOL)
    torch.testing.assert_close(eps_from_v(x, v_from_eps(x, eps, logsnr), logsnr), eps, **TOL)


def test_flow_time_round_trip(batch):
    _, _, logsnr = batch
    s = flow_time_from_logsnr(logsnr)
    assert ((s > 0) & (s < 1)).all()
    torch.testing.assert_close(logsnr_from_flow_time(s), logsnr, **TOL)
    alpha, sigma = alpha_sigma(logsnr.double())
    torch.testing.assert_close(s.double(), sigma / (alpha + sigma), **TOL)


def test_flow_vp_round_trips(batch):
    x0, eps, logsnr = batch
    x = diffuse(x0, eps, logsnr)
    torch.testing.assert_close(vp_from_flow(flow_from_vp(x, logsnr), logsnr), x, **TOL)
    s = flow_time_from_logsnr(logsnr)
    z = flow_from_vp(x, logsnr)
    u = flow_velocity_from_eps(z, eps, s)
    torch.testing.assert_close(eps_from_flow_velocity(z, u, s), eps, **TOL)
    torch.testing.assert_close(u, eps - x0, **TOL)


def test_flow_interpolant_matches_vp_sample(batch):
    """z = (1 - s) x0 + s eps with velocity eps - x0 is the VP sample alpha x0 + sigma eps, rescaled."""
    x0, eps, logsnr = batch
    s = flow_time_from_logsnr(logsnr).reshape(-1, 1, 1, 1, 1)
    z = (1 - s) * x0 + s * eps
    torch.testing.assert_close(eps_from_flow_velocity(z, eps - x0, s.flatten()), eps, **TOL)
    alpha, sigma = (v.reshape(-1, 1, 1, 1, 1) for v in alpha_sigma(logsnr))
    torch.testing.assert_close(vp_from_flow(z, logsnr), alpha * x0 + sigma * eps, **TOL)


def test_flow_time_is_exact_at_the_schedule_ends():
    ends = torch.tensor([LOGSNR_MIN, 0.0, LOGSNR_MAX], dtype=torch.float64)
    expected = [1 / (1 + math.exp(-10.0)), 0.5, 1 / (1 + math.exp(10.0))]
    torch.testing.assert_close(flow_time_from_logsnr(ends), torch.tensor(expected, dtype=torch.float64))
