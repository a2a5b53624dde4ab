"""The eps protocol between `video-adapter serve-prior` and `RemoteScoreModel`: what travels, and its checks.

A request body is one safetensors file (never a pickle: reading it runs no code):

    x_t            float32 [B, C, F, H, W]   the noisy sample, in the prior's ModelSpec shape
    logsnr         float32 or float64 [B]    the noise level of each row
    caption_index  int64 [B]                 row -> its caption in the metadata's "captions" (a JSON list of text)
    has_text       bool [B]                  False: the row is unconditional on text (classifier-free guidance)
    first_frame    float32 [B, C, H, W]      with has_first_frame bool [B], where the prior takes it
    edges          float32 [B, C, F, H, W]   with has_edges bool [B], where the prior takes it

Captions travel as text: the server embeds them with its own text encoder, so a client never needs it. The answer is
a safetensors file holding `eps` float32 [B, C, F, H, W]. Every check the server makes is here (`read_request`), so
each bad request gets a 4xx whose message names the problem; GET /spec's JSON is `spec_json` / `spec_from_json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor

from ..maths.conditioning import Cond
from .score_model import ModelSpec

PROTOCOL = "video-adapter-eps/1"
MAX_CAPTION_CHARS = 2000          # longer captions are refused (no text encoder reads that far)
PIXEL_CONDITIONS = ("first_frame", "edges")
NAMES = ("x_t", "logsnr", "caption_index", "has_text", "first_frame", "has_first_frame", "edges", "has_edges")


class BadRequest(ValueError):
    """A request the server refuses: `status` (4xx) and a message naming the problem and the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EpsRequest:
    """One checked request: the sample, its levels and its conditions, with the captions still as text."""

    x: Tensor                      # [B, C, F, H, W] float32
    logsnr: Tensor                 # [B]
    captions: tuple[str, ...]      # the distinct captions of the request
    caption_index: Tensor | None   # [B] int64 into captions (None: no text condition)
    pixels: dict[str, Tensor]      # first_frame / edges present in the request
    flags: dict[str, Tensor]       # condition -> has_<condition> [B] bool

    @property
    def rows(self) -> int:
        return self.x.shape[0]

    @property
    def signature(self) -> tuple[str, ...]:
        """The conditions present; requests of one signature can share a forward."""
        return tuple(sorted(self.flags))

    def cond(self, text) -> Cond:
        """The Cond of these rows, `text` being the TextEmbedding of `captions` (None without text)."""
        rows = {} if text is None else {"text": text.tokens[self.caption_index], "text_mask":
                                        text.mask[self.caption_index], "pooled": text.pooled[self.caption_index]}
        return Cond(**rows, **self.pixels, **{f"has_{name}": flag for name, flag in self.flags.items()})


# ------------------------------------------------------------------------------------------------------ the spec


def spec_json(spec: ModelSpec, limits: dict) -> dict:
    """GET /spec: every ModelSpec field (an infinite value range as the strings "inf" / "-inf", which JSON lacks),
    the shape of one sample, the protocol and the server's limits."""
    fields = dataclasses.asdict(spec)
    fields["value_range"] = [v if math.isfinite(v) else str(v) for v in spec.value_range]
    fields["conditions"] = list(spec.conditions)
    return {**fields, "shape": list(spec.shape), "protocol": PROTOCOL, "limits": limits}


def spec_from_json(data: dict) -> tuple[ModelSpec, dict]:
    """GET /spec's JSON -> (ModelSpec, limits); an error naming what is missing or of another protocol."""
    if data.get("protocol") != PROTOCOL:
        raise ValueError(f"the server speaks protocol {data.get('protocol')!r}, this client {PROTOCOL!r}: run the "
                         "same video-adapter version on both sides")
    names = [f.name for f in dataclasses.fields(ModelSpec)]
    if missing := [n for n in names if n not in data]:
        raise ValueError(f"the server's spec lacks {missing}")
    fields = {n: data[n] for n in names}
    fields["value_range"] = tuple(float(v) for v in data["value_range"])
    fields["conditions"] = tuple(data["conditions"])
    return ModelSpec(**fields), dict(data.get("limits", {}))


# ------------------------------------------------------------------------------------------------- the client side


def write_request(x: Tensor, logsnr: Tensor, cond: Cond, captions: list[str] | None,
                  caption_index: Tensor | None) -> bytes:
    """The body of POST /eps for rows x [B, ...] with `cond`'s pixel conditions and flags; `captions` the distinct
    captions and `caption_index` [B] each row's (None for a Cond without text)."""
    def flag(name: str) -> Tensor:  # a condition without flags is present in every row
        present = cond.present(name)
        return torch.ones(len(x), dtype=torch.bool) if present is None else present.to("cpu", torch.bool).contiguous()

    tensors = {"x_t": x.detach().to("cpu", torch.float32).contiguous(),
               "logsnr": logsnr.detach().to("cpu").contiguous()}
    if caption_index is not None:
        tensors["caption_index"] = caption_index.to("cpu", torch.int64).contiguous()
        tensors["has_text"] = flag("text")
    for name in PIXEL_CONDITIONS:
        if (value := getattr(cond, name)) is not None:
            tensors[name] = value.detach().to("cpu", torch.float32).contiguous()
            tensors[f"has_{name}"] = flag(name)
    metadata = {"captions": json.dumps(list(captions))} if captions is not None else None
    return save_safetensors(tensors, metadata=metadata)


def read_eps(body: bytes, shape: tuple[int, ...]) -> Tensor:
    """The answer of POST /eps -> eps of `shape`; an error if it is anything else."""
    try:
        eps = load_safetensors(body).get("eps")
    except SafetensorError as e:
        raise ValueError(f"the server's answer is not a safetensors file: {e}") from None
    if eps is None or tuple(eps.shape) != tuple(shape) or eps.dtype != torch.float32:
        raise ValueError(f"the server's answer is not float32 eps of shape {list(shape)}")
    return eps


def write_eps(eps: Tensor) -> bytes:
    return save_safetensors({"eps": eps.detach().to("cpu", torch.float32).contiguous()})


# ------------------------------------------------------------------------------------------------- the server side


def _metadata(body: bytes) -> dict:
    """The `__metadata__` of a safetensors body (the tensors themselves are parsed by safetensors)."""
    if len(body) < 8:
        raise BadRequest(400, f"the body ({len(body)} bytes) is not a safetensors file: send the tensors as "
                              "safetensors bytes (safetensors.torch.save)")
    (length,) = struct.unpack("<Q", body[:8])
    if length > len(body) - 8:
        raise BadRequest(400, f"the body is not a safetensors file: its header claims {length} bytes, "
                              f"{len(body) - 8} follow")
    try:
        header = json.loads(body[8:8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(400, f"the body is not a safetensors file: its header is not JSON ({e})") from None
    return header.get("__metadata__") or {} if isinstance(header, dict) else {}


def _captions(metadata: dict, rows: int) -> tuple[str, ...]:
    try:
        captions = json.loads(metadata["captions"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise BadRequest(400, 'caption_index needs the captions as text: metadata "captions", a JSON list of '
                              "strings") from None
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions) or not captions:
        raise BadRequest(400, 'metadata "captions" must be a non-empty JSON list of strings')
    if len(captions) > rows:
        raise BadRequest(422, f"{len(captions)} captions for {rows} rows: send each distinct caption once")
    if long := [i for i, c in enumerate(captions) if len(c) > MAX_CAPTION_CHARS]:
        raise BadRequest(422, f"caption {long[0]} has {len(captions[long[0]])} characters; the limit is "
                              f"{MAX_CAPTION_CHARS}")
    return tuple(captions)


def _check(tensors: dict[str, Tensor], name: str, dtypes: tuple[torch.dtype, ...], shape: tuple[int, ...]) -> Tensor:
    value = tensors[name]
    if value.dtype not in dtypes:
        raise BadRequest(422, f"{name} is {str(value.dtype).removeprefix('torch.')}; send "
                              f"{' or '.join(str(d).removeprefix('torch.') for d in dtypes)}")
    if tuple(value.shape) != shape:
        raise BadRequest(422, f"{name} has shape {list(value.shape)}; this prior takes {list(shape)}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise BadRequest(422, f"{name} holds {bad} NaN or Inf value(s); send finite numbers")
    return value


def read_request(body: bytes, spec: ModelSpec, max_rows: int) -> EpsRequest:
    """A POST /eps body checked against the prior's spec; `BadRequest` (400 unreadable, 413 over the batch cap,
    422 wrong names, dtypes, shapes, values or conditions) names the problem."""
    metadata = _metadata(body)
    try:
        tensors = load_safetensors(body)
    except SafetensorError as e:
        raise BadRequest(400, f"the body is not a readable safetensors file: {e}") from None
    if unknown := sorted(set(tensors) - set(NAMES)):
        raise BadRequest(422, f"unknown tensors {unknown}; a request holds {', '.join(NAMES)}")
    if "x_t" not in tensors or "logsnr" not in tensors:
        raise BadRequest(422, "a request needs x_t [B, C, F, H, W] and logsnr [B]")
    if tensors["x_t"].ndim != 5 or not len(tensors["x_t"]):
        raise BadRequest(422, f"x_t has shape {list(tensors['x_t'].shape)}; this prior takes [B, "
                              f"{', '.join(map(str, spec.shape))}] with B >= 1")
    rows = len(tensors["x_t"])
    if rows > max_rows:
        raise BadRequest(413, f"{rows} rows in one request; this server takes at most {max_rows} (--max-batch): "
                              "split the batch")
    x = _check(tensors, "x_t", (torch.float32,), (rows, *spec.shape))
    logsnr = _check(tensors, "logsnr", (torch.float32, torch.float64), (rows,))
    flags, pixels, captions, index = {}, {}, (), None
    shapes = {"first_frame": (rows, spec.channels, spec.height, spec.width), "edges": (rows, *spec.shape)}
    for name, data in (("text", "caption_index"), *((n, n) for n in PIXEL_CONDITIONS)):
        if (data in tensors) != (f"has_{name}" in tensors):
            raise BadRequest(422, f"{data} and has_{name} come together: send both or neither")
        if data not in tensors:
            continue
        if name not in spec.conditions:
            raise BadRequest(422, f"this prior does not take {name}; it takes {', '.join(spec.conditions) or 'none'}")
        flags[name] = _check(tensors, f"has_{name}", (torch.bool,), (rows,))
        if name == "text":
            captions = _captions(metadata, rows)
            index = _check(tensors, "caption_index", (torch.int64,), (rows,))
            if bool(((index < 0) | (index >= len(captions))).any()):
                raise BadRequest(422, f"caption_index must lie in [0, {len(captions)}) (the captions sent)")
        else:
            pixels[name] = _check(tensors, name, (torch.float32,), shapes[name])
    return EpsRequest(x, logsnr, captions, index, pixels, flags)
