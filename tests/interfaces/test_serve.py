"""`video-adapter serve-prior` and `RemoteScoreModel` on a real loopback server (uvicorn on a thread): a remote prior
is the local one bit for bit, and every bad request gets its 4xx while the server keeps serving."""

import dataclasses
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

from video_adapter.generation.generate import COMPARE_ROWS, SamplingSettings, generate
from video_adapter.generation.loading import load_model
from video_adapter.generation.routing import model_conds, route_conditions
from video_adapter.interfaces.cli import main
from video_adapter.interfaces.serve import CaptionEmbeddings, ServeConfig, ServerThread, create_app, server_token
from video_adapter.maths.composition import PriorStrength
from video_adapter.maths.conditioning import Cond, sobel_x
from video_adapter.models.checkpoint import save_model
from video_adapter.models.remote import TOKEN_ENV, RemotePriorError, RemoteScoreModel
from video_adapter.models.text import load_text_encoder
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig
from video_adapter.models.wire import spec_json

from helpers import randomize

CFG = UNetConfig(frames=5, height=8, width=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                 attention_resolutions=(4,), head_dim=8, emb_dim=32, text_dim=384)
TOKEN = "test-token-0123456789abcdef"
CPU = (torch.device("cpu"), torch.float32)
SERVE = ServeConfig(prior="unused", token_file="unused", port=0, max_batch=8, max_body_mib=0.25, read_timeout=1.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny prior (text, first frame, edges) served on a free loopback port, a tiny adapter and the token file."""
    root = tmp_path_factory.mktemp("serve")
    prior = save_model(root / "prior", randomize(SpaceTimeUNet(dataclasses.replace(CFG, edge_cond=True)), seed=1,
                                                 scale=0.1), "minilm")
    adapter = save_model(root / "adapter", randomize(SpaceTimeUNet(CFG), seed=0, scale=0.1), "minilm")
    (root / "token").write_text(TOKEN + "\n")
    model = load_model(prior, *CPU)
    app = create_app(model, TOKEN, SERVE, load_text_encoder("minilm", device="cpu"))
    with ServerThread(app, SERVE) as url:
        yield {"url": url, "prior": prior, "adapter": adapter, "token_file": root / "token", "local": model,
               "batcher": app.state.batcher, "root": root}


def inputs(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, CFG.frames, CFG.height, CFG.width, generator=g)
    video = torch.rand(b, 3, CFG.frames, CFG.height, CFG.width, generator=g) * 2 - 1
    return x, torch.linspace(-6, 6, b, dtype=torch.float64), video


def both_conds(remote, local, prompts, video):
    """The remote prior's Cond (caption rows) and the local one's (MiniLM embeddings) for the same rows."""
    pixels = {"first_frame": video[:, :, 0], "edges": sobel_x(video)}
    models = {"prior": remote}
    routes = {"prior": {"text", "first_frame", "edges"}}
    remote_cond = model_conds(models, prompts, pixels, routes, torch.device("cpu")).prior
    local_cond = model_conds({"prior": local}, prompts, pixels, routes, torch.device("cpu")).prior
    return remote_cond, local_cond


def post(url, body, token=TOKEN, **headers):
    return httpx.post(f"{url}/eps", content=body, headers={"Authorization": f"Bearer {token}", **headers},
                      timeout=30)


def good_tensors(b=2):
    x, logsnr, video = inputs(b)
    return {"x_t": x, "logsnr": logsnr, "caption_index": torch.zeros(b, dtype=torch.int64),
            "has_text": torch.ones(b, dtype=torch.bool), "first_frame": video[:, :, 0].contiguous(),
            "has_first_frame": torch.ones(b, dtype=torch.bool)}


def body(tensors, captions=("a red square",)):
    return save_safetensors(tensors, metadata=None if captions is None else {"captions": json.dumps(list(captions))})


# ------------------------------------------------------------------------------------------------------ equality


def test_spec_is_the_priors(served):
    remote = RemoteScoreModel(served["url"], TOKEN)
    assert remote.spec == served["local"].spec
    assert remote.max_batch == SERVE.max_batch
    reply = httpx.get(f"{served['url']}/spec", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert reply == json.loads(json.dumps(spec_json(served["local"].spec, SERVE.limits())))
    assert reply["shape"] == [3, CFG.frames, CFG.height, CFG.width] and reply["text_encoder"] == "minilm"


def test_remote_eps_equals_local_bit_for_bit_with_every_condition_and_null_rows(served):
    remote = RemoteScoreModel(served["url"], TOKEN)
    x, logsnr, video = inputs(4)
    prompts = ["a red square moves left", "a blue ball", "a red square moves left", "a blue ball"]
    rc, lc = both_conds(remote, served["local"], prompts, video)
    flags = torch.tensor([True, False, True, True])  # row 1 unconditional, as classifier-free guidance sends
    rc, lc = rc.with_flags(text=flags, edges=~flags), lc.with_flags(text=flags, edges=~flags)
    got, want = remote(x, logsnr, rc), served["local"](x, logsnr, lc)
    assert torch.equal(got, want)
    assert not torch.equal(got[0], got[2])  # the same caption at another level: rows are not mixed up
    # a batch larger than the server's --max-batch goes as several requests
    x, logsnr, video = inputs(SERVE.max_batch + 3, seed=1)
    prompts = [f"caption {i % 3}" for i in range(len(x))]
    rc, lc = both_conds(remote, served["local"], prompts, video)
    chunks = [served["local"](x[i:i + 8], logsnr[i:i + 8], lc.map(lambda v, i=i: v[i:i + 8])) for i in (0, 8)]
    assert torch.equal(remote(x, logsnr, rc), torch.cat(chunks))


def test_composition_with_the_remote_prior_equals_the_local_prior_bit_for_bit(served):
    local = {"small": load_model(served["adapter"], *CPU), "prior": served["local"]}
    remote = {"small": local["small"], "prior": RemoteScoreModel(served["url"], TOKEN)}
    prompts = ["a red square moves left", "a blue ball bounces"]
    _, _, video = inputs(1)
    settings = SamplingSettings(sampler="ddim", steps=4, guidance=3.0, strength=PriorStrength(0.5), seed=2)
    out = {}
    for name, models in (("local", local), ("remote", remote)):
        routes = route_conditions(models, {"text", "first_frame"}, partial=False)
        conds = model_conds(models, prompts, {"first_frame": video[0, :, 0]}, routes, torch.device("cpu"))
        out[name] = generate(models, conds, COMPARE_ROWS, settings, torch.device("cpu"), progress=False).videos
    for method in COMPARE_ROWS:
        assert torch.equal(out["remote"][method], out["local"][method]), method
    assert not torch.equal(out["local"]["composed"], out["local"]["adapter"])


@pytest.mark.slow
def test_sample_and_diagnose_take_a_prior_url(served, capsys, tmp_path, monkeypatch):
    """The CLI: --prior http://HOST:PORT with --prior-token-file (or the environment) writes what the local prior
    does, byte for byte; no token is an error naming both ways to give one."""
    from video_adapter.data.toy import make_toy_dataset

    common = ["sample", "--adapter", str(served["adapter"]), "--prompt", "a red square", "another", "--steps", "3",
              "--sampler", "dpmpp-2m", "--compare", "--seed", "4", "--prior-strength", "0.3"]
    main(common + ["--prior", str(served["prior"]), "--out", str(tmp_path / "local.gif")])
    main(common + ["--prior", served["url"], "--prior-token-file", str(served["token_file"]),
                   "--out", str(tmp_path / "remote.gif")])
    assert (tmp_path / "local.gif").read_bytes() == (tmp_path / "remote.gif").read_bytes()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    main(common + ["--prior", served["url"], "--out", str(tmp_path / "env.gif")])
    assert (tmp_path / "env.gif").read_bytes() == (tmp_path / "local.gif").read_bytes()
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(SystemExit) as e:
        main(common + ["--prior", served["url"], "--out", str(tmp_path / "none.gif")])
    assert "--prior-token-file" in str(e.value.code) and TOKEN_ENV in str(e.value.code)

    make_toy_dataset(tmp_path / "domain" / "test", num=3, frames=CFG.frames, size=(CFG.height, CFG.width), seed=0,
                     progress=False)
    diagnose = ["diagnose", "--adapter", str(served["adapter"]), "--data", str(tmp_path / "domain"), "--num", "3",
                "--batch-size", "2", "--logsnrs", "-2", "3", "--guidance", "1", "3", "--gammas", "0.2",
                "--device", "cpu"]
    main(diagnose + ["--prior", str(served["prior"]), "--out", str(tmp_path / "dl")])
    main(diagnose + ["--prior", served["url"], "--prior-token-file", str(served["token_file"]),
                     "--out", str(tmp_path / "dr")])
    local, remote = (json.loads((tmp_path / d / "diagnose.json").read_text()) for d in ("dl", "dr"))
    assert remote["methods"] == local["methods"] and remote["best_gamma"] == local["best_gamma"]


def test_evaluate_with_a_prior_url_scores_what_the_local_prior_scores(eval_config, tmp_path):
    """The paper's protocol, the prior behind the API: every method that uses it samples the same videos, so every
    metric is the same number."""
    from video_adapter.evaluation.evaluate import run_evaluation

    (tmp_path / "token").write_text(TOKEN)
    model = load_model(eval_config.prior, *CPU)
    cfg = dataclasses.replace(eval_config, methods=("small-s+prior", "prior"), gamma_sweep=(),
                              metrics=("fvd-va", "accuracy"))
    local = run_evaluation(dataclasses.replace(cfg, out=str(tmp_path / "local")))
    with ServerThread(create_app(model, TOKEN, SERVE, load_text_encoder("minilm", device="cpu")), SERVE) as url:
        remote = run_evaluation(dataclasses.replace(cfg, prior=url, prior_token_file=str(tmp_path / "token"),
                                                    out=str(tmp_path / "remote")))
    for method in cfg.methods:
        assert remote["methods"][method]["metrics"] == local["methods"][method]["metrics"], method
        assert remote["methods"][method]["parameters"] == local["methods"][method]["parameters"]


# ------------------------------------------------------------------------------------------------ the client's errors


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_client_names_an_unreachable_server_a_refused_token_and_a_refused_request(served):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemotePriorError) as e:
        RemoteScoreModel(f"http://127.0.0.1:{port}", TOKEN)
    assert "cannot reach the prior" in one_line(e) and "serve-prior" in one_line(e)
    with pytest.raises(RemotePriorError) as e:
        RemoteScoreModel(served["url"], "wrong-token-0123456789")
    assert "401" in one_line(e) and "--prior-token-file" in one_line(e)
    remote = RemoteScoreModel(served["url"], TOKEN)
    x, logsnr, video = inputs(2)
    x[0, 0, 0, 0, 0] = float("nan")
    cond = Cond.make(first_frame=video[:, :, 0])
    with pytest.raises(RemotePriorError) as e:
        remote(x, logsnr, cond)
    assert "422" in one_line(e) and "x_t holds 1 NaN" in one_line(e)
    with pytest.raises(ValueError, match="caption table"):  # real embeddings cannot stand in for captions
        remote(inputs(2)[0], logsnr, Cond.make(text=torch.randn(2, 5, 384)))
    with pytest.raises(ValueError, match="not an http"):
        RemoteScoreModel("ftp://127.0.0.1:1", TOKEN)


def test_a_missing_extra_is_named():
    from video_adapter.common.extras import require

    with pytest.raises(ImportError, match=r"no_such_module_xyz is not installed: pip install 'video-adapter\[serve\]'"):
        require("serve", "no_such_module_xyz")
    require("serve", "fastapi", "uvicorn", "httpx")


def test_the_server_refuses_a_short_or_missing_token_file(tmp_path):
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ValueError, match="at least 16"):
        server_token(str(tmp_path / "short"))
    with pytest.raises(FileNotFoundError, match="--token-file"):
        server_token(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="--token-file FILE"):
        ServeConfig(prior="p").validate()


# --------------------------------------------------------------------------------------------- the server's checks


def test_every_request_needs_the_token(served):
    url = served["url"]
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        assert httpx.get(f"{url}/spec", headers=headers).status_code == 401
        reply = httpx.post(f"{url}/eps", content=body(good_tensors()), headers=headers)
        assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert post(url, body(good_tensors())).status_code == 200


def chunked(data: bytes, size: int = 4096):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_caps_on_the_body_and_the_batch(served):
    url, cap = served["url"], SERVE.max_body_bytes
    big = good_tensors(2)
    big["x_t"] = torch.randn(1, 3, 3000, 8, 8)  # 1.1 MB, past the 0.25 MiB cap
    for content in (body(big), chunked(body(big))):  # declared by Content-Length, and counted while streaming
        reply = post(url, content)
        assert reply.status_code == 413 and str(cap) in reply.json()["detail"]
    rows = good_tensors(SERVE.max_batch + 1)
    reply = post(url, body(rows))
    assert reply.status_code == 413 and "--max-batch" in reply.json()["detail"]
    assert post(url, body(good_tensors(SERVE.max_batch))).status_code == 200


def bad(name):
    t = good_tensors()
    captions = ("a red square",)
    if name == "shape":
        t["x_t"] = torch.randn(2, 3, CFG.frames, CFG.height, CFG.width + 1)
    elif name == "rank":
        t["x_t"] = torch.randn(3, CFG.frames, CFG.height, CFG.width)
    elif name == "dtype":
        t["x_t"] = t["x_t"].double()
    elif name == "nan":
        t["x_t"][1, 2, 0, 0, 0] = float("nan")
    elif name == "inf logsnr":
        t["logsnr"][0] = float("inf")
    elif name == "frame shape":
        t["first_frame"] = torch.randn(2, 3, CFG.height, CFG.height + 2)
    elif name == "unknown":
        t["weights"] = torch.zeros(1)
    elif name == "flag alone":
        del t["first_frame"]
    elif name == "index":
        t["caption_index"][1] = 1
    elif name == "no captions":
        captions = None
    elif name == "captions not text":
        return save_safetensors(t, metadata={"captions": json.dumps([1, 2])})
    elif name == "malformed":
        return b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors}" + b"\x00" * 20
    elif name == "truncated":
        return body(t)[:-7]
    elif name == "empty":
        return b""
    return body(t, captions)


BAD = {"shape": (422, "x_t has shape [2, 3, 5, 8, 9]"), "rank": (422, "with B >= 1"),
       "dtype": (422, "x_t is float64; send float32"), "nan": (422, "x_t holds 1 NaN or Inf"),
       "inf logsnr": (422, "logsnr holds 1 NaN or Inf"), "frame shape": (422, "first_frame has shape [2, 3, 8, 10]"),
       "unknown": (422, "unknown tensors ['weights']"), "flag alone": (422, "first_frame and has_first_frame"),
       "index": (422, "caption_index must lie in [0, 1)"), "no captions": (400, "captions as text"),
       "captions not text": (400, "list of strings"), "malformed": (400, "not a safetensors file"),
       "truncated": (400, "safetensors"), "empty": (400, "not a safetensors file")}


@pytest.mark.parametrize("name", BAD)
def test_each_bad_request_gets_its_4xx_and_a_message_naming_it(served, name):
    status, words = BAD[name]
    reply = post(served["url"], bad(name))
    assert reply.status_code == status and words in reply.json()["detail"], reply.text
    assert post(served["url"], body(good_tensors())).status_code == 200  # and it keeps serving


def test_a_condition_the_prior_does_not_take_is_refused(tmp_path):
    prior = save_model(tmp_path / "p", SpaceTimeUNet(dataclasses.replace(CFG, first_frame_cond=False)), "minilm")
    model = load_model(prior, *CPU)
    with ServerThread(create_app(model, TOKEN, SERVE, load_text_encoder("minilm", device="cpu")), SERVE) as url:
        reply = post(url, body(good_tensors()))
    assert reply.status_code == 422 and "does not take first_frame; it takes text" in reply.json()["detail"]


def test_a_slow_client_gets_408_while_others_are_served(served):
    host, port = served["url"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as slow:
        slow.sendall(f"POST /eps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Length: 100000\r\n\r\n".encode() + b"\x00" * 100)
        start = time.perf_counter()
        assert post(served["url"], body(good_tensors())).status_code == 200  # served while the slow one waits
        slow.settimeout(10)
        reply = b""
        while chunk := slow.recv(4096):  # the server closes the connection after its answer
            reply += chunk
        reply = reply.decode()
        assert reply.startswith("HTTP/1.1 408") and "--read-timeout" in reply
        assert SERVE.read_timeout - 0.1 < time.perf_counter() - start < SERVE.read_timeout + 3


@pytest.mark.slow
def test_an_answer_not_ready_within_the_timeout_is_a_503_and_the_next_is_served(served):
    class Slow:  # the served prior, slowed so the first request outlives --timeout
        spec, caption_encoder = served["local"].spec, None

        def __init__(self):
            self.delays = [1.5]

        def eps(self, *args):
            time.sleep(self.delays.pop() if self.delays else 0)
            return served["local"].eps(*args)

    cfg = dataclasses.replace(SERVE, timeout=0.5)
    with ServerThread(create_app(Slow(), TOKEN, cfg, load_text_encoder("minilm", device="cpu")), cfg) as url:
        reply = post(url, body(good_tensors()))
        assert reply.status_code == 503 and "--timeout" in reply.json()["detail"]
        time.sleep(1.2)  # the slow forward finishes; its answer goes nowhere
        assert post(url, body(good_tensors())).status_code == 200


@pytest.mark.slow
def test_concurrent_requests_share_forwards_and_each_gets_its_own_eps(served):
    """16 clients at once on a server that waits up to 300 ms for company: fewer forwards than requests, and each
    answer is its own rows' eps (the same computation one by one, up to float rounding of the batch size)."""
    cfg = dataclasses.replace(SERVE, batch_wait_ms=300, max_batch=32)
    model = served["local"]
    app = create_app(model, TOKEN, cfg, load_text_encoder("minilm", device="cpu"))
    n, results, barrier = 16, {}, threading.Barrier(16)
    with ServerThread(app, cfg) as url:
        remote = [RemoteScoreModel(url, TOKEN) for _ in range(n)]

        def client(i):
            x, logsnr, video = inputs(2, seed=i)
            cond = model_conds({"prior": remote[i]}, [f"clip {i}", "shared"], {"first_frame": video[:, :, 0]},
                               {"prior": {"text", "first_frame"}}, torch.device("cpu")).prior
            barrier.wait()
            results[i] = remote[i](x, logsnr, cond)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    batcher = app.state.batcher
    assert batcher.requests == n and batcher.rows == 2 * n and batcher.forwards < n / 2
    for i in range(n):
        x, logsnr, video = inputs(2, seed=i)
        cond = model_conds({"prior": model}, [f"clip {i}", "shared"], {"first_frame": video[:, :, 0]},
                           {"prior": {"text", "first_frame"}}, torch.device("cpu")).prior
        torch.testing.assert_close(results[i], model(x, logsnr, cond), rtol=0, atol=1e-5)


def test_caption_embeddings_keep_the_most_recent(served):
    encoder = load_text_encoder("minilm", device="cpu")
    cache = CaptionEmbeddings(encoder, size=2)
    first = cache(("a", "b"))
    cache(("c",))
    assert list(cache.rows) == ["b", "c"]
    assert torch.equal(cache(("a",)).tokens, first[0].tokens)  # embedded again, the same
    assert np.isclose(float(first.pooled.norm()), float(encoder.encode(["a", "b"]).pooled.norm()))
