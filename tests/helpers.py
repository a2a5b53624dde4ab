"""What the test suite shares besides its fixtures (conftest.py). Test files import from here, never from one another.

Tiny diffusers pipelines, built from configs with random weights and saved with save_pretrained, for the priors of
video_adapter.models.diffusers: one builder per family, each returning the saved directory.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = "a the cat dog runs on grass red blue car drives down road robot arm picks up block".split()


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Random weights everywhere, zero-initialised output layers included, so every input path is visible."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [("\u2581" + w, -1.0) for w in WORDS] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def clip_tokenizer():
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


# ----------------------------------------------------------------------------------------------- tiny pipelines

def tiny_t5(tok, umt5: bool = False, d_model: int = 12):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config, model = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    return model(config(vocab_size=len(tok), d_model=d_model, d_kv=6, num_layers=1, num_heads=2, d_ff=16,
                        pad_token_id=tok.pad_token_id))


def tiny_clip_text(tok, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel

    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    return CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                                        eos_token_id=eos, pad_token_id=eos,
                                        bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>")))


def wan_transformer(seed: int, in_channels: int = 4, **extra):
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                  in_channels=in_channels, out_channels=4, text_dim=12, freq_dim=16, ffn_dim=32,
                                  num_layers=2, cross_attn_norm=True, rope_max_seq_len=32, **extra)
    return randomize(model, seed=seed, scale=0.05)


def wan_vae():
    from diffusers import AutoencoderKLWan

    # 2x in time and space; the pipelines' own scale factors (used for i2v's mask) say the same
    return AutoencoderKLWan(base_dim=4, z_dim=4, dim_mult=[1, 1], num_res_blocks=1, temperal_downsample=[True],
                            latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 0.5, 1.0, 2.0],
                            scale_factor_temporal=2, scale_factor_spatial=2)


def wan_pipeline(path: Path, *, two_experts: bool = False, image: bool = False, clip: bool = False,
                 expand_timesteps: bool = False, boundary_ratio: float = 0.875) -> Path:
    """WanPipeline, or WanImageToVideoPipeline (`image`): Wan 2.1-style with one transformer, Wan 2.2 A14B-style
    with `two_experts` (switched at `boundary_ratio`), Wan 2.1 I2V with a CLIP image encoder (`clip`), or Wan 2.2
    TI2V-style (`expand_timesteps`: the image's latent replaces the first frame)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanPipeline

    torch.manual_seed(0)
    tok = t5_tokenizer()
    concat = image and not expand_timesteps  # mask (temporal-ratio channels) and image latents on channels
    in_channels = 4 + 2 + 4 if concat else 4
    extra = dict(image_dim=8, added_kv_proj_dim=16) if clip else {}
    kwargs = dict(tokenizer=tok, text_encoder=tiny_t5(tok, umt5=True), vae=wan_vae(),
                  scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                  transformer=wan_transformer(2, in_channels, **extra))
    if two_experts:
        kwargs.update(transformer_2=wan_transformer(7, in_channels, **extra), boundary_ratio=boundary_ratio)
    if image:
        if clip:
            from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

            kwargs["image_encoder"] = randomize(CLIPVisionModel(CLIPVisionConfig(
                hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=8,
                patch_size=4)), seed=5, scale=0.2)
            kwargs["image_processor"] = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8,
                                                                                                  "width": 8})
        pipeline = WanImageToVideoPipeline(expand_timesteps=expand_timesteps, **kwargs)
    else:
        pipeline = WanPipeline(expand_timesteps=expand_timesteps, **kwargs)
    pipeline.save_pretrained(path)
    return path


def cogvideox_pipeline(path: Path, *, version: str = "1.0", image: bool = False) -> Path:
    """CogVideoX 1.0 (5B-style: rotary embeddings) or 1.5 (patch_size_t = 2, its sliced rotary grid), text- or
    image-to-video (the image latents on channels; 1.5's image model also embeds `ofs`)."""
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline,
                           CogVideoXPipeline, CogVideoXTransformer3DModel)

    torch.manual_seed(0)
    tok = t5_tokenizer()
    v15 = version == "1.5"
    extra = dict(patch_size_t=2, patch_bias=False) if v15 else {}
    if v15 and image:
        extra["ofs_embed_dim"] = 8
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8 if image else 4, out_channels=4, time_embed_dim=8,
        text_embed_dim=12, num_layers=1, sample_width=4, sample_height=4, sample_frames=5, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=True, **extra)
    # 4x in time and space, as the pipelines' own vae_scale_factors say
    vae = AutoencoderKLCogVideoX(block_out_channels=(8,) * 3, down_block_types=("CogVideoXDownBlock3D",) * 3,
                                 up_block_types=("CogVideoXUpBlock3D",) * 3, latent_channels=4, layers_per_block=1,
                                 norm_num_groups=4, temporal_compression_ratio=4, invert_scale_latents=v15)
    scheduler = CogVideoXDDIMScheduler(snr_shift_scale=3.0 if not v15 else 1.0, rescale_betas_zero_snr=True,
                                       prediction_type="v_prediction", beta_schedule="scaled_linear",
                                       timestep_spacing="trailing")
    randomize(transformer, seed=3, scale=0.05)
    cls = CogVideoXImageToVideoPipeline if image else CogVideoXPipeline
    cls(tokenizer=tok, text_encoder=tiny_t5(tok), vae=vae, transformer=transformer,
        scheduler=scheduler).save_pretrained(path)
    return path


def ltx_pipeline(path: Path, *, image: bool = False, scaling_factor: float = 1.0) -> Path:
    """LTXPipeline or LTXImageToVideoPipeline: a causal video VAE 4x in time and space with per-channel latent
    statistics (saved as buffers), a transformer on its patchifier's tokens, T5 text with an attention mask. (The
    released VAE's scaling_factor is 1, which LTXImageToVideoPipeline assumes for its image latents.)"""
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXImageToVideoPipeline,
                           LTXPipeline, LTXVideoTransformer3DModel)

    torch.manual_seed(0)
    tok = t5_tokenizer()
    vae = AutoencoderKLLTXVideo(in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8,) * 4,
                                decoder_block_out_channels=(8,) * 4, layers_per_block=(1,) * 5,
                                decoder_layers_per_block=(1,) * 5, spatio_temporal_scaling=(True, True, False, False),
                                decoder_spatio_temporal_scaling=(True, True, False, False),
                                decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
                                upsample_factor=(1,) * 4, patch_size=1, patch_size_t=1,
                                scaling_factor=scaling_factor)
    with torch.no_grad():  # statistics that the normalisation visibly uses
        vae.latents_mean.copy_(torch.linspace(-0.3, 0.4, 8))
        vae.latents_std.copy_(torch.linspace(0.5, 2.0, 8))
    transformer = randomize(LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                                       num_attention_heads=2, attention_head_dim=8,
                                                       cross_attention_dim=16, num_layers=1, caption_channels=12),
                            seed=4, scale=0.3)  # attention sharp enough for its rotary positions to matter
    cls = LTXImageToVideoPipeline if image else LTXPipeline
    cls(tokenizer=tok, text_encoder=tiny_t5(tok), vae=vae, transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True)).save_pretrained(path)
    return path


def hunyuan_pipeline(path: Path) -> Path:
    """HunyuanVideoPipeline: a Llama text encoder (3 layers: the pipeline reads the third from last) under its prompt
    template, CLIP's pooled text embedding, a guidance-distilled transformer, a video VAE 4x in time, 8x in space."""
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    tok, tok_2 = clip_tokenizer(), clip_tokenizer()
    tok.model_max_length = tok_2.model_max_length = 512
    llama = LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                                   pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>")))
    vae = AutoencoderKLHunyuanVideo(in_channels=3, out_channels=3, latent_channels=4,
                                    down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                    up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8,) * 4,
                                    layers_per_block=1, norm_num_groups=4, scaling_factor=0.476986,
                                    spatial_compression_ratio=8, temporal_compression_ratio=4)
    transformer = randomize(HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), guidance_embeds=True), seed=6, scale=0.05)
    HunyuanVideoPipeline(text_encoder=llama, tokenizer=tok, transformer=transformer, vae=vae,
                         scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                         text_encoder_2=tiny_clip_text(tok_2, hidden=8), tokenizer_2=tok_2).save_pretrained(path)
    return path


def prior_prompts(prior, captions: list[str]):
    """A Cond of `captions` through the prior's own text encoder."""
    from video_adapter.maths.conditioning import Cond
    from video_adapter.models.text import load_text_encoder

    emb = load_text_encoder(prior.spec.text_encoder).encode(captions)
    return Cond.make(text=emb.tokens, text_mask=emb.mask, pooled=emb.pooled)


def latent_adapter(prior, text_encoder: str = "", **overrides):
    """A tiny NativeScoreModel in the prior's latent space, at its latent shape, with random weights."""
    from video_adapter.models.score_model import NativeScoreModel
    from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

    c, f, h, w = prior.spec.shape
    cfg = dict(channels=c, frames=f, height=h, width=w, base_channels=8, channel_mults=(1, 2),
               attention_resolutions=(2,), head_dim=8, emb_dim=16, text_dim=16, norm_groups=4, first_frame_cond=False,
               space=prior.spec.space)
    return NativeScoreModel(randomize(SpaceTimeUNet(UNetConfig(**{**cfg, **overrides})), seed=3, scale=0.05),
                            text_encoder=text_encoder)


def run(capsys, *argv) -> str:
    from video_adapter.interfaces.cli import main

    capsys.readouterr()
    main(list(argv))
    return capsys.readouterr().out
