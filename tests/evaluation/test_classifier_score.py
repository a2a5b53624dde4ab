"""score-classifier: a caption classifier's accuracy on a labelled folder, on a constructed case whose answer is
known, with the interval around it, the classifier's own rewrites, and errors that name the fix."""

import json

import numpy as np
import pytest
import torch

from video_adapter.data.captioned import write_captioned_folder
from video_adapter.evaluation.classifier_score import ClassifierScoreConfig, score_classifier
from video_adapter.evaluation.metrics.scores import mean_with_ci
from video_adapter.evaluation.metrics.video_net import VideoNet, VideoNetConfig, save_video_net
from video_adapter.interfaces.cli import main

NET = dict(frames=4, height=8, width=12, widths=(8,), feature_dim=8, norm_groups=4)


def always(label: str, labels: tuple[str, ...], rewrites: tuple[str, ...] = ()) -> VideoNet:
    """A caption classifier that names `label` whatever the video: zero weights into the head, bias on that class."""
    net = VideoNet(VideoNetConfig(**NET, objective="caption", labels=labels, caption_rewrites=rewrites))
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([float(c == label) for c in labels]))
    return net


@pytest.fixture
def folder(tmp_path):
    """Seven random clips: 3 captioned with what the classifier says (one via its rewrite "slide=>push"), 3 with
    another label, and one caption it does not know."""
    captions = ["push red", "push red", "slide red", "push blue", "push blue", "push green", "wave hello"]
    videos = torch.rand(len(captions), 3, 4, 8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return write_captioned_folder(tmp_path / "real", videos, captions)


def test_accuracy_is_the_share_named_right_with_its_interval(folder, tmp_path):
    labels = ("push blue", "push green", "push red")
    classifier = save_video_net(tmp_path / "net", always("push red", labels, ("slide=>push",)))
    with pytest.warns(UserWarning, match="1 of 7 captions .* not among the classifier's labels"):
        got = score_classifier(ClassifierScoreConfig(classifier=str(classifier), data=str(folder), bootstrap=500,
                                                     device="cpu", out=str(tmp_path / "score.json")))
    assert (got["accuracy"], got["n"], got["num_unknown"]) == (pytest.approx(3 / 6), 6, 1)
    assert got["chance"] == pytest.approx(1 / 3)
    want = mean_with_ci(np.array([1, 1, 1, 0, 0, 0], dtype=bool), 500, 0)  # the same resamples, computed directly
    assert got["ci95"] == [want.low, want.high] and want.low <= 0.5 <= want.high and want.high - want.low > 0.2
    assert json.loads((tmp_path / "score.json").read_text()) == got


def test_cli_prints_and_writes_the_json(folder, tmp_path, capsys):
    classifier = save_video_net(tmp_path / "net", always("push blue", ("push blue", "push red")))
    with pytest.warns(UserWarning, match="3 of 7 captions"):
        main(["score-classifier", "--classifier", str(classifier), "--data", str(folder), "--device", "cpu",
              "--bootstrap", "50", "--out", str(tmp_path / "s.json")])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "s.json").read_text())
    # "slide red" is no label of a net without the rewrite; "push green" and "wave hello" neither
    assert (printed["accuracy"], printed["n"], printed["num_unknown"]) == (pytest.approx(2 / 4), 4, 3)


def test_errors_name_the_fix(folder, tmp_path):
    encoder = save_video_net(tmp_path / "encoder", VideoNet(VideoNetConfig(**NET, embed_dim=8)))
    with pytest.raises(ValueError, match="needs a caption classifier"):
        score_classifier(ClassifierScoreConfig(classifier=str(encoder), data=str(folder), device="cpu"))
    other = save_video_net(tmp_path / "other", always("a", ("a", "b")))
    with pytest.raises(ValueError, match="none of the 7 captions"):
        score_classifier(ClassifierScoreConfig(classifier=str(other), data=str(folder), device="cpu"))
    (tmp_path / "made" / "train").mkdir(parents=True)
    (tmp_path / "made" / "test").mkdir()
    with pytest.raises(ValueError, match="pass one split"):
        score_classifier(ClassifierScoreConfig(classifier=str(other), data=str(tmp_path / "made"), device="cpu"))
    with pytest.raises(SystemExit, match="pass --classifier DIR"):
        main(["score-classifier", "--data", str(folder)])
    with pytest.raises(SystemExit) as e:  # argparse formats each help with %: a bare "%" in one breaks --help
        main(["score-classifier", "--help"])
    assert e.value.code == 0


def test_against_adds_the_paired_difference_over_the_same_clips_and_resamples(folder, tmp_path):
    """Two arms on one folder: "push red" is right on the 3 red clips, "push blue" on the 2 blue ones; their paired
    difference is the mean of the per-clip differences, with the interval of the same resamples."""
    labels = ("push blue", "push green", "push red")
    red = save_video_net(tmp_path / "red", always("push red", labels, ("slide=>push",)))
    blue = save_video_net(tmp_path / "blue", always("push blue", labels, ("slide=>push",)))
    with pytest.warns(UserWarning):
        got = score_classifier(ClassifierScoreConfig(classifier=str(red), against=str(blue), data=str(folder),
                                                     bootstrap=500, device="cpu"))
    assert got["accuracy"] == pytest.approx(3 / 6) and got["against"]["accuracy"] == pytest.approx(2 / 6)
    per_clip = np.array([1, 1, 1, -1, -1, 0], dtype=np.float64)  # red right, blue right, neither ("push green")
    want = mean_with_ci(per_clip, 500, 0)
    assert got["difference"] == {"value": pytest.approx(1 / 6), "ci95": [want.low, want.high]}
    assert (got["only_this_right"], got["only_against_right"]) == (3, 2)
    assert got["against"]["ci95"] == [mean_with_ci(np.array([0, 0, 0, 1, 1, 0.0]), 500, 0).low,
                                      mean_with_ci(np.array([0, 0, 0, 1, 1, 0.0]), 500, 0).high]


def test_against_refuses_arms_that_would_score_different_clips(folder, tmp_path):
    labels = ("push blue", "push green", "push red")
    with_rewrite = save_video_net(tmp_path / "a", always("push red", labels, ("slide=>push",)))
    without = save_video_net(tmp_path / "b", always("push red", labels))  # "slide red" is no label of this one
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="know different captions.*--caption-rewrites"):
        score_classifier(ClassifierScoreConfig(classifier=str(with_rewrite), against=str(without), data=str(folder),
                                               device="cpu"))
