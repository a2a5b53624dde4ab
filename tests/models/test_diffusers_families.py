"""The priors of issue 27 (Wan 2.2's two experts, image-to-video Wan / CogVideoX / LTX, LTX-Video, HunyuanVideo,
CogVideoX 1.5), each a tiny pipeline with random weights saved with save_pretrained and loaded through the real path.
Every eps is checked against a hand computation through that pipeline's own text encoding, latent preparation and
denoiser call (the pipeline object's methods), and the maps of docs/diffusers_priors.md written out by hand."""

from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from video_adapter.maths.composition import Conds
from video_adapter.maths.conditioning import Cond
from video_adapter.models.diffusers import load_diffusers_prior

from helpers import (
    assert_gamma_zero_is_the_adapter_alone,
    cogvideox_pipeline,
    hunyuan_pipeline,
    latent_adapter,
    ltx_pipeline,
    prior_prompts,
    run,
    wan_pipeline,
)

CAPTIONS = ["a red block", "a blue car drives"]
# the pixel videos each tiny VAE takes (frames x height x width); see helpers for the VAEs' ratios
VIDEO = {"wan": (5, 8, 8), "cogvideox": (9, 16, 16), "cogvideox15": (13, 16, 16), "ltx": (5, 16, 16),
         "hunyuan": (5, 16, 16)}
BUILDERS = {
    "wan22": (lambda p: wan_pipeline(p, two_experts=True), "wan"),
    "wan_i2v": (lambda p: wan_pipeline(p, image=True, clip=True), "wan"),
    "wan22_i2v": (lambda p: wan_pipeline(p, image=True, two_experts=True, boundary_ratio=0.9), "wan"),
    "wan_ti2v": (lambda p: wan_pipeline(p, image=True, expand_timesteps=True), "wan"),
    "cogvideox_i2v": (lambda p: cogvideox_pipeline(p, image=True), "cogvideox"),
    "cogvideox15": (lambda p: cogvideox_pipeline(p, version="1.5"), "cogvideox15"),
    "cogvideox15_i2v": (lambda p: cogvideox_pipeline(p, version="1.5", image=True), "cogvideox15"),
    "ltx": (lambda p: ltx_pipeline(p, scaling_factor=1.5), "ltx"),
    "ltx_i2v": (lambda p: ltx_pipeline(p, image=True), "ltx"),
    "hunyuan": (lambda p: hunyuan_pipeline(p), "hunyuan"),
}


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Each family's pipeline directory, built on first use."""
    built = {}

    def get(name):
        if name not in built:
            built[name] = BUILDERS[name][0](tmp_path_factory.mktemp(name))
        return built[name]

    return get


def load(pipelines, name):
    return load_diffusers_prior(pipelines(name), *VIDEO[BUILDERS[name][1]])


def noisy(prior, seed=0):
    return torch.randn((2,) + prior.spec.shape, generator=torch.Generator().manual_seed(seed))


def frames(height, width, seed=0):
    """Two first frames [2, 3, H, W] in [-1, 1] that 8-bit RGB holds exactly, and the same as PIL images."""
    u8 = torch.randint(0, 256, (2, 3, height, width), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return u8.float() / 127.5 - 1, [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in u8]


def flow_terms(x, logsnr):
    """By hand: s = sigma / (alpha + sigma), z = x / (alpha + sigma), the model's timestep s * 1000."""
    alpha, sigma = torch.sigmoid(logsnr).sqrt().view(-1, 1, 1, 1, 1), torch.sigmoid(-logsnr).sqrt().view(-1, 1, 1, 1, 1)
    s = sigma / (alpha + sigma)
    return x / (alpha + sigma), s, s.flatten() * 1000, alpha, sigma


def with_frame(cond: Cond, frame) -> Cond:
    return replace(cond, first_frame=frame, has_first_frame=torch.ones(len(frame), dtype=torch.bool))


@contextmanager
def posterior_mode():
    """The pipelines' VAE posterior draws, replaced by its mode (the prior conditions on the mode; docs)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    draw = DiagonalGaussianDistribution.sample
    DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mode()
    try:
        yield
    finally:
        DiagonalGaussianDistribution.sample = draw


# --------------------------------------------------------------------------------------- Wan 2.2's two experts

def wan_hand_eps(transformer, x, logsnr, text, **inputs):
    z, s, t, _, _ = flow_terms(x, logsnr)
    with torch.no_grad():
        u = transformer(hidden_states=inputs.pop("hidden_states", z), timestep=inputs.pop("timestep", t),
                        encoder_hidden_states=text, return_dict=False, **inputs)[0]
    return z + (1 - s) * u


def test_wan22_experts_switch_at_the_boundary_as_the_pipeline_does(pipelines):
    from diffusers import WanPipeline

    prior = load(pipelines, "wan22")
    pipe = WanPipeline.from_pretrained(pipelines("wan22"))
    boundary = pipe.config.boundary_ratio * 1000  # the pipeline: transformer where t >= boundary, else transformer_2
    text = pipe.encode_prompt(CAPTIONS, do_classifier_free_guidance=False, max_sequence_length=512)[0]
    cond = prior_prompts(prior, CAPTIONS)
    at = float(prior.time.logsnr_at(torch.tensor(boundary, dtype=torch.float64)))
    x = noisy(prior)
    for logsnr, expert in ((at - 1e-4, pipe.transformer), (at, pipe.transformer), (at + 1e-4, pipe.transformer_2)):
        lam = torch.full((2,), logsnr, dtype=torch.float64)
        want = wan_hand_eps(expert, x, lam.float(), text)
        assert torch.allclose(prior(x, lam, cond), want, atol=1e-5)
    other = wan_hand_eps(pipe.transformer_2, x, torch.full((2,), at), text)  # the experts differ there
    assert not torch.allclose(other, wan_hand_eps(pipe.transformer, x, torch.full((2,), at), text), atol=1e-3)
    mixed = torch.tensor([at - 1.0, at + 1.0], dtype=torch.float64)  # one batch, each row its own expert
    want = torch.cat([wan_hand_eps(pipe.transformer, x[:1], mixed[:1].float(), text[:1]),
                      wan_hand_eps(pipe.transformer_2, x[1:], mixed[1:].float(), text[1:])])
    assert torch.allclose(prior(x, mixed, cond), want, atol=1e-5)


def test_wan22_steps_round_trip_and_go_to_the_pipelines_expert(pipelines):
    from diffusers import FlowMatchEulerDiscreteScheduler

    prior = load(pipelines, "wan22")
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(pipelines("wan22") / "scheduler")
    scheduler.set_timesteps(40)
    t = scheduler.timesteps.double()
    logsnr = prior.time.logsnr_at(t)
    assert torch.allclose(prior.time.timestep(logsnr), t, rtol=1e-12)
    assert torch.equal(prior.experts.index(logsnr), (t < 875).long())  # the pipeline's rule at each of its steps
    assert 0 < int(prior.experts.index(logsnr).sum()) < len(t)  # both experts answer over a run


def test_two_expert_spec_counts_one_expert(pipelines):
    prior = load(pipelines, "wan22")
    assert prior.spec.parameters == sum(p.numel() for p in prior.experts.denoisers[1].parameters())
    assert len(prior.experts.denoisers) == 2


# ------------------------------------------------------------------------------------------- image-to-video

def test_wan_i2v_gets_its_pipelines_image_latents_and_clip_embedding(pipelines):
    from diffusers import WanImageToVideoPipeline

    prior = load(pipelines, "wan_i2v")
    assert prior.spec.conditions == ("text", "first_frame") and prior.spec.first_frame_pixels
    pipe = WanImageToVideoPipeline.from_pretrained(pipelines("wan_i2v"))
    frame, images = frames(8, 8)
    x, logsnr = noisy(prior), torch.tensor([-2.0, 1.5])
    cond = with_frame(prior_prompts(prior, CAPTIONS), frame)
    text = cond.text * cond.text_mask[..., None]  # as WanPipeline pads (its i2v encode_prompt needs ftfy)
    want = []
    for i in range(2):  # the pipeline takes one image per call
        _, condition = pipe.prepare_latents(frame[i:i + 1], 1, 4, 8, 8, 5, torch.float32, "cpu")
        clip = pipe.encode_image(images[i], "cpu")
        want.append(wan_hand_eps(pipe.transformer, x[i:i + 1], logsnr[i:i + 1], text[i:i + 1],
                                 hidden_states=torch.cat([flow_terms(x[i:i + 1], logsnr[i:i + 1])[0], condition], 1),
                                 encoder_hidden_states_image=clip))
    assert torch.allclose(prior(x, logsnr, cond), torch.cat(want), atol=1e-5)
    swapped = with_frame(prior_prompts(prior, CAPTIONS), frame.flip(0))
    assert not torch.allclose(prior(x, logsnr, swapped), torch.cat(want), atol=1e-3)  # the frame reaches it


def test_wan_ti2v_puts_the_image_latent_in_the_first_frame_at_timestep_zero(pipelines):
    from diffusers import WanImageToVideoPipeline

    prior = load(pipelines, "wan_ti2v")
    pipe = WanImageToVideoPipeline.from_pretrained(pipelines("wan_ti2v"))
    frame, _ = frames(8, 8, seed=1)
    x, logsnr = noisy(prior), torch.tensor([-1.0, 2.0])
    cond = with_frame(prior_prompts(prior, CAPTIONS), frame)
    text = cond.text * cond.text_mask[..., None]
    z, s, t, alpha, sigma = flow_terms(x, logsnr)
    want = []
    for i in range(2):
        _, c, mask = pipe.prepare_latents(frame[i:i + 1], 1, 4, 8, 8, 5, torch.float32, "cpu")
        timestep = (mask[0][0][:, ::2, ::2] * t[i]).flatten()[None]
        eps = wan_hand_eps(pipe.transformer, x[i:i + 1], logsnr[i:i + 1], text[i:i + 1],
                           hidden_states=(1 - mask) * c + mask * z[i:i + 1], timestep=timestep)
        eps[:, :, :1] = (x[i:i + 1, :, :1] - alpha[i] * c[:, :, :1]) / sigma[i]  # frame 0's x0 is the image's
        want.append(eps)
    assert torch.allclose(prior(x, logsnr, cond), torch.cat(want), atol=1e-5)


@pytest.mark.parametrize("name", ["cogvideox_i2v", "cogvideox15_i2v"])
def test_cogvideox_i2v_gets_its_pipelines_image_latents(pipelines, name):
    from diffusers import CogVideoXImageToVideoPipeline

    prior = load(pipelines, name)
    pipe = CogVideoXImageToVideoPipeline.from_pretrained(pipelines(name))
    f, h, w = VIDEO[BUILDERS[name][1]]
    frame, _ = frames(h, w, seed=2)
    abar = pipe.scheduler.alphas_cumprod.double()
    k = torch.tensor([80, 650])
    logsnr = torch.log(abar[k] / (1 - abar[k]))
    x = noisy(prior)
    text = pipe.encode_prompt(CAPTIONS, do_classifier_free_guidance=False, max_sequence_length=226)[0]
    cond = with_frame(prior_prompts(prior, CAPTIONS), frame)
    with posterior_mode():
        _, image_latents = pipe.prepare_latents(frame, 2, 4, f, h, w, torch.float32, "cpu")
    rotary = pipe._prepare_rotary_positional_embeddings(h, w, x.shape[2], "cpu")
    ofs = x.new_full((1,), 2.0) if pipe.transformer.config.ofs_embed_dim else None
    assert (ofs is not None) == (name == "cogvideox15_i2v")
    with torch.no_grad():
        v = pipe.transformer(hidden_states=torch.cat([x.permute(0, 2, 1, 3, 4), image_latents], dim=2),
                             encoder_hidden_states=text, timestep=k, ofs=ofs, image_rotary_emb=rotary,
                             return_dict=False)[0].permute(0, 2, 1, 3, 4)
    alpha, sigma = abar[k].sqrt().float().view(-1, 1, 1, 1, 1), (1 - abar[k]).sqrt().float().view(-1, 1, 1, 1, 1)
    assert torch.allclose(prior(x, logsnr, cond), alpha * v + sigma * x, atol=1e-5)


def test_ltx_i2v_conditions_the_first_frames_tokens_at_timestep_zero(pipelines):
    from diffusers import LTXImageToVideoPipeline

    prior = load(pipelines, "ltx_i2v")
    pipe = LTXImageToVideoPipeline.from_pretrained(pipelines("ltx_i2v"))
    frame, _ = frames(16, 16, seed=3)
    x, logsnr = noisy(prior), torch.tensor([-3.0, 0.5])
    z, s, t, alpha, sigma = flow_terms(x, logsnr)
    embeds, mask = pipe.encode_prompt(CAPTIONS, do_classifier_free_guidance=False, max_sequence_length=128)[:2]
    cond = with_frame(prior_prompts(prior, CAPTIONS), frame)
    with posterior_mode():
        packed, conditioning = pipe.prepare_latents(frame, 2, 8, 16, 16, 5, torch.float32, "cpu")
    f, h, w = x.shape[2:]
    c = pipe._unpack_latents(packed, f, h, w)[:, :, :1]  # the image's latent, where the mask is 1
    with torch.no_grad():
        u = pipe.transformer(hidden_states=pipe._pack_latents(torch.cat([c, z[:, :, 1:]], 2)),
                             encoder_hidden_states=embeds, timestep=t[:, None] * (1 - conditioning),
                             encoder_attention_mask=mask, num_frames=f, height=h, width=w,
                             rope_interpolation_scale=(4 / 25, 4, 4), return_dict=False)[0]
    want = z + (1 - s) * pipe._unpack_latents(u, f, h, w)
    want[:, :, :1] = (x[:, :, :1] - alpha * c) / sigma
    assert torch.allclose(prior(x, logsnr, cond), want, atol=1e-4)  # |eps| up to 7 here


def test_an_image_to_video_prior_without_its_first_frame_is_a_clear_error(pipelines):
    prior = load(pipelines, "ltx_i2v")
    cond = prior_prompts(prior, CAPTIONS)
    with pytest.raises(ValueError, match="image-to-video model: it needs the first frame .*--first-frame"):
        prior(noisy(prior), torch.zeros(2), cond)
    latent_frame = torch.zeros(2, *prior.spec.shape[:1], *prior.spec.shape[2:])
    with pytest.raises(ValueError, match="RGB pixels"):
        prior(noisy(prior), torch.zeros(2), with_frame(cond, latent_frame))


def test_the_first_frame_reaches_the_adapter_as_latents_and_the_prior_as_pixels(pipelines, tmp_path):
    from video_adapter.generation.routing import model_conds, route_conditions
    from video_adapter.interfaces.sample import load_frames, pixel_conditions

    prior = load(pipelines, "ltx_i2v")
    small = latent_adapter(prior, prior.spec.text_encoder, first_frame_cond=True, text_dim=12)
    models = {"small": small, "prior": prior}
    with pytest.raises(ValueError, match="the prior is an image-to-video model: pass --first-frame"):
        route_conditions(models, {"text"}, partial=False)
    routes = route_conditions(models, {"text", "first_frame"}, partial=False)  # no --partial-conditions needed
    Image.fromarray(frames(16, 16)[0][0].add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()).save(
        tmp_path / "start.png")
    pixels = pixel_conditions(prior.spec, str(tmp_path / "start.png"), "", prior.codec, VIDEO["ltx"])
    conds = model_conds(models, CAPTIONS, pixels, routes, torch.device("cpu"))
    frame = load_frames(tmp_path / "start.png", 1, (16, 16))[:, 0]
    assert torch.equal(conds.prior.first_frame, frame.expand(2, -1, -1, -1))
    assert torch.allclose(conds.small.first_frame, prior.codec.encode(frame[None, :, None])[:, :, 0].expand(2, -1,
                                                                                                         -1, -1))


def test_a_text_to_video_transformer_in_an_image_to_video_pipeline_is_a_clear_error(pipelines, tmp_path):
    import json
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(pipelines("wan22"), mixed)
    index = json.loads((mixed / "model_index.json").read_text())
    (mixed / "model_index.json").write_text(json.dumps({**index, "_class_name": "WanImageToVideoPipeline"}))
    with pytest.raises(ValueError, match="takes 4 input channels, but WanImageToVideoPipeline .* gives it 10"):
        load_diffusers_prior(mixed, *VIDEO["wan"])


# ----------------------------------------------------------------------------------- LTX-Video, HunyuanVideo

def test_ltx_velocity_through_its_patchifier_and_vae_statistics(pipelines):
    from diffusers import LTXPipeline

    prior = load(pipelines, "ltx")
    pipe = LTXPipeline.from_pretrained(pipelines("ltx"))
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    vae = pipe.vae
    with torch.no_grad():
        want = pipe._normalize_latents(vae.encode(video).latent_dist.mode(), vae.latents_mean, vae.latents_std,
                                       vae.config.scaling_factor)
    assert torch.allclose(prior.codec.encode(video), want, atol=1e-6) and not torch.allclose(
        want, vae.encode(video).latent_dist.mode(), atol=1e-2)  # the per-channel statistics are applied
    x, logsnr = noisy(prior), torch.tensor([-4.0, 2.0])
    z, s, t, _, _ = flow_terms(x, logsnr)
    embeds, mask = pipe.encode_prompt(CAPTIONS, do_classifier_free_guidance=False, max_sequence_length=128)[:2]
    cond = prior_prompts(prior, CAPTIONS)
    assert torch.equal(cond.text_mask, mask) and torch.allclose(cond.text, embeds, atol=1e-5)  # T5, unmasked
    f, h, w = x.shape[2:]

    def hand(frame_rate):
        with torch.no_grad():
            u = pipe.transformer(hidden_states=pipe._pack_latents(z), encoder_hidden_states=embeds, timestep=t,
                                 encoder_attention_mask=mask, num_frames=f, height=h, width=w,
                                 rope_interpolation_scale=(4 / frame_rate, 4, 4), return_dict=False)[0]
        return z + (1 - s) * pipe._unpack_latents(u, f, h, w)

    assert torch.allclose(prior(x, logsnr, cond), hand(25), atol=1e-5)  # the pipeline's default frame rate
    slow = load_diffusers_prior(pipelines("ltx"), *VIDEO["ltx"], frame_rate=2)
    assert torch.allclose(slow(x, logsnr, cond), hand(2), atol=1e-5) and not torch.allclose(hand(2), hand(25),
                                                                                              atol=1e-4)


def test_hunyuan_llama_and_clip_text_and_embedded_guidance(pipelines):
    from diffusers import HunyuanVideoPipeline

    prior = load(pipelines, "hunyuan")
    pipe = HunyuanVideoPipeline.from_pretrained(pipelines("hunyuan"))
    embeds, pooled, mask = pipe.encode_prompt(CAPTIONS, device="cpu", max_sequence_length=256)
    cond = prior_prompts(prior, CAPTIONS)
    assert torch.equal(cond.text_mask, mask.bool()) and torch.allclose(cond.text, embeds, atol=1e-6)
    assert torch.allclose(cond.pooled[:, :8], pooled, atol=1e-6) and not cond.pooled[:, 8:].any()
    x, logsnr = noisy(prior), torch.tensor([-2.5, 3.0])
    z, s, t, _, _ = flow_terms(x, logsnr)

    def hand(guidance):
        with torch.no_grad():
            u = pipe.transformer(hidden_states=z, timestep=t, encoder_hidden_states=embeds,
                                 encoder_attention_mask=mask, pooled_projections=pooled,
                                 guidance=torch.full((2,), guidance * 1000.0), return_dict=False)[0]
        return z + (1 - s) * u

    assert torch.allclose(prior(x, logsnr, cond), hand(1.0), atol=1e-5)  # the conditional model, by default
    guided = load_diffusers_prior(pipelines("hunyuan"), *VIDEO["hunyuan"], embedded_guidance=6.0)
    assert torch.allclose(guided(x, logsnr, cond), hand(6.0), atol=1e-5)
    assert not torch.allclose(hand(6.0), hand(1.0), atol=1e-4)


@pytest.mark.parametrize("name", ["ltx", "hunyuan"])
def test_flow_steps_of_the_pipelines_scheduler_round_trip(pipelines, name):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

    prior = load(pipelines, name)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(pipelines(name) / "scheduler")
    if name == "ltx":  # LTXPipeline's own schedule: shifted by the sequence length
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 30, 30), mu=calculate_shift(int(np.prod(
            prior.spec.shape[1:]))))
    else:
        scheduler.set_timesteps(30)
    t = scheduler.timesteps.double()
    assert torch.allclose(prior.time.timestep(prior.time.logsnr_at(t)), t, rtol=1e-12)


# ------------------------------------------------------------------------------------------------ CogVideoX 1.5

def test_cogvideox15_uses_its_sliced_rotary_grid_and_its_own_grid_of_steps(pipelines):
    from diffusers import CogVideoXPipeline

    prior = load(pipelines, "cogvideox15")
    pipe = CogVideoXPipeline.from_pretrained(pipelines("cogvideox15"))
    pipe.scheduler.set_timesteps(50)
    k = pipe.scheduler.timesteps  # round trips at the pipeline's own steps
    assert torch.allclose(prior.time.timestep(prior.time.logsnr_at(k.double())), k.double(), atol=1e-9)
    abar = pipe.scheduler.alphas_cumprod.double()
    k = torch.tensor([30, 700])
    logsnr = torch.log(abar[k] / (1 - abar[k]))
    x = noisy(prior)
    text = pipe.encode_prompt(CAPTIONS, do_classifier_free_guidance=False, max_sequence_length=226)[0]
    rotary = pipe._prepare_rotary_positional_embeddings(16, 16, x.shape[2], "cpu")
    with torch.no_grad():
        v = pipe.transformer(hidden_states=x.permute(0, 2, 1, 3, 4), encoder_hidden_states=text, timestep=k,
                             image_rotary_emb=rotary, return_dict=False)[0].permute(0, 2, 1, 3, 4)
    alpha, sigma = abar[k].sqrt().float().view(-1, 1, 1, 1, 1), (1 - abar[k]).sqrt().float().view(-1, 1, 1, 1, 1)
    assert torch.allclose(prior(x, logsnr, prior_prompts(prior, CAPTIONS)), alpha * v + sigma * x, atol=1e-5)


def test_cogvideox15_refuses_an_odd_number_of_latent_frames_with_the_fix(pipelines):
    with pytest.raises(ValueError, match="groups latent frames in 2s .* use 13 frames \\(or 5\\)"):
        load_diffusers_prior(pipelines("cogvideox15"), 9, 16, 16)


# --------------------------------------------------------------------------------------------- with an adapter

@pytest.mark.parametrize("name", ["wan22", "wan_i2v", "cogvideox15_i2v", "ltx_i2v", "hunyuan"])
def test_gamma_zero_composition_is_the_adapter_alone(pipelines, name):
    prior = load(pipelines, name)
    prior_cond = prior_prompts(prior, CAPTIONS)
    if prior.family.image:
        prior_cond = with_frame(prior_cond, frames(*VIDEO[BUILDERS[name][1]][1:])[0])
    small = Cond.make(text=torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4)))
    assert_gamma_zero_is_the_adapter_alone(latent_adapter(prior), prior, Conds(small=small, prior=prior_cond))


E2E = ["wan22", "wan_i2v", "cogvideox_i2v", "cogvideox15", "ltx", "ltx_i2v", "hunyuan"]


@pytest.mark.parametrize("name", E2E)
def test_latent_adapter_trains_in_the_priors_space_and_samples_composed(pipelines, name, tmp_path, monkeypatch,
                                                                         capsys):
    """Train a tiny adapter on cached latents of the prior's VAE, then `video-adapter sample` composes it with the
    prior and decodes; an image-to-video prior takes --first-frame beside the adapter, no --partial-conditions."""
    from video_adapter.data.toy import make_toy_dataset
    from video_adapter.training.train import TrainConfig, train

    f, h, w = VIDEO[BUILDERS[name][1]]
    monkeypatch.setenv("VIDEO_ADAPTER_CACHE", str(tmp_path / "cache"))
    toy = make_toy_dataset(tmp_path / "toy", num=4, frames=f, size=(h, w), seed=0, progress=False)
    model = dict(frames=f, height=h, width=w, base_channels=8, channel_mults=(1, 2), attention_resolutions=(2,),
                 head_dim=8, emb_dim=16, norm_groups=4)
    adapter = train(TrainConfig(data=str(toy), out=str(tmp_path / "run"), space=str(pipelines(name)), preset="S",
                                model=model, steps=2, batch_size=2, lr=1e-3, warmup_steps=1, save_every=2,
                                sample_every=0, log_every=1, num_workers=0))
    Image.fromarray(np.full((h, w, 3), (200, 30, 30), dtype=np.uint8)).save(tmp_path / "start.png")
    first = ["--first-frame", str(tmp_path / "start.png")] if "i2v" in name else []
    out = run(capsys, "sample", "--adapter", str(adapter), "--prior", str(pipelines(name)), "--prompt", "a red block",
              *first, "--compare", "--sampler", "ddim", "--steps", "2", "--device", "cpu",
              "--out", str(tmp_path / "c.gif"))
    assert "adapter/prior" in out
    assert Image.open(tmp_path / "c.gif").n_frames == f  # decoded by the prior's VAE to the video's frames
