"""scripts/prior_heldout.py: every model sees the same clips, levels and noise, so equal weights give equal figures."""

import importlib.util
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import randomize

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prior_heldout.py"


def run_script(monkeypatch, *args):
    spec = importlib.util.spec_from_file_location("prior_heldout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["prior_heldout.py", *map(str, args)])
    module.main()


def test_same_weights_same_figures_other_weights_other_figures(tmp_path, monkeypatch, tiny_cfg):
    from video_adapter.checkpoint import save_model
    from video_adapter.unet import SpaceTimeUNet

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


def test_a_directory_named_twice_is_refused(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_script(monkeypatch, "--models", "x", "x")
    assert "names a directory twice" in capsys.readouterr().err
