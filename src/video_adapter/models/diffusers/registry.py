"""The supported pipelines, one `PIPELINES` entry each, and what a pipeline directory says about its latent space.

Adding a model is an entry here (its denoiser and VAE classes, text encoder, parameterization and `Family`) plus, if
its pipeline calls the denoiser in a new way, a `Family` subclass (families.py, image.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .codec import LatentCodec, latent_shape, vae_geometry
from .families import LTX, CogVideoX, Family, Hunyuan, Wan
from .image import CogVideoXImageToVideo, LTXImageToVideo, WanImageToVideo
from .time import DiscreteVP, RectifiedFlow


@dataclass(frozen=True)
class Pipeline:
    denoiser: str                 # diffusers class of the denoiser (two experts: folder and folder + "_2") ...
    folder: str                   # ... and its sub-folder
    vae: str                      # diffusers class of the VAE (in vae/)
    text_encoder: str             # text.load_text_encoder kind, given the pipeline directory
    max_length: int               # prompt tokens, as the pipeline pads them
    time: Callable[[dict, bool], DiscreteVP | RectifiedFlow]  # parameterization from (scheduler config, quantize)
    family: type[Family]          # how the pipeline calls its denoiser
    per_frame_vae: bool = False   # an image VAE applied frame by frame


def flow(scheduler: dict, _quantize: bool) -> RectifiedFlow:
    return RectifiedFlow(scheduler.get("num_train_timesteps", 1000))


WAN = dict(denoiser="WanTransformer3DModel", folder="transformer", vae="AutoencoderKLWan", text_encoder="umt5",
           max_length=512, time=flow)
# CogVideoX and LTX-Video run T5 without an attention mask (their pipelines'); t5-padded does the same
COGVIDEOX = dict(denoiser="CogVideoXTransformer3DModel", folder="transformer", vae="AutoencoderKLCogVideoX",
                 text_encoder="t5-padded", max_length=226, time=DiscreteVP.from_scheduler_config)
LTX_VIDEO = dict(denoiser="LTXVideoTransformer3DModel", folder="transformer", vae="AutoencoderKLLTXVideo",
                 text_encoder="t5-padded", max_length=128, time=flow)

PIPELINES = {
    "TextToVideoSDPipeline": Pipeline("UNet3DConditionModel", "unet", "AutoencoderKL", "clip", 77,
                                      DiscreteVP.from_scheduler_config, Family, per_frame_vae=True),
    "WanPipeline": Pipeline(**WAN, family=Wan),
    "WanImageToVideoPipeline": Pipeline(**WAN, family=WanImageToVideo),
    "CogVideoXPipeline": Pipeline(**COGVIDEOX, family=CogVideoX),
    "CogVideoXImageToVideoPipeline": Pipeline(**COGVIDEOX, family=CogVideoXImageToVideo),
    "LTXPipeline": Pipeline(**LTX_VIDEO, family=LTX),
    "LTXImageToVideoPipeline": Pipeline(**LTX_VIDEO, family=LTXImageToVideo),
    "HunyuanVideoPipeline": Pipeline("HunyuanVideoTransformer3DModel", "transformer", "AutoencoderKLHunyuanVideo",
                                     "hunyuan", 256, flow, Hunyuan),
}


def _fingerprint(folder: Path) -> str:
    """Names the latent space: the VAE's config and the size of its weights (cheap, and changes with either)."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:12]


def from_safetensors(model_class, folder: Path, **kwargs):
    """`model_class.from_pretrained(folder)` from safetensors only: pickled weights (.bin) can run code on load."""
    if not folder.is_dir():
        raise FileNotFoundError(f"the pipeline directory lacks its {folder.name}/ folder ({folder}); save the whole "
                                "pipeline with pipeline.save_pretrained(DIR)")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder} has no .safetensors weights; pickled weights (.bin) are never loaded here. "
                                "Re-save the pipeline where you trust its files: "
                                "pipeline.save_pretrained(DIR, safe_serialization=True)")
    return model_class.from_pretrained(folder, use_safetensors=True, **kwargs)


@dataclass(frozen=True)
class LatentSpace:
    """What an adapter trained in a pipeline's latents needs, read from the directory's JSON files (no weights)."""

    root: Path
    name: str                     # the pipeline class (model_index.json's _class_name)
    pipeline: Pipeline
    index: dict                   # model_index.json: components and pipeline options (boundary_ratio, ...)
    space: str                    # "latent:<fingerprint of vae/>"
    text_encoder: str             # text.load_text_encoder spec of the pipeline's own encoder
    text_dim: int                 # its token width

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        cfg = json.loads((self.root / "vae" / "config.json").read_text())
        return latent_shape(*vae_geometry(cfg, self.pipeline.per_frame_vae), frames, height, width)

    def codec(self, device=None) -> LatentCodec:
        import diffusers

        vae = from_safetensors(getattr(diffusers, self.pipeline.vae), self.root / "vae")
        return LatentCodec(vae.to(device).eval().requires_grad_(False), self.pipeline.per_frame_vae)

    def scheduler_config(self) -> dict:
        return json.loads((self.root / "scheduler" / "scheduler_config.json").read_text())

    def has(self, component: str) -> bool:
        """Whether the pipeline was saved with `component` (model_index.json lists absent ones as [null, null])."""
        entry = self.index.get(component)
        return isinstance(entry, list) and entry[0] is not None


def latent_space(path: str | Path) -> LatentSpace:
    """The latent space of a local diffusers pipeline directory, with a clear error for anything else."""
    root = Path(path)
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{root} is not a diffusers pipeline directory (no model_index.json); save one with "
                                "pipeline.save_pretrained(DIR) on a machine that has the model")
    index = json.loads(index_file.read_text())
    name = index.get("_class_name", "")
    if name not in PIPELINES:
        raise ValueError(f"{root} holds a {name or 'unnamed'} pipeline; supported: {', '.join(PIPELINES)}")
    kind = PIPELINES[name]
    text_cfg = json.loads((root / "text_encoder" / "config.json").read_text())
    text_dim = text_cfg.get("d_model") or text_cfg.get("hidden_size") or text_cfg["text_config"]["hidden_size"]
    return LatentSpace(root, name, kind, index, f"latent:{_fingerprint(root / 'vae')}",
                       f"{kind.text_encoder}:{root.resolve()}?max_length={kind.max_length}", int(text_dim))
