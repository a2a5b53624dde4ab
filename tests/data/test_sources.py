"""Several folders as one training set: Concatenated passes each key, epoch included, to the right part."""

import pytest
import torch

from video_adapter.data.dataset import VideoFolderDataset
from video_adapter.data.sources import Concatenated
from video_adapter.data.toy import make_toy_dataset


def test_concatenated_routes_index_and_epoch_keys_to_its_parts(tmp_path):
    parts = [VideoFolderDataset(make_toy_dataset(tmp_path / name, num=n, frames=6, size=(8, 8), seed=seed,
                                                 progress=False), frames=3, size=(8, 8), seed=1)
             for name, n, seed in (("a", 3, 0), ("b", 2, 1))]
    both = Concatenated(parts)
    assert len(both) == 5
    for key, (part, local) in ((0, (0, 0)), (2, (0, 2)), (3, (1, 0)), ((4, 7), (1, (1, 7)))):
        want = parts[part][local]
        got = both[key]
        assert got["caption"] == want["caption"] and torch.equal(got["video"], want["video"])
    with pytest.raises(IndexError, match="out of range for 5 videos"):
        both[5]
