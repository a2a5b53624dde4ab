"""Load test of `video-adapter serve-prior` on loopback: 100 concurrent clients, bad requests among them.

    python benchmarks/serve_load.py --prior tiny                  # a random 16x24x40 model, fast on a CPU
    python benchmarks/serve_load.py --prior checkpoints/prior --requests 2 --rows 1

Starts the server in a subprocess (as `video-adapter serve-prior` runs), then, against each of two servers, one that
batches concurrent requests (--max-batch) and one that serves them one by one (--max-batch = --rows):

1. one client sending --single requests in a row: its latency and throughput;
2. --clients concurrent clients, --requests each (bounded too by --max-seconds): errors, p50 / p99 latency and
   throughput, against the one client;
3. during that load (batching server only), one of each bad request: a wrong token, an oversized body, a wrong
   shape, NaN input, malformed safetensors and a slow client; each must get its 4xx while the load sees no error.

Writes --out (JSON) and prints a markdown summary; exits non-zero if any good request failed or a bad one was not
answered 4xx.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from safetensors.torch import save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from video_adapter.maths.conditioning import Cond  # noqa: E402
from video_adapter.models.checkpoint import save_model  # noqa: E402
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig  # noqa: E402
from video_adapter.models.wire import spec_from_json, write_request  # noqa: E402

TOKEN = "load-test-token-0123456789abcdef"
TINY = UNetConfig(frames=16, height=24, width=40, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                  attention_resolutions=(), head_dim=8, emb_dim=32, text_dim=384)


def server_env(threads: int = 0) -> dict[str, str]:
    """The server's environment: this checkout's src first on PYTHONPATH, then the caller's (where packages carried
    as wheels may live: dropping it lost fastapi on the GPU machine); `threads` CPU threads for its forwards."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH"))))}
    if threads:  # torch reads this at start
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class Server:
    """`video-adapter serve-prior` in a subprocess, ready when GET /spec answers."""

    def __init__(self, prior: str, token_file: Path, port: int, max_batch: int, read_timeout: float,
                 device: str = "cpu", dtype: str = "auto", threads: int = 0):
        command = [sys.executable, "-m", "video_adapter", "serve-prior", prior, "--token-file", str(token_file),
                   "--port", str(port), "--max-batch", str(max_batch), "--read-timeout", str(read_timeout),
                   "--device", device, "--dtype", dtype, "--timeout", "600"]
        self.process = subprocess.Popen(command, env=server_env(threads), stdout=subprocess.PIPE, text=True)
        self.url, self.log = f"http://127.0.0.1:{port}", ""

    def __enter__(self) -> dict:
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve-prior exited with {self.process.returncode}")
            try:
                reply = httpx.get(f"{self.url}/spec", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
                return reply.json()
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError("serve-prior did not start within 300 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()  # uvicorn shuts down gracefully and prints how many rows each forward held
        self.log = self.process.communicate(timeout=60)[0]
        print(self.log, end="")


def request_body(spec, rows: int, seed: int, caption: str) -> bytes:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, *spec.shape, generator=g)
    first = torch.rand(rows, spec.channels, spec.height, spec.width, generator=g) * 2 - 1
    cond = Cond.make(first_frame=first) if "first_frame" in spec.conditions else Cond()
    return write_request(x, torch.linspace(-5, 5, rows), cond, [caption], torch.zeros(rows, dtype=torch.int64))


async def client(url: str, bodies: list[bytes], deadline: float, latencies: list, errors: list) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as http:
        for body in bodies:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            try:
                reply = await http.post("/eps", content=body)
                if reply.status_code != 200:
                    errors.append(f"{reply.status_code}: {reply.text[:200]}")
                    continue
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(time.perf_counter() - start)


async def load(url: str, spec, clients: int, requests: int, rows: int, max_seconds: float) -> dict:
    bodies = [[request_body(spec, rows, c * 1000 + r, f"client {c} caption {r % 2}") for r in range(requests)]
              for c in range(clients)]
    latencies, errors = [], []
    start = time.perf_counter()
    await asyncio.gather(*(client(url, b, start + max_seconds, latencies, errors) for b in bodies))
    wall = time.perf_counter() - start
    return summary(latencies, errors, wall, rows)


def summary(latencies: list[float], errors: list[str], wall: float, rows: int) -> dict:
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000 if ordered else None  # noqa
    return {"requests": len(latencies) + len(errors), "ok": len(latencies), "errors": len(errors),
            "error_samples": errors[:5], "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else None, "wall_s": wall,
            "requests_per_s": len(latencies) / wall, "rows_per_s": len(latencies) * rows / wall}


async def raw(url: str, head: str, payload: bytes, pause: float = 0.0) -> tuple[int, str, float]:
    """Send a request by hand (the oversized and the slow client never send all they announce): status, body,
    seconds to the answer."""
    host, port = url.removeprefix("http://").split(":")
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode() + payload)
    await writer.drain()
    if pause:
        await asyncio.sleep(pause)
    try:
        data = await asyncio.wait_for(reader.read(), 120)
    except ConnectionResetError:  # counted as a failure: the answer was lost
        data = b"HTTP/1.1 000 reset\r\n\r\nconnection reset before an answer"
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")[:200], time.perf_counter() - start


async def bad_requests(url: str, spec, rows: int) -> dict:
    good = request_body(spec, rows, 0, "bad")
    shaped = save({"x_t": torch.randn(rows, spec.channels, spec.frames, spec.height, spec.width + 1),
                   "logsnr": torch.zeros(rows)})
    nan = torch.randn(rows, *spec.shape)
    nan[0, 0, 0, 0, 0] = float("nan")
    nan = save({"x_t": nan, "logsnr": torch.zeros(rows)})
    huge = 65 * 2**20

    async def post(content: bytes, token: str = TOKEN) -> tuple[int, str, float]:
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=120) as http:
            reply = await http.post(f"{url}/eps", content=content, headers={"Authorization": f"Bearer {token}"})
        return reply.status_code, reply.text[:200], time.perf_counter() - start

    auth = f"Authorization: Bearer {TOKEN}\r\n"
    cases = {
        "wrong token": post(good, token="not-the-token-0123456789"),
        "oversized body (65 MiB announced, 4 KiB sent)": raw(
            url, f"POST /eps HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {huge}\r\n\r\n", b"\0" * 4096),
        "wrong shape": post(shaped),
        "NaN input": post(nan),
        "malformed safetensors": post(b"\x10\0\0\0\0\0\0\0{not safetensors}" + b"\0" * 64),
        "slow client (100 of 100000 bytes)": raw(url, f"POST /eps HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: "
                                                      "100000\r\n\r\n", b"\0" * 100),
    }
    results = await asyncio.gather(*cases.values())
    return {name: {"status": s, "answer": text, "seconds": t} for name, (s, text, t) in zip(cases, results)}


async def under_load(url: str, spec, args) -> tuple[dict, dict]:
    loaded = asyncio.create_task(load(url, spec, args.clients, args.requests, args.rows, args.max_seconds))
    await asyncio.sleep(0.5)  # the load is running
    bad = await bad_requests(url, spec, args.rows)
    return await loaded, bad


def run(args, token_file: Path, prior: str, max_batch: int, port: int, with_bad: bool) -> dict:
    server = Server(prior, token_file, port, max_batch, args.read_timeout, args.device, args.dtype, args.threads)
    with server as spec_data:
        spec, _ = spec_from_json(spec_data)
        asyncio.run(load(f"http://127.0.0.1:{port}", spec, 1, 1, args.rows, args.max_seconds))  # warm-up
        single = asyncio.run(load(f"http://127.0.0.1:{port}", spec, 1, args.single, args.rows, args.max_seconds))
        if with_bad:
            many, bad = asyncio.run(under_load(f"http://127.0.0.1:{port}", spec, args))
        else:
            many, bad = asyncio.run(load(f"http://127.0.0.1:{port}", spec, args.clients, args.requests, args.rows,
                                         args.max_seconds)), None
    forwards = [line for line in server.log.splitlines() if line.startswith("served ")]
    return {"max_batch": max_batch, "one_client": single, "clients": many, "bad_requests": bad,
            "server_says": forwards[-1] if forwards else "",
            "throughput_vs_one_client": many["rows_per_s"] / single["rows_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="tiny", help="a checkpoint directory, or tiny (a random 16x24x40 model)")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--single", type=int, default=20, help="requests of the lone client")
    parser.add_argument("--rows", type=int, default=1, help="rows (samples) per request")
    parser.add_argument("--max-batch", type=int, default=32, help="the batching server's --max-batch")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="no request starts after this")
    parser.add_argument("--read-timeout", type=float, default=2.0, help="the servers' --read-timeout")
    parser.add_argument("--device", default="cpu", help="the servers' --device")
    parser.add_argument("--dtype", default="auto", help="the servers' --dtype")
    parser.add_argument("--threads", type=int, default=0, help="the server's CPU threads (0: torch's default)")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        prior = args.prior
        if prior == "tiny":
            torch.manual_seed(0)
            prior = str(save_model(Path(tmp) / "tiny", SpaceTimeUNet(TINY), "minilm"))
        batched = run(args, token_file, prior, args.max_batch, args.port, with_bad=True)
        one_by_one = run(args, token_file, prior, args.rows, args.port + 1, with_bad=False)
    result = {"prior": args.prior, "device": args.device, "dtype": args.dtype, "cores": os.cpu_count(),
              "server_threads": args.threads or "default",
              "clients": args.clients, "requests_per_client": args.requests, "rows_per_request": args.rows,
              "batched": batched, "one_by_one": one_by_one,
              "batching_gain": batched["clients"]["rows_per_s"] / one_by_one["clients"]["rows_per_s"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(markdown(result))
    failed = batched["clients"]["errors"] + one_by_one["clients"]["errors"]
    not_4xx = [n for n, b in batched["bad_requests"].items() if not 400 <= b["status"] < 500]
    if failed or not_4xx:
        sys.exit(f"{failed} good requests failed; bad requests not answered 4xx: {not_4xx}")


def markdown(r: dict) -> str:
    lines = ["| server | clients | requests ok / sent | errors | p50 ms | p99 ms | rows/s | vs one client |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("batched", "one_by_one"):
        s = r[name]
        for label, m in (("1", s["one_client"]), (str(r["clients"]), s["clients"])):
            gain = f"{s['throughput_vs_one_client']:.2f}x" if label != "1" else "1"
            lines.append(f"| {name} (--max-batch {s['max_batch']}) | {label} | {m['ok']} / {m['requests']} | "
                         f"{m['errors']} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['rows_per_s']:.1f} | {gain} |")
    lines += ["", f"batching gain at {r['clients']} clients: {r['batching_gain']:.2f}x rows/s",
              f"batched server: {r['batched']['server_says']}", f"one by one: {r['one_by_one']['server_says']}", "",
              "| bad request (under load) | status | seconds | answer |", "|---|---:|---:|---|"]
    for name, b in r["batched"]["bad_requests"].items():
        lines.append(f"| {name} | {b['status']} | {b['seconds']:.2f} | {b['answer'][:90]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
