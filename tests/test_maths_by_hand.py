"""The maths of training, sampling, MCMC, the U-Net's output and composition, each checked against a formula written
out here rather than one produced by the code under test (project issue 25, item 8).

Every test catches a bug that planted on its own passed the rest of the suite: scripts/mutation_check.py plants
each one in a copy of the package and checks that these tests fail on it.
"""

import math

import pytest
import torch

from video_adapter.evaluation.heldout import heldout_loss
from video_adapter.maths.composition import Conds, PriorStrength, mode_fn
from video_adapter.maths.conditioning import Cond
from video_adapter.maths.mcmc import LangevinCorrector, MCMCConfig
from video_adapter.maths.sampling import SAMPLERS, logsnr_grid, sample_heun
from video_adapter.models.unet import SpaceTimeUNet
from video_adapter.training.steps import denoising_loss

from helpers import model_inputs, randomize


def alpha_sigma(logsnr: float) -> tuple[float, float]:
    """VP convention by hand: alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr)."""
    return math.sqrt(1 / (1 + math.exp(-logsnr))), math.sqrt(1 / (1 + math.exp(logsnr)))


def cosine_logsnr(t: float, lo: float = -20.0, hi: float = 20.0) -> float:
    """The cosine schedule with its ends on [lo, hi]: logsnr = -2 log tan(a t + b)."""
    b = math.atan(math.exp(-hi / 2))
    a = math.atan(math.exp(-lo / 2)) - b
    return -2 * math.log(math.tan(a * t + b))


class FixedNative(torch.nn.Module):
    """A model whose native prediction is `out` whatever it is given; records each call's x_t and logsnr."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out, self.calls = out, []

    def forward(self, x, logsnr, cond, output="eps"):
        assert output == "native"  # losses regress the native prediction
        self.calls.append((x.detach().clone(), logsnr.detach().clone()))
        return self.out


def v_mse(out: torch.Tensor, video: torch.Tensor, eps: torch.Tensor, logsnrs: list[float]) -> float:
    """mean (out - v)^2 with v = alpha eps - sigma x0 per sample (Salimans & Ho 2022), in float64."""
    a = torch.tensor([alpha_sigma(level)[0] for level in logsnrs], dtype=torch.float64).view(-1, 1, 1, 1, 1)
    s = torch.tensor([alpha_sigma(level)[1] for level in logsnrs], dtype=torch.float64).view(-1, 1, 1, 1, 1)
    v = a * eps.double() - s * video.double()
    return ((out.double() - v) ** 2).mean().item()


# -- 1. the v target of training and of the held-out loss

def test_denoising_loss_regresses_v_by_hand():
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 3, 2, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(video.shape, generator=g)
    out = torch.randn(video.shape, generator=g)
    t = torch.tensor([0.3, 0.7])
    model = FixedNative(out)
    loss = denoising_loss(model, video, Cond(), t, eps, prediction="v").item()
    levels = [cosine_logsnr(v) for v in t.tolist()]
    x_t, logsnr = model.calls[0]
    assert logsnr.tolist() == pytest.approx(levels, rel=1e-5)
    a = torch.tensor([alpha_sigma(level)[0] for level in levels]).view(-1, 1, 1, 1, 1)
    s = torch.tensor([alpha_sigma(level)[1] for level in levels]).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(x_t, a * video + s * eps)
    assert loss == pytest.approx(v_mse(out, video, eps, levels), rel=1e-5)
    # an eps model regresses eps itself
    assert denoising_loss(model, video, Cond(), t, eps, "eps").item() == pytest.approx(
        ((out.double() - eps.double()) ** 2).mean().item(), rel=1e-5)


def test_heldout_loss_regresses_v_by_hand():
    g = torch.Generator().manual_seed(1)
    video = torch.rand(2, 3, 2, 4, 4, generator=g) * 2 - 1
    out = torch.randn(video.shape, generator=g)
    levels = [-2.0, 0.5, 3.0]
    model = FixedNative(out)
    losses = heldout_loss(model, video, Cond(), torch.tensor(levels, dtype=torch.float64), seed=3, prediction="v")
    assert len(model.calls) == len(levels)
    for loss, level, (x_t, logsnr) in zip(losses.tolist(), levels, model.calls):
        assert logsnr.tolist() == pytest.approx([level] * 2)
        a, s = alpha_sigma(level)
        eps = (x_t.double() - a * video.double()) / s  # the noise the model was shown
        assert loss == pytest.approx(v_mse(out, video, eps, [level] * 2), rel=1e-4)


# -- 2. the MCMC step size

def test_default_langevin_step_is_step_size_times_sigma_squared():
    """README: delta = --mcmc-step-size x sigma^2. ULA moves x by delta score + sqrt(2 delta) xi with score = -eps /
    sigma, so two runs with one seed and eps 0 and 1 differ by delta / sigma exactly, whatever the noise."""
    level, step_size = 1.5, 0.1
    sigma = alpha_sigma(level)[1]
    delta = step_size * sigma**2
    x = torch.zeros(4000, 5, 1, 1, 1, dtype=torch.float64)

    def run(eps_value):
        corrector = LangevinCorrector(MCMCConfig("ula", steps=1, step_size=step_size),
                                      lambda z, logsnr, cond: torch.full_like(z, eps_value))
        return corrector(x, level, Cond(), torch.Generator().manual_seed(0))

    still, pushed = run(0.0), run(1.0)
    torch.testing.assert_close(still - pushed, torch.full_like(x, delta / sigma))
    # and the noise has variance 2 delta (standard error of the std at 20000 draws: 0.5%)
    assert still.std().item() == pytest.approx(math.sqrt(2 * delta), rel=0.03)


# -- 3, 4. what the samplers hand the corrector

class Recorder:
    """A corrector that records (x, logsnr) and adds `shift` to x."""

    def __init__(self, shift: float = 0.0):
        self.shift, self.calls = shift, []

    def __call__(self, x, logsnr, cond, generator):
        self.calls.append((x.clone(), logsnr))
        return x + self.shift


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_corrector_runs_at_each_level_reached(name):
    """After the step from logsnrs[i] to logsnrs[i + 1]: so logsnrs[1:-1] in order, never the start or clean end."""
    grid = logsnr_grid(6, logsnr_min=-2 * math.log(80.0))
    corrector = Recorder()
    x = torch.randn(2, 3, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    SAMPLERS[name](lambda z, logsnr, cond: 0.3 * z, x, grid, Cond(), generator=torch.Generator().manual_seed(1),
                   corrector=corrector)
    assert [level for _, level in corrector.calls] == grid[1:-1].tolist()


def test_heun_corrects_vp_x():
    """eps = 0 keeps EDM's x / alpha fixed, so the corrector must see VP x = alpha_k (x_T / alpha_0 + the shifts it
    made so far, each divided by the alpha it was made at); the sample is that sum at alpha = 1."""
    grid = logsnr_grid(5, logsnr_min=-2 * math.log(80.0))
    x_T = torch.randn(2, 3, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    corrector = Recorder(shift=0.1)
    out = sample_heun(lambda z, logsnr, cond: torch.zeros_like(z), x_T, grid, Cond(), corrector=corrector)
    edm = x_T / alpha_sigma(grid[0].item())[0]
    for (seen, level), expected_level in zip(corrector.calls, grid[1:-1].tolist()):
        assert level == expected_level
        alpha = alpha_sigma(level)[0]
        torch.testing.assert_close(seen, alpha * edm)
        edm = edm + 0.1 / alpha
    assert len(corrector.calls) == len(grid) - 2
    torch.testing.assert_close(out, edm)


# -- 5. the U-Net's eps from its native v

def test_unet_eps_is_sigma_x_plus_alpha_v(tiny_cfg):
    assert tiny_cfg.prediction == "v"
    model = randomize(SpaceTimeUNet(tiny_cfg)).eval()
    x, logsnr, cond = model_inputs(tiny_cfg)
    with torch.no_grad():
        eps, v = model(x, logsnr, cond), model(x, logsnr, cond, output="native")
    assert v.abs().mean() > 0.1  # a zero v would hide the conversion
    a = torch.tensor([alpha_sigma(level)[0] for level in logsnr.tolist()]).view(-1, 1, 1, 1, 1)
    s = torch.tensor([alpha_sigma(level)[1] for level in logsnr.tolist()]).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(eps, s * x + a * v, rtol=1e-5, atol=1e-5)


# -- 6. each model of a composition gets its own cond

# mode -> the models it calls; composing at logsnr 0, inside the paper's cutoff, so the prior strength is nonzero
MODE_CALLS = {"composed": {"small", "prior"}, "inverse": {"small", "prior"}, "cfg-mix": {"small", "prior"},
              "adapter": {"small"}, "prior": {"prior"}}


@pytest.mark.parametrize("alpha", [1.0, 3.0])
@pytest.mark.parametrize("mode", list(MODE_CALLS))
def test_each_model_gets_its_own_cond(mode, alpha):
    """The small model's text is all 1s, the prior's all 2s: every call, conditional and unconditional, must carry
    the calling model's own text."""
    batch = 3
    conds = Conds(small=Cond.make(text=torch.full((batch, 2, 4), 1.0)),
                  prior=Cond.make(text=torch.full((batch, 2, 4), 2.0)))
    seen = []

    def model(name):
        def eps_fn(x, logsnr, cond):
            seen.append((name, set(cond.text.unique().tolist()), bool(cond.has_text.any())))
            return 0.5 * x
        return eps_fn

    fn = mode_fn(mode, model("small"), model("prior"), alpha=alpha, strength=PriorStrength(gamma=0.3))
    fn(torch.randn(batch, 4, 1, 1, 1), torch.zeros(batch, dtype=torch.float64), conds)
    assert {name for name, _, _ in seen} == MODE_CALLS[mode]
    for name, text, conditional in seen:
        assert text == {1.0 if name == "small" else 2.0}, f"{name} got the other model's cond"
        assert conditional  # every model is called with its text present (the unconditional half rides along)
