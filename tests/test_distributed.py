"""The multi-GPU code path on 2 CPU processes (torchrun, gloo): evaluation samples sharded over processes equal a
1-process run; 2-process training equals 1-process training at twice the batch, and killed and resumed ends
bit-identical to an uninterrupted run.

Every run uses one intra-op thread per process: float32 reductions depend on the thread count, so with the default
threads two runs agree only to about 1e-7 (measured), not bit for bit.
"""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from safetensors.torch import load_file
from test_evaluate import eval_config  # noqa: F401  (the fixture: tiny prior, adapter, encoder and toy test split)
from test_train import TINY, assert_same_training_state, config

from video_adapter.data.toy import make_toy_dataset
from video_adapter.training.train import train

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node"]


def run(cfg, out, processes: int) -> dict:
    args = ["evaluate", "--domain", cfg.domain, "--prior", cfg.prior, "--small-s", cfg.small_s,
            "--methods", "small-s+prior", "prior", "--metrics", "fvd-va", "--encoder", cfg.encoder, "--num", "6",
            "--batch-size", "2", "--steps", "3", "--gamma-sweep", "--bootstrap", "10", "--grid", "4",
            "--device", "cpu", "--out", str(out)]
    # "--" ends the launcher's options: without it argparse takes our --num for an abbreviation of its own options
    # (torchrun: "ambiguous option: --num could match --numa-binding"; accelerate launch fails the same way)
    launcher = TORCHRUN + [str(processes), "-m", "--", "video_adapter"] if processes > 1 else \
        [sys.executable, "-m", "video_adapter"]
    done = subprocess.run(launcher + args, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_two_processes_give_the_one_process_samples(eval_config, tmp_path):  # noqa: F811
    cfg = eval_config
    one, two = run(cfg, tmp_path / "one", 1), run(cfg, tmp_path / "two", 2)
    for method in ("small-s+prior", "prior"):
        assert two["methods"][method]["metrics"] == one["methods"][method]["metrics"]
    # the grid shows batches 0 and 1, sampled by different processes in the 2-process run
    assert (tmp_path / "two" / "qualitative.gif").read_bytes() == (tmp_path / "one" / "qualitative.gif").read_bytes()


# train() as `video-adapter train` runs it, plus stop_after: a kill after that step, without saving
TRAIN = """
import json, sys
from video_adapter.training.train import TrainConfig, train
train(TrainConfig.from_dict(json.loads(sys.argv[1])), stop_after=int(sys.argv[2]) or None)
"""


def train_2_processes(cfg, script: Path, stop_after: int = 0) -> Path:
    done = subprocess.run(TORCHRUN + ["2", str(script), json.dumps(asdict(cfg)), str(stop_after)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(cfg.out) / "checkpoint"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num=8, frames=4, size=(8, 16), seed=0, progress=False)


def test_two_process_training_is_one_process_at_twice_the_batch_and_resumes_exactly(toy, tmp_path):
    (script := tmp_path / "train.py").write_text(TRAIN)

    def cfg(name, **kw):
        return config(toy, tmp_path / name, **{"model": TINY, "steps": 6, "save_every": 3, **kw})

    straight = train_2_processes(cfg("a", batch_size=2), script)
    train_2_processes(cfg("b", batch_size=2), script, stop_after=5)  # killed after step 5: the last save is step 3
    resumed = train_2_processes(cfg("b", batch_size=2), script)
    assert_same_training_state(straight, resumed, step=6)
    assert json.loads((resumed / "train_state/state.json").read_text())["processes"] == 2
    # the same clips, noise and dropout in every global batch: only the gradient average's rounding differs
    one = load_file(str(train(cfg("one", batch_size=4)) / "train_state/online.safetensors"))
    two = load_file(str(straight / "train_state/online.safetensors"))
    # lr 2e-3: 5% of one Adam step (with the sampler's chunks the gap is 1.6e-5; without them it was 1.5e-2)
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-4
    with pytest.raises(ValueError, match="trained by 2 processes and this run has 1"):
        train(cfg("b", batch_size=2, steps=9))
