"""A prior behind `video-adapter serve-prior` as a `ScoreModel`: `RemoteScoreModel(url, token)`.

    prior = RemoteScoreModel("http://127.0.0.1:8765", token)   # composes, samples and diagnoses as a local prior

Each `eps` call is one POST /eps (or several, of at most the server's --max-batch rows) in the protocol of `wire`.
The server embeds captions with its own text encoder, so this client sends the captions themselves. To get them
through the samplers, which batch, repeat, slice and null conditions as tensors (classifier-free guidance's
`cond.cat(cond.null())`), the remote prior's "text embedding" is the caption's row in a client-side table,
`CaptionTable`: `routing.encode_prompts` uses a model's `caption_encoder` where it has one, and `eps` turns each
row back into its caption. Connection errors, a refused token and refused requests are one `RemotePriorError` line
naming the cause.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ..common.extras import require
from ..maths.conditioning import Cond
from .score_model import ScoreModel
from .text.base import TextEncoder
from .wire import read_eps, spec_from_json, write_request

TOKEN_ENV = "VIDEO_ADAPTER_PRIOR_TOKEN"
MAX_CAPTIONS = 2**24  # rows are float32 in the Cond: exact integers up to 2^24


class RemotePriorError(ConnectionError):
    """The remote prior could not answer: unreachable, the token refused, or the request refused (one line)."""


def is_url(path: str | Path) -> bool:
    """Whether a model location is an http(s) address (a prior served by `video-adapter serve-prior`), not a folder."""
    return str(path).lower().startswith(("http://", "https://"))


def read_token(token_file: str = "", flag: str = "--prior-token-file", env: bool = True) -> str:
    """The bearer token of a remote prior: the file's content (`flag` names it in errors), else (with `env`)
    $VIDEO_ADAPTER_PRIOR_TOKEN."""
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise FileNotFoundError(f"{flag} {token_file} does not exist")
        token = path.read_text().strip()
        if not token:
            raise ValueError(f"{flag} {token_file} is empty; put the token in it")
        return token
    if env and (token := os.environ.get(TOKEN_ENV, "").strip()):
        return token
    raise ValueError(f"a prior served over HTTP needs its server's token: pass {flag} FILE"
                     + (f" or set ${TOKEN_ENV}" if env else ""))


class CaptionTable(TextEncoder):
    """Captions as rows of a client-side table: the "embedding" of a caption is its row number (tokens [B, 1, 1],
    pooled [B, 1]), which survives every batching the samplers do, and `lookup` turns it back into text."""

    kind = "remote"

    def __init__(self, url: str):
        super().__init__(max_length=1, device="cpu")
        self.url, self.captions, self.rows = url, [], {}

    @property
    def dim(self) -> int:
        return 1

    @property
    def spec(self) -> str:
        return f"captions sent as text to {self.url}"

    def _encode_batch(self, captions: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        for caption in captions:
            if caption not in self.rows:
                if len(self.captions) >= MAX_CAPTIONS:
                    raise ValueError(f"more than {MAX_CAPTIONS} distinct captions for one remote prior")
                self.rows[caption] = len(self.captions)
                self.captions.append(caption)
        rows = torch.tensor([self.rows[c] for c in captions], dtype=torch.float32)
        return rows.view(-1, 1, 1), torch.ones(len(captions), 1, dtype=torch.bool), rows.view(-1, 1)

    def lookup(self, cond: Cond) -> tuple[list[str], Tensor]:
        """The distinct captions of `cond`'s rows and each row's index into them."""
        text = cond.text
        if text.shape[1:] != (1, 1) or not bool((text == text.round()).all()) or \
                not bool(((text >= 0) & (text < len(self.captions))).all()):
            raise ValueError(f"the remote prior's text condition must come from its own caption table (its "
                             f"caption_encoder), not a text encoder's embeddings of shape {list(text.shape[1:])}")
        rows = text[:, 0, 0].long().tolist()
        distinct = list(dict.fromkeys(rows))
        where = {row: i for i, row in enumerate(distinct)}
        return [self.captions[r] for r in distinct], torch.tensor([where[r] for r in rows], dtype=torch.int64)


class RemoteScoreModel(ScoreModel):
    """eps of the prior served at `url` (`video-adapter serve-prior`), its spec read from GET /spec.

    `eps` takes x on any device and dtype, sends float32 and returns eps on x's device in x's dtype; a batch larger
    than the server's --max-batch goes as several requests."""

    def __init__(self, url: str, token: str, timeout: float = 300.0):
        require("serve", "httpx")
        import httpx

        if not is_url(url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL of `video-adapter serve-prior`")
        self.url, self.timeout = url.rstrip("/"), timeout
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                   timeout=httpx.Timeout(timeout, connect=10.0))
        try:
            self.spec, self.limits = spec_from_json(self._call("GET", "/spec").json())
        except ValueError as e:
            raise RemotePriorError(f"{self.url}/spec: {e}") from None
        self.max_batch = int(self.limits.get("max_batch", 1))
        self.caption_encoder = CaptionTable(self.url)

    def _call(self, method: str, path: str, **kwargs):
        import httpx

        try:
            reply = self.client.request(method, path, **kwargs)
        except httpx.ConnectError as e:
            raise RemotePriorError(f"cannot reach the prior at {self.url} ({e}): is `video-adapter serve-prior` "
                                   "running there, on that port?") from None
        except httpx.TimeoutException:
            raise RemotePriorError(f"the prior at {self.url} did not answer {method} {path} within "
                                   f"{self.timeout:g} s") from None
        except httpx.HTTPError as e:
            raise RemotePriorError(f"{method} {self.url}{path} failed: {type(e).__name__}: {e}") from None
        if reply.status_code == 401:
            raise RemotePriorError(f"the prior at {self.url} refused the token (401 Unauthorized): pass the token "
                                   f"its server was started with, by --prior-token-file FILE or ${TOKEN_ENV}")
        if reply.status_code >= 400:
            try:
                detail = str(reply.json().get("detail", reply.text))
            except ValueError:
                detail = reply.text
            detail = " ".join(detail.split())[:500]  # one line, bounded, whatever the server said
            raise RemotePriorError(f"the prior at {self.url} answered {method} {path} with {reply.status_code} "
                                   f"{reply.reason_phrase}: {detail}")
        return reply

    def eps(self, x: Tensor, logsnr: Tensor, cond: Cond) -> Tensor:
        logsnr = logsnr.expand(x.shape[0]) if logsnr.ndim == 0 else logsnr
        parts = []
        for start in range(0, x.shape[0], self.max_batch):
            rows = slice(start, start + self.max_batch)
            part = cond.map(lambda v, rows=rows: v[rows])
            captions, index = self.caption_encoder.lookup(part) if part.text is not None else (None, None)
            body = write_request(x[rows], logsnr[rows], part, captions, index)
            reply = self._call("POST", "/eps", content=body,
                               headers={"Content-Type": "application/octet-stream"})
            try:
                parts.append(read_eps(reply.content, (len(x[rows]), *self.spec.shape)))
            except ValueError as e:
                raise RemotePriorError(f"{self.url}/eps: {e}") from None
        return torch.cat(parts).to(x.device, x.dtype)

    def close(self) -> None:
        self.client.close()
