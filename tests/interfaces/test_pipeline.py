"""`VideoAdapterPipeline`, the Python entry point: tiny checkpoints saved to disk and loaded with from_pretrained. Its
frames are what `generate` samples for the same settings and seed, bit for bit, in diffusers' layouts; prior strength
0 is the adapter alone; diffusers' `export_to_video` writes every frame; bad inputs are clear errors, named by
argument."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from video_adapter.data.video_io import read_video
from video_adapter.generation.generate import SamplingSettings, generate
from video_adapter.generation.loading import load_models
from video_adapter.generation.routing import model_conds, route_conditions
from video_adapter.interfaces.pipeline import VideoAdapterPipeline, VideoAdapterPipelineOutput
from video_adapter.interfaces.sample import (
    SampleConfig,
    load_sample_models,
    pixel_conditions,
    sample_conds,
    to_pixels,
)
from video_adapter.maths.composition import PriorStrength
from video_adapter.models.checkpoint import save_model
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

from helpers import latent_adapter, ltx_pipeline, randomize

CPU = torch.device("cpu")
PRIOR = UNetConfig(frames=5, height=8, width=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                   attention_resolutions=(4,), head_dim=8, emb_dim=16, norm_groups=4)  # text, first frame
ADAPTER = dataclasses.replace(PRIOR, emb_dim=8)
PROMPTS = ["a red square moves left", "a blue circle moves up"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (12, 10, 3), dtype=np.uint8)  # not the model's size: cropped and resized
    Image.fromarray(image).save(root / "start.png")
    return {
        "prior": save_model(root / "prior", randomize(SpaceTimeUNet(PRIOR), seed=0, scale=0.1), "minilm"),
        "adapter": save_model(root / "adapter", randomize(SpaceTimeUNet(ADAPTER), seed=1, scale=0.1), "minilm"),
        "text_only": save_model(root / "text_only", randomize(SpaceTimeUNet(dataclasses.replace(
            PRIOR, first_frame_cond=False)), seed=2, scale=0.1), "minilm"),
        "short": save_model(root / "short", SpaceTimeUNet(dataclasses.replace(ADAPTER, frames=4)), "minilm"),
        "start.png": root / "start.png", "image": image,
    }


@pytest.fixture(scope="module")
def pipe(files):
    pipe = VideoAdapterPipeline.from_pretrained(prior=files["prior"], adapter=files["adapter"], device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def by_generate(files, method, settings, prompts, first_frame: bool = True):
    """Each sample as `video-adapter sample`'s path gives it, [B, C, F, H, W] in [-1, 1]: load the checkpoints,
    route the prompts and the first frame read from its file, `generate`."""
    models = load_models({"small": str(files["adapter"]), "prior": str(files["prior"])},
                         {"small": (CPU, torch.float32), "prior": (CPU, torch.float32)})
    models = {role: m for role, m in models.items() if method != "adapter" or role == "small"}
    requested = {"text", "first_frame"} if first_frame else {"text"}
    routes = route_conditions(models, requested, partial=False)
    pixels = pixel_conditions(models["small"].spec, str(files["start.png"]) if first_frame else "", "")
    conds = model_conds(models, prompts, pixels, routes, CPU)
    return generate(models, conds, (method,), settings, CPU, progress=False).videos[method]


def diffusers_np(videos: torch.Tensor) -> np.ndarray:
    """[B, C, F, H, W] in [-1, 1] -> [B, F, H, W, C] float32 in [0, 1], as diffusers' VideoProcessor computes it."""
    return (videos * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1).float().numpy()


# ------------------------------------------------------------------------------------------- what it samples

def test_frames_are_what_generate_samples_for_the_same_settings_and_seed(pipe, files):
    out = pipe(PROMPTS, image=Image.open(files["start.png"]), mode="composed", prior_strength=0.2,
               guidance_scale=3.0, num_inference_steps=3, generator=torch.Generator().manual_seed(7),
               num_videos_per_prompt=2)
    assert isinstance(out, VideoAdapterPipelineOutput) and out.seed == 7
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=3.0, strength=PriorStrength(0.2), seed=7)
    rows = [p for p in PROMPTS for _ in range(2)]  # num_videos_per_prompt: each prompt's videos together
    expected = diffusers_np(by_generate(files, "composed", settings, rows))
    assert out.frames.dtype == np.float32 and out.frames.shape == (4, PRIOR.frames, PRIOR.height, PRIOR.width, 3)
    assert np.array_equal(out.frames, expected)
    assert not np.array_equal(out.frames[0], out.frames[1])  # two videos of one prompt: different noise
    # the same image as an array, as a tensor in [0, 1] and as its file: the same first frame, the same videos
    for image in (files["image"], torch.from_numpy(files["image"]).permute(2, 0, 1) / 255, files["start.png"]):
        again = pipe(PROMPTS, image=image, mode="composed", prior_strength=0.2, guidance_scale=3.0,
                     num_inference_steps=3, generator=torch.Generator().manual_seed(7), num_videos_per_prompt=2)
        assert np.array_equal(again.frames, expected)


def test_output_types_are_diffusers_layouts_of_one_sample(pipe):
    kwargs = dict(num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    latent = pipe(PROMPTS, output_type="latent", **kwargs).frames  # the samples as drawn
    assert latent.shape == (2, 3, PRIOR.frames, PRIOR.height, PRIOR.width) and latent.abs().max() <= 1
    frames = pipe(PROMPTS, **kwargs).frames
    assert np.array_equal(frames, diffusers_np(latent))
    pt = pipe(PROMPTS, output_type="pt", **kwargs).frames
    assert pt.shape == (2, PRIOR.frames, 3, PRIOR.height, PRIOR.width)
    assert torch.equal(pt, torch.from_numpy(frames).permute(0, 1, 4, 2, 3))
    pil = pipe(PROMPTS, output_type="pil", **kwargs).frames
    assert [len(video) for video in pil] == [PRIOR.frames] * 2 and pil[1][4].size == (PRIOR.width, PRIOR.height)
    assert np.array_equal(np.stack([np.asarray(f) for f in pil[1]]), (frames[1] * 255).round().astype(np.uint8))
    (as_tuple,) = pipe(PROMPTS, return_dict=False, **kwargs)
    assert np.array_equal(as_tuple, frames)


def test_prior_strength_zero_is_the_adapter_alone(pipe, files):
    kwargs = dict(num_inference_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(5))
    composed = pipe(PROMPTS, image=files["image"], mode="composed", prior_strength=0.0, **kwargs).frames
    assert np.array_equal(composed, pipe(PROMPTS, image=files["image"], mode="adapter", **kwargs).frames)
    alone = VideoAdapterPipeline.from_pretrained(adapter=files["adapter"], device="cpu")
    alone.set_progress_bar_config(disable=True)
    assert alone.prior is None and np.array_equal(alone(PROMPTS, image=files["image"], **kwargs).frames, composed)
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, strength=PriorStrength(0.0), seed=5)
    assert np.array_equal(composed, diffusers_np(by_generate(files, "adapter", settings, PROMPTS)))
    assert not np.array_equal(pipe(PROMPTS, image=files["image"], mode="composed", prior_strength=0.5,
                                   **kwargs).frames, composed)


def test_cfg_mix_takes_its_weight_and_band_as_the_command_does(pipe, files):
    kwargs = dict(num_inference_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(5))
    banded = pipe(PROMPTS, image=files["image"], mode="cfg-mix", mix=0.3, mix_min_logsnr=-2.0, **kwargs).frames
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, mix=0.3, mix_min_logsnr=-2.0, seed=5)
    assert np.array_equal(banded, diffusers_np(by_generate(files, "cfg-mix", settings, PROMPTS)))
    adapter = pipe(PROMPTS, image=files["image"], mode="adapter", **kwargs).frames
    assert np.array_equal(pipe(PROMPTS, image=files["image"], mode="cfg-mix", mix=0.0, **kwargs).frames, adapter)
    assert not np.array_equal(banded, adapter)
    assert not np.array_equal(banded, pipe(PROMPTS, image=files["image"], mode="cfg-mix", mix=0.3,
                                           mix_min_logsnr=-math.inf, **kwargs).frames)


def test_the_default_with_both_models_is_the_recipe(pipe, files):
    """mode "auto" with both models is CFG Mix at w 0.2 from log-SNR -2 (the recipe), as `sample`'s default; a
    setting the mode does not read is an error, as the command's flags are."""
    kwargs = dict(num_inference_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(5))
    default = pipe(PROMPTS, image=files["image"], **kwargs).frames
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, mix=0.2, mix_min_logsnr=-2.0, seed=5)
    assert np.array_equal(default, diffusers_np(by_generate(files, "cfg-mix", settings, PROMPTS)))
    assert np.array_equal(default, pipe(PROMPTS, image=files["image"], mode="cfg-mix", mix=0.2, mix_min_logsnr=-2,
                                        **kwargs).frames)
    unset = {k: v for k, v in kwargs.items() if k != "guidance_scale"} | {"generator": torch.Generator().manual_seed(5)}
    assert np.array_equal(default, pipe(PROMPTS, image=files["image"], **unset).frames)  # alpha 2 is the default
    with pytest.raises(ValueError, match="prior_strength is set, but mode 'cfg-mix' does not use it .*'composed'"):
        pipe(PROMPTS, image=files["image"], prior_strength=0.2, **kwargs)
    with pytest.raises(ValueError, match="mix is set, but mode 'composed' does not use it"):
        pipe(PROMPTS, image=files["image"], mode="composed", mix=0.2, **kwargs)


def test_the_seed_is_the_generators_and_otherwise_torchs_global_generator(pipe):
    generator = torch.Generator().manual_seed(11)
    first = pipe(PROMPTS[0], num_inference_steps=2, generator=generator)
    assert first.seed == 11
    assert np.array_equal(pipe(PROMPTS[0], num_inference_steps=2, generator=generator).frames, first.frames)
    torch.manual_seed(0)
    a, b = (pipe(PROMPTS[0], num_inference_steps=2) for _ in range(2))
    assert a.seed != b.seed and not np.array_equal(a.frames, b.frames)  # each call new videos
    torch.manual_seed(0)
    assert np.array_equal(pipe(PROMPTS[0], num_inference_steps=2).frames, a.frames)  # repeatable
    replay = pipe(PROMPTS[0], num_inference_steps=2, generator=torch.Generator().manual_seed(a.seed))
    assert np.array_equal(replay.frames, a.frames)  # the output's seed samples it again


def test_the_callback_sees_every_step(pipe):
    steps = []
    pipe(PROMPTS[0], num_inference_steps=3, callback=lambda info: steps.append((info["i"], info["x"].shape)))
    assert steps == [(i, (1, 3, PRIOR.frames, PRIOR.height, PRIOR.width)) for i in range(3)]


def test_export_to_video_writes_every_frame(pipe, tmp_path):
    from diffusers.utils import export_to_video

    out = pipe(PROMPTS, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    path = export_to_video(out.frames[1], str(tmp_path / "video.mp4"), fps=8)
    assert read_video(path).shape[0] == PRIOR.frames
    pil = pipe(PROMPTS, num_inference_steps=2, output_type="pil").frames[0]
    assert read_video(export_to_video(pil, str(tmp_path / "pil.mp4"), fps=8)).shape[0] == PRIOR.frames


def test_the_package_exports_the_pipeline_without_loading_torch_on_import():
    import video_adapter

    assert video_adapter.VideoAdapterPipeline is VideoAdapterPipeline and "VideoAdapterPipeline" in dir(video_adapter)
    code = "import sys, video_adapter; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    with pytest.raises(AttributeError, match="no attribute 'Pipeline'"):
        video_adapter.Pipeline


# ----------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, error, words", [
    (dict(prompt=3), TypeError, ["prompt must be a string or a non-empty list of strings"]),
    (dict(prompt=[]), TypeError, ["prompt must be"]),
    (dict(image=np.zeros((8, 8, 3), np.float32)), ValueError, ["uint8 [H, W, 3]", "float32 [8, 8, 3]", "astype"]),
    (dict(image=np.zeros((8, 8), np.uint8)), ValueError, ["uint8 [H, W, 3]"]),
    (dict(image=torch.zeros(8, 8, 3)), ValueError, ["float [3, H, W]", "[8, 8, 3]"]),
    (dict(image=torch.full((3, 8, 8), -1.0)), ValueError, ["[0, 1]", "spans [-1, -1]", "(image + 1) / 2"]),
    (dict(image=[1, 2]), TypeError, ["image must be a PIL image"]),
    (dict(num_inference_steps=0), ValueError, ["num_inference_steps must be an integer of at least 1, got 0"]),
    (dict(num_inference_steps=2.5), ValueError, ["num_inference_steps", "2.5"]),
    (dict(num_videos_per_prompt=0), ValueError, ["num_videos_per_prompt", "0"]),
    (dict(guidance_scale=math.inf), ValueError, ["guidance_scale must be a finite number"]),
    (dict(mode="composed", prior_strength=-0.1), ValueError, ["prior_strength -0.1 is negative", "away from"]),
    (dict(mode="composed", prior_strength="high"), ValueError, ["prior_strength must be a finite number"]),
    (dict(sampler="euler"), ValueError, ["unknown sampler 'euler'", "dpmpp-2m"]),
    (dict(mode="composed", composition="product"), ValueError, ["unknown composition 'product'", "normalized"]),
    (dict(output_type="mp4"), ValueError, ["unknown output_type 'mp4'", "np, pt, pil, latent"]),
    (dict(mode="blend"), ValueError, ["unknown mode 'blend'", "cfg-mix"]),
    (dict(mode="cfg-mix", mix=1.5), ValueError, ["mix is CFG Mix's prior weight", "[0, 1]", "1.5"]),
    (dict(mode="cfg-mix", mix="high"), ValueError, ["mix is CFG Mix's prior weight", "'high'"]),
    (dict(mode="cfg-mix", mix_min_logsnr=math.inf), ValueError, ["mix_min_logsnr must be a number below inf"]),
    (dict(generator=[torch.Generator()] * 2), TypeError, ["one torch.Generator, not a list"]),
    (dict(generator=0), TypeError, ["generator must be a torch.Generator or None, got int"]),
    (dict(callback=1), TypeError, ["callback must be callable"]),
])
def test_bad_call_arguments_are_clear_errors_before_sampling(pipe, monkeypatch, kwargs, error, words):
    monkeypatch.setattr("video_adapter.interfaces.pipeline.generate", lambda *a, **k: pytest.fail("sampled"))
    kwargs = {"prompt": PROMPTS[0], **kwargs}
    with pytest.raises(error) as e:
        pipe(**kwargs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_conditions_a_model_lacks_and_models_it_was_not_given(files):
    text_only = VideoAdapterPipeline.from_pretrained(prior=files["text_only"], adapter=files["adapter"], device="cpu")
    text_only.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match=r"the prior does not take first_frame \(it takes text\); drop image=, or "
                                         r"pass partial_conditions=True to give it only to the models that take it"):
        text_only(PROMPTS[0], image=files["image"], num_inference_steps=1)
    text_only(PROMPTS[0], image=files["image"], num_inference_steps=1, partial_conditions=True)  # the adapter's
    alone = VideoAdapterPipeline.from_pretrained(adapter=files["adapter"], device="cpu")
    alone.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match=r"mode 'composed' needs the prior: load it with .*from_pretrained\(prior=DIR"):
        alone(PROMPTS[0], mode="composed")
    # an image of another size is cropped and resized as --first-frame is, with its warning
    with pytest.warns(UserWarning, match=r"the first frame is 3x4 pixels .* enlarged 2.7x to the model's 8x8"):
        alone(PROMPTS[0], image=np.ascontiguousarray(files["image"][:3, :4]), num_inference_steps=1)


@pytest.mark.parametrize("kwargs, words", [
    ({}, ["pass prior=DIR", "adapter=DIR"]),
    ({"prior": "https://example.org/prior"}, ["served over HTTP needs its server's token", "VIDEO_ADAPTER_PRIOR_TOKEN"]),
    ({"prior": "PRIOR", "dtype": torch.int8}, ["dtype must be one of torch.float32"]),
    ({"prior": "PRIOR", "adapter": "SHORT"}, ["cannot be composed", "frame counts differ: adapter 4, prior 5"]),
    ({"prior": "MISSING"}, ["is not a directory"]),
    ({"prior": "PRIOR", "video_size": (16, 256)}, ["video_size must be (frames, height, width)", "(16, 256)"]),
])
def test_bad_from_pretrained_arguments_are_clear_errors(files, tmp_path, monkeypatch, kwargs, words):
    monkeypatch.delenv("VIDEO_ADAPTER_PRIOR_TOKEN", raising=False)
    subs = {"PRIOR": str(files["prior"]), "SHORT": str(files["short"]), "MISSING": str(tmp_path / "missing")}
    kwargs = {k: subs.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(ValueError) as e:
        VideoAdapterPipeline.from_pretrained(**kwargs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


# ---------------------------------------------------------------------------- a diffusers image-to-video prior

def test_an_image_to_video_prior_needs_the_image_and_gets_it_beside_a_latent_adapter(tmp_path):
    """LTX image-to-video with a latent adapter saved beside it: from_pretrained takes the video size from the
    adapter, the image reaches the prior as pixels and the adapter as latents (no partial_conditions), and the
    frames are the prior's VAE decoding what `generate` samples."""
    directory = ltx_pipeline(tmp_path / "ltx_i2v", image=True)
    with pytest.raises(ValueError, match=r"is a diffusers pipeline: pass video_size=\(frames, height, width\)"):
        VideoAdapterPipeline.from_pretrained(prior=directory, device="cpu")
    prior = VideoAdapterPipeline.from_pretrained(prior=directory, device="cpu", video_size=(5, 16, 16)).prior
    adapter = latent_adapter(prior, prior.spec.text_encoder, first_frame_cond=True, text_dim=12)
    saved = save_model(tmp_path / "adapter", adapter.unet, prior.spec.text_encoder,
                       video={"frames": 5, "height": 16, "width": 16})
    pipe = VideoAdapterPipeline.from_pretrained(prior=directory, adapter=saved, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.video_size == (5, 16, 16)
    with pytest.raises(ValueError, match=r"the prior is an image-to-video model: pass image= \(its first frame"):
        pipe(PROMPTS[0], num_inference_steps=1)
    image = np.random.RandomState(1).randint(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "start.png")
    out = pipe(PROMPTS[0], image=image, num_inference_steps=2, generator=torch.Generator().manual_seed(2))
    assert out.frames.shape == (1, 5, 16, 16, 3)
    cfg = SampleConfig(prior=str(directory), adapter=str(saved), prompt=(PROMPTS[0],), first_frame=str(tmp_path /
                       "start.png"), sampler="ddim", steps=2, seed=2, device="cpu")
    models = load_sample_models(cfg)
    conds = sample_conds(models, [PROMPTS[0]], cfg.first_frame, "", False, cfg.video(), CPU)
    assert conds.prior.first_frame.shape == (1, 3, 16, 16) and conds.small.first_frame.shape[1] == 8  # pixels, latents
    videos = generate(models, conds, ("cfg-mix",), cfg.settings(), CPU, progress=False).videos["cfg-mix"]
    assert np.array_equal(out.frames, diffusers_np(to_pixels(models, videos)))
