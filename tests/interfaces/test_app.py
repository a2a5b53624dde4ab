"""`video-adapter app`: the page's sampling (prior, adapter and composed from one seed, the gamma strip) and the page
itself, driven by headless Chromium from Debian's packages: prompt, slider, Generate, three looping videos."""

import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from video_adapter.data.toy import make_toy_dataset
from video_adapter.data.video_io import read_image, read_video
from video_adapter.generation.generate import COMPARE_ROWS
from video_adapter.interfaces.app import AppConfig, Studio
from video_adapter.interfaces.cli import main
from video_adapter.models.checkpoint import save_model
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

from helpers import load_script, randomize

CFG = UNetConfig(frames=5, height=8, width=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                 attention_resolutions=(4,), head_dim=8, emb_dim=32, text_dim=384)
REPO = Path(__file__).resolve().parents[2]
# CI sets this, so a machine without the browser fails there instead of skipping (.ci/run installs it)
REQUIRE_BROWSER = os.environ.get("VIDEO_ADAPTER_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    prior = save_model(root / "prior", randomize(SpaceTimeUNet(CFG), seed=1, scale=0.1), "minilm")
    adapter = save_model(root / "adapter", randomize(SpaceTimeUNet(CFG), seed=0, scale=0.1), "minilm")
    make_toy_dataset(root / "data" / "test", num=3, frames=CFG.frames, size=(CFG.height, CFG.width), seed=0,
                     progress=False)
    return Studio(AppConfig(adapter=str(adapter), prior=str(prior), data=str(root / "data"), steps=3, max_steps=8,
                            gammas=(0.0, 0.5, 1.0), device="cpu"))


def frames(path) -> np.ndarray:
    return read_video(path).astype(np.float64)


def differ(a, b) -> float:
    return float(np.abs(frames(a) - frames(b)).mean())


def test_one_press_gives_four_videos_from_one_seed_and_each_weight_moves_only_its_composition(studio):
    clip = next(iter(studio.clips))
    caption, first = studio.clip_frame(clip)
    assert caption == studio.clips[clip][1]
    assert np.array_equal(read_image(first), read_video(studio.clips[clip][0])[0])  # the clip's first frame
    a, line = studio.generate(caption, first, 0.1, 3.0, "ddim", 3, 0, strip=False)
    assert sorted(a) == sorted(COMPARE_ROWS) and "seed 0" in line and "gamma 0.1" in line
    assert "w 0.2 from log-SNR -2" in line  # the recipe's defaults
    shape = read_video(a["prior"]).shape
    assert shape == (CFG.frames, CFG.height * 4, CFG.width * 4, 3)
    assert min(differ(a[m], a[n]) for m, n in itertools.combinations(COMPARE_ROWS, 2)) > 1
    b, _ = studio.generate(caption, first, 0.9, 3.0, "ddim", 3, 0, strip=True)
    assert all(differ(a[m], b[m]) == 0 for m in ("prior", "adapter", "cfg-mix"))
    assert differ(a["composed"], b["composed"]) > 1
    strip = read_video(b["strip"])
    assert strip.shape[0] == CFG.frames and strip.shape[2] > 3 * CFG.width * 4  # three panels in a row
    c, _ = studio.generate(caption, first, 0.1, 3.0, "ddim", 3, 1, strip=False)  # (the page keeps two presses' files)
    assert differ(b["prior"], c["prior"]) > 1  # another seed
    d, line = studio.generate(caption, first, 0.1, 3.0, "ddim", 3, 1, strip=False, mix=0.7)
    assert "w 0.7" in line and all(differ(c[m], d[m]) == 0 for m in ("prior", "adapter", "composed"))
    assert differ(c["cfg-mix"], d["cfg-mix"]) > 1  # the recipe's weight moves its video alone


def test_with_a_cascade_the_page_shows_its_videos_upscaled(studio, tmp_path, monkeypatch):
    """--cascade: the prior, the adapter and the composed samples are the cascade's output of the base-size samples
    (one batch, the prompt their text, the press's seed); gamma still moves only the composed, and the strip is
    upscaled too."""
    from dataclasses import replace

    import torch

    import video_adapter.interfaces.app as app
    from video_adapter.generation.cascade import upscale
    from video_adapter.generation.generate import generate
    from video_adapter.generation.routing import model_conds, route_conditions
    from video_adapter.interfaces.sample import pixel_conditions

    sr = replace(CFG, height=16, width=16, attention_resolutions=(), first_frame_cond=False, lowres_factor=2,
                 lowres_aug=0.5)
    stage = str(save_model(tmp_path / "sr", randomize(SpaceTimeUNet(sr), seed=2, scale=0.1), "minilm"))
    big = Studio(replace(studio.cfg, cascade=(stage,), cascade_aug_level=0.1, cascade_start=0.6, upscale=1))
    caption, first = studio.clip_frame(next(iter(studio.clips)))
    written, write_mp4 = {}, app.write_mp4  # what the page encodes (its mp4s are yuv420p: not the pixels exactly)
    monkeypatch.setattr(app, "write_mp4", lambda path, frames, **kw: (written.__setitem__(Path(path).stem, frames),
                                                                      write_mp4(path, frames, **kw))[1])
    a, line = big.generate(caption, first, 0.5, 3.0, "ddim", 3, 0, strip=True)
    assert "upscaled to 16x16 by 1 SR stage(s)" in line
    assert read_video(a["prior"]).shape == (CFG.frames, 16, 16, 3)
    # exactly the cascade's output of the base samples the page made
    settings = big.settings(0.5, 3.0, "ddim", 3, 0)
    pixels = pixel_conditions(big.spec, first, "")
    conds = model_conds(big.models, [caption], pixels, route_conditions(big.models, {"text", *pixels}, False),
                        big.device)
    base = generate(big.models, conds, COMPARE_ROWS, settings, big.device).videos
    assert settings.guidance == 3.0  # the page's; the stages sample with their own (1 by default)
    want = upscale(big.stages, torch.cat([base[m] for m in COMPARE_ROWS]), [caption] * len(COMPARE_ROWS),
                   replace(settings, guidance=1.0), big.device, aug_level=0.1, start=0.6)[-1]  # --cascade-start too
    for m, video in zip(COMPARE_ROWS, want):
        assert torch.equal(written[m], video), m
    strip = read_video(a["strip"])
    assert strip.shape[0] == CFG.frames and strip.shape[2] > 3 * 16  # three upscaled panels in a row
    composed = written["composed"]
    b, _ = big.generate(caption, first, 0.9, 3.0, "ddim", 3, 0, strip=False)
    assert differ(a["prior"], b["prior"]) == 0 and differ(a["adapter"], b["adapter"]) == 0
    assert (written["composed"] - composed).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="up to 0.5"):
        Studio(replace(studio.cfg, cascade=(stage,), cascade_aug_level=0.8))


@pytest.mark.parametrize("change, words", [
    ({"prompt": " "}, "write a prompt"), ({"steps": 9}, "steps must lie in [1, 8]"),
    ({"sampler": "euler"}, "unknown sampler"), ({"first": "/no/such.png"}, "does not exist"),
    ({"mix": 1.5}, "--mix in [0, 1]")])
def test_bad_inputs_are_errors_naming_them(studio, change, words):
    args = {"prompt": "a red square", "first": None, "gamma": 0.1, "guidance": 3.0, "sampler": "ddim", "steps": 2,
            "seed": 0, "strip": False, "mix": 0.2, **change}
    with pytest.raises((ValueError, OSError), match=words.replace("[", r"\[").replace("]", r"\]")):
        studio.generate(*args.values())


def test_the_app_command_checks_its_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["app", "--adapter", "a"])
    assert "--prior" in str(e.value.code)
    main(["app", "--adapter", "a", "--prior", "http://127.0.0.1:1", "--dry-run"])
    assert '"prior": "http://127.0.0.1:1"' in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------- in a browser


DRIVER = load_script("app_screenshot")  # the page driver, shared with the README's screenshot
CHROMIUM = DRIVER.chromium()


@pytest.fixture(scope="module")
def browser_page(studio):
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("VIDEO_ADAPTER_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install chromium")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); .ci/run installs it")
    with DRIVER.served_page(studio, CHROMIUM) as opened:
        yield opened


@pytest.mark.slow
def test_the_page_in_headless_chromium(browser_page, studio, tmp_path):
    page, base = browser_page
    page.locator("#prompt textarea").fill("a red square moves left")
    DRIVER.pick(page, "sampler", "ddim")
    assert DRIVER.move_slider(page, "gamma", 2) == "0.2"  # 0.1 -> 0.2 by the keyboard, as a user moves it
    first = DRIVER.press_generate(page, None)
    assert first.startswith("Sampled in") and "ddim 3 steps" in first and "gamma 0.2" in first
    a = DRIVER.shown_videos(page, base, tmp_path, "a", COMPARE_ROWS)
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    artifacts = REPO / "outputs" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, artifacts / "app.png")  # kept after the run, for a person (or CI) to look at
    assert min(differ(a[m], a[n]) for m, n in itertools.combinations(COMPARE_ROWS, 2)) > 1

    assert DRIVER.move_slider(page, "gamma", 12) == "0.8"
    second = DRIVER.press_generate(page, first)
    assert "gamma 0.8" in second and "ddim 3 steps" in second
    b = DRIVER.shown_videos(page, base, tmp_path, "b", COMPARE_ROWS)
    assert all(differ(a[m], b[m]) == 0 for m in ("prior", "adapter", "cfg-mix"))  # the same seed
    assert differ(a["composed"], b["composed"]) > 1
    assert DRIVER.move_slider(page, "mix", 4) == "0.4"  # the recipe's weight moves its video alone
    third = DRIVER.press_generate(page, second)
    assert "w 0.4 from log-SNR -2" in third
    c = DRIVER.shown_videos(page, base, tmp_path, "c2", COMPARE_ROWS)
    assert all(differ(b[m], c[m]) == 0 for m in ("prior", "adapter", "composed"))
    assert differ(b["cfg-mix"], c["cfg-mix"]) > 1

    page.locator("#prompt textarea").fill("")  # an error is shown on the page, and the page keeps working
    error = DRIVER.press_generate(page, third)
    assert error.startswith("Error:") and "write a prompt" in error
    DRIVER.pick(page, "clip", next(iter(studio.clips)))  # a test clip: its caption and first frame
    page.wait_for_function("() => document.querySelector('#prompt textarea').value !== ''")
    assert page.locator("#prompt textarea").input_value() == next(iter(studio.clips.values()))[1]
    page.locator("#strip input[type=checkbox]").check()
    assert DRIVER.press_generate(page, error).startswith("Sampled in")
    strip = DRIVER.shown_videos(page, base, tmp_path, "c", ("strip",))["strip"]
    assert read_video(strip).shape[2] > 3 * CFG.width * 4
