"""benchmarks/serve_load.py: the server it starts finds this checkout's package and keeps the caller's PYTHONPATH."""

import os
from pathlib import Path

from helpers import load_script


def test_server_env_puts_this_checkout_first_and_keeps_the_callers_path(monkeypatch):
    bench = load_script("serve_load", "benchmarks")
    src = str(Path(__file__).resolve().parents[2] / "src")
    monkeypatch.setenv("PYTHONPATH", "/carried/site")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = bench.server_env()
    assert env["PYTHONPATH"] == src + os.pathsep + "/carried/site" and "OMP_NUM_THREADS" not in env
    monkeypatch.delenv("PYTHONPATH")
    assert bench.server_env(threads=3)["PYTHONPATH"] == src and bench.server_env(threads=3)["OMP_NUM_THREADS"] == "3"
