"""A per-caption embedding cache around any text encoder, in memory and optionally in a safetensors file."""

from __future__ import annotations

import atexit
import hashlib
import json
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ...common.files import atomic_path
from .base import TextEmbedding, TextEncoder, check_captions

_CACHE_FORMAT = "video_adapter.text_cache/1"


class CachedTextEncoder(TextEncoder):
    """Encodes each unique caption once: an in-memory dict, optionally backed by a safetensors file.

    Misses of a call are batched through the wrapped encoder; rows are stored on CPU in float32. With
    ``cache_dir``, embeddings persist in ``cache_dir/<name>-<hash of spec>.safetensors``; the file is written
    atomically (``files.atomic_path``) by ``save()``, automatically once ``save_every`` new captions
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
        captions = check_captions(captions)
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
        captions = [c for c in dict.fromkeys(check_captions(captions)) if c not in self._memory]
        chunk = max(self.batch_size, 1) * 16
        for i in range(0, len(captions), chunk):
            self.encode(captions[i : i + chunk])
        self.save()
        return len(captions)

    def write_table(self, path, captions: Sequence[str]) -> Path:
        """`captions`, encoded where missing, as one cache file at `path`: a text table (`EmbeddingTable`)."""
        unique = list(dict.fromkeys(check_captions(captions)))
        self.encode(unique)
        path = Path(path)
        write_cache_file(path, {c: self._memory[c] for c in unique}, self.encoder.spec, self.encoder.cache_key)
        return path

    # -- disk
    def _read_file(self, path: Path) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Entries of a cache file; raises ValueError describing why the file cannot be used."""
        meta, entries = read_cache_file(path)
        if meta.get("cache_key") != self.encoder.cache_key:
            raise ValueError(
                f"written by another encoder or model files ({meta.get('cache_key')!r} != {self.encoder.cache_key!r})"
            )
        first = next(iter(entries.values()), None)
        if first is not None and tuple(first[0].shape) != (self.max_length, self.dim):
            raise ValueError(f"tokens of shape {tuple(first[0].shape)}, expected {(self.max_length, self.dim)}")
        return entries

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
        write_cache_file(path, self._memory, self.encoder.spec, self.encoder.cache_key)
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


def read_cache_file(path: Path) -> tuple[dict, dict[str, tuple[Tensor, Tensor, Tensor]]]:
    """(metadata, caption -> (tokens [L, D], mask [L], pooled [D])) of a cache file; ValueError saying why a file
    cannot be used."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"unreadable ({type(e).__name__}: {e})") from e
    if meta.get("format") != _CACHE_FORMAT:
        raise ValueError(f"unknown format {meta.get('format')!r}")
    if set(tensors) != {"tokens", "mask", "pooled", "captions"}:
        raise ValueError(f"unexpected tensors {sorted(tensors)}")
    try:
        captions = json.loads(bytes(tensors["captions"].tolist()).decode("utf-8"))
    except Exception as e:
        raise ValueError(f"caption list unreadable ({type(e).__name__})") from e
    if not (isinstance(captions, list) and all(isinstance(c, str) for c in captions)):
        raise ValueError("caption list is not a list of strings")
    tokens, mask, pooled = tensors["tokens"], tensors["mask"], tensors["pooled"]
    n = len(captions)
    if tokens.ndim != 3 or len(tokens) != n or tokens.dtype != torch.float32:
        raise ValueError(f"tokens {tokens.dtype} {tuple(tokens.shape)}, expected float32 [{n}, L, D]")
    length, d = tokens.shape[1:]
    if tuple(mask.shape) != (n, length) or mask.dtype != torch.bool:
        raise ValueError(f"mask {mask.dtype} {tuple(mask.shape)}, expected bool {(n, length)}")
    if tuple(pooled.shape) != (n, d) or pooled.dtype != torch.float32:
        raise ValueError(f"pooled {pooled.dtype} {tuple(pooled.shape)}, expected float32 {(n, d)}")
    if len(set(captions)) != n:
        raise ValueError("duplicate captions")
    if not (torch.isfinite(tokens).all() and torch.isfinite(pooled).all()):
        raise ValueError("non-finite values")
    return meta, {c: (tokens[i].clone(), mask[i].clone(), pooled[i].clone()) for i, c in enumerate(captions)}


def write_cache_file(path: Path, entries: dict[str, tuple[Tensor, Tensor, Tensor]], spec: str,
                     cache_key: str) -> None:
    """Every entry into one safetensors file, written atomically."""
    from safetensors.torch import save_file

    captions = list(entries)
    rows = [entries[c] for c in captions]
    tensors = {
        "tokens": torch.stack([r[0] for r in rows]).contiguous(),
        "mask": torch.stack([r[1] for r in rows]).contiguous(),
        "pooled": torch.stack([r[2] for r in rows]).contiguous(),
        "captions": torch.frombuffer(bytearray(json.dumps(captions).encode("utf-8")), dtype=torch.uint8).clone(),
    }
    meta = {"format": _CACHE_FORMAT, "spec": spec, "cache_key": cache_key, "count": str(len(captions))}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


class EmbeddingTable(TextEncoder):
    """A complete cache file standing in for its encoder: the captions it holds, and nothing else.

    For a machine without the encoder's weights (captions embedded on one machine, a model trained or sampled on
    another): `spec` is the real encoder's, read from the file, so checkpoints record the encoder itself. A caption
    missing from the table is an error naming it, never a guess. Made by `video-adapter embed-captions`, used where
    $VIDEO_ADAPTER_TEXT_TABLE names it (`text.load_text_encoder`)."""

    def __init__(self, path, device=None, batch_size: int = 64):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"text table {self.path} does not exist; make it with `video-adapter "
                                    "embed-captions --data DIR ... --out FILE` where the encoder's weights are")
        try:
            meta, self.entries = read_cache_file(self.path)
        except ValueError as e:
            raise ValueError(f"text table {self.path} cannot be used: {e}") from e
        if not self.entries:
            raise ValueError(f"text table {self.path} holds no captions")
        tokens = next(iter(self.entries.values()))[0]
        super().__init__(tokens.shape[0], device, batch_size)
        self._spec, self._key, self._dim = meta.get("spec", ""), meta.get("cache_key", ""), tokens.shape[1]
        self.kind = self._spec.partition(":")[0].partition("?")[0]

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def cache_key(self) -> str:
        return self._key

    def _encode_batch(self, captions):
        if missing := [c for c in captions if c not in self.entries]:
            raise ValueError(f"caption {missing[0]!r} is not in the text table {self.path} "
                             f"($VIDEO_ADAPTER_TEXT_TABLE; {len(missing)} missing in this batch): add it with "
                             "`video-adapter embed-captions` where the encoder's weights are, or unset the variable "
                             "to use the encoder itself")
        rows = [self.entries[c] for c in captions]
        return tuple(torch.stack([r[k] for r in rows]) for k in range(3))
