"""Evaluation samples sharded over 2 CPU processes (torchrun, gloo) equal a 1-process run.

Both runs use one intra-op thread per process: float32 reductions depend on the thread count, so with the default
threads the two runs agree only to about 1e-7 (measured), not bit for bit.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from test_evaluate import setup  # noqa: F401  (the fixture: tiny prior, adapter, encoder and toy test split)


def run(cfg, out, processes: int) -> dict:
    args = ["evaluate", "--domain", cfg.domain, "--prior", cfg.prior, "--small-s", cfg.small_s,
            "--methods", "small-s+prior", "prior", "--metrics", "fvd-va", "--encoder", cfg.encoder, "--num", "6",
            "--batch-size", "2", "--steps", "3", "--gamma-sweep", "--bootstrap", "10", "--grid", "4",
            "--device", "cpu", "--out", str(out)]
    # "--" ends the launcher's options: without it argparse takes our --num for an abbreviation of its own options
    # (torchrun: "ambiguous option: --num could match --numa-binding"; accelerate launch fails the same way)
    cli = str(Path(sys.executable).parent / "video-adapter")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--", cli] \
        if processes > 1 else [cli]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(launcher + args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_two_processes_give_the_one_process_samples(setup, tmp_path):  # noqa: F811
    cfg, _ = setup
    one, two = run(cfg, tmp_path / "one", 1), run(cfg, tmp_path / "two", 2)
    for method in ("small-s+prior", "prior"):
        assert two["methods"][method]["metrics"] == one["methods"][method]["metrics"]
    # the grid shows batches 0 and 1, sampled by different processes in the 2-process run
    assert (tmp_path / "two" / "qualitative.gif").read_bytes() == (tmp_path / "one" / "qualitative.gif").read_bytes()
