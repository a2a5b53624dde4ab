"""`video-adapter diagnose` on tiny models: its figures equal a direct computation through the sampling path."""

import json
import math
from dataclasses import replace

import pytest
import torch

from video_adapter.data.toy import make_toy_dataset
from video_adapter.evaluation.diagnose import DiagnoseConfig, composed_name, run_diagnose
from video_adapter.generation.loading import load_models
from video_adapter.generation.routing import model_conds, route_conditions
from video_adapter.interfaces.cli import main
from video_adapter.maths.composition import Conds, PriorStrength, mode_fn
from video_adapter.maths.schedule import diffuse, x0_from_eps
from video_adapter.models.checkpoint import save_model
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

from helpers import randomize

pytestmark = pytest.mark.slow  # every test here shares one whole diagnosis

SHAPE = dict(frames=4, height=8, width=16)
NET = dict(**SHAPE, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,), head_dim=8, emb_dim=32,
           first_frame_cond=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("diagnose")
    make_toy_dataset(root / "domain" / "test", num=5, frames=4, size=(8, 16), seed=0, progress=False)
    torch.manual_seed(0)
    prior = save_model(root / "prior", randomize(SpaceTimeUNet(UNetConfig(base_channels=16, **NET)), scale=0.1),
                       "minilm")
    small = save_model(root / "small", randomize(SpaceTimeUNet(UNetConfig(base_channels=8, **NET)), seed=1,
                                                 scale=0.1), "minilm")
    cfg = DiagnoseConfig(adapter=str(small), prior=str(prior), data=str(root / "domain"), num=5, batch_size=2,
                         logsnrs=(-4.0, 0.0, 3.0), guidance=(1.0, 3.0), gammas=(0.1, 0.5), device="cpu",
                         out=str(root / "out"))
    return cfg, run_diagnose(cfg)


def direct(cfg):
    """Per level: (eps, x, logsnr, conds, models) exactly as the diagnosis draws them."""
    cpu = (torch.device("cpu"), torch.float32)
    models = load_models({"small": cfg.adapter, "prior": cfg.prior}, {"small": cpu, "prior": cpu})
    from video_adapter.data.dataset import VideoFolderDataset

    data = VideoFolderDataset(f"{cfg.data}/test", frames=4, size=(8, 16), random_crop=False)
    video = torch.stack([data[i]["video"] for i in range(cfg.num)])
    pixels = {"first_frame": video[:, :, 0]}
    conds = model_conds(models, data.captions[:cfg.num], pixels,
                        route_conditions(models, {"text", "first_frame"}, False), torch.device("cpu"))
    for j, level in enumerate(cfg.logsnrs):
        eps = torch.randn(video.shape, generator=torch.Generator().manual_seed(cfg.seed * 1000 + j))
        logsnr = torch.full((len(video),), level, dtype=torch.float64)
        yield j, eps, diffuse(video, eps, logsnr.float()), logsnr, conds, models, video


def mse(a, b) -> float:
    return (a.double() - b.double()).square().mean().item()


def test_every_figure_equals_the_sampling_paths_eps(setup):
    cfg, results = setup
    for j, eps, x, logsnr, conds, models, video in direct(cfg):
        small, prior = models["small"], models["prior"]
        assert results["methods"]["adapter"]["eps"][j] == pytest.approx(mse(small(x, logsnr, conds.small), eps),
                                                                         rel=1e-5)
        assert results["methods"]["prior"]["eps"][j] == pytest.approx(mse(prior(x, logsnr, conds.prior), eps),
                                                                       rel=1e-5)
        for composition in ("paper", "normalized"):
            for space in ("eps", "x0"):
                fn = mode_fn("composed", small.eps, prior.eps, alpha=3.0, composition=composition, compose_in=space,
                             strength=PriorStrength(0.5, cutoff_logsnr=math.inf))
                got = fn(x, logsnr, Conds(conds.small, conds.prior))
                name = composed_name(composition, space, 3.0, 0.5)
                assert results["methods"][name]["eps"][j] == pytest.approx(mse(got, eps), rel=1e-4)
                x0 = x0_from_eps(x, got, logsnr.float())
                assert results["methods"][name]["x0 raw"][j] == pytest.approx(mse(x0, video), rel=1e-4)
                assert results["methods"][name]["x0 clip"][j] == pytest.approx(mse(x0.clamp(-1, 1), video), rel=1e-4)
        mix = mode_fn("cfg-mix", small.eps, prior.eps, alpha=3.0, mix=0.5)(x, logsnr, Conds(conds.small, conds.prior))
        assert results["methods"][composed_name("cfg-mix", "eps", 3.0, 0.5)]["eps"][j] == \
            pytest.approx(mse(mix, eps), rel=1e-4)


def test_best_gamma_is_the_minimiser_of_the_composed_error(setup):
    """gamma* from the closed form beats every gamma of a fine grid, and its reported MSE is the composed MSE there."""
    cfg, results = setup
    for j, eps, x, logsnr, conds, models, video in direct(cfg):
        for composition in ("paper", "normalized", "cfg-mix"):
            best = results["best_gamma"][f"{composition} a3"]
            mode = "cfg-mix" if composition == "cfg-mix" else "composed"
            error = lambda g: mse(mode_fn(mode, models["small"].eps, models["prior"].eps, alpha=3.0,
                                          composition=composition if mode == "composed" else "paper", mix=g,
                                          strength=PriorStrength(g, cutoff_logsnr=math.inf))(
                x, logsnr, Conds(conds.small, conds.prior)), eps)
            gamma = best["gamma"][j]
            assert best["eps_mse_at_gamma"][j] == pytest.approx(error(gamma), rel=1e-4)
            assert best["eps_mse_at_0"][j] == pytest.approx(error(0.0), rel=1e-4)
            assert all(error(gamma) <= error(g) * (1 + 1e-6) for g in (gamma - 0.05, gamma + 0.05, 0.0, 1.0))


def test_figures_do_not_depend_on_the_batch_size_and_the_cli_writes_them(setup, tmp_path):
    cfg, results = setup
    main(["diagnose", "--adapter", cfg.adapter, "--prior", cfg.prior, "--data", cfg.data, "--num", "5",
          "--batch-size", "5", "--logsnrs", "-4", "0", "3", "--guidance", "1", "3", "--gammas", "0.1", "0.5",
          "--device", "cpu", "--out", str(tmp_path)])
    again = json.loads((tmp_path / "diagnose.json").read_text())
    for name, row in results["methods"].items():
        assert again["methods"][name]["eps"] == pytest.approx(row["eps"], rel=1e-5)
    assert (tmp_path / "diagnose.png").stat().st_size > 0
    assert "gamma*" in (tmp_path / "diagnose.md").read_text()


@pytest.mark.parametrize("bad, match", [(dict(data=""), "--data"), (dict(compositions=("sum",)), "compositions"),
                                        (dict(condition="depth"), "condition")])
def test_bad_settings_are_named(setup, bad, match):
    cfg, _ = setup
    with pytest.raises(ValueError, match=match):
        run_diagnose(replace(cfg, **bad))
