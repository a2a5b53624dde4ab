"""The evaluation protocol end to end on tiny models: every output, the same seeds across methods, the gamma sweep's
exact endpoints, and errors before any sampling."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from video_adapter.evaluation.evaluate import EvalConfig, run_evaluation
from video_adapter.interfaces.cli import main
from video_adapter.models.checkpoint import save_model
from video_adapter.models.unet import SpaceTimeUNet

from helpers import EVAL_SMALL

pytestmark = pytest.mark.slow  # every test here runs a whole evaluation, or shares one


@pytest.fixture(scope="module")
def setup(eval_config):
    return eval_config, run_evaluation(eval_config)


def test_writes_every_output(setup):
    cfg, results = setup
    out = json.loads((Path(cfg.out) / "results.json").read_text())
    assert out == json.loads(json.dumps(results))
    for name in ("table.md", "gamma_sweep.png", "qualitative.gif", "qualitative.mp4"):
        assert (Path(cfg.out) / name).stat().st_size > 0
    assert list(results["methods"]) == list(cfg.methods)
    for row in results["methods"].values():
        assert set(row["metrics"]) == set(cfg.metrics)
        acc = row["metrics"]["accuracy"]
        assert 0 <= acc["ci95"][0] <= acc["value"] <= acc["ci95"][1] <= 1
        assert row["seconds_per_sample"] > 0
    assert results["networks"]["inception"]["sha256"] and results["networks"]["encoder"]["path"] == cfg.encoder
    table = (Path(cfg.out) / "table.md").read_text()
    assert "| Small (S) + Prior |" in table and "not comparable" in table


def test_real_reference_row_scores_other_test_clips_like_a_method(setup, tmp_path):
    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.evaluation.metrics.scores import Scorer

    cfg, results = setup
    assert "real" not in results  # 6 test clips < 2 x 4
    small = replace(cfg, num=3, methods=("small-s",), gamma_sweep=(), out=str(tmp_path))
    got = run_evaluation(small)
    data = VideoFolderDataset(Path(cfg.domain) / "test", frames=4, size=(8, 16), random_crop=False)
    others = torch.stack([data[i]["video"] for i in range(3, 6)])
    real = torch.stack([data[i]["video"] for i in range(3)])
    scorer = Scorer(cfg.metrics, real, {"inception": cfg.inception, "encoder": cfg.encoder,
                                        "classifier": cfg.classifier, "i3d": ""}, "cpu", 2, cfg.bootstrap, cfg.seed)
    want = {k: v.as_dict() for k, v in scorer.score(others, data.captions[3:6]).items()}
    assert got["real"] == want and want["fvd-va"]["value"] > 0
    assert "| Real: 3 other test clips |" in (tmp_path / "table.md").read_text()


def test_noised_real_rows_move_only_with_noise(setup, tmp_path):
    """--real-noise 0 scores exactly the Real row's clips; noise moves the distance off the Real row."""
    cfg, _ = setup
    got = run_evaluation(replace(cfg, num=3, methods=("small-s",), gamma_sweep=(), real_noise=(0.0, 0.5),
                                 out=str(tmp_path)))
    assert got["real_noised"]["0"] == got["real"]
    assert got["real_noised"]["0.5"]["fvd-va"]["value"] > got["real"]["fvd-va"]["value"]
    assert "| Real + noise 0.5 |" in (tmp_path / "table.md").read_text()
    with pytest.raises(ValueError, match="--real-noise takes standard deviations >= 0"):
        replace(cfg, real_noise=(-0.1,)).validate()


def test_composition_parameters_are_both_models(setup):
    _, results = setup
    m = results["methods"]
    assert m["small-s+prior"]["parameters"] == m["small-s"]["parameters"] + m["prior"]["parameters"]


def test_gamma_sweep_endpoints_are_exact(setup):
    """gamma = 0 samples the adapter bit for bit (so every metric equals Small (S)'s), and the sweep point at the
    main run's gamma is the main run."""
    _, results = setup
    sweep, methods = results["gamma_sweep"], results["methods"]
    assert sweep["0.0"] == methods["small-s"]["metrics"]
    assert sweep["0.1"] == methods["small-s+prior"]["metrics"]
    assert methods["small-s"]["metrics"]["fvd-va"] != methods["prior"]["metrics"]["fvd-va"]


def test_paired_differences_compare_each_composed_row_with_its_experts(setup):
    """Each composition (and each sweep point off the main gamma) minus Small (S) and minus the prior, paired over
    the same resamples: the point is the difference of the rows, and gamma 0 (the adapter bit for bit) gives exactly
    0 with a zero-width interval."""
    cfg, results = setup
    paired, methods = results["paired"], results["methods"]
    assert set(paired) == {"small-s+prior - small-s", "small-s+prior - prior", "cfg-mix - small-s", "cfg-mix - prior",
                           "small-s+prior gamma 0 - small-s", "small-s+prior gamma 0 - prior"}
    for pair, diff in paired.items():
        row, expert = pair.split(" - ")
        values = results["gamma_sweep"]["0.0"] if row.endswith("gamma 0") else methods[row]["metrics"]
        for m in cfg.metrics:
            assert diff[m]["value"] == pytest.approx(values[m]["value"] - methods[expert]["metrics"][m]["value"])
            assert diff[m]["ci95"][0] <= diff[m]["ci95"][1]
    assert all(d == {"value": 0.0, "ci95": [0.0, 0.0]} for d in paired["small-s+prior gamma 0 - small-s"].values())
    assert "| small-s+prior - small-s |" in (Path(cfg.out) / "table.md").read_text()


def test_the_table_names_the_cfg_mix_weight_when_cfg_mix_ran(setup):
    from video_adapter.evaluation.evaluate import results_markdown

    cfg, results = setup
    assert "cfg-mix" in results["methods"]
    assert cfg.mix_min_logsnr == -2.0  # the recipe's band, evaluate's default
    assert f"CFG Mix weight w {cfg.mix:g} from log-SNR -2 up" in (Path(cfg.out) / "table.md").read_text()
    without = dict(results, methods={k: v for k, v in results["methods"].items() if k != "cfg-mix"})
    assert "CFG Mix weight" not in results_markdown(without, cfg)
    constant = results_markdown(results, replace(cfg, mix_min_logsnr=-math.inf))  # the paper's constant weight
    assert f"CFG Mix weight w {cfg.mix:g}." in constant and "from log-SNR" not in constant
    banded = results_markdown(results, replace(cfg, mix_min_logsnr=-1.5))
    assert f"CFG Mix weight w {cfg.mix:g} from log-SNR -1.5 up" in banded


def test_the_table_says_when_guidance_leaves_conditions_in_its_null_pass(setup):
    from video_adapter.evaluation.evaluate import results_markdown

    cfg, results = setup
    assert f"guidance {cfg.guidance:g}, gamma" in results_markdown(results, cfg)  # the default: every condition
    text_only = results_markdown(results, replace(cfg, guided_conditions=("text",)))
    assert f"guidance {cfg.guidance:g} towards the text alone, gamma" in text_only
    both = results_markdown(results, replace(cfg, guided_conditions=("text", "first_frame")))
    assert "towards the text and first frame alone" in both


def test_sweep_curves_add_the_main_rows_and_the_adapter_at_strength_0(setup):
    from video_adapter.evaluation.evaluate import sweep_curves

    cfg, results = setup
    methods = results["methods"]
    curves = sweep_curves(results, replace(cfg, mix_sweep=()))
    assert set(curves) == {"Small (S) + Prior"}  # no CFG Mix sweep was run
    assert curves["Small (S) + Prior"] == {0.0: results["gamma_sweep"]["0.0"], 0.1: methods["small-s+prior"]["metrics"]}
    only_main = dict(results, gamma_sweep={"0.05": methods["prior"]["metrics"]}, mix_sweep={"1.0": {}})
    curves = sweep_curves(only_main, replace(cfg, mix=0.5))
    assert curves["Small (S) + Prior"] == {0.05: methods["prior"]["metrics"], 0.1: methods["small-s+prior"]["metrics"],
                                           0.0: methods["small-s"]["metrics"]}
    assert curves["CFG Mix (S, Prior)"] == {1.0: {}, 0.5: methods["cfg-mix"]["metrics"],
                                            0.0: methods["small-s"]["metrics"]}


def test_a_sample_depends_on_its_batch_alone(setup, tmp_path):
    """Batch i is seeded by i: fewer samples give the same first batches, so sharding batches over processes
    cannot change them."""
    cfg, results = setup
    from video_adapter.evaluation.evaluate import Models, sample_method, test_set

    small = replace(cfg, num=2, out=str(tmp_path))
    models = Models(small, torch.device("cpu"))
    tests = test_set(small, models(cfg.prior).spec)
    first, _ = sample_method(small, "small-s+prior", models, tests, 0.1)
    full, _ = sample_method(cfg, "small-s+prior", models, test_set(cfg, models(cfg.prior).spec), 0.1)
    assert torch.equal(first, full[:2]) and not torch.equal(full[:2], full[2:])


def test_save_samples_writes_each_row_as_a_training_folder(eval_config, tmp_path):
    """--save-samples: every method and sweep point a folder of its clips, clip i captioned with condition i's
    caption, that VideoFolderDataset and train-video-net read like real clips."""
    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.evaluation.metrics.video_net import VideoNetTrainConfig, train_video_net

    cfg, saved = eval_config, tmp_path / "samples"
    run_evaluation(replace(cfg, methods=("small-s", "small-s+prior"), metrics=("accuracy",), out=str(tmp_path / "out"),
                           save_samples=str(saved)))
    rows = {"small-s", "small-s_prior", "small-s_prior_gamma_0", "small-s_prior_gamma_0.1"}
    assert {p.name for p in saved.iterdir()} == rows  # and no temp folder left behind
    test = VideoFolderDataset(Path(cfg.domain) / "test", frames=4, size=(8, 16), random_crop=False)
    read = {row: VideoFolderDataset(saved / row, frames=4, size=(8, 16), random_crop=False) for row in rows}
    for data in read.values():
        assert data.captions == test.captions[:cfg.num] and data.lengths == [4] * cfg.num
    clip = lambda row, i: read[row][i]["video"]
    for i in range(cfg.num):  # gamma 0 is the adapter bit for bit, and the main gamma is the main run
        assert torch.equal(clip("small-s_prior_gamma_0", i), clip("small-s", i))
        assert torch.equal(clip("small-s_prior_gamma_0.1", i), clip("small-s_prior", i))
    net = train_video_net(VideoNetTrainConfig(data=(str(saved / "small-s"),), objective="caption", frames=4, height=8,
                                              width=16, model={"widths": (8,), "feature_dim": 8, "norm_groups": 4},
                                              steps=1, batch_size=2, device="cpu", out=str(tmp_path / "net")))
    labels = json.loads((net / "config.json").read_text())["model"]["labels"]
    assert labels == sorted(set(test.captions[:cfg.num]))


def test_a_prior_prompt_suffix_styles_the_prior_alone_and_the_clips_keep_their_captions(eval_config, tmp_path):
    """--prior-prompt-suffix (Figure 10's augmented variants): the prior row is the prior given the styled captions
    directly, the adapter's rows and gamma 0 are untouched bit for bit, and the saved captions.jsonl (the task
    labels) keep each clip's own caption; results.json and table.md record the suffix."""
    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.evaluation.evaluate import Models, sample_method, test_set

    night = ", at night"
    cfg = replace(eval_config, num=2, out=str(tmp_path / "out"))
    styled = replace(cfg, prior_prompt_suffix=night)
    models = Models(cfg, torch.device("cpu"))
    tests = test_set(cfg, models(cfg.prior).spec)
    sample = lambda c, method, gamma, t=tests: sample_method(c, method, models, t, gamma)[0]
    direct = tests._replace(captions=[c + night for c in tests.captions])
    assert torch.equal(sample(styled, "prior", 0.1), sample(cfg, "prior", 0.1, direct))
    assert not torch.equal(sample(styled, "prior", 0.1), sample(cfg, "prior", 0.1))
    assert not torch.equal(sample(styled, "small-s+prior", 0.1), sample(cfg, "small-s+prior", 0.1))
    assert torch.equal(sample(styled, "small-s+prior", 0.0), sample(cfg, "small-s", 0.1))
    assert torch.equal(sample(styled, "small-s", 0.1), sample(cfg, "small-s", 0.1))
    saved = tmp_path / "samples"
    results = run_evaluation(replace(styled, methods=("small-s+prior",), metrics=("accuracy",), gamma_sweep=(),
                                     save_samples=str(saved)))
    assert results["config"]["prior_prompt_suffix"] == night
    assert json.loads((Path(cfg.out) / "results.json").read_text())["config"]["prior_prompt_suffix"] == night
    assert "(the prior: each caption + ', at night')" in (Path(cfg.out) / "table.md").read_text()
    clips = VideoFolderDataset(saved / "small-s_prior", frames=4, size=(8, 16), random_crop=False)
    assert clips.captions == tests.captions and not any(night in c for c in clips.captions)
    with pytest.raises(ValueError, match="--prior-prompt-suffix styles the prior's captions, but none of small-s "):
        replace(styled, methods=("small-s",)).validate()


def test_real_scores_against_another_set_while_the_conditions_stay(setup, tmp_path):
    """--real DIR: the conditions (clips, captions, pixels) still come from --domain, the samples are scored against
    the other set's clips, and its next N clips make the Real row; a missing folder is an error naming the flag."""
    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.data.toy import make_toy_dataset
    from video_adapter.evaluation.evaluate import Models, test_set

    cfg, results = setup
    other = tmp_path / "other"
    make_toy_dataset(other / "test", num=2 * cfg.num, frames=4, size=(8, 16), seed=1, progress=False)
    spec = Models(cfg, torch.device("cpu"))(cfg.prior).spec
    own, cross = test_set(cfg, spec), test_set(replace(cfg, real=str(other)), spec)
    assert torch.equal(own.target, own.real)
    assert torch.equal(cross.real, own.real) and cross.captions == own.captions
    assert torch.equal(cross.pixels["first_frame"], own.pixels["first_frame"])
    data = VideoFolderDataset(other / "test", frames=4, size=(8, 16), random_crop=False)
    assert torch.equal(cross.target, torch.stack([data[i]["video"] for i in range(cfg.num)]))
    assert torch.equal(cross.reference, torch.stack([data[i]["video"] for i in range(cfg.num, 2 * cfg.num)]))
    assert cross.reference_captions == data.captions[cfg.num:]
    scored = run_evaluation(replace(cfg, real=str(other), methods=("small-s",), metrics=("fvd-va",), gamma_sweep=(),
                                    out=str(tmp_path / "out")))
    fvd = lambda r: r["methods"]["small-s"]["metrics"]["fvd-va"]["value"]
    assert fvd(scored) != pytest.approx(fvd(results))  # the same samples against other clips
    with pytest.raises(ValueError, match="--real .*missing: no such folder"):
        test_set(replace(cfg, real=str(tmp_path / "missing")), spec)


def test_errors_before_sampling(setup, tmp_path, monkeypatch):
    cfg, _ = setup
    sampled = []
    monkeypatch.setattr("video_adapter.evaluation.evaluate.generate", lambda *a, **k: sampled.append(1))
    with pytest.raises(ValueError, match="method small-l\\+prior needs --small-l DIR"):
        run_evaluation(replace(cfg, methods=("small-l+prior",), out=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="fvd-va needs --encoder DIR"):
        run_evaluation(replace(cfg, encoder="", out=str(tmp_path / "b")))
    with pytest.raises(ValueError, match="unknown method"):
        run_evaluation(replace(cfg, methods=("nope",), out=str(tmp_path / "c")))
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        run_evaluation(replace(cfg, metrics=("fvd",), i3d=str(tmp_path / "missing.pt"), out=str(tmp_path / "d")))
    narrow = save_model(tmp_path / "narrow", SpaceTimeUNet(replace(EVAL_SMALL, width=8)), "minilm")
    with pytest.raises(ValueError, match="shapes differ"):  # checked before the first method samples
        run_evaluation(replace(cfg, methods=("prior", "small-s+prior"), small_s=str(narrow), out=str(tmp_path / "e")))
    text_only = save_model(tmp_path / "text_only", SpaceTimeUNet(replace(EVAL_SMALL, first_frame_cond=False)), "minilm")
    with pytest.raises(ValueError, match="does not take first_frame"):
        run_evaluation(replace(cfg, methods=("prior", "small-s"), small_s=str(text_only), out=str(tmp_path / "f")))
    assert not any((tmp_path / name).exists() for name in "abcdef") and not sampled


def test_an_out_that_cannot_be_written_is_refused_before_sampling(setup, tmp_path, monkeypatch):
    cfg, _ = setup
    sampled = []
    monkeypatch.setattr("video_adapter.evaluation.evaluate.generate", lambda *a, **k: sampled.append(1))
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ValueError, match=f"cannot make the folder {tmp_path / 'taken'}: .* is a file"):
        run_evaluation(replace(cfg, out=str(tmp_path / "taken")))
    assert not sampled


def test_cli_dry_run_and_error(capsys, setup):
    cfg, _ = setup
    main(["evaluate", "--domain", cfg.domain, "--small-s", cfg.small_s, "--num", "8", "--dry-run"])
    assert json.loads(capsys.readouterr().out)["num"] == 8
    with pytest.raises(SystemExit, match="pass --domain DIR"):
        main(["evaluate", "--small-s", cfg.small_s])


def test_every_sampling_setting_reaches_each_method():
    """evaluate's composition, band, x0 handling and MCMC settings are the ones each method samples with, and bad
    ones are refused before anything loads."""
    from video_adapter.evaluation.evaluate import sampling_settings
    from video_adapter.maths.composition import PriorStrength
    from video_adapter.maths.mcmc import MCMCConfig

    cfg = EvalConfig(domain="d", composition="paper", compose_in="x0", min_logsnr=-4.0, dynamic_threshold=0.99,
                     clip_x0=0.5, mcmc="ula", mcmc_steps=3, mcmc_step_size=0.05, sampler="dpmpp-2m", steps=7,
                     guided_conditions=("text",))
    settings = sampling_settings(cfg, 0.3)
    assert settings.guided_conditions == ("text",)
    replace(cfg, small_s="s", condition="edges", guided_conditions=("edges",)).validate()  # edges given: fine
    assert sampling_settings(EvalConfig(domain="d"), 0.3).guided_conditions == ("text", "first_frame", "edges")
    assert (settings.strength, settings.composition, settings.compose_in) == \
        (PriorStrength(0.3, min_logsnr=-4.0), "paper", "x0")
    assert (settings.dynamic_threshold, settings.clip_x0, settings.mcmc) == \
        (0.99, 0.5, MCMCConfig("ula", steps=3, step_size=0.05))
    assert (settings.sampler, settings.steps) == ("dpmpp-2m", 7)
    for bad in (dict(composition="sum"), dict(min_logsnr=5.0), dict(dynamic_threshold=2.0),
                dict(guided_conditions=("caption",)), dict(guided_conditions=()),
                dict(guided_conditions=("edges",))):  # with --condition first_frame: guidance would do nothing
        with pytest.raises(ValueError):
            replace(cfg, small_s="s", **bad).validate()


def test_cascade_upscales_every_grid_row_and_leaves_the_metrics_at_the_base_size(eval_config, tmp_path, monkeypatch):
    """--cascade: the qualitative grid's rows (the real clips too) are the cascade's output of the base-size rows, each
    row's captions its text, shown at the zoom that keeps the grid's size; the samples and every score are those of
    the run without it, bit for bit."""
    import video_adapter.evaluation.evaluate as evaluate
    from video_adapter.data.video_io import read_video
    from video_adapter.generation.cascade import load_stages, upscale
    from video_adapter.models.unet import UNetConfig

    from helpers import EVAL_SHAPE, randomize

    sr = UNetConfig(frames=4, height=16, width=32, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                    head_dim=8, emb_dim=16, first_frame_cond=False, lowres_factor=2, lowres_aug=0.5)
    stage = str(save_model(tmp_path / "sr", randomize(SpaceTimeUNet(sr), seed=2), "minilm"))
    cfg = replace(eval_config, num=3, methods=("small-s",), metrics=("fvd-va", "accuracy"), gamma_sweep=(),
                  bootstrap=5, grid=2)
    grids, write_grid = [], evaluate.write_grid
    monkeypatch.setattr(evaluate, "write_grid", lambda path, videos, **kw: (grids.append((videos, kw)),
                                                                             write_grid(path, videos, **kw))[1])
    plain = run_evaluation(replace(cfg, out=str(tmp_path / "plain")))
    got = run_evaluation(replace(cfg, out=str(tmp_path / "cascade"), cascade=(stage,), cascade_aug_level=0.1,
                                 cascade_start=0.5))
    assert got["methods"]["small-s"]["metrics"] == plain["methods"]["small-s"]["metrics"]
    (base, base_kw), (big, big_kw) = grids
    assert [tuple(v.shape) for v in base] == [(3, 4, 8, 16)] * 4 and base_kw["upscale"] == 4
    assert [tuple(v.shape) for v in big] == [(3, 4, 16, 32)] * 4 and big_kw["upscale"] == 2
    assert big_kw["row_labels"] == ["real", "small-s"] and big_kw["labels"] == base_kw["labels"]
    settings = evaluate.sampling_settings(cfg, cfg.prior_strength)
    assert settings.guidance != 1.0  # the stages' own guidance (1 by default), not the evaluation's
    settings = replace(settings, guidance=1.0)
    stages = load_stages([stage], torch.device("cpu"))
    for row in range(2):  # each row upscaled on its own, from the evaluation's seed, with its captions as text
        want = upscale(stages, torch.stack(base[2 * row:2 * row + 2]), base_kw["labels"][:2], settings,
                       torch.device("cpu"), aug_level=0.1, start=0.5)[-1]  # --cascade-start reaches the stages
        assert torch.equal(torch.stack(big[2 * row:2 * row + 2]), want)
    frames = read_video(tmp_path / "cascade" / "qualitative.gif")
    assert frames.shape[1] >= 2 * 2 * EVAL_SHAPE["height"] * 2 and frames.shape[2] >= 2 * 2 * EVAL_SHAPE["width"] * 2
    guided = run_evaluation(replace(cfg, out=str(tmp_path / "guided"), cascade=(stage,), cascade_aug_level=0.1,
                                    cascade_start=0.5, cascade_guidance=3.0))
    assert guided["methods"]["small-s"]["metrics"] == plain["methods"]["small-s"]["metrics"]
    want = upscale(stages, torch.stack(base[:2]), base_kw["labels"][:2], replace(settings, guidance=3.0),
                   torch.device("cpu"), aug_level=0.1, start=0.5)[-1]  # --cascade-guidance reaches the stages
    assert torch.equal(torch.stack(grids[2][0][:2]), want) and not torch.equal(torch.stack(big[:2]), want)
    with pytest.raises(ValueError, match="stage 2 makes 16x32 from 8x16, but its input is 16x32"):
        run_evaluation(replace(cfg, out=str(tmp_path / "bad"), cascade=(stage, stage)))
    assert not (tmp_path / "bad").exists()  # before anything was sampled or written
