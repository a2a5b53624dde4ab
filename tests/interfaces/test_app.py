"""`video-adapter app`: the page's sampling (prior, adapter and composed from one seed, the gamma strip) and the page
itself, driven by headless Chromium from Debian's packages: prompt, slider, Generate, three looping videos."""

import dataclasses
import os
import shutil
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from video_adapter.data.toy import make_toy_dataset
from video_adapter.data.video_io import read_image, read_video
from video_adapter.generation.generate import COMPARE_ROWS
from video_adapter.interfaces.app import AppConfig, Studio, build_page
from video_adapter.interfaces.cli import main
from video_adapter.models.checkpoint import save_model
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

from helpers import randomize

CFG = UNetConfig(frames=5, height=8, width=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                 attention_resolutions=(4,), head_dim=8, emb_dim=32, text_dim=384)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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


def test_one_press_gives_three_videos_from_one_seed_and_gamma_moves_only_the_composed(studio):
    clip = next(iter(studio.clips))
    caption, first = studio.clip_frame(clip)
    assert caption == studio.clips[clip][1]
    assert np.array_equal(read_image(first), read_video(studio.clips[clip][0])[0])  # the clip's first frame
    a, line = studio.generate(caption, first, 0.1, 3.0, "ddim", 3, 0, strip=False)
    assert sorted(a) == sorted(COMPARE_ROWS) and "seed 0" in line and "gamma 0.1" in line
    shape = read_video(a["prior"]).shape
    assert shape == (CFG.frames, CFG.height * 4, CFG.width * 4, 3)
    assert min(differ(a[m], a[n]) for m, n in (("prior", "adapter"), ("prior", "composed"),
                                                ("adapter", "composed"))) > 1
    b, _ = studio.generate(caption, first, 0.9, 3.0, "ddim", 3, 0, strip=True)
    assert differ(a["prior"], b["prior"]) == 0 and differ(a["adapter"], b["adapter"]) == 0
    assert differ(a["composed"], b["composed"]) > 1
    strip = read_video(b["strip"])
    assert strip.shape[0] == CFG.frames and strip.shape[2] > 3 * CFG.width * 4  # three panels in a row
    c, _ = studio.generate(caption, first, 0.1, 3.0, "ddim", 3, 1, strip=False)  # (the page keeps two presses' files)
    assert differ(b["prior"], c["prior"]) > 1  # another seed


@pytest.mark.parametrize("change, words", [
    ({"prompt": " "}, "write a prompt"), ({"steps": 9}, "steps must lie in [1, 8]"),
    ({"sampler": "euler"}, "unknown sampler"), ({"first": "/no/such.png"}, "does not exist")])
def test_bad_inputs_are_errors_naming_them(studio, change, words):
    args = {"prompt": "a red square", "first": None, "gamma": 0.1, "guidance": 3.0, "sampler": "ddim", "steps": 2,
            "seed": 0, "strip": False, **change}
    with pytest.raises((ValueError, OSError), match=words.replace("[", r"\[").replace("]", r"\]")):
        studio.generate(*args.values())


def test_the_app_command_checks_its_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["app", "--adapter", "a"])
    assert "--prior" in str(e.value.code)
    main(["app", "--adapter", "a", "--prior", "http://127.0.0.1:1", "--dry-run"])
    assert '"prior": "http://127.0.0.1:1"' in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------- in a browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_page(studio):
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("VIDEO_ADAPTER_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install chromium")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    port = free_port()
    app = build_page(studio).queue()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(studio.root)])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        yield page, f"http://127.0.0.1:{port}"
        browser.close()
    app.close()


def video_files(page, base: str, tmp_path: Path, tag: str, names=COMPARE_ROWS) -> dict[str, Path]:
    """Each shown video's file, fetched from the page's own URL, once it is loaded and playing in a loop."""
    out = {}
    for name in names:
        video = page.locator(f"#video-{name} video")
        video.wait_for(state="visible", timeout=120_000)
        page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0 && v.loop", arg=video.element_handle(),
                               timeout=60_000)
        src = video.get_attribute("src")
        out[name] = tmp_path / f"{tag}-{name}.mp4"
        out[name].write_bytes(httpx.get(src if src.startswith("http") else base + src, timeout=30).content)
    return out


STATUS = "#status [data-testid=markdown]"  # the status line itself, not the progress shown over it


def press_generate(page, previous: str | None) -> None:
    """Generate, and wait until the status line is a new result or error."""
    page.locator("#generate").click()
    page.wait_for_function("([sel, prev]) => { const s = document.querySelector(sel); const t = s ? s.innerText.trim()"
                           " : ''; return /^(Sampled in|Error:)/.test(t) && t !== prev }", arg=[STATUS, previous or ""],
                           timeout=180_000)


def status(page) -> str:
    return page.locator(STATUS).inner_text().strip()


@pytest.mark.slow
def test_the_page_in_headless_chromium(browser_page, studio, tmp_path):
    page, base = browser_page
    page.locator("#prompt textarea").fill("a red square moves left")
    page.locator("#sampler input").click()  # open the list, pick an entry
    page.get_by_role("option", name="ddim", exact=True).click()
    assert page.locator("#sampler input").input_value() == "ddim"
    slider = page.locator("#gamma input[type=range]")
    slider.focus()
    for _ in range(2):  # 0.1 -> 0.2 by the keyboard, as a user moves a slider
        slider.press("ArrowRight")
    assert page.locator("#gamma input[type=number]").input_value() == "0.2"
    press_generate(page, None)
    first_status = status(page)
    assert first_status.startswith("Sampled in") and "gamma 0.2" in first_status and "ddim" in first_status
    a = video_files(page, base, tmp_path, "a")
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    artifacts = REPO / "outputs" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, artifacts / "app.png")  # kept after the run, for a person (or CI) to look at
    assert min(differ(a[m], a[n]) for m, n in (("prior", "adapter"), ("prior", "composed"),
                                                ("adapter", "composed"))) > 1

    slider.focus()
    for _ in range(12):  # 0.2 -> 0.8
        slider.press("ArrowRight")
    press_generate(page, first_status)
    assert "gamma 0.8" in status(page) and "ddim 3 steps" in status(page)
    b = video_files(page, base, tmp_path, "b")
    assert differ(a["prior"], b["prior"]) == 0 and differ(a["adapter"], b["adapter"]) == 0
    assert differ(a["composed"], b["composed"]) > 1

    page.locator("#prompt textarea").fill("")  # an error is shown on the page, and the page keeps working
    press_generate(page, status(page))
    assert status(page).startswith("Error:") and "write a prompt" in status(page)
    page.locator("#prompt textarea").fill("a red square moves left")
    page.locator("#strip input[type=checkbox]").check()
    press_generate(page, status(page))
    assert status(page).startswith("Sampled in")
    strip = video_files(page, base, tmp_path, "c", names=("strip",))["strip"]
    assert read_video(strip).shape[2] > 3 * CFG.width * 4
