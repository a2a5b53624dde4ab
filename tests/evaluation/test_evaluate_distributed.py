"""Evaluation under several processes (torchrun on 2 CPU processes, gloo), launched as the README says: samples
sharded over processes equal a 1-process run, bit for bit at one thread per process."""

import json
import subprocess
import sys

import pytest

from helpers import ONE_THREAD_ENV, TORCHRUN

pytestmark = pytest.mark.slow


def run(cfg, out, processes: int) -> dict:
    args = ["evaluate", "--domain", cfg.domain, "--prior", cfg.prior, "--small-s", cfg.small_s,
            "--methods", "small-s+prior", "prior", "--metrics", "fvd-va", "--encoder", cfg.encoder, "--num", "6",
            "--batch-size", "2", "--steps", "3", "--gamma-sweep", "--bootstrap", "10", "--grid", "4",
            "--device", "cpu", "--out", str(out)]
    # "--" ends the launcher's options: without it argparse takes our --num for an abbreviation of its own options
    # (torchrun: "ambiguous option: --num could match --numa-binding"; accelerate launch fails the same way)
    launcher = TORCHRUN + [str(processes), "-m", "--", "video_adapter"] if processes > 1 else \
        [sys.executable, "-m", "video_adapter"]
    done = subprocess.run(launcher + args, env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_two_processes_give_the_one_process_samples(eval_config, tmp_path):
    cfg = eval_config
    one, two = run(cfg, tmp_path / "one", 1), run(cfg, tmp_path / "two", 2)
    for method in ("small-s+prior", "prior"):
        assert two["methods"][method]["metrics"] == one["methods"][method]["metrics"]
    # the grid shows batches 0 and 1, sampled by different processes in the 2-process run
    assert (tmp_path / "two" / "qualitative.gif").read_bytes() == (tmp_path / "one" / "qualitative.gif").read_bytes()
