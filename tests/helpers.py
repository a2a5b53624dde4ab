"""What the test suite shares besides its fixtures (conftest.py): tiny models and their inputs, analytic Gaussian
experts, stand-ins for the metric detectors, tiny tokenizers, tiny diffusers pipelines, and helpers for the CLI,
training runs and scripts. Test files import from here, never from one another."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import List

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from video_adapter.interfaces.cli import main
from video_adapter.maths.conditioning import Cond, sobel_x
from video_adapter.maths.schedule import alpha_sigma
from video_adapter.models.checkpoint import load_tensors
from video_adapter.models.score_model import ModelSpec, ScoreModel
from video_adapter.models.unet import UNetConfig
from video_adapter.training.train import TrainConfig

# -------------------------------------------------------------------------------------------------------- tiny models

def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Random weights everywhere, zero-initialised output layers included, so every input path is visible."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def model_inputs(cfg, b: int = 3, seed: int = 0, logsnr_range: float = 5.0):
    """Noisy video, per-sample log-SNR and every condition, for a model built from `cfg`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.channels, cfg.frames, cfg.height, cfg.width, generator=g)
    video = torch.rand(b, cfg.channels, cfg.frames, cfg.height, cfg.width, generator=g) * 2 - 1
    cond = Cond.make(text=torch.randn(b, 5, cfg.text_dim, generator=g), first_frame=video[:, :, 0],
                     edges=sobel_x(video))
    return x, torch.linspace(-logsnr_range, logsnr_range, b), cond


# --------------------------------------------------------------------------------------------------- Gaussian experts

# Analytic Gaussian experts: ScoreModels whose eps and energy are known in closed form at every noise level.
# 
# Data x0 ~ N(mean, cov) given text and N(mean_u, cov_u) without (cond.has_text False), as [B, D, 1, 1, 1] "videos".
# At log-SNR l the noised law is N(alpha mean, alpha^2 cov + sigma^2 I), so with precision P_t:
#     eps(x) = sigma P_t (x - alpha mean),   E(x) = (x - alpha mean)^T P_t (x - alpha mean) / 2,   eps = sigma grad E.

def random_cov(d: int, seed: int, scale: float = 0.3) -> Tensor:
    """A correlated covariance with standard deviations around `scale`."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) * scale / d**0.5
    return a @ a.T + torch.eye(d, dtype=torch.float64) * scale**2 / 2


def _levels(logsnr: Tensor) -> list[float]:
    """The distinct noise levels of a batch (samplers pass one; the check avoids a sort per call)."""
    logsnr = logsnr.double()
    return [logsnr[0].item()] if bool((logsnr == logsnr[0]).all()) else logsnr.unique().tolist()


class GaussianExpert(ScoreModel):
    def __init__(self, mean, cov, mean_u=None, cov_u=None):
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        self.mean_u = self.mean if mean_u is None else torch.as_tensor(mean_u, dtype=torch.float64)
        self.cov_u = self.cov if cov_u is None else torch.as_tensor(cov_u, dtype=torch.float64)
        d = len(self.mean)
        self.spec = ModelSpec(space="pixels", channels=d, frames=1, height=1, width=1, conditions=("text",),
                              parameters=d + d * d)
        self.calls: list[tuple[int, list[float]]] = []  # (batch, distinct logsnrs) of every eps call

    def noised(self, logsnr: float, text: bool) -> tuple[Tensor, Tensor]:
        """Mean [D] and precision [D, D] of the noised law at one level."""
        alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
        mean, cov = (self.mean, self.cov) if text else (self.mean_u, self.cov_u)
        return alpha * mean, torch.linalg.inv(alpha**2 * cov + sigma**2 * torch.eye(len(mean), dtype=torch.float64))

    def _per_group(self, x: Tensor, logsnr: Tensor, cond: Cond, fn) -> Tensor:
        """fn(z [n, D], mean, prec, sigma) on each group of rows sharing a level and a text flag."""
        has_text = cond.has_text if cond.has_text is not None else torch.ones(len(logsnr), dtype=torch.bool)
        z, out = x.flatten(1).double(), None
        for level in _levels(logsnr):
            for text in (True, False):
                rows = (logsnr.double() == level) & (has_text == text)
                if rows.any():
                    mean, prec = self.noised(level, text)
                    part = fn(z[rows] - mean, prec, alpha_sigma(torch.tensor(level, dtype=torch.float64))[1])
                    out = part.new_zeros((len(z),) + part.shape[1:]) if out is None else out
                    out[rows] = part
        return out

    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        self.calls.append((x.shape[0], _levels(logsnr)))
        eps = self._per_group(x, logsnr, cond, lambda z, prec, sigma: sigma * z @ prec)
        return eps.reshape(x.shape).to(x.dtype)

    def energy(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        return self._per_group(x, logsnr, cond, lambda z, prec, sigma: 0.5 * ((z @ prec) * z).sum(1)).to(x.dtype)


def product(terms: list[tuple[float, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Mean and covariance of prod_i N(mean_i, cov_i)^{w_i}, terms (w_i, mean_i, cov_i)."""
    prec = sum(w * torch.linalg.inv(c) for w, _, c in terms)
    cov = torch.linalg.inv(prec)
    return cov @ sum(w * torch.linalg.inv(c) @ m for w, m, c in terms), cov


def text_cond(batch: int) -> Cond:
    return Cond(has_text=torch.ones(batch, dtype=torch.bool))


# ------------------------------------------------------------------------------------------------- detector stand-ins

# A scriptable stand-in for StyleGAN-V's FVD detector `i3d_torchscript.pt`, for tests only (random weights).
# 
# The real file is a TorchScript port of the tf.hub Kinetics-400 I3D; its class, `src.i3dpt_jit.I3D`, names it a
# JIT form of hassony2/kinetics_i3d_pytorch's `src/i3dpt.py`: an Inception-v1 inflated to 3D with TF "SAME" padding,
# Mixed blocks 3b..5c, a (2, 7, 7) average pool, a 1x1x1 logits conv, and logits averaged over time. Its forward is
# `forward(x, rescale=False, resize=False, return_features=False)`: `rescale` maps [0, 255] to [-1, 1] with
# x / 255 * 2 - 1, `resize` resizes every frame bilinearly to 224 x 224, and `return_features` returns the 400
# time-averaged logits (the tf.hub layer FVD is defined on, "RGB/inception_i3d/Mean") instead of their softmax.
# 
# This copy keeps that topology, the call signature and the preprocessing, with every channel count scaled by `width`
# so it runs on a CPU in a test. The exact interpolation kernel of the real port is not public source; bilinear with
# align_corners=False is assumed here, which the package code does not depend on (it only passes the flags).

def same_pad(n: int, k: int, s: int) -> List[int]:
    """TensorFlow SAME padding of one dimension: output size ceil(n / s), the odd pixel at the end."""
    total = max(k - (s if n % s == 0 else n % s), 0)
    return [total // 2, total - total // 2]


def tf_same_pad(x: Tensor, kernel: List[int], stride: List[int]) -> Tensor:
    """Zero-pad [B, C, T, H, W] as TensorFlow's SAME convolutions and pools do."""
    t, h, w = x.shape[2], x.shape[3], x.shape[4]
    pads = same_pad(w, kernel[2], stride[2]) + same_pad(h, kernel[1], stride[1]) + same_pad(t, kernel[0], stride[0])
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm (TF eps 1e-3) -> ReLU, or a biased conv alone for the logits."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = list(kernel), list(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=logits)
        self.batch3d = nn.Identity() if logits else nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.batch3d(self.conv3d(tf_same_pad(x, self.kernel, self.stride)))
        return out if self.logits else F.relu(out)


class MaxPoolSame(nn.Module):
    # Zero padding equals TF's -inf padding here: every pool follows a ReLU.
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(tf_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1, concatenated over channels."""

    def __init__(self, cin: int, c: List[int]):
        super().__init__()
        self.branch_0 = Unit3D(cin, c[0])
        self.branch_1 = nn.Sequential(Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


# (name, output channels per branch) of the Mixed blocks, in order; pools sit before 4b and 5b.
MIXED = [("3b", [64, 96, 128, 16, 32, 32]), ("3c", [128, 128, 192, 32, 96, 64]),
         ("4b", [192, 96, 208, 16, 48, 64]), ("4c", [160, 112, 224, 24, 64, 64]), ("4d", [128, 128, 256, 24, 64, 64]),
         ("4e", [112, 144, 288, 32, 64, 64]), ("4f", [256, 160, 320, 32, 128, 128]),
         ("5b", [256, 160, 320, 32, 128, 128]), ("5c", [384, 192, 384, 48, 128, 128])]


class InceptionI3d(nn.Module):
    """Kinetics I3D: [B, 3, T, 224, 224] in [-1, 1] -> time-averaged logits [B, num_classes]."""

    def __init__(self, num_classes: int = 400, width: float = 1.0):
        super().__init__()

        def w(channels: int) -> int:
            return max(1, round(channels * width))

        layers: List[nn.Module] = [Unit3D(3, w(64), (7, 7, 7), (2, 2, 2)), MaxPoolSame((1, 3, 3), (1, 2, 2)),
                                   Unit3D(w(64), w(64)), Unit3D(w(64), w(192), (3, 3, 3)),
                                   MaxPoolSame((1, 3, 3), (1, 2, 2))]
        cin = w(192)
        for name, c in MIXED:
            if name == "4b":
                layers.append(MaxPoolSame((3, 3, 3), (2, 2, 2)))
            if name == "5b":
                layers.append(MaxPoolSame((2, 2, 2), (2, 2, 2)))
            c = [w(v) for v in c]
            layers.append(Mixed(cin, c))
            cin = c[0] + c[2] + c[4] + c[5]
        self.features = nn.Sequential(*layers)
        self.logits = Unit3D(cin, num_classes, logits=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool3d(self.features(x), (2, 7, 7), (1, 1, 1))
        return self.logits(x).squeeze(4).squeeze(3).mean(2)


class StyleGANVI3D(nn.Module):
    """The StyleGAN-V detector's interface around `InceptionI3d`: uint8 or float [B, 3, T, H, W] in [0, 255]."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.net = InceptionI3d(400, width)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        x = x.float()
        if rescale:
            x = x / 255.0 * 2 - 1
        if resize:
            b, c, t, h, w = x.shape
            frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=[224, 224], mode="bilinear", align_corners=False)
            x = frames.reshape(b, t, c, 224, 224).permute(0, 2, 1, 3, 4)
        logits = self.net(x)
        return logits if return_features else logits.softmax(1)


def random_i3d(width: float = 1.0, seed: int = 0) -> torch.jit.ScriptModule:
    """A scripted `StyleGANVI3D` in eval mode with random weights that keep activations at unit scale.

    He-initialised convolutions and batch-norm statistics near (0, 1) keep the features input-dependent through all
    the layers, where PyTorch's default initialisation shrinks every layer's output and leaves nearly constant logits.
    """
    torch.manual_seed(seed)
    model = StyleGANVI3D(width).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return torch.jit.script(model)


class InceptionStandIn(nn.Module):
    """StyleGAN2-ADA's Inception call signature and preprocessing (to 299 x 299, (x - 128) / 128), tiny body."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 5, stride=4)
        self.pool3 = nn.Linear(16, 2048)
        self.output = nn.Linear(2048, 1008)

    def forward(self, img: Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> Tensor:
        x = F.interpolate(img.float(), size=[299, 299], mode="bilinear", align_corners=False)
        x = F.relu(self.conv((x - 128) / 128)).mean([2, 3])
        features = F.relu(self.pool3(x))
        if return_features:
            return features
        logits = F.linear(features, self.output.weight) if no_output_bias else self.output(features)
        return logits.softmax(1)


# --------------------------------------------------------------------------------------------------------- tokenizers

WORDS = "a the cat dog runs on grass red blue car drives down road robot arm picks up block".split()


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


# ------------------------------------------------------------------------------------------------------------ the CLI

def run(capsys, *argv) -> str:
    capsys.readouterr()
    main(list(argv))
    return capsys.readouterr().out


def run_json(capsys, *argv) -> dict:
    return json.loads(run(capsys, *argv))


def fails(capsys, *argv) -> str:
    """The message of a clean exit (SystemExit carrying text, or argparse's usage error), never a traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    code = e.value.code
    assert code not in (0, None)
    return code if isinstance(code, str) else capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ training runs

TINY = dict(frames=4, height=8, width=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(4,),
            head_dim=16, emb_dim=32)


def train_config(data, out, **kw):
    """A TrainConfig of the TINY model on `data` for a few steps, checkpoints every 4 (`kw` overrides)."""
    base = dict(data=str(data), out=str(out), preset="S", model=TINY, steps=12, batch_size=4, lr=2e-3,
                warmup_steps=2, save_every=4, sample_every=0, log_every=1, seed=0, num_workers=0)
    return TrainConfig(**{**base, **kw})


def assert_same_training_state(a_dir, b_dir, step: int) -> None:
    """Two run checkpoints hold bit-identical online, optimizer, RNG and EMA state, data position, and `step`."""
    for name in ("online", "optimizer", "rng"):
        a = load_file(str(a_dir / "train_state" / f"{name}.safetensors"))
        b = load_file(str(b_dir / "train_state" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k} differs after resume"
    ema_a, ema_b = load_tensors(a_dir), load_tensors(b_dir)
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    state_a = json.loads((a_dir / "train_state/state.json").read_text())
    state_b = json.loads((b_dir / "train_state/state.json").read_text())
    assert state_a["data"] == state_b["data"] and state_a["step"] == state_b["step"] == step


# one intra-op thread per process, so several-process runs can equal one-process runs bit for bit
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node"]

# --------------------------------------------------------------------------------------------------------- evaluation

EVAL_SHAPE = dict(frames=4, height=8, width=16)  # the models of conftest's eval_config: a prior taking every condition
EVAL_PRIOR = UNetConfig(**EVAL_SHAPE, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                        attention_resolutions=(4,), head_dim=8, emb_dim=32, first_frame_cond=True, edge_cond=True)
EVAL_SMALL = UNetConfig(**EVAL_SHAPE, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                        attention_resolutions=(4,), head_dim=8, emb_dim=32, first_frame_cond=True)

# ------------------------------------------------------------------------------------------------------------ scripts

def load_script(name: str, folder: str = "scripts"):
    """A module of scripts/ (or benchmarks/; not packages), imported from its file. It is registered in
    sys.modules while it runs, as an import would, which its dataclasses need."""
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


# -------------------------------------------------------------------------------------------- diffusers pipelines

# Tiny diffusers pipelines, built from configs with random weights and saved with save_pretrained, for the priors of
# video_adapter.models.diffusers: one builder per family, each returning the saved directory.

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


def cogvideox_pipeline(path: Path, *, version: str = "1.0", image: bool = False, rotary: bool = True,
                       vae_blocks: int = 3) -> Path:
    """CogVideoX 1.0 (5B-style: rotary embeddings; 2B-style without `rotary`) or 1.5 (patch_size_t = 2, its sliced
    rotary grid), text- or image-to-video (the image latents on channels; 1.5's image model also embeds `ofs`). The
    VAE compresses 4x in time and space with 3 blocks (as its config's ratio says), 2x with 2."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    tok = t5_tokenizer()
    v15 = version == "1.5"
    extra = dict(patch_size_t=2, patch_bias=False) if v15 else {}
    if v15 and image:
        extra["ofs_embed_dim"] = 8
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8 if image else 4, out_channels=4, time_embed_dim=8,
        text_embed_dim=12, num_layers=1, sample_width=4, sample_height=4, sample_frames=5, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=rotary, **extra)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8,) * vae_blocks,
                                 down_block_types=("CogVideoXDownBlock3D",) * vae_blocks,
                                 up_block_types=("CogVideoXUpBlock3D",) * vae_blocks, latent_channels=4,
                                 layers_per_block=1,
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
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

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
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
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
    from video_adapter.models.text import load_text_encoder

    emb = load_text_encoder(prior.spec.text_encoder).encode(captions)
    return Cond.make(text=emb.tokens, text_mask=emb.mask, pooled=emb.pooled)


def latent_adapter(prior, text_encoder: str = "", **overrides):
    """A tiny NativeScoreModel in the prior's latent space, at its latent shape, with random weights."""
    from video_adapter.models.score_model import NativeScoreModel
    from video_adapter.models.unet import SpaceTimeUNet

    c, f, h, w = prior.spec.shape
    cfg = dict(channels=c, frames=f, height=h, width=w, base_channels=8, channel_mults=(1, 2),
               attention_resolutions=(2,), head_dim=8, emb_dim=16, text_dim=16, norm_groups=4, first_frame_cond=False,
               space=prior.spec.space)
    return NativeScoreModel(randomize(SpaceTimeUNet(UNetConfig(**{**cfg, **overrides})), seed=3, scale=0.05),
                            text_encoder=text_encoder)


def assert_gamma_zero_is_the_adapter_alone(small, prior, conds, steps: int = 3) -> None:
    """Composition at prior strength 0 samples exactly what the adapter alone does (the prior is never called), and
    at 0.5 something else."""
    from video_adapter.maths.composition import PriorStrength, mode_fn
    from video_adapter.maths.sampling import sample
    from video_adapter.models.score_model import check_compatible

    check_compatible(small, prior)

    def run(mode, gamma):
        fn = mode_fn(mode, small, prior, alpha=3.0, strength=PriorStrength(gamma))
        return sample(fn, (len(conds.prior.text),) + prior.spec.shape, conds, sampler="ddim", steps=steps, seed=5)

    alone = run("adapter", 0.0)
    assert torch.equal(run("composed", 0.0), alone)
    assert not torch.allclose(run("composed", 0.5), alone, atol=1e-4)

