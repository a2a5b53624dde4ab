"""Open video models from diffusers as priors, in their own latent space (maths: docs/diffusers_priors.md).

    prior = load_diffusers_prior("/models/wan", frames=81, height=480, width=832, device="cuda")
    eps = prior(x_t, logsnr, cond)     # x_t: the prior's VAE latents [B, C, F', H', W'], canonical VP at logsnr

A diffusers pipeline directory (saved with save_pretrained; nothing downloads) becomes a `ScoreModel`: our
canonical log-SNR and variance-preserving x_t go in, eps comes out, whatever the model's own time variable,
prediction type, layout and conditioning. One concern per module:

- `time`: the parameterizations (`DiscreteVP`, `RectifiedFlow`) and `Experts` (Wan 2.2's two, by noise level);
- `codec`: the VAE between pixels and normalised latents (`LatentCodec`);
- `families`, `image`: how each pipeline calls its denoiser, text-to-video and image-to-video;
- `registry`: the supported pipelines (`PIPELINES`) and a directory's latent space;
- `prior`: `DiffusersPrior` and `load_diffusers_prior`.
"""

from .codec import LatentCodec, vae_geometry
from .families import Call, Context, Family
from .prior import DiffusersPrior, load_diffusers_prior
from .registry import PIPELINES, LatentSpace, Pipeline, from_safetensors, latent_space
from .time import DiscreteVP, Experts, RectifiedFlow

__all__ = ["PIPELINES", "Call", "Context", "DiffusersPrior", "DiscreteVP", "Experts", "Family", "LatentCodec",
           "LatentSpace", "Pipeline", "RectifiedFlow", "from_safetensors", "latent_space", "load_diffusers_prior",
           "vae_geometry"]
