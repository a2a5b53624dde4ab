"""`DiffusersPrior`: a diffusers pipeline's denoiser in canonical terms, and `load_diffusers_prior` that builds one
from a local pipeline directory (maths: docs/diffusers_priors.md)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from ...maths.conditioning import Cond
from ...maths.schedule import alpha_sigma, broadcast
from ..score_model import ModelSpec, ScoreModel
from ..text import TextEmbedding
from .codec import LatentCodec
from .families import Call, Context, Family
from .image import FrameEncodings
from .registry import from_safetensors, latent_space
from .time import DiscreteVP, Experts, RectifiedFlow


class DiffusersPrior(ScoreModel):
    """A pipeline's denoiser(s) as eps(x_t, logsnr, cond): `time.inputs` maps (x_t, logsnr) to the model's sample and
    timestep, `experts` picks the denoiser for that timestep, `family` calls it as the pipeline does, and `time.to_eps`
    converts its output. An absent text condition (classifier-free guidance's unconditional branch) is `null_text`,
    the embedding of the empty prompt, as the pipelines' default negative prompt.

    An image-to-video prior takes cond.first_frame as RGB pixels at the video size in every row, whatever its
    present flag: its pipeline's guidance is over the text alone and keeps the image in both branches."""

    def __init__(self, experts: Experts, time: DiscreteVP | RectifiedFlow, family: Family, spec: ModelSpec,
                 null_text: TextEmbedding, codec: LatentCodec | None = None, device=None):
        self.experts, self.time, self.family, self.spec, self.codec = experts, time, family, spec, codec
        self.null_text = null_text
        param = next(experts.first.parameters())
        # offloaded weights live on the CPU between calls; the inputs go where the forward runs
        self.device, self.dtype = torch.device(device) if device is not None else param.device, param.dtype
        self.frames = FrameEncodings(family.encode_image) if family.image else None

    @property
    def denoiser(self):
        """The (first) denoiser; Wan 2.2's second expert is `experts.denoisers[1]`."""
        return self.experts.first

    def _text(self, cond: Cond, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """(tokens, mask, pooled) per row: the prompt's where text is present, the empty prompt's elsewhere."""
        null = self.null_text.to(self.device)
        tokens, mask, pooled = (v.expand(batch, *v.shape[1:]) for v in (null.tokens, null.mask, null.pooled))
        if cond.text is None:
            return tokens.to(self.dtype), mask, pooled.to(self.dtype)
        if cond.text.shape[1:] != tokens.shape[1:]:
            raise ValueError(f"text embeddings are {tuple(cond.text.shape[1:])}, this prior takes "
                             f"{tuple(tokens.shape[1:])} (encode prompts with its own encoder, "
                             f"{self.spec.text_encoder!r})")
        present = cond.has_text.to(self.device)

        def rows(given: Tensor, default: Tensor) -> Tensor:
            return torch.where(broadcast(present, default), given.to(self.device), default)

        return (rows(cond.text.float(), tokens).to(self.dtype), rows(cond.text_mask, mask),
                rows(cond.pooled.float(), pooled).to(self.dtype))

    def _image(self, cond: Cond, batch: int) -> dict[str, Tensor]:
        frames = cond.first_frame
        if frames is None:
            raise ValueError("this prior is an image-to-video model: it needs the first frame (pass --first-frame "
                             "IMAGE; the adapter gets it too)")
        want = (batch, 3, self.spec.height * self.codec.spatial, self.spec.width * self.codec.spatial)
        if tuple(frames.shape) != want:
            raise ValueError(f"this image-to-video prior takes the first frame as RGB pixels {want} at the video size, "
                             f"got {tuple(frames.shape)} (a latent first frame is the adapter's form)")
        return self.frames(frames.to(self.device, torch.float32))

    @torch.no_grad()
    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        x_dev, lam = x.to(self.device, torch.float32), logsnr.to(self.device, torch.float32)
        sample, timestep = self.time.inputs(x_dev, logsnr.to(self.device))  # the timestep in float64
        text, mask, pooled = self._text(cond, len(x))
        image = self._image(cond, len(x)) if self.family.image else None

        def forward(denoiser, pick=lambda v: v) -> Tensor:
            call = Call(pick(sample).to(self.dtype), pick(timestep).float(), pick(text), pick(mask), pick(pooled),
                        None if image is None else {k: pick(v) for k, v in image.items()})
            return self.family.forward(denoiser, call).float()

        if len(self.experts.denoisers) == 1:
            out = forward(self.experts.first)
        else:  # each row to its expert (one host sync to split them; the samplers' rows share one level)
            which = self.experts.index(logsnr.to(self.device)).cpu()
            out = sample.new_zeros(sample.shape)
            for i, denoiser in enumerate(self.experts):
                rows = (which == i).nonzero().squeeze(1).to(self.device)
                if len(rows):
                    out[rows] = forward(denoiser, lambda v, rows=rows: v[rows])
        eps = self.time.to_eps(out, x_dev, lam)
        if self.family.clean_first_frame:
            # the pipeline never denoises the first latent frame: the prior's x0 there is the image's latent
            alpha, sigma = (broadcast(v, x_dev) for v in alpha_sigma(lam))
            eps[:, :, :1] = (x_dev[:, :, :1] - alpha * image["latent"]) / sigma
        return eps.to(x.device, x.dtype)


def load_denoisers(space, time: RectifiedFlow | DiscreteVP, dtype: torch.dtype, device: torch.device,
                   offload: bool) -> Experts:
    """The pipeline's denoiser, and its second expert with the boundary in model time where it has one."""
    import diffusers

    kind, root = space.pipeline, space.root
    folders = [kind.folder] + [f"{kind.folder}_2"] * space.has(f"{kind.folder}_2")
    denoisers = []
    for folder in folders:
        denoiser = from_safetensors(getattr(diffusers, kind.denoiser), root / folder, torch_dtype=dtype)
        denoiser = denoiser.eval().requires_grad_(False)
        if offload:
            from accelerate import cpu_offload

            cpu_offload(denoiser, execution_device=device)
        else:
            denoiser.to(device)
        denoisers.append(denoiser)
    ratio = space.index.get("boundary_ratio")
    if len(denoisers) == 2 and ratio is None:
        raise ValueError(f"{root} has {folders[1]}/ but no boundary_ratio in model_index.json: which expert answers "
                         "at which noise level is undefined")
    if ratio is None or len(denoisers) == 1:
        return Experts(denoisers)
    boundary = torch.tensor(ratio * time.num_train_timesteps, dtype=torch.float64)
    return Experts(denoisers, float(time.logsnr_at(boundary)))


def load_image_encoder(root: Path, device: torch.device):
    """(CLIPVisionModel, CLIPImageProcessor) of a pipeline saved with them (Wan 2.1 image-to-video), else None."""
    if not (root / "image_encoder").is_dir():
        return None
    from transformers import CLIPImageProcessor, CLIPVisionModel

    model = from_safetensors(CLIPVisionModel, root / "image_encoder").to(device).eval().requires_grad_(False)
    return model, CLIPImageProcessor.from_pretrained(root / "image_processor")


def load_diffusers_prior(path: str | Path, frames: int, height: int, width: int, device=None,
                         dtype: torch.dtype = torch.float32, quantize: bool = False, offload: bool = False,
                         **options) -> DiffusersPrior:
    """A local diffusers pipeline directory as a prior sampling `frames` x `height` x `width` pixel videos, its
    denoiser(s) in `dtype` on `device` or, with `offload`, kept in CPU memory and moved to `device` layer by layer for
    each forward (accelerate's cpu_offload: a prior larger than the GPU's memory, at the cost of the transfers).
    `options` reach the pipeline's family: `frame_rate` (LTX-Video, default 25), `embedded_guidance` (HunyuanVideo,
    default 1)."""
    from ..text import load_text_encoder

    space = latent_space(path)
    kind, root = space.pipeline, space.root
    device = torch.device(device or "cpu")
    time = kind.time(space.scheduler_config(), quantize)  # quantize only means something on a discrete grid
    experts = load_denoisers(space, time, dtype, device, offload)
    null_text = load_text_encoder(space.text_encoder, device=device).encode([""])
    shape = space.latent_shape(frames, height, width)
    config = dict(experts.first.config)
    codec = space.codec(device)
    pipeline_options = {k: space.index[k] for k in ("expand_timesteps",) if k in space.index}
    ctx = Context(config, shape, (frames, height, width), device, codec, load_image_encoder(root, device),
                  {**pipeline_options, **options})
    family = kind.family(ctx)
    channels = shape[0]
    if config["in_channels"] != family.in_channels(channels):
        raise ValueError(f"the denoiser takes {config['in_channels']} input channels, but {space.name} with this "
                         f"VAE's {channels} latent channels gives it {family.in_channels(channels)}: the "
                         "pipeline's components do not belong together")
    spec = ModelSpec(space=space.space, channels=channels, frames=shape[1], height=shape[2], width=shape[3],
                     conditions=("text", "first_frame") if family.image else ("text",),
                     value_range=(-math.inf, math.inf), prediction=time.prediction,
                     time="timestep" if isinstance(time, DiscreteVP) else "flow time",
                     # the parameters that answer at one step: one expert of two
                     parameters=sum(p.numel() for p in experts.first.parameters()), text_encoder=space.text_encoder,
                     first_frame_pixels=family.image)
    return DiffusersPrior(experts, time, family, spec, null_text, codec, device)
