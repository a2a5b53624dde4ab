"""diffusers text-to-video pipelines as priors: tiny ModelScope, Wan and CogVideoX pipelines with random weights,
saved with save_pretrained and loaded through the real path, checked against hand-computed conversions."""

import json

import pytest
import torch

from video_adapter.maths.composition import Conds, PriorStrength, mode_fn
from video_adapter.maths.conditioning import Cond
from video_adapter.maths.sampling import sample
from video_adapter.maths.schedule import (
    LOGSNR_MIN,
    alpha_sigma,
    broadcast,
    diffuse,
    flow_from_vp,
    flow_time_from_logsnr,
    vp_from_flow,
)
from video_adapter.models.diffusers import PIPELINES, DiscreteVP, load_diffusers_prior
from video_adapter.models.score_model import check_compatible
from video_adapter.models.text import load_text_encoder

from helpers import (
    assert_gamma_zero_is_the_adapter_alone,
    clip_tokenizer,
    cogvideox_pipeline,
    fails,
    latent_adapter,
    prior_prompts,
    randomize,
    run,
    wan_pipeline,
)

FRAMES, SIZE = 3, 8  # pixel frames and size: the ModelScope-style VAE halves the size, Wan's also compresses time


@pytest.fixture(scope="module")
def modelscope_dir(tmp_path_factory):
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tok = clip_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=77, eos_token_id=eos,
                                        bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>"), pad_token_id=eos))
    unet = UNet3DConditionModel(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                cross_attention_dim=32, attention_head_dim=4, in_channels=4, out_channels=4,
                                down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), sample_size=4)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              prediction_type="v_prediction")
    path = tmp_path_factory.mktemp("modelscope")
    for module in (unet, vae):
        randomize(module, seed=1, scale=0.05)  # zero-initialised output layers would hide the conversion
    pipeline = TextToVideoSDPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=scheduler)
    pipeline.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return wan_pipeline(tmp_path_factory.mktemp("wan"))


@pytest.fixture(scope="module")
def cogvideox_dir(tmp_path_factory):
    """CogVideoX 1.0 2B-style (no rotary embeddings), its VAE 2x in time and space."""
    return cogvideox_pipeline(tmp_path_factory.mktemp("cogvideox"), rotary=False, vae_blocks=2)


# ------------------------------------------------------------------------------------------ noise-level matching


def test_discrete_grid_round_trips_at_the_models_own_steps(modelscope_dir):
    from diffusers import DDIMScheduler

    config = json.loads((modelscope_dir / "scheduler" / "scheduler_config.json").read_text())
    grid = DiscreteVP.from_scheduler_config(config)
    abar = DDIMScheduler.from_config(config).alphas_cumprod.double()
    k = torch.tensor([0, 1, 10, 500, 998, 999])
    logsnr = torch.log(abar[k] / (1 - abar[k]))
    assert torch.allclose(grid.timestep(logsnr), k.double(), atol=1e-9)
    assert torch.allclose(grid.logsnr_at(k.double()), logsnr, atol=1e-12)
    between = 0.3 * logsnr[3:4] + 0.7 * grid.logsnr_at(torch.tensor([501.0]))
    assert torch.allclose(grid.timestep(between), torch.tensor([500.7], dtype=torch.float64))  # linear in log-SNR
    assert DiscreteVP(grid.logsnrs, grid.prediction, quantize=True).timestep(between).item() == 501
    outside = torch.tensor([20.0, -20.0])  # beyond the grid: clamped to its ends, with the gap reported
    assert torch.equal(grid.timestep(outside), torch.tensor([0.0, 999.0], dtype=torch.float64))
    assert torch.allclose(grid.mismatch(outside), torch.stack([logsnr[0], logsnr[-1]]) - outside.double())
    assert torch.allclose(grid.mismatch(logsnr), torch.zeros(6, dtype=torch.float64), atol=1e-9)


def test_flow_and_vp_samples_round_trip_at_the_same_noise_level():
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 4, 4, generator=gen), torch.randn(2, 4, 3, 4, 4, generator=gen)
    logsnr = torch.tensor([-6.0, 3.0])
    x = diffuse(x0, eps, logsnr)
    s = broadcast(flow_time_from_logsnr(logsnr), x)
    assert torch.allclose(flow_from_vp(x, logsnr), (1 - s) * x0 + s * eps, atol=1e-6)  # z_s of the same x0, eps
    assert torch.allclose(vp_from_flow(flow_from_vp(x, logsnr), logsnr), x, atol=1e-6)


# ------------------------------------------------------------------------------------------------- the adapters


def test_modelscope_v_prediction_becomes_the_hand_computed_eps(modelscope_dir):
    from diffusers import DDIMScheduler, UNet3DConditionModel

    prior = load_diffusers_prior(modelscope_dir, frames=FRAMES, height=SIZE, width=SIZE)
    assert prior.spec.shape == (4, FRAMES, SIZE // 2, SIZE // 2) and prior.spec.space.startswith("latent:")
    abar = DDIMScheduler.from_pretrained(modelscope_dir / "scheduler").alphas_cumprod.double()
    k = torch.tensor([100, 700])
    logsnr = torch.log(abar[k] / (1 - abar[k])).float()
    x = torch.randn((2,) + prior.spec.shape, generator=torch.Generator().manual_seed(0))
    cond = prior_prompts(prior, ["a red block", "a blue ball"])
    unet = UNet3DConditionModel.from_pretrained(modelscope_dir / "unet")
    with torch.no_grad():
        v = unet(x, k.float(), encoder_hidden_states=cond.text, return_dict=False)[0]
    want = abar[k].sqrt().float().view(-1, 1, 1, 1, 1) * v + (1 - abar[k]).sqrt().float().view(-1, 1, 1, 1, 1) * x
    assert torch.allclose(prior(x, logsnr, cond), want, atol=1e-5)
    assert not torch.allclose(want, v, atol=1e-3)  # the conversion matters


def test_wan_flow_velocity_becomes_the_hand_computed_eps(wan_dir):
    from diffusers import WanTransformer3DModel

    prior = load_diffusers_prior(wan_dir, frames=5, height=SIZE, width=SIZE)
    assert prior.spec.shape == (4, 3, SIZE // 2, SIZE // 2)  # this VAE halves time: 1 + 2k frames -> 1 + k
    logsnr = torch.tensor([-4.0, 2.5])
    x = torch.randn((2,) + prior.spec.shape, generator=torch.Generator().manual_seed(0))
    cond = prior_prompts(prior, ["a red block", "a blue ball falls"])
    alpha, sigma = (broadcast(v, x) for v in alpha_sigma(logsnr))
    s = torch.sigmoid(-logsnr / 2)
    transformer = WanTransformer3DModel.from_pretrained(wan_dir / "transformer")
    with torch.no_grad():  # Wan's pipeline zeroes the embeddings past each prompt's tokens
        u = transformer(x / (alpha + sigma), s * 1000, encoder_hidden_states=cond.text * cond.text_mask[..., None],
                        return_dict=False)[0]
    want = x / (alpha + sigma) + (1 - broadcast(s, x)) * u
    assert torch.allclose(prior(x, logsnr, cond), want, atol=1e-5)


def test_offloaded_prior_gives_the_same_eps(modelscope_dir):
    plain = load_diffusers_prior(modelscope_dir, frames=FRAMES, height=SIZE, width=SIZE)
    offloaded = load_diffusers_prior(modelscope_dir, frames=FRAMES, height=SIZE, width=SIZE, offload=True)
    x = torch.randn((2,) + plain.spec.shape, generator=torch.Generator().manual_seed(2))
    cond, logsnr = prior_prompts(plain, ["a red block", "a ball"]), torch.tensor([-1.0, 2.0])
    assert torch.equal(offloaded(x, logsnr, cond), plain(x, logsnr, cond))


def test_cogvideox_uses_its_own_shifted_zero_snr_grid_and_frames_first_layout(cogvideox_dir):
    from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    prior = load_diffusers_prior(cogvideox_dir, frames=5, height=SIZE, width=SIZE)
    abar = CogVideoXDDIMScheduler.from_pretrained(cogvideox_dir / "scheduler").alphas_cumprod.double()
    assert abar[-1] == 0 and prior.time.logsnrs[-1] == LOGSNR_MIN  # zero terminal SNR stands at our lowest level
    k = torch.tensor([50, 600])
    logsnr = torch.log(abar[k] / (1 - abar[k])).float()
    x = torch.randn((2,) + prior.spec.shape, generator=torch.Generator().manual_seed(0))
    cond = prior_prompts(prior, ["a red block", "a blue ball"])
    transformer = CogVideoXTransformer3DModel.from_pretrained(cogvideox_dir / "transformer")
    with torch.no_grad():
        v = transformer(x.permute(0, 2, 1, 3, 4), encoder_hidden_states=cond.text, timestep=k.float(),
                        return_dict=False)[0].permute(0, 2, 1, 3, 4)
    alpha, sigma = (abar[k].sqrt().float().view(-1, 1, 1, 1, 1), (1 - abar[k]).sqrt().float().view(-1, 1, 1, 1, 1))
    assert torch.allclose(prior(x, logsnr, cond), alpha * v + sigma * x, atol=1e-5)


def test_absent_text_is_the_empty_prompt(modelscope_dir):
    prior = load_diffusers_prior(modelscope_dir, frames=FRAMES, height=SIZE, width=SIZE)
    x = torch.randn((2,) + prior.spec.shape, generator=torch.Generator().manual_seed(1))
    logsnr = torch.tensor([0.0, 1.0])
    cond = prior_prompts(prior, ["a red block", "a blue ball"])
    empty = prior_prompts(prior, ["", ""])
    assert torch.allclose(prior(x, logsnr, cond.with_flags(text=False)), prior(x, logsnr, empty), atol=1e-6)
    assert not torch.allclose(prior(x, logsnr, cond), prior(x, logsnr, empty), atol=1e-4)


def test_latent_codec_shapes_and_errors(modelscope_dir, wan_dir, cogvideox_dir):
    for path, frames, latent_frames in ((modelscope_dir, FRAMES, FRAMES), (wan_dir, 5, 3), (cogvideox_dir, 5, 3)):
        prior = load_diffusers_prior(path, frames=frames, height=SIZE, width=SIZE)
        video = torch.rand(1, 3, frames, SIZE, SIZE) * 2 - 1
        latents = prior.codec.encode(video)
        assert latents.shape == (1, 4, latent_frames, SIZE // 2, SIZE // 2)
        assert prior.codec.decode(latents).shape == video.shape
    with pytest.raises(ValueError, match="1 \\+ a multiple of 2"):
        load_diffusers_prior(wan_dir, frames=4, height=SIZE, width=SIZE)
    with pytest.raises(ValueError, match="multiples of the VAE's 2x"):
        load_diffusers_prior(modelscope_dir, frames=FRAMES, height=7, width=SIZE)


# ---------------------------------------------------------------------------------------------- with an adapter


def test_gamma_zero_composition_is_the_adapter_alone(modelscope_dir):
    prior = load_diffusers_prior(modelscope_dir, frames=FRAMES, height=SIZE, width=SIZE)
    text = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4))
    conds = Conds(small=Cond.make(text=text), prior=prior_prompts(prior, ["a red block", "a blue ball"]))
    assert_gamma_zero_is_the_adapter_alone(latent_adapter(prior), prior, conds, steps=4)


def test_mismatched_latent_channels_or_frames_are_clear_errors(modelscope_dir):
    prior = load_diffusers_prior(modelscope_dir, frames=FRAMES, height=SIZE, width=SIZE)
    with pytest.raises(ValueError, match="shapes differ"):
        check_compatible(latent_adapter(prior, channels=3), prior)
    with pytest.raises(ValueError, match="frame counts differ"):
        check_compatible(latent_adapter(prior, frames=FRAMES + 1), prior)
    with pytest.raises(ValueError, match="spaces differ"):
        check_compatible(latent_adapter(prior, space="pixels"), prior)


LATENT_ADAPTER = dict(frames=FRAMES, height=SIZE, width=SIZE, base_channels=8, channel_mults=(1, 2),
                      attention_resolutions=(2,), head_dim=8, emb_dim=16, norm_groups=4)


@pytest.fixture
def latent_run(modelscope_dir, tmp_path, monkeypatch):
    """A TrainConfig for a tiny adapter in the ModelScope-style prior's latents, its cache under tmp_path."""
    from video_adapter.data.toy import make_toy_dataset
    from video_adapter.training.train import TrainConfig

    monkeypatch.setenv("VIDEO_ADAPTER_CACHE", str(tmp_path / "cache"))
    toy = make_toy_dataset(tmp_path / "toy", num=8, frames=FRAMES, size=(SIZE, SIZE), seed=0, progress=False)
    return TrainConfig(data=str(toy), out=str(tmp_path / "run"), space=str(modelscope_dir), preset="S",
                       model=LATENT_ADAPTER, steps=3, batch_size=4, lr=1e-3, warmup_steps=1, save_every=3,
                       sample_every=0, log_every=1, num_workers=0)


@pytest.mark.slow
def test_latent_adapter_trains_from_cached_latents_composes_and_decodes(modelscope_dir, latent_run, tmp_path,
                                                                        monkeypatch):
    from dataclasses import replace

    from video_adapter.models.diffusers import LatentCodec
    from video_adapter.models.score_model import load_score_model
    from video_adapter.training.train import train

    small = load_score_model(train(replace(latent_run, sample_every=3)))
    prior = load_diffusers_prior(modelscope_dir, frames=FRAMES, height=SIZE, width=SIZE)
    check_compatible(small, prior)  # the adapter lives in the prior's latent space, at its latent shape
    assert small.spec.text_encoder == prior.spec.text_encoder  # both see the prompt through the prior's encoder
    assert (tmp_path / "run" / "samples" / "step_0000003.gif").stat().st_size > 0  # previews decoded by the VAE
    entries = list((tmp_path / "cache" / "latents").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()  # one complete entry, no leftovers

    emb = load_text_encoder(prior.spec.text_encoder).encode(["a red block", "a blue ball"])
    first = torch.zeros((2,) + prior.spec.shape[:1] + prior.spec.shape[2:])
    conds = Conds(small=Cond.make(text=emb.tokens, text_mask=emb.mask, pooled=emb.pooled, first_frame=first),
                  prior=Cond.make(text=emb.tokens, text_mask=emb.mask))
    latents = sample(mode_fn("composed", small, prior, alpha=2.0, strength=PriorStrength(0.2)),
                     (2,) + prior.spec.shape, conds, sampler="ddim", steps=3, seed=0)
    assert prior.codec.decode(latents).shape == (2, 3, FRAMES, SIZE, SIZE)

    encoded = []  # a second run reads the cache: nothing is encoded again
    monkeypatch.setattr(LatentCodec, "encode", lambda self, video: encoded.append(video))
    train(replace(latent_run, out=str(tmp_path / "again"), steps=1))
    assert encoded == []


def test_continuing_a_latent_adapter_needs_its_video_size(latent_run, tmp_path):
    from dataclasses import replace

    from video_adapter.training.train import train

    first = train(latent_run)
    continued = replace(latent_run, out=str(tmp_path / "more"), init=str(first), steps=1)
    assert (train(continued) / "config.json").is_file()  # the same video size: the init's latents
    wrong = replace(continued, out=str(tmp_path / "wrong"), model={**LATENT_ADAPTER, "height": 2 * SIZE})
    with pytest.raises(ValueError, match="pass the video size the model was trained at"):
        train(wrong)


def test_sample_cli_composes_a_latent_adapter_with_a_diffusers_prior(modelscope_dir, latent_run, tmp_path, capsys):
    from PIL import Image

    from video_adapter.training.train import train

    adapter = train(latent_run)
    Image.new("RGB", (SIZE, SIZE), (200, 30, 30)).save(tmp_path / "start.png")
    common = ["--prompt", "a red block", "--sampler", "ddim", "--steps", "3", "--device", "cpu"]
    out = run(capsys, "sample", "--adapter", str(adapter), "--prior", str(modelscope_dir), "--first-frame",
              str(tmp_path / "start.png"), "--partial-conditions", "--compare", "--out", str(tmp_path / "c.gif"),
              *common)
    assert "adapter/prior" in out and (tmp_path / "c.mp4").stat().st_size > 0
    assert Image.open(tmp_path / "c.gif").n_frames == FRAMES  # decoded to the video's frames, not latent frames
    run(capsys, "sample", "--prior", str(modelscope_dir), "--video-size", f"{FRAMES}x{SIZE}x{SIZE}",
        "--out", str(tmp_path / "p.gif"), *common)
    assert Image.open(tmp_path / "p.gif").n_frames == FRAMES
    assert "--video-size" in fails(capsys, "sample", "--prior", str(modelscope_dir), "--out", str(tmp_path / "q.gif"),
                                   *common)


def test_space_rejects_the_pixel_space_edge_condition(modelscope_dir):
    from video_adapter.training.train import TrainConfig

    with pytest.raises(ValueError, match="edge_cond=false"):
        TrainConfig(space=str(modelscope_dir), model=dict(frames=FRAMES, height=SIZE, width=SIZE,
                                                          edge_cond=True)).model_config()


def test_not_a_pipeline_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_diffusers_prior(tmp_path, frames=FRAMES, height=SIZE, width=SIZE)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="supported: " + ", ".join(PIPELINES)):
        load_diffusers_prior(tmp_path, frames=FRAMES, height=SIZE, width=SIZE)


def test_pickled_pipeline_weights_are_refused(modelscope_dir, tmp_path):
    import shutil

    pickled = tmp_path / "pipeline"
    shutil.copytree(modelscope_dir, pickled)
    for weights in (pickled / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(FileNotFoundError, match="no .safetensors weights; pickled weights") as info:
        load_diffusers_prior(pickled, frames=FRAMES, height=SIZE, width=SIZE)
    assert "unet" in str(info.value) and "safe_serialization=True" in str(info.value)
    shutil.rmtree(pickled / "unet")
    with pytest.raises(FileNotFoundError, match="lacks its unet/ folder"):
        load_diffusers_prior(pickled, frames=FRAMES, height=SIZE, width=SIZE)
