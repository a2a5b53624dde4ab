"""benchmarks/diffusers_prior_cost.py: the real-size configs build (on the meta device, no memory) to the released
models' sizes, and a tiny run writes every row it promises."""

import json
import sys

import pytest
import torch

from helpers import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("diffusers_prior_cost", "benchmarks")


# the published sizes: Wan 2.1 "1.3B" and "14B", LTX-Video "2B", CogVideoX "5B", ModelScope's UNet 1.4B
SIZES = {"modelscope": (1.40, 1.42), "wan-1.3b": (1.3, 1.45), "wan-14b": (14.0, 14.5), "ltx-2b": (1.8, 2.0),
         "cogvideox-5b": (5.4, 5.7)}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_released_configs_build_to_the_released_sizes_with_an_adapter_of_one_to_two_percent(bench, name):
    prior = bench.build_prior(name, False, torch.device("meta"), torch.bfloat16)
    low, high = SIZES[name]
    assert low <= prior.spec.parameters / 1e9 <= high
    cfg = bench.adapter_config(prior, 0.015, prior.null_text.tokens.shape[-1])
    with torch.device("meta"):
        share = sum(p.numel() for p in bench.SpaceTimeUNet(cfg).parameters()) / prior.spec.parameters
    assert 0.01 <= share <= 0.02


def test_a_tiny_run_writes_every_row(bench, tmp_path, monkeypatch):
    out = tmp_path / "cost.json"
    monkeypatch.setattr(sys, "argv", ["diffusers_prior_cost.py", "--tiny", "--device", "cpu", "--iters", "1",
                                      "--train-steps", "1", "--batch", "1", "--family", "ltx-2b", "wan-1.3b",
                                      "--out", str(out)])
    bench.main()
    result = json.loads(out.read_text())
    assert sorted(result["families"]) == ["ltx-2b", "wan-1.3b"]
    assert {(r["family"], r["method"]) for r in result["rows"]} == {
        (f, m) for f in ("ltx-2b", "wan-1.3b") for m in ("prior, CFG", "prior, no guidance", "composed (Algorithm 1)")}
    assert all(info["train_samples_per_s"] > 0 for info in result["families"].values())
