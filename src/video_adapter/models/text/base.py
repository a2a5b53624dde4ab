"""The text-encoder interface: the embedding a caption batch becomes, the abstract encoder, shared constants."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...common.devices import DTYPES
from ...maths.conditioning import Cond

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


def check_captions(captions) -> list[str]:
    if isinstance(captions, (str, bytes)):
        raise TypeError("encode() takes a list of captions, not a single string; wrap it: encode([caption])")
    captions = list(captions)
    if not captions:
        raise ValueError("encode() got an empty list of captions; pass at least one caption")
    bad = [type(c).__name__ for c in captions if not isinstance(c, str)]
    if bad:
        raise TypeError(f"captions must be str, got {sorted(set(bad))}")
    return captions


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"unsupported text encoder dtype {dtype}; expected one of {sorted(DTYPES)}")
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unsupported text encoder dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


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
        self.device = torch.device(device) if device is not None else default_device()
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
        captions = check_captions(captions)
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
