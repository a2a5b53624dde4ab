"""Generated clips written as a training folder: read back by VideoFolderDataset with their captions and frames,
replaced atomically, and named safely."""

import json

import pytest
import torch

from video_adapter.data.captioned import safe_name, write_captioned_folder
from video_adapter.data.dataset import VideoFolderDataset


def clips(n: int, frames: int = 5, size=(8, 12)) -> torch.Tensor:
    """Flat-coloured clips, clip i a grey level of its own, so each read-back clip shows which one it is."""
    levels = torch.linspace(-0.8, 0.8, n)
    return levels[:, None, None, None, None].expand(n, 3, frames, *size).clone()


def test_a_written_folder_reads_back_with_its_captions_and_frames(tmp_path):
    videos, captions = clips(3), ["push the red block", "push the blue block", "push the red block"]
    folder = write_captioned_folder(tmp_path / "rows" / "small-s_prior", videos, captions)
    lines = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
    assert lines == [{"video": f"{i:06d}.mp4", "caption": c} for i, c in enumerate(captions)]
    data = VideoFolderDataset(folder, frames=5, size=(8, 12), random_crop=False)
    assert data.captions == captions and data.lengths == [5, 5, 5]
    for i in range(3):
        # lossless luma; chroma is subsampled, which grey clips do not feel
        assert (data[i]["video"] - videos[i]).abs().max() < 0.02
    assert [p.name for p in (tmp_path / "rows").iterdir()] == ["small-s_prior"]  # no temp folder left


def test_a_rewrite_replaces_the_old_folder_whole(tmp_path):
    write_captioned_folder(tmp_path / "row", clips(3), ["a", "b", "c"])
    write_captioned_folder(tmp_path / "row", clips(2), ["d", "e"])
    assert sorted(p.name for p in (tmp_path / "row").iterdir()) == ["000000.mp4", "000001.mp4", "captions.jsonl"]
    assert VideoFolderDataset(tmp_path / "row", frames=5, size=(8, 12)).captions == ["d", "e"]


def test_bad_inputs_and_names_are_errors(tmp_path):
    with pytest.raises(ValueError, match="N captions"):
        write_captioned_folder(tmp_path / "x", clips(2), ["only one"])
    assert not (tmp_path / "x").exists()
    assert safe_name("small-s+prior gamma 0.2") == "small-s_prior_gamma_0.2"
    assert safe_name("cfg-mix w 0.25") == "cfg-mix_w_0.25"
    with pytest.raises(ValueError, match="no usable folder name"):
        safe_name("+/+")
