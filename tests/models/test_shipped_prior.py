"""The prior we ship in git (checkpoints/prior): its files, its config, and that it loads, denoises and samples on CPU.

Forwards of the 37M-parameter prior at 16x24x40 cost about a second each on one core, so each test runs only a few.
"""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from video_adapter.interfaces.cli import main
from video_adapter.maths.conditioning import sobel_x
from video_adapter.maths.schedule import diffuse
from video_adapter.models.checkpoint import (
    INDEX_NAME,
    SHIP_SHARD_BYTES,
    load_model,
    load_tensors,
    read_config,
    verify_model_dir,
)
from video_adapter.models.score_model import load_score_model
from video_adapter.models.unet import PRESETS, UNetConfig, build_unet, count_parameters

pytestmark = pytest.mark.slow  # the shipped 36.7M prior

PRIOR = Path(__file__).resolve().parents[2] / "checkpoints" / "prior"


@pytest.fixture(scope="module")
def score():
    return load_score_model(PRIOR)


# ----------------------------------------------------------------------------------------------------- the files


def test_files_fit_in_git_and_agree_with_the_index():
    index = json.loads((PRIOR / INDEX_NAME).read_text())
    weights = sorted(p.name for p in PRIOR.glob("*.safetensors"))
    assert len(weights) >= 2 and "model.safetensors" not in weights  # sharded: no single file beside the index
    assert set(index["weight_map"].values()) == set(weights)  # every file named exists, every file present is named
    for path in PRIOR.rglob("*"):
        if path.is_file():
            assert path.stat().st_size <= 16 * 2**20, path
    state = load_tensors(PRIOR)
    assert state.keys() == index["weight_map"].keys()
    floating = [v.dtype for v in state.values() if v.is_floating_point()]
    assert floating and set(floating) == {torch.bfloat16}
    assert read_config(PRIOR)["dtype_name"] == "bfloat16"


def test_verify_model_dir_accepts_it():
    assert SHIP_SHARD_BYTES == 16 * 2**20
    model, config = verify_model_dir(PRIOR, max_file_bytes=SHIP_SHARD_BYTES)
    assert config == read_config(PRIOR) and count_parameters(model) > 0


def test_config_is_the_prior_preset_and_sizes_match_the_paper(score):
    config = read_config(PRIOR)
    assert UNetConfig.from_dict(config["unet"]) == PRESETS["prior"]
    # field by field, nothing extra; fields added since it shipped (ADDED_*_FIELDS) load at their recorded value
    from video_adapter.models.unet import ADDED_MEANING_FIELDS, ADDED_SHAPE_FIELDS

    recorded = {**ADDED_SHAPE_FIELDS, **ADDED_MEANING_FIELDS, **config["unet"]}
    assert recorded == json.loads(json.dumps(PRESETS["prior"].to_dict()))
    model, loaded_config = load_model(PRIOR)
    assert loaded_config == config and model.cfg == PRESETS["prior"]
    params = count_parameters(model)
    assert 30e6 < params < 80e6
    assert params == count_parameters(build_unet(PRESETS["prior"], "meta")) == score.spec.parameters
    # Paper Table 1 (Bridge): Small (S) is 1.25% and Small (L) 2.5% of the 5.6B prior.
    small_s = count_parameters(build_unet(PRESETS["small-s"], "meta")) / params
    small_l = count_parameters(build_unet(PRESETS["small-l"], "meta")) / params
    assert 0.01 <= small_s < small_l <= 0.025
    assert small_s == pytest.approx(0.0125, abs=0.001) and small_l == pytest.approx(0.025, abs=0.001)


def test_score_model_takes_text_first_frame_and_edges(score):
    assert score.spec.conditions == ("text", "first_frame", "edges")
    assert score.spec.shape == (3, 16, 24, 40) and score.spec.prediction == "v"
    assert score.spec.text_encoder == read_config(PRIOR)["text_encoder"] == "minilm?max_length=32"
    assert score.dtype == torch.float32 and score.autocast is None  # bf16 on disk, float32 on CPU


# ------------------------------------------------------------------------------------------------------- denoising

COMBINATIONS = {  # which conditions are present
    "none": (),
    "text": ("text",),
    "text+first_frame": ("text", "first_frame"),
    "text+edges": ("text", "edges"),
    "text+first_frame+edges": ("text", "first_frame", "edges"),
    "first_frame": ("first_frame",),
}


def test_every_condition_combination_denoises_and_matters(score):
    """eps of a noised clip of the training distribution (a held-out seed), batch 1, at two noise levels."""
    from video_adapter.data.datagen import generator
    from video_adapter.data.video_io import from_uint8
    from video_adapter.models.text import load_text_encoder

    clip = generator("broad-procedural").clip(7, 12345, (24, 40), 16)
    x0 = from_uint8(clip.video)[None]
    text = load_text_encoder(score.spec.text_encoder).encode([clip.caption])
    full = text.to_cond(first_frame=x0[:, :, 0], edges=sobel_x(x0))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    for logsnr in (torch.tensor([-3.0]), torch.tensor([3.0])):
        x_t = diffuse(x0, noise, logsnr)
        # the better of two trivial predictions: eps = 0, or eps = x_t / sigma (i.e. x0 = 0)
        trivial = min(noise.square().mean(), (logsnr.exp() * x0.square().mean())).item()
        eps, mse = {}, {}
        for name, present in COMBINATIONS.items():
            cond = full.with_flags(**{c: c in present for c in ("text", "first_frame", "edges")})
            eps[name] = score(x_t, logsnr, cond)
            assert eps[name].shape == x0.shape and eps[name].isfinite().all(), (name, logsnr)
            mse[name] = (eps[name] - noise).square().mean().item()
            assert mse[name] < 0.5 * trivial, (name, logsnr, mse[name], trivial)  # a trained denoiser
        for a, b in itertools.combinations(COMBINATIONS, 2):  # each condition changes the prediction
            rms = (eps[a] - eps[b]).square().mean().sqrt().item()
            assert rms > 2e-3, (a, b, logsnr, rms)
        if logsnr > 0:  # little noise left: the edges nearly give the video away
            assert mse["text+edges"] < 0.5 * mse["text"], mse


# ---------------------------------------------------------------------------------------------------------- the CLI


def test_sample_and_info_through_the_cli(tmp_path, capsys, score):
    out = tmp_path / "x.gif"
    main(["sample", "--prior", str(PRIOR), "--mode", "prior", "--prompt", "a red ball rolls across the table",
          "--steps", "3", "--sampler", "ddim", "--out", str(out)])
    assert capsys.readouterr().out.strip().endswith(f"wrote {out}")
    with Image.open(out) as im:
        assert im.n_frames == 16
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
    assert frames[0].shape[0] > 24 * 4 and frames[0].shape[1] >= 40 * 4  # upscaled 4x, with a caption strip
    assert np.stack(frames).std() > 1  # not a blank image

    main(["info", str(PRIOR)])
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == score.spec.parameters and info["parameters_human"] == "36.66M"
    assert info["step"] == read_config(PRIOR)["step"] and info["text_encoder"] == "minilm?max_length=32"


def test_model_card_matches_the_weights():
    """The card names the shipped version's parameter count and links figures that exist; a replaced checkpoint
    whose card was not updated fails here."""
    card = (PRIOR / "README.md").read_text()
    model, config = load_model(PRIOR)
    assert f"{count_parameters(model) / 1e6:.2f}M" in card
    assert f"| {config['step']:,} |" in card  # the last run's row: its step count is the checkpoint's
    for figure in ("loss.png", "samples.gif"):
        assert f"({figure})" in card and (PRIOR / figure).stat().st_size > 10_000
    logs = sorted(p.name for p in (PRIOR / "train_logs").glob("loss_run*.csv"))
    assert logs and all(f"| {name.removeprefix('loss_run').removesuffix('.csv')} |" in card for name in logs)
