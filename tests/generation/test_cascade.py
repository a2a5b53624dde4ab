"""The super-resolution cascade on tiny models: the low-resolution input reaches the output, the shapes at each
stage, errors for misordered stages, and `video-adapter sample --cascade` end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from video_adapter.generation.cascade import check_stages, load_stages, upscale
from video_adapter.generation.generate import SamplingSettings
from video_adapter.maths.conditioning import Cond, lowres_condition, resize_video
from video_adapter.models.checkpoint import save_model
from video_adapter.models.score_model import NativeScoreModel
from video_adapter.models.unet import SpaceTimeUNet, UNetConfig, preset

from helpers import randomize

BASE = UNetConfig(frames=4, height=4, width=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                  attention_resolutions=(), head_dim=8, emb_dim=16, first_frame_cond=False)
SR1 = replace(BASE, height=8, width=16, lowres_factor=2)
SR2 = replace(BASE, height=32, width=64, channel_mults=(1, 2, 2), lowres_factor=4)


def text(batch: int, dim: int = 384) -> Cond:
    return Cond.make(text=torch.randn(batch, 3, dim, generator=torch.Generator().manual_seed(1)))


def test_sr_unet_output_depends_on_the_lowres_input_and_requires_it():
    torch.manual_seed(0)
    net = randomize(SpaceTimeUNet(SR1)).eval()
    x = torch.randn(2, 3, 4, 8, 16)
    a, b = torch.rand(2, 3, 4, 8, 16) * 2 - 1, torch.rand(2, 3, 4, 8, 16) * 2 - 1
    logsnr = torch.zeros(2)
    cond = text(2)
    with torch.no_grad():
        out_a = net(x, logsnr, replace(cond, lowres=a))
        out_b = net(x, logsnr, replace(cond, lowres=b))
        again = net(x, logsnr, replace(cond, lowres=a))
    assert out_a.shape == x.shape and torch.equal(out_a, again)
    assert (out_a - out_b).abs().mean() > 1e-3
    # per sample: changing sample 1's input leaves sample 0's output alone
    with torch.no_grad():
        mixed = net(x, logsnr, replace(cond, lowres=torch.stack([a[0], b[1]])))
    assert torch.allclose(mixed[0], out_a[0], atol=1e-5) and torch.allclose(mixed[1], out_b[1], atol=1e-5)
    with pytest.raises(ValueError, match="needs cond.lowres"):
        net(x, logsnr, cond)
    with pytest.raises(ValueError, match="not a super-resolution stage"):
        SpaceTimeUNet(BASE)(torch.randn(1, 3, 4, 4, 8), torch.zeros(1), replace(text(1), lowres=torch.zeros(1, 3, 4, 4, 8)))
    # the null condition of guidance drops the text and keeps the low-resolution input
    assert replace(cond, lowres=a).null().lowres is a
    with pytest.raises(ValueError, match="lowres_factor 3"):
        replace(SR1, lowres_factor=3)


def test_presets_chain_24x40_to_48x80_to_96x160_and_192x320():
    assert preset("sr-48x80").in_channels == 6 and preset("prior").in_channels == 9
    sizes = [(24, 40)]
    for name in ("sr-48x80", "sr-96x160"):
        cfg = preset(name)
        assert (cfg.height // cfg.lowres_factor, cfg.width // cfg.lowres_factor) == sizes[-1]
        sizes.append((cfg.height, cfg.width))
    big = preset("sr-192x320")
    assert (big.height // big.lowres_factor, big.width // big.lowres_factor) == (48, 80)


def test_lowres_condition_is_the_area_mean_upsampled():
    video = torch.rand(1, 3, 2, 8, 8) * 2 - 1
    blocky = video[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2)
    # a video constant on 2x2 blocks: area-down then bicubic-up keeps each block's value at its centre
    low = lowres_condition(blocky, 2)
    assert low.shape == blocky.shape
    flat = torch.full((1, 3, 2, 8, 8), 0.3)
    assert torch.allclose(lowres_condition(flat, 2), flat, atol=1e-6)
    with pytest.raises(ValueError, match="cannot be downsampled by 3"):
        lowres_condition(video, 3)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    torch.manual_seed(0)
    return [str(save_model(root / name, randomize(SpaceTimeUNet(cfg), seed=i), "minilm"))
            for i, (name, cfg) in enumerate((("sr1", SR1), ("sr2", SR2)))]


def test_cascade_end_to_end_shapes_and_dependence_on_the_base_video(stages):
    device = torch.device("cpu")
    models = load_stages(stages, device)
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, seed=0)
    base = torch.rand(2, 3, 4, 4, 8) * 2 - 1
    outs = upscale(models, base, ["a red square moves left"] * 2, settings, device)
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4, 8, 16), (2, 3, 4, 32, 64)]
    assert all(bool(torch.isfinite(o).all()) and o.abs().max() <= 1 for o in outs)
    # each stage is conditioned on exactly the previous output (the base for the first) upsampled bicubically
    seen = []
    for model in models:
        model.eps = (lambda eps: lambda x, logsnr, cond: (seen.append(cond.lowres), eps(x, logsnr, cond))[1])(model.eps)
    again = upscale(models, base, ["a red square moves left"] * 2, settings, device)
    assert all(torch.equal(a, b) for a, b in zip(again, outs))
    first, second = seen[0], seen[-1]
    assert torch.allclose(first[:2], resize_video(base, (8, 16), "bicubic").clamp(-1, 1))
    assert torch.allclose(second[:2], resize_video(outs[0], (32, 64), "bicubic").clamp(-1, 1))
    with pytest.raises(ValueError, match="order the stages"):
        check_stages(models[::-1], (4, 8))
    with pytest.raises(ValueError, match="not a super-resolution model"):
        check_stages([NativeScoreModel(SpaceTimeUNet(BASE))], (2, 4))


def test_sample_command_applies_the_cascade(stages, tmp_path):
    from video_adapter.data.video_io import read_video
    from video_adapter.interfaces.cli import main

    torch.manual_seed(0)
    base = save_model(tmp_path / "base", randomize(SpaceTimeUNet(BASE), scale=0.05), "minilm")
    out = tmp_path / "s.gif"
    main(["sample", "--adapter", str(base), "--prompt", "a red square moves left", "--sampler", "ddim", "--steps",
          "2", "--cascade", *stages, "--upscale", "1", "--device", "cpu", "--out", str(out)])
    frames = read_video(out)
    assert frames.shape[1] >= 32 and frames.shape[2] >= 64  # the last stage's 32x64 (plus the grid's label)
    # --upscale zooms a base-size sample; after an 8x cascade a zoom of 4 shows the output at its own size
    main(["sample", "--adapter", str(base), "--prompt", "a red square moves left", "--sampler", "ddim", "--steps",
          "2", "--cascade", *stages, "--upscale", "4", "--device", "cpu", "--out", str(tmp_path / "z.gif")])
    assert read_video(tmp_path / "z.gif").shape == frames.shape


def test_an_sr_stage_trains_on_clips_at_its_size_and_its_preview_samples(toy, tmp_path):
    """The training loop builds cond.lowres from each clip (make_cond), so an SR stage trains like any model."""
    from video_adapter.models.checkpoint import read_unet_config
    from video_adapter.training.train import train

    from helpers import TINY, train_config

    model = {**TINY, "first_frame_cond": False, "lowres_factor": 2}
    ckpt = train(train_config(toy, tmp_path / "sr", model=model, steps=2, save_every=2, sample_every=2))
    assert read_unet_config(ckpt)[0].lowres_factor == 2
    assert any((tmp_path / "sr").rglob("*.gif"))  # the preview sampled with the clips' own low-resolution input


def test_sr_eval_script_scores_the_cascade_beside_bicubic(stages, tmp_path):
    import json

    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.data.toy import make_toy_dataset
    from video_adapter.evaluation.metrics.pixels import psnr, upsample

    from helpers import load_script

    data = make_toy_dataset(tmp_path / "hi", num=3, frames=4, size=(32, 64), seed=0, progress=False)
    load_script("sr_eval").main(["--data", str(data), "--stages", *stages, "--num", "3", "--steps", "2",
                                 "--bootstrap", "10", "--device", "cpu", "--grid", "2", "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "sr_eval.json").read_text())
    clips = VideoFolderDataset(data, frames=4, size=(32, 64), random_crop=False)
    real = torch.stack([clips[i]["video"] for i in range(3)])
    bicubic = upsample(torch.nn.functional.avg_pool3d(real, (1, 8, 8)), (32, 64))
    assert result["metrics"]["bicubic"]["psnr"]["value"] == pytest.approx(float(psnr(bicubic, real).mean()), rel=1e-6)
    assert result["base"] == [4, 8] and set(result["metrics"]["cascade"]) == {"psnr", "ssim"}
    assert "| bicubic |" in (tmp_path / "out" / "sr_eval.md").read_text()
    # the comparison grid: 2 clips a row, rows real / bicubic / cascade, each 32x64 zoomed 2x; the png its last frame
    from PIL import Image

    with Image.open(tmp_path / "out" / "compare.gif") as gif:
        assert gif.n_frames == 4 and gif.width >= 2 * 128 and gif.height >= 3 * 64
        gif.seek(3)
        last = np.asarray(gif.convert("RGB"))
    png = np.asarray(Image.open(tmp_path / "out" / "compare.png").convert("RGB"))
    assert png.shape == last.shape and np.abs(png.astype(int) - last.astype(int)).mean() < 8


# ------------------------------------------------------------------------------------- noise conditioning augmentation

SR1_AUG = replace(SR1, lowres_aug=0.5)
SR2_AUG = replace(SR2, lowres_aug=0.5)


def without_augmentation(net: SpaceTimeUNet) -> SpaceTimeUNet:
    """The same network built without noise augmentation: every weight but aug_proj, loaded strictly."""
    plain = SpaceTimeUNet(replace(net.cfg, lowres_aug=0.0)).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("aug_proj.")})
    return plain


def test_presets_train_their_sr_stages_with_noise_augmentation():
    assert all(preset(name).lowres_aug == 0.5 for name in ("sr-48x80", "sr-96x160", "sr-192x320"))
    assert preset("prior").lowres_aug == 0.0 and preset("S").lowres_aug == 0.0
    with pytest.raises(ValueError, match="lowres_aug 0.5 must be 0"):
        replace(BASE, lowres_aug=0.5)  # only a super-resolution stage has an input to augment
    with pytest.raises(ValueError, match="lowres_aug 1.5"):
        replace(SR1, lowres_aug=1.5)


def test_an_augmented_stage_at_level_0_is_the_stage_without_augmentation_bit_for_bit():
    """The design: the level's embedding is a bias-free projection of features that are exactly zero at level 0, and
    augment_lowres leaves a level-0 input untouched, so at level 0 the stage computes what the same weights without
    augmentation conditioning compute, bit for bit (torch.equal). At other levels its output moves with the level
    alone (the same noised input)."""
    net = randomize(SpaceTimeUNet(SR1_AUG), seed=3).eval()
    plain = without_augmentation(net)
    g = torch.Generator().manual_seed(4)
    x, lowres = torch.randn(2, 3, 4, 8, 16, generator=g), torch.rand(2, 3, 4, 8, 16, generator=g) * 2 - 1
    logsnr, cond, zero = torch.tensor([-1.0, 2.0]), text(2), torch.zeros(2)
    with torch.no_grad():
        want = plain(x, logsnr, replace(cond, lowres=lowres))
        got = net(x, logsnr, replace(cond, lowres=lowres, lowres_level=zero))
        assert torch.equal(got, want)
        # the level moves the output through its embedding alone: the same (noised) input at other levels
        at = {u: net(x, logsnr, replace(cond, lowres=lowres, lowres_level=torch.full((2,), u))) for u in (0.1, 0.3)}
        assert (at[0.1] - want).abs().mean() > 1e-3 and (at[0.3] - at[0.1]).abs().mean() > 1e-3
        # per sample: changing row 1's level leaves row 0 alone
        mixed = net(x, logsnr, replace(cond, lowres=lowres, lowres_level=torch.tensor([0.0, 0.3])))
        assert torch.allclose(mixed[0], want[0], atol=1e-5) and torch.allclose(mixed[1], at[0.3][1], atol=1e-5)
    with pytest.raises(ValueError, match="needs cond.lowres_level"):
        net(x, logsnr, replace(cond, lowres=lowres))
    with pytest.raises(ValueError, match="takes no noise augmentation level"):
        plain(x, logsnr, replace(cond, lowres=lowres, lowres_level=zero))


@pytest.fixture(scope="module")
def aug_stages(tmp_path_factory):
    """SR1 with noise augmentation, SR2 without: a cascade of both kinds."""
    root = tmp_path_factory.mktemp("aug-cascade")
    return [str(save_model(root / name, randomize(SpaceTimeUNet(cfg), seed=i), "minilm"))
            for i, (name, cfg) in enumerate((("sr1-aug", SR1_AUG), ("sr2", SR2)))]


def test_cascade_end_to_end_with_noise_augmentation(aug_stages, tmp_path):
    from video_adapter.generation.cascade import DEFAULT_AUG_LEVEL, augmentation_noise
    from video_adapter.maths.conditioning import augment_lowres

    device = torch.device("cpu")
    models = load_stages(aug_stages, device)
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, seed=5)
    base, prompts = torch.rand(2, 3, 4, 4, 8) * 2 - 1, ["a red square moves left"] * 2
    seen = []
    for model in models:
        model.eps = (lambda eps: lambda x, logsnr, cond: (seen.append(cond), eps(x, logsnr, cond))[1])(model.eps)
    outs = upscale(models, base, prompts, settings, device)
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4, 8, 16), (2, 3, 4, 32, 64)]
    assert all(bool(torch.isfinite(o).all()) and o.abs().max() <= 1 for o in outs)
    # stage 1 (augmented): its input noised once, to the default level, from (seed, stage); both guidance branches
    # and every step see that one input and level. Stage 2 (not augmented): the clean input, no level.
    first, last = seen[0], seen[-1]
    lowres = resize_video(base, (8, 16), "bicubic").clamp(-1, 1)
    want = augment_lowres(lowres, torch.full((2,), DEFAULT_AUG_LEVEL), augmentation_noise(5, 0, (2, 3, 4, 8, 16)))
    assert torch.equal(first.lowres, torch.cat([want, want])) and not torch.allclose(want, lowres, atol=0.05)
    assert torch.equal(first.lowres_level, torch.full((4,), DEFAULT_AUG_LEVEL))
    assert all(torch.equal(c.lowres, first.lowres) for c in seen if c.lowres.shape[-1] == 16)
    assert last.lowres_level is None
    assert torch.equal(last.lowres[:2], resize_video(outs[0], (32, 64), "bicubic").clamp(-1, 1))
    # deterministic from the seed; the level changes the result
    assert all(torch.equal(a, b) for a, b in zip(upscale(models, base, prompts, settings, device), outs))
    other = upscale(models, base, prompts, settings, device, aug_level=0.4)[-1]
    assert (other - outs[-1]).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="stage 1 was trained on noise augmentation levels up to 0.5"):
        upscale(models, base, prompts, settings, device, aug_level=0.6)
    with pytest.raises(ValueError, match="cosine time in \\[0, 1\\]"):
        check_stages(models, (4, 8), -0.1)


def test_the_cascade_at_level_0_is_the_cascade_without_augmentation_bit_for_bit(aug_stages, tmp_path):
    device = torch.device("cpu")
    models = load_stages(aug_stages, device)
    plain = save_model(tmp_path / "plain", without_augmentation(models[0].unet), "minilm")
    settings = SamplingSettings(sampler="ddim", steps=2, guidance=2.0, seed=1)
    base, prompts = torch.rand(2, 3, 4, 4, 8) * 2 - 1, ["a red square", "a blue disc"]
    got = upscale(models, base, prompts, settings, device, aug_level=0.0)
    want = upscale(load_stages([str(plain), aug_stages[1]], device), base, prompts, settings, device, aug_level=0.0)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_sample_command_takes_the_augmentation_level(aug_stages, tmp_path):
    from video_adapter.interfaces.cli import main

    torch.manual_seed(0)
    base = save_model(tmp_path / "base", randomize(SpaceTimeUNet(BASE), scale=0.05), "minilm")
    args = ["sample", "--adapter", str(base), "--prompt", "a red square moves left", "--sampler", "ddim", "--steps",
            "2", "--cascade", *aug_stages, "--upscale", "1", "--device", "cpu"]
    main(args + ["--cascade-aug-level", "0.3", "--out", str(tmp_path / "a.gif")])
    assert (tmp_path / "a.gif").stat().st_size > 0
    with pytest.raises(SystemExit, match="up to 0.5"):
        main(args + ["--cascade-aug-level", "0.7", "--out", str(tmp_path / "b.gif")])


def test_a_stage_started_near_the_clean_end_returns_about_its_upsampled_input(stages):
    """SDEdit start (`start` < 1): each stage starts from its clean upsampled input diffused to that level. Near the
    clean end (t 0.01, sigma about 0.016) the stage can move it by about sigma only; from pure noise it cannot
    stay near it."""
    device = torch.device("cpu")
    models = load_stages(stages[:1], device)
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, seed=0)
    base, prompts = torch.rand(2, 3, 4, 4, 8) * 2 - 1, ["a red square moves left"] * 2
    lowres = resize_video(base, (8, 16), "bicubic").clamp(-1, 1)
    near = upscale(models, base, prompts, settings, device, start=0.01)[-1]
    assert (near - lowres).abs().max() < 0.1
    assert (upscale(models, base, prompts, settings, device)[-1] - lowres).abs().mean() > 0.2


def test_sample_command_takes_the_cascade_start_and_guidance(stages, tmp_path, monkeypatch):
    import video_adapter.interfaces.sample as sample_module
    from video_adapter.interfaces.cli import main

    torch.manual_seed(0)
    base = save_model(tmp_path / "base", randomize(SpaceTimeUNet(BASE), scale=0.05), "minilm")
    args = ["sample", "--adapter", str(base), "--prompt", "a red square moves left", "--sampler", "ddim", "--steps",
            "2", "--cascade", *stages, "--upscale", "1", "--device", "cpu"]
    starts, guidances = [], []
    real = sample_module.upscale_rows
    monkeypatch.setattr(sample_module, "upscale_rows",
                        lambda *a, **k: (starts.append(k.get("start")), guidances.append(a[3].guidance),
                                         real(*a, **k))[2])
    main(args + ["--cascade-start", "0.4", "--out", str(tmp_path / "a.gif")])
    assert starts == [0.4] and (tmp_path / "a.gif").stat().st_size > 0
    assert guidances == [1.0]  # the stages' own guidance, not the base's (--guidance defaults to 5)
    main(args + ["--cascade-guidance", "2.5", "--guidance", "3", "--out", str(tmp_path / "c.gif")])
    assert guidances == [1.0, 2.5]
    with pytest.raises(SystemExit, match="--cascade-guidance must be finite"):
        main(args + ["--cascade-guidance", "nan", "--out", str(tmp_path / "b.gif")])
    for bad in ("0", "1.5"):
        with pytest.raises(SystemExit, match="--cascade-start is a cosine time in \\(0, 1\\]"):
            main(args + ["--cascade-start", bad, "--out", str(tmp_path / "b.gif")])
    assert not (tmp_path / "b.gif").exists()


SR1_RES = replace(SR1, lowres_aug=0.5, lowres_residual=0.25)


def test_presets_diffuse_their_detail_and_only_an_sr_stage_has_one():
    assert all(preset(name).lowres_residual == 0.2 for name in ("sr-48x80", "sr-96x160", "sr-192x320"))
    assert preset("prior").lowres_residual == 0.0
    with pytest.raises(ValueError, match="lowres_residual 0.2 must be 0"):
        replace(BASE, lowres_residual=0.2)  # no input to add a detail to
    with pytest.raises(ValueError, match="lowres_residual -1"):
        replace(SR1, lowres_residual=-1.0)


def test_a_residual_stage_samples_the_detail_unclipped_and_adds_it_to_its_clean_input(tmp_path, monkeypatch):
    """The stage's sample is read as detail: the output is clip(bicubic input + scale * detail) exactly, the
    sampler runs with x0 clipping off (the detail's range depends on the input) while the network still sees the
    noise-augmented input, and an SDEdit start begins from zero detail."""
    import video_adapter.generation.cascade as cascade

    device = torch.device("cpu")
    stage = load_stages([str(save_model(tmp_path / "res", randomize(SpaceTimeUNet(SR1_RES)), "minilm"))], device)
    base, prompts = torch.rand(2, 3, 4, 4, 8) * 2 - 1, ["a red square moves left"] * 2
    lowres = resize_video(base, (8, 16), "bicubic").clamp(-1, 1)
    detail = torch.randn(2, 3, 4, 8, 16, generator=torch.Generator().manual_seed(2)) * 3
    calls = []

    def fake_generate(models, conds, methods, settings, device, progress, init, t_start):
        calls.append((settings, conds.small, init, t_start))
        return type("Out", (), {"videos": {"adapter": detail}})

    monkeypatch.setattr(cascade, "generate", fake_generate)
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, seed=0, clip_x0=1.0, dynamic_threshold=0.9)
    out = upscale(stage, base, prompts, settings, device, aug_level=0.2)[-1]
    assert torch.equal(out, (lowres + 0.25 * detail).clamp(-1, 1))
    assert 0 < float((out.abs() == 1).float().mean()) < 1  # the clamp acted on some values, not all
    used, cond, init, start = calls[0]
    assert used.clip_x0 == 0.0 and used.dynamic_threshold == 0.0 and used.steps == 3 and init is None
    assert not torch.equal(cond.lowres, lowres) and torch.equal(cond.lowres_level, torch.full((2,), 0.2))
    upscale(stage, base, prompts, settings, device, start=0.3)
    assert torch.equal(calls[-1][2], torch.zeros_like(lowres)) and calls[-1][3] == 0.3


def test_a_residual_stage_runs_end_to_end_and_its_near_clean_start_keeps_the_input():
    device = torch.device("cpu")
    stage = [NativeScoreModel(randomize(SpaceTimeUNet(SR1_RES), seed=5).eval())]
    stage[0].spec = replace(stage[0].spec, text_encoder="minilm")
    settings = SamplingSettings(sampler="ddim", steps=3, guidance=2.0, seed=0)
    base, prompts = torch.rand(2, 3, 4, 4, 8) * 2 - 1, ["a red square moves left"] * 2
    lowres = resize_video(base, (8, 16), "bicubic").clamp(-1, 1)
    out = upscale(stage, base, prompts, settings, device)[-1]
    assert out.shape == (2, 3, 4, 8, 16) and bool(torch.isfinite(out).all()) and out.abs().max() <= 1
    assert (out - lowres).abs().mean() > 1e-3
    # near the clean end the detail stays about zero: the input comes back to within the scaled noise
    near = upscale(stage, base, prompts, settings, device, start=0.01)[-1]
    assert (near - lowres).abs().max() < 0.25 * 0.1
