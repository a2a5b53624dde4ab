"""Routing prompts and pixel conditions to each model of a run: its own text embeddings (from its own encoder) and the
pixel conditions it takes, as the `Conds` pair a composition's eps_fn receives."""

from __future__ import annotations

import torch
from torch import Tensor

from ..maths.composition import Conds
from ..maths.conditioning import Cond
from ..models.score_model import ScoreModel
from ..models.text import EmbeddingTable, TextEmbedding, load_text_encoder

NAMES = {"small": "the adapter", "prior": "the prior"}
# what a caller calls each input in its errors: the command's flags by default (the Python pipeline has its own)
FLAGS = {"first_frame": "--first-frame", "edges": "--edges-from", "text": "--prompt",
         "partial": "--partial-conditions", "give first_frame": "--first-frame IMAGE", "prior": "--prior DIR"}


def route_conditions(models: dict[str, ScoreModel], requested: set[str], partial: bool,
                     flags: dict[str, str] = FLAGS) -> dict[str, set[str]]:
    """Which requested conditions each model receives; an error when a model lacks one (unless `partial`, where
    a condition goes to the models that take it) or when no model takes it. The errors name inputs by `flags`."""
    routes = {}
    for role, model in models.items():
        lacking = sorted(requested - set(model.spec.conditions))
        if lacking and not partial:
            takes = ", ".join(model.spec.conditions) or "nothing"
            raise ValueError(f"{NAMES[role]} does not take {' or '.join(lacking)} (it takes {takes}); drop "
                             f"{' '.join(flags[c] for c in lacking)}, or pass {flags['partial']} to give it only "
                             "to the models that take it")
        routes[role] = requested & set(model.spec.conditions)
    for role, model in models.items():
        if model.spec.first_frame_pixels and "first_frame" not in requested:
            raise ValueError(f"{NAMES[role]} is an image-to-video model: pass {flags['give first_frame']}")
    for name in sorted(requested - set().union(*routes.values())):
        raise ValueError(f"no model in this run takes {name}; drop {flags[name]}")
    return routes


def encode_prompts(models: dict[str, ScoreModel], prompts: list[str], device: torch.device,
                   encoders: dict | None = None, prior_suffix: str = "") -> dict[str, TextEmbedding]:
    """Each unique prompt once per distinct text encoder; both models share the embeddings when encoders agree.
    `encoders` (spec -> loaded encoder) keeps the encoders loaded across calls, e.g. over an evaluation's batches.

    `prior_suffix` is appended to every prompt the prior gets, and to no other model's (the paper's augmented
    variants, Figure 10: the prior asked for another style while the adapter keeps the clip's own caption). The
    styled prompts are encoded in a call of their own, so the other models' embeddings are bit for bit those of a
    run without the suffix (a batch's company can move an encoder's output in the last bits)."""
    encoders = {} if encoders is None else encoders
    done, out = {}, {}
    for role, model in models.items():
        own = model.caption_encoder  # a remote prior: captions go to its server as text
        spec = own.spec if own is not None else model.spec.text_encoder
        if not spec:
            raise ValueError(f"{NAMES[role]} names no text_encoder in its config.json; it cannot be prompted")
        texts = tuple(p + prior_suffix for p in prompts) if role == "prior" else tuple(prompts)
        if (spec, texts) not in done:
            if spec not in encoders:
                encoders[spec] = own if own is not None else load_text_encoder(spec, device=device)
            unique = list(dict.fromkeys(texts))
            try:
                done[spec, texts] = encoders[spec].encode(unique), torch.tensor([unique.index(p) for p in texts])
            except ValueError as e:  # a text table lacks a styled caption: say how to add them all
                if texts == tuple(prompts) or not isinstance(encoders[spec], EmbeddingTable):
                    raise
                raise ValueError(f"{e}. The prior's captions end in --prior-prompt-suffix {prior_suffix!r}: "
                                 f"`video-adapter embed-captions --data DIR ... --prompt-suffix {prior_suffix!r} "
                                 "--out FILE` embeds every caption with and without it") from e
        embeddings, index = done[spec, texts]
        out[role] = embeddings[index]
    return out


def model_cond(text: TextEmbedding, pixels: dict[str, Tensor], takes: set[str], batch: int) -> Cond:
    """One model's Cond: the pixel conditions it takes, each one tensor for every sample (first_frame [C, H, W],
    edges [C, F, H, W]) or one per sample (with a leading batch dimension)."""
    ff = pixels["first_frame"].expand(batch, -1, -1, -1) if "first_frame" in takes else None
    edges = pixels["edges"].expand(batch, -1, -1, -1, -1) if "edges" in takes else None
    return text.to_cond(first_frame=ff, edges=edges)


def own_pixels(model: ScoreModel, pixels: dict[str, Tensor]) -> dict[str, Tensor]:
    """The pixel conditions in the form `model` takes them: an image-to-video prior (spec.first_frame_pixels) gets
    the first frame as RGB pixels, which it encodes its own way, where the others get it in their own space."""
    if model.spec.first_frame_pixels and "first_frame" in pixels:
        if "first_frame_pixels" not in pixels:
            raise ValueError("this image-to-video prior takes the first frame as RGB pixels at the video size; "
                             "this caller only provides it in the latent space")
        return {**pixels, "first_frame": pixels["first_frame_pixels"]}
    return pixels


def model_conds(models: dict[str, ScoreModel], prompts: list[str], pixels: dict[str, Tensor],
                routes: dict[str, set[str]], device: torch.device, encoders: dict | None = None,
                prior_suffix: str = "") -> Conds:
    """The `Conds` pair for `prompts` (one per sample): each model gets its own text embeddings and the pixel
    conditions `routes` gives it; a model not in `models` gets an empty Cond. The prior's prompts end in
    `prior_suffix` (`encode_prompts`)."""
    texts = encode_prompts(models, prompts, device, encoders, prior_suffix)
    per_model = {role: model_cond(texts[role], own_pixels(model, pixels), routes[role], len(prompts))
                 for role, model in models.items()}
    return Conds(small=per_model.get("small", Cond()), prior=per_model.get("prior", Cond()))
