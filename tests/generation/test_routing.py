"""Routing prompts to each model: --prior-prompt-suffix (the paper's augmented variants, Figure 10) reaches the prior
and no other model, changes nothing when absent, and leaves a gamma = 0 composition the adapter alone, bit for bit."""

import zlib

import pytest
import torch

from video_adapter.generation.generate import SamplingSettings, generate
from video_adapter.generation.routing import model_conds
from video_adapter.maths.composition import PriorStrength
from video_adapter.models.score_model import NativeScoreModel
from video_adapter.models.text import CachedTextEncoder, EmbeddingTable, TextEncoder
from video_adapter.models.unet import SpaceTimeUNet

from helpers import randomize

CPU = torch.device("cpu")
PROMPTS = ["push the red block", "open the drawer", "push the red block"]
NIGHT = ", at night, in the snow"
ROUTES = {"small": {"text"}, "prior": {"text"}}
DIM = 16  # tiny_cfg's text_dim


class RecordingEncoder(TextEncoder):
    """Embeddings that are a function of the caption alone (seeded by its crc32); `calls` holds every encode's
    captions."""

    def __init__(self, dim: int):
        super().__init__(max_length=3, device="cpu")
        self._dim, self.calls = dim, []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def spec(self) -> str:
        return "recording"

    def encode(self, captions, device=None):
        self.calls.append(list(captions))
        return super().encode(captions, device)

    def _encode_batch(self, captions):
        tokens = torch.stack([torch.randn(3, self._dim, generator=torch.Generator().manual_seed(zlib.crc32(c.encode())))
                              for c in captions])
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), tokens.mean(1)


@pytest.fixture
def models(tiny_cfg):
    assert tiny_cfg.text_dim == DIM
    return {"small": NativeScoreModel(randomize(SpaceTimeUNet(tiny_cfg), seed=1), text_encoder="recording"),
            "prior": NativeScoreModel(randomize(SpaceTimeUNet(tiny_cfg), seed=2), text_encoder="recording")}


def conds_of(models, prompts, suffix="", encoder=None):
    encoder = encoder or RecordingEncoder(DIM)
    return model_conds(models, prompts, {}, ROUTES, CPU, {"recording": encoder}, prior_suffix=suffix)


def same(a, b) -> bool:
    """Two Conds hold the same tensors, bit for bit."""
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("text", "text_mask", "pooled", "has_text"))


def test_the_prior_alone_gets_the_styled_prompts(models):
    encoder = RecordingEncoder(DIM)
    conds = conds_of(models, PROMPTS, NIGHT, encoder)
    # the adapter's prompts in a call of their own, exactly as without the suffix; the styled ones in another
    assert encoder.calls == [["push the red block", "open the drawer"],
                             ["push the red block, at night, in the snow", "open the drawer, at night, in the snow"]]
    direct = RecordingEncoder(DIM)
    assert same(conds.small, direct.encode(PROMPTS).to_cond())
    assert same(conds.prior, direct.encode([p + NIGHT for p in PROMPTS]).to_cond())
    assert not same(conds.small, conds.prior)


def test_without_the_suffix_nothing_changes(models):
    """One encode call whose embeddings both models share, as before the option existed."""
    encoder = RecordingEncoder(DIM)
    conds = conds_of(models, PROMPTS, "", encoder)
    assert encoder.calls == [["push the red block", "open the drawer"]]
    plain = model_conds(models, PROMPTS, {}, ROUTES, CPU, {"recording": RecordingEncoder(encoder.dim)})
    assert same(conds.small, plain.small) and same(conds.prior, plain.prior) and same(conds.small, conds.prior)


def test_the_suffix_moves_only_rows_that_use_the_prior_and_never_a_gamma_0_composition(models):
    plain, styled = conds_of(models, PROMPTS), conds_of(models, PROMPTS, NIGHT)
    at = lambda gamma: SamplingSettings(sampler="ddim", steps=3, guidance=2.0, strength=PriorStrength(gamma))
    run = lambda conds, methods, gamma: generate(models, conds, methods, at(gamma), CPU, progress=False).videos
    base = run(plain, ("adapter", "composed", "prior"), 0.1)
    got = run(styled, ("adapter", "composed", "prior"), 0.1)
    assert torch.equal(got["adapter"], base["adapter"])
    assert not torch.equal(got["composed"], base["composed"]) and not torch.equal(got["prior"], base["prior"])
    # the prior row is the prior prompted with the styled captions directly
    direct = run(conds_of(models, [p + NIGHT for p in PROMPTS]), ("prior",), 0.1)["prior"]
    assert torch.equal(got["prior"], direct)
    # gamma = 0: the composition is the adapter alone, bit for bit, whatever the prior was told
    assert torch.equal(run(styled, ("composed",), 0.0)["composed"], base["adapter"])


def test_a_text_table_without_the_styled_captions_names_them_and_the_command(models, tmp_path):
    recorder = RecordingEncoder(DIM)
    path = CachedTextEncoder(recorder).write_table(tmp_path / "table.safetensors", PROMPTS)
    table = EmbeddingTable(path)
    conds_of(models, PROMPTS, "", table)  # the plain captions are all there
    with pytest.raises(ValueError) as info:
        conds_of(models, PROMPTS, NIGHT, table)
    msg = str(info.value)
    assert "'push the red block, at night, in the snow' is not in the text table" in msg
    assert f"embed-captions --data DIR ... --prompt-suffix {NIGHT!r}" in msg
