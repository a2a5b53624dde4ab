"""`video-adapter serve-prior PRIOR`: a prior's eps over HTTP (FastAPI, uvicorn), so an adapter composes with a
prior whose weights it never sees (the paper's motivation: a large model behind a service).

    video-adapter serve-prior checkpoints/prior --token-file prior.token            # http://127.0.0.1:8765
    video-adapter sample --adapter runs/robot/checkpoint --prior http://127.0.0.1:8765 --prior-token-file prior.token

GET /spec returns the prior's ModelSpec as JSON; POST /eps takes the sample, its noise levels and conditions as
safetensors and the captions as text (the protocol is `models.wire`), embeds the captions with the prior's own text
encoder (each caption once, the most recent --caption-cache kept) and answers eps as safetensors. Every request needs
the bearer token (compared in constant time); a body over --max-body-mib is a 413, a batch over --max-batch rows a
413, a wrong name, dtype, shape, condition or a non-finite value a 422, a body that does not arrive within
--read-timeout a 408, an answer not ready within --timeout a 503. Concurrent requests share forwards (`batcher`).
"""

import asyncio
import hmac
import ipaddress
import threading
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.devices import resolve_device, resolve_dtype
from ..common.extras import require
from ..common.tables import human_count
from ..generation.loading import load_model, parse_video_size
from ..models.remote import is_url, read_token
from ..models.score_model import ScoreModel
from ..models.text import HFTextEncoder, TextEmbedding, TextEncoder, load_text_encoder
from ..models.wire import BadRequest, EpsRequest, read_request, spec_json, write_eps
from .batcher import Batcher

MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ServeConfig:
    prior: str = ""                       # the prior: a checkpoint directory or a local diffusers pipeline directory
    token_file: str = ""                  # file holding the bearer token every request must send (required)
    host: str = "127.0.0.1"               # address to bind (127.0.0.1: this machine only)
    port: int = 8765                      # port to bind (0: any free one)
    max_body_mib: float = 64.0            # largest request body in MiB (413 above it)
    max_batch: int = 32                   # most rows in one forward, and in one request (413 above it)
    batch_wait_ms: float = 5.0            # how long a forward waits for more concurrent requests (ms)
    timeout: float = 120.0                # seconds a request may wait for its eps (503 after)
    read_timeout: float = 10.0            # seconds a client may take to send its body (408 after)
    max_connections: int = 512            # concurrent connections before uvicorn answers 503
    caption_cache: int = 10000            # caption embeddings kept (least recently used dropped)
    video_size: str = ""                  # FRAMESxHEIGHTxWIDTH of a diffusers prior's videos (required for one)
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"                   # auto (bfloat16 on CUDA) | float32 | bfloat16 | float16
    cuda_graphs: bool = True              # replay the forward from CUDA graphs (CUDA only)

    def validate(self) -> None:
        if not self.prior or is_url(self.prior):
            raise ValueError(f"serve-prior takes a local model directory, not {self.prior!r}")
        if not self.token_file:
            raise ValueError("serve-prior needs --token-file FILE holding the token clients must send, e.g. "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))' > prior.token")
        if self.max_body_mib <= 0 or self.max_batch < 1 or self.caption_cache < 1 or self.max_connections < 1:
            raise ValueError("--max-body-mib, --max-batch, --caption-cache and --max-connections must be positive")
        if self.timeout <= 0 or self.read_timeout <= 0 or self.batch_wait_ms < 0:
            raise ValueError("--timeout and --read-timeout must be positive and --batch-wait-ms at least 0")

    def limits(self) -> dict:
        return {"max_batch": self.max_batch, "max_body_bytes": self.max_body_bytes, "timeout": self.timeout}

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mib * 2**20)


def server_token(token_file: str) -> str:
    token = read_token(token_file, flag="--token-file", env=False)
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the token in {token_file} has {len(token)} characters; use at least {MIN_TOKEN_CHARS}, "
                         "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


class CaptionEmbeddings:
    """Captions embedded by the prior's own encoder, each once; the `size` most recently used are kept."""

    def __init__(self, encoder: TextEncoder, size: int):
        self.encoder, self.size, self.rows = encoder, size, OrderedDict()

    def __call__(self, captions: tuple[str, ...]) -> TextEmbedding:
        if misses := [c for c in captions if c not in self.rows]:
            embedded = self.encoder.encode(misses)  # one batch, as a local run embeds a sample's prompts
            self.rows.update((c, embedded[i]) for i, c in enumerate(misses))
        found = [self.rows[c] for c in captions]
        for caption in captions:
            self.rows.move_to_end(caption)
        while len(self.rows) > self.size:
            self.rows.popitem(last=False)
        return TextEmbedding.cat(found)


def forward(model: ScoreModel, captions: CaptionEmbeddings | None, requests: list[EpsRequest]) -> list[Tensor]:
    """eps of requests of one signature, in one forward of all their rows."""
    conds = [r.cond(captions(r.captions) if r.caption_index is not None else None) for r in requests]
    cond = conds[0]
    for other in conds[1:]:
        cond = cond.cat(other)
    x = torch.cat([r.x for r in requests])
    logsnr = torch.cat([r.logsnr.double() for r in requests])
    return list(model.eps(x, logsnr, cond).split([r.rows for r in requests]))


async def read_body(request, cap: int, timeout: float) -> bytes:
    """The request's body, refused (413) as soon as it passes `cap` bytes, and (408) if it is not all there within
    `timeout` seconds (a slow client holds a connection, never the server)."""
    from fastapi import HTTPException

    close = {"Connection": "close"}  # the rest of the body is never read: end the connection with the answer
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise HTTPException(413, f"the body is {declared} bytes; this server takes at most {cap} (--max-body-mib)",
                            headers=close)
    chunks, size = [], 0

    async def read():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise HTTPException(413, f"the body passed {cap} bytes, this server's limit (--max-body-mib)",
                                    headers=close)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the body did not arrive within {timeout:g} s (--read-timeout); "
                                 f"{size} bytes came", headers=close) from None
    return b"".join(chunks)


def create_app(model: ScoreModel, token: str, cfg: ServeConfig, encoder: TextEncoder | None = None):
    """The FastAPI app serving `model`'s eps; `encoder` embeds captions (required when the model takes text)."""
    # (this module has no `from __future__ import annotations`: FastAPI reads the handlers' annotations as objects)
    from fastapi import FastAPI, HTTPException, Request, Response
    from starlette.concurrency import run_in_threadpool

    if "text" in model.spec.conditions and encoder is None:
        raise ValueError("this prior takes text: pass its text encoder")
    captions = CaptionEmbeddings(encoder, cfg.caption_cache) if encoder is not None else None
    batcher = Batcher(lambda requests: forward(model, captions, requests), cfg.max_batch, cfg.batch_wait_ms)
    expected = token.encode()

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()
        if batcher.requests:  # how much batching the traffic allowed
            print(f"served {batcher.requests} requests ({batcher.rows} rows) in {batcher.forwards} forwards, "
                  f"{batcher.rows / batcher.forwards:.2f} rows per forward", flush=True)

    app = FastAPI(title="video-adapter prior", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    def authorise(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(401, "send 'Authorization: Bearer TOKEN' with the token this server was started "
                                     "with (its --token-file)", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/spec")
    async def spec(request: Request) -> dict:
        authorise(request)
        return spec_json(model.spec, cfg.limits())

    @app.post("/eps")
    async def eps(request: Request) -> Response:
        authorise(request)
        batcher.active += 1
        try:
            body = await read_body(request, cfg.max_body_bytes, cfg.read_timeout)
            try:
                parsed = await run_in_threadpool(read_request, body, model.spec, cfg.max_batch)
            except BadRequest as e:
                raise HTTPException(e.status, str(e)) from None
            try:
                result = await asyncio.wait_for(batcher.submit(parsed), cfg.timeout)
            except asyncio.TimeoutError:
                raise HTTPException(503, f"no answer within {cfg.timeout:g} s (--timeout): the server is busy, "
                                         "retry later") from None
            except Exception as e:  # noqa: BLE001 -- the model failed on this batch; say so, keep serving
                raise HTTPException(500, f"the prior failed on this batch: {type(e).__name__}: {e}") from None
            return Response(await run_in_threadpool(write_eps, result), media_type="application/octet-stream")
        finally:
            batcher.active -= 1

    return app


def uvicorn_config(app, cfg: ServeConfig):
    import uvicorn

    return uvicorn.Config(app, host=cfg.host, port=cfg.port, limit_concurrency=cfg.max_connections,
                          timeout_keep_alive=30, access_log=False, log_level="warning")


class ServerThread:
    """The app served by uvicorn on a thread of this process (tests, benchmarks): `with ServerThread(app, cfg) as
    url: ...`; `cfg.port` 0 takes a free port."""

    def __init__(self, app, cfg: ServeConfig):
        import uvicorn

        self.server = uvicorn.Server(uvicorn_config(app, cfg))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread stopped before it started (is the port in use?)")
            self.thread.join(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_prior(cfg: ServeConfig) -> None:
    """Load the prior and serve it until interrupted."""
    import uvicorn

    cfg.validate()
    require("serve", "fastapi", "uvicorn")
    token = server_token(cfg.token_file)
    device = resolve_device(cfg.device)
    video = parse_video_size(cfg.video_size) if cfg.video_size else None
    model = load_model(cfg.prior, device, resolve_dtype(cfg.dtype, device), cuda_graphs=cfg.cuda_graphs, video=video)
    encoder = load_text_encoder(model.spec.text_encoder, device=device) if "text" in model.spec.conditions else None
    if isinstance(encoder, HFTextEncoder):
        encoder.load()  # now, not in the first client's request (a text table has nothing to load)
    app = create_app(model, token, cfg, encoder)
    spec = model.spec
    print(f"serving {cfg.prior} ({human_count(spec.parameters)} parameters, {spec.space} "
          f"{'x'.join(map(str, spec.shape))}, takes {', '.join(spec.conditions)}) on {device} at "
          f"http://{cfg.host}:{cfg.port}; clients send the token of {cfg.token_file}")
    if not _loopback(cfg.host):
        print(f"note: {cfg.host} is reachable from other machines, and plain HTTP carries the token in clear: put "
              "the server behind TLS (a reverse proxy) before exposing it")
    uvicorn.Server(uvicorn_config(app, cfg)).run()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
