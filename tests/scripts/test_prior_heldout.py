"""scripts/prior_heldout.py: every model sees the same clips, levels and noise, so equal weights give equal figures."""

import json
import shutil
import sys
from dataclasses import replace

import pytest

from helpers import load_script, randomize


def run_script(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["prior_heldout.py", *map(str, args)])
    load_script("prior_heldout").main()


def test_same_weights_same_figures_other_weights_other_figures(tmp_path, monkeypatch, tiny_cfg):
    from video_adapter.models.checkpoint import save_model
    from video_adapter.models.unet import SpaceTimeUNet

    cfg = replace(tiny_cfg, height=16, width=16, attention_resolutions=(8,), text_dim=384)
    save_model(tmp_path / "a", randomize(SpaceTimeUNet(cfg), seed=0, scale=0.05), "minilm")
    shutil.copytree(tmp_path / "a", tmp_path / "a-copy")
    save_model(tmp_path / "b", randomize(SpaceTimeUNet(cfg), seed=1, scale=0.05), "minilm")
    out = tmp_path / "heldout.json"

    run_script(monkeypatch, "--models", tmp_path / "a", tmp_path / "a-copy", tmp_path / "b", "--num", 3,
               "--levels", 2, "--batch", 2, "--device", "cpu", "--out", out)

    figures = json.loads(out.read_text())
    a, a_copy, b = (figures["results"][str(tmp_path / name)]["broad-procedural"] for name in ("a", "a-copy", "b"))
    assert set(a) == {"text", "text + first frame", "text + edges"}
    assert a == a_copy
    assert all(a[cond] != b[cond] for cond in a)
    assert len(figures["levels"]) == 2 and figures["num"] == 3


def test_a_directory_named_twice_is_refused(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_script(monkeypatch, "--models", tmp_path / "x", f"{tmp_path}/x/")
    assert "names a directory twice" in capsys.readouterr().err


def test_a_missing_or_mismatched_model_stops_before_any_scoring(tmp_path, monkeypatch, capsys, tiny_cfg):
    from video_adapter.models.checkpoint import CheckpointError, save_model
    from video_adapter.models.unet import SpaceTimeUNet

    small = replace(tiny_cfg, height=16, width=16, attention_resolutions=(8,), text_dim=384)
    save_model(tmp_path / "a", SpaceTimeUNet(small), "minilm")
    save_model(tmp_path / "wide", SpaceTimeUNet(replace(small, width=32)), "minilm")
    monkeypatch.setattr("video_adapter.data.datagen.stream.ClipStream.__init__",
                        lambda *a, **k: pytest.fail("clips were made before the models were checked"))

    with pytest.raises(CheckpointError, match="nowhere"):
        run_script(monkeypatch, "--models", tmp_path / "a", tmp_path / "nowhere")
    with pytest.raises(SystemExit):
        run_script(monkeypatch, "--models", tmp_path / "a", tmp_path / "wide")
    assert "different videos" in capsys.readouterr().err
