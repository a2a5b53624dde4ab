"""The demo's whole code path on the CPU in seconds: a tiny prior, a few robot clips, a few training and sampling
steps; the real demo runs the same functions at the shipped prior's size."""

import json
from dataclasses import replace

import pytest
import torch

from video_adapter.data.video_io import make_grid, read_video
from video_adapter.generation.generate import COMPARE_ROWS
from video_adapter.interfaces.demo import ROWS, DemoConfig, resolve_prior, run_demo
from video_adapter.models.checkpoint import save_model
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig

from helpers import randomize

TINY_PRIOR = UNetConfig(frames=4, height=8, width=16, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                        attention_resolutions=(4,), head_dim=8, emb_dim=32, first_frame_cond=True, edge_cond=True)
TINY_ADAPTER = dict(base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,), head_dim=8, emb_dim=32)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A tiny demo run and its config; random prior weights, so the prior's term is visible in every output."""
    root = tmp_path_factory.mktemp("demo")
    prior = save_model(root / "prior", randomize(SpaceTimeUNet(TINY_PRIOR), scale=0.05), "minilm")
    cfg = DemoConfig(out=str(root / "out"), prior=str(prior), clips=20, workers=1, model=TINY_ADAPTER, steps=3,
                     batch_size=2, prompts=2, sample_steps=3, seed=1)
    return cfg, run_demo(cfg)


@pytest.mark.slow
def test_demo_writes_grid_and_table(demo):
    cfg, result = demo
    out = result.paths[0].parent
    assert {p.name for p in result.paths} == {"compare.gif", "compare.mp4", "table.md", "table.json"}
    assert all(p.is_file() for p in result.paths)
    assert list(result.rows) == list(ROWS) == ["real", *COMPARE_ROWS]
    assert all(v.shape == (cfg.prompts, 3, TINY_PRIOR.frames, TINY_PRIOR.height, TINY_PRIOR.width)
               for v in result.rows.values())
    captions = json.loads((out / "table.json").read_text())["captions"]
    expected = make_grid([v for row in ROWS for v in result.rows[row]], captions * len(ROWS), nrow=cfg.prompts,
                         row_labels=list(ROWS), upscale=4)
    assert read_video(out / "compare.gif").shape == expected.shape  # five rows of `prompts` clips
    table = (out / "table.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:6]] == list(COMPARE_ROWS)
    assert "cfg-mix (the recipe): the prior's weight w 0.2 from log-SNR -2 up" in table
    methods = {row["method"]: row for row in result.table}
    for composed in ("cfg-mix", "composed"):
        assert methods[composed]["parameters"] == methods["prior"]["parameters"] + methods["adapter"]["parameters"]
    assert methods["adapter"]["adapter_over_prior"] == methods["adapter"]["parameters"] / methods["prior"]["parameters"]
    assert (out / "data" / "data_card.json").is_file() and (out / "run" / "checkpoint" / "config.json").is_file()


@pytest.mark.slow
def test_prior_term_changes_the_composition(demo):
    _, result = demo
    real = result.rows["real"]
    assert real.abs().max() <= 1 and not torch.equal(real[0], real[1])  # distinct test clips
    assert not torch.equal(result.rows["composed"], result.rows["adapter"])
    assert not torch.equal(result.rows["cfg-mix"], result.rows["adapter"])


@pytest.mark.slow
def test_zero_prior_weights_compose_to_the_adapter_bit_for_bit(demo, capsys):
    cfg, _ = demo
    # Same out: the data and the finished run are reused, so this only samples again.
    result = run_demo(replace(cfg, prior_strength=0.0, mix=0.0))
    assert "reusing" in capsys.readouterr().out
    assert torch.equal(result.rows["composed"], result.rows["adapter"])
    assert torch.equal(result.rows["cfg-mix"], result.rows["adapter"])
    assert not torch.equal(result.rows["prior"], result.rows["adapter"])


def test_missing_prior_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no prior checkpoint at .*nowhere.*--prior DIR"):
        resolve_prior(str(tmp_path / "nowhere"))
