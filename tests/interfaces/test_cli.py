import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from video_adapter.data.video_io import write_gif
from video_adapter.interfaces.cli import main
from video_adapter.interfaces.demo import DemoConfig
from video_adapter.interfaces.sample import SampleConfig
from video_adapter.maths.sampling import SAMPLERS
from video_adapter.models.checkpoint import load_model, save_model
from video_adapter.models.unet import PRESETS, SpaceTimeUNet, UNetConfig, build_unet, count_parameters, preset
from video_adapter.training.train import TrainConfig

from helpers import fails, randomize, run, run_json

# ---------------------------------------------------------------------------------------------------------- info


@pytest.mark.parametrize("name", ["S", "paper-5.6b"])
def test_info_preset(capsys, name):
    out = run_json(capsys, "info", name)
    assert out["source"] == f"preset {name}"
    assert UNetConfig.from_dict(out["unet"]) == PRESETS[name]
    assert out["parameters"] == count_parameters(build_unet(PRESETS[name], "meta"))
    assert isinstance(out["parameters"], int) and out["parameters"] > 0
    if name == "paper-5.6b":
        assert out["parameters"] > 5e9 and out["parameters_human"].endswith("B")
    else:
        assert out["parameters"] == count_parameters(SpaceTimeUNet(PRESETS[name]))  # meta counts like real
        assert out["parameters_human"].endswith("M")


def test_info_checkpoint(capsys, tiny_cfg, tmp_path):
    directory = save_model(tmp_path / "ck", randomize(SpaceTimeUNet(tiny_cfg)), "minilm", step=42)
    out = run_json(capsys, "info", str(directory))
    model, config = load_model(directory)
    assert out["source"] == str(directory)
    assert out["parameters"] == count_parameters(model)
    assert out["unet"] == config["unet"]
    assert out["text_encoder"] == "minilm" and out["step"] == 42


def test_info_unknown(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = fails(capsys, "info", "nonsense")
    assert "nonsense" in msg and "preset" in msg
    for name in PRESETS:
        assert name in msg


def test_info_bad_checkpoint(capsys, tiny_cfg, tmp_path):
    (tmp_path / "empty").mkdir()
    msg = fails(capsys, "info", str(tmp_path / "empty"))
    assert msg.startswith("error:") and "config.json" in msg
    directory = save_model(tmp_path / "run" / "checkpoint", SpaceTimeUNet(tiny_cfg), "minilm")
    assert f"is a training run: pass {directory}" in fails(capsys, "info", str(tmp_path / "run"))
    config = json.loads((directory / "config.json").read_text())
    for unet, words in [(None, "must be a JSON object"), ({**config["unet"], "height": "24"}, "height='24'")]:
        (directory / "config.json").write_text(json.dumps({**config, "unet": unet}))
        msg = fails(capsys, "info", str(directory))
        assert msg.startswith(f"error: {directory / 'config.json'}: invalid unet config") and words in msg, msg


def test_info_refuses_non_finite_weights(capsys, tiny_cfg, tmp_path):
    model = randomize(SpaceTimeUNet(tiny_cfg))
    with torch.no_grad():
        model.conv_out.bias[0] = float("inf")
    directory = save_model(tmp_path / "ck", model, "minilm")
    msg = fails(capsys, "info", str(directory))
    assert msg == (f"error: tensor conv_out.bias in {directory / 'model.safetensors'} holds NaN or Inf: the checkpoint "
                   "is corrupt (saved after training diverged?); retrain, or use an earlier checkpoint")


# --------------------------------------------------------------------------------------------------------- train


def test_train_dry_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run_json(capsys, "train", "--dry-run", "--preset", "S", "--model", "base_channels=8", "channel_mults=[1,2]",
                   "attention_resolutions=[12]", "--steps", "7", "--lr", "1e-3", "--betas", "0.5", "0.6",
                   "--keywords", "cat", "1", "--compile")
    expected = preset("S", base_channels=8, channel_mults=(1, 2), attention_resolutions=(12,))
    assert out["model"] == json.loads(json.dumps(expected.to_dict()))
    train = out["train"]
    assert train["steps"] == 7 and train["lr"] == 1e-3 and train["preset"] == "S" and train["compile"] is True
    assert train["model"] == {"base_channels": 8, "channel_mults": [1, 2], "attention_resolutions": [12]}
    assert train["betas"] == [0.5, 0.6] and train["keywords"] == ["cat", "1"]  # a keyword stays text
    # The automatic defaults are shown resolved: a 7-step run warms up over 7 // 10 = 0 steps.
    assert train["warmup_steps"] == 0 and train["num_workers"] == TrainConfig().resolved().num_workers >= 1
    # Everything else is TrainConfig's default.
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
    changed = {"steps", "lr", "model", "betas", "keywords", "compile", "warmup_steps", "num_workers"}
    assert {k: v for k, v in train.items() if k not in changed} == {k: v for k, v in defaults.items()
                                                                    if k not in changed}
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


@pytest.mark.parametrize("word, value", [("false", False), ("False", False), ("TRUE", True), ("true", True)])
def test_train_model_bools_as_shells_write_them(capsys, word, value):
    # scripts/stylise.sh writes first_frame_cond=false; Python's spelling alone used to be accepted.
    out = run_json(capsys, "train", "--dry-run", "--preset", "S", "--model", f"first_frame_cond={word}",
                   f"edge_cond={not value}")
    assert out["model"]["first_frame_cond"] is value and out["model"]["edge_cond"] is (not value)


def test_train_dry_run_shows_the_warmup_and_workers_a_run_would_use(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    train = run_json(capsys, "train", "--dry-run", "--steps", "300")["train"]
    assert train["warmup_steps"] == 30 and train["num_workers"] == 2  # the learning rate is reached at step 30
    assert run_json(capsys, "train", "--dry-run")["train"]["warmup_steps"] == 1000  # 20k steps: the cap
    train = run_json(capsys, "train", "--dry-run", "--steps", "300", "--warmup-steps", "50", "--num-workers", "3")
    assert train["train"]["warmup_steps"] == 50 and train["train"]["num_workers"] == 3  # asked for: kept
    monkeypatch.setattr("os.cpu_count", lambda: None)  # unknown: one worker
    assert run_json(capsys, "train", "--dry-run")["train"]["num_workers"] == 1


def test_train_dry_run_inconsistent_override(capsys):
    # Two levels make feature maps 24 and 12 high; the preset's attention at height 6 no longer exists.
    msg = fails(capsys, "train", "--dry-run", "--preset", "S", "--model", "base_channels=8", "channel_mults=[1,2]",
                "--steps", "7")
    assert msg.startswith("error:") and "attention_resolutions [6]" in msg and "[12, 24]" in msg


@pytest.mark.parametrize("args, words", [
    (["--model", "nope=1"], ["'nope'", "base_channels", "channel_mults"]),
    (["--model", "base_channels=abc"], ["base_channels='abc'", "int"]),
    (["--model", "channel_mults=3"], ["channel_mults=3", "tuple"]),
    (["--model", "base_channels"], ["KEY=VALUE", "'base_channels'"]),
    (["--preset", "XL"], ["'XL'", "bench-35m"]),
    (["--steps", "many"], ["--steps", "invalid int value"]),
    (["--steps", "0"], ["--steps must be at least 1, got 0"]),
    (["--batch-size", "0"], ["--batch-size must be at least 1, got 0"]),
    (["--cond-drop", "1.5"], ["--cond-drop must be in [0, 1], got 1.5"]),
    (["--ema-decay", "nan"], ["--ema-decay must be in [0, 1], got nan"]),
    (["--lr=-1e-4"], ["--lr must be at least 0, got -0.0001"]),
    (["--warmup-steps", "-2"], ["--warmup-steps must be at least 0 (or -1: automatic), got -2"]),
    (["--num-workers", "-3"], ["--num-workers must be at least 0 (or -1: automatic), got -3"]),
    (["--betas", "0.9", "1"], ["--betas two numbers in [0, 1)", "(0.9, 1.0)"]),
])
def test_train_bad_arguments(capsys, args, words):
    msg = fails(capsys, "train", "--dry-run", *args)
    for w in words:
        assert w in msg
    assert "Traceback" not in msg


def test_train_config_file(capsys, tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"steps": 11, "lr": 0.5, "keywords": ["cat"], "data": "videos",
                                "model": {"base_channels": 8, "emb_dim": 64}}))
    train = run_json(capsys, "train", "--dry-run", "--config", str(path))["train"]
    assert (train["steps"], train["lr"], train["keywords"], train["data"]) == (11, 0.5, ["cat"], "videos")
    assert train["model"] == {"base_channels": 8, "emb_dim": 64}
    out = run_json(capsys, "train", "--dry-run", "--config", str(path), "--steps", "3", "--model", "emb_dim=32",
                   "head_dim=16")
    train = out["train"]
    assert (train["steps"], train["lr"], train["keywords"], train["data"]) == (3, 0.5, ["cat"], "videos")
    # --model KEY=VALUE pairs override single keys of the file's model dict, the others stay.
    assert train["model"] == {"base_channels": 8, "emb_dim": 32, "head_dim": 16}
    assert out["model"] == preset("S", base_channels=8, emb_dim=32, head_dim=16).to_dict() | {
        "channel_mults": [1, 2, 4], "attention_resolutions": [6, 12]}


def test_train_bad_config_file(capsys, tmp_path):
    msg = fails(capsys, "train", "--dry-run", "--config", str(tmp_path / "missing.json"))
    assert msg.startswith("error:") and "missing.json" in msg
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"stepz": 3}))
    msg = fails(capsys, "train", "--dry-run", "--config", str(path))
    assert msg.startswith("error:") and "stepz" in msg
    path.write_text("{steps: 3")
    assert fails(capsys, "train", "--dry-run", "--config", str(path)).startswith(f"error: --config {path}:")
    for wrong, words in [({"lr": "1e-4"}, "lr='1e-4' should be a float"),
                         ({"steps": "abc"}, "steps='abc' should be a int"),
                         ({"model": ["base_channels=8"]}, "model=['base_channels=8'] should be a dict"),
                         ({"keywords": "cat"}, "keywords='cat' should be a tuple"),
                         ({"betas": [0.9, "x"]}, "betas=[0.9, 'x'] should be a tuple")]:
        path.write_text(json.dumps(wrong))
        msg = fails(capsys, "train", "--dry-run", "--config", str(path))
        assert msg.startswith(f"error: --config {path}: TrainConfig: {words}"), msg
    path.write_text(json.dumps([1, 2]))
    assert "must be a JSON object" in fails(capsys, "train", "--dry-run", "--config", str(path))
    assert fails(capsys, "train", "--dry-run", "--config", str(tmp_path)).startswith("error:")  # a directory


def test_train_needs_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "--data is required" in fails(capsys, "train", "--steps", "1")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------- help


def field_comments(cls) -> dict[str, str]:
    """Each field's trailing comment, read with the tokenizer (independently of the CLI's own regex)."""
    names = {f.name for f in dataclasses.fields(cls)}
    source = textwrap.dedent(inspect.getsource(cls))
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and (m := re.match(r"\s*(\w+)\s*:", tok.line)) and m.group(1) in names:
            out[m.group(1)] = tok.string.lstrip("#").strip()
    return out


def help_entries(text: str) -> dict[str, str]:
    """`--flag` -> its whole help entry with whitespace collapsed."""
    entries = {}
    for chunk in re.split(r"\n(?=  -)", text.split("options:", 1)[1]):
        flat = " ".join(chunk.split())
        if flat:
            entries[flat.split()[0].rstrip(",")] = flat
    return entries


@pytest.mark.parametrize("command, cls", [("train", TrainConfig), ("sample", SampleConfig), ("demo", DemoConfig)])
def test_help_lists_every_field(capsys, monkeypatch, command, cls):
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping, so comments appear verbatim
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    entries = help_entries(capsys.readouterr().out)
    comments = field_comments(cls)
    assert len(comments) >= len(dataclasses.fields(cls)) // 2  # the tokenizer did find the comments
    defaults = cls()
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        assert flag in entries, flag
        entry = entries[flag]
        if f.name in comments:
            assert comments[f.name] in entry, (flag, comments[f.name], entry)
        assert f"(default: {getattr(defaults, f.name)!r})" in entry, entry
    assert "--dry-run" in entries
    assert set(entries) - {"-h", "--dry-run", "--config"} == {"--" + f.name.replace("_", "-")
                                                              for f in dataclasses.fields(cls)}


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "sample", "info", "demo"):
        assert command in out


# -------------------------------------------------------------------------------------------------------- sample


SAMPLE_CFG = UNetConfig(frames=5, height=8, width=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                        attention_resolutions=(4,), head_dim=8, emb_dim=32, text_dim=384)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    plain = save_model(root / "plain", randomize(SpaceTimeUNet(SAMPLE_CFG), seed=0, scale=0.1), "minilm")
    edges_cfg = dataclasses.replace(SAMPLE_CFG, edge_cond=True)
    edges = save_model(root / "edges", randomize(SpaceTimeUNet(edges_cfg), seed=0, scale=0.1), "minilm")
    narrow = save_model(root / "narrow", SpaceTimeUNet(dataclasses.replace(SAMPLE_CFG, text_dim=16)), "minilm")
    notext = save_model(root / "notext", SpaceTimeUNet(SAMPLE_CFG), "minilm")
    prior2 = save_model(root / "prior2", randomize(SpaceTimeUNet(SAMPLE_CFG), seed=1, scale=0.1), "minilm")
    short = save_model(root / "short", SpaceTimeUNet(dataclasses.replace(SAMPLE_CFG, frames=4)), "minilm")
    config = json.loads((notext / "config.json").read_text())
    del config["text_encoder"]
    (notext / "config.json").write_text(json.dumps(config))
    rng = np.random.RandomState(0)
    image = root / "first.png"
    Image.fromarray(rng.randint(0, 256, (12, 10, 3), dtype=np.uint8)).save(image)
    video = write_gif(root / "clip.gif", rng.randint(0, 256, (SAMPLE_CFG.frames, 8, 8, 3), dtype=np.uint8))
    return {"plain": plain, "edges": edges, "narrow": narrow, "notext": notext, "prior2": prior2, "short": short,
            "image": image, "video": video}


def gif_frames(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
    return np.stack(frames)


def sample_args(files, out, seed=1, *extra):
    return ["sample", "--prior", str(files["plain"]), "--prompt", "a red square moves left", "--steps", "3",
            "--sampler", "ddim", "--out", str(out), "--first-frame", str(files["image"]), "--seed", str(seed),
            *extra]


def test_sample_writes_deterministic_gif(capsys, files, tmp_path):
    a, b, c = tmp_path / "a" / "x.gif", tmp_path / "b.gif", tmp_path / "c.gif"
    assert run(capsys, *sample_args(files, a, 1)).strip() == f"wrote {a}"
    run(capsys, *sample_args(files, b, 1))
    run(capsys, *sample_args(files, c, 2))
    fa, fb, fc = gif_frames(a), gif_frames(b), gif_frames(c)
    assert fa.shape[0] == SAMPLE_CFG.frames
    upscale = SampleConfig().upscale
    assert fa.shape[1] > SAMPLE_CFG.height * upscale and fa.shape[2] >= SAMPLE_CFG.width * upscale
    assert a.read_bytes() == b.read_bytes() and np.array_equal(fa, fb)
    assert fa.shape == fc.shape and not np.array_equal(fa, fc)
    assert not np.array_equal(fa[0], fa[-1])  # the sample moves (so no frames were merged away)


def test_sample_conditions_matter(capsys, files, tmp_path):
    base = gif_frames(Path(run(capsys, *sample_args(files, tmp_path / "a.gif")).split()[-1]))
    other = run(capsys, "sample", "--prior", str(files["plain"]), "--prompt", "a red square moves left", "--steps",
                "3", "--sampler", "ddim", "--out", str(tmp_path / "b.gif"), "--seed", "1")
    assert not np.array_equal(gif_frames(Path(other.split()[-1])), base)  # without the first frame
    prompt = sample_args(files, tmp_path / "c.gif")
    prompt[prompt.index("--prompt") + 1] = "a blue circle moves up"
    assert not np.array_equal(gif_frames(Path(run(capsys, *prompt).split()[-1])), base)


def test_sample_reads_a_16_bit_and_a_rotated_first_frame_as_the_image_they_show(capsys, files, tmp_path):
    """A 16-bit greyscale PNG (Pillow's convert("RGB") made it all white) and a JPEG-like photo stored sideways with an
    EXIF orientation tag condition the sample as their 8-bit, upright equivalents do."""
    grey = np.random.RandomState(1).randint(0, 256, (12, 10), dtype=np.uint8)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=-1)).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored pixels must be turned 90 degrees clockwise to show upright
    upright = Image.open(files["image"]).convert("RGB")
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    outputs = {}
    for name in ("grey8.png", "grey16.png", "sideways.png"):
        args = sample_args(files, tmp_path / f"{name}.gif")
        args[args.index("--first-frame") + 1] = str(tmp_path / name)
        outputs[name] = gif_frames(Path(run(capsys, *args).split()[-1]))
    base = gif_frames(Path(run(capsys, *sample_args(files, tmp_path / "base.gif")).split()[-1]))
    assert np.array_equal(outputs["grey16.png"], outputs["grey8.png"])
    assert np.array_equal(outputs["sideways.png"], base)


def test_sample_edges(capsys, files, tmp_path):
    args = ["sample", "--prompt", "a red square", "--steps", "2", "--sampler", "ddim", "--edges-from",
            str(files["video"]), "--out", str(tmp_path / "x.gif")]
    msg = fails(capsys, *args, "--prior", str(files["plain"]))
    assert msg.startswith("error:") and "does not take edges" in msg and "drop --edges-from" in msg
    assert not (tmp_path / "x.gif").exists()
    run(capsys, *args, "--prior", str(files["edges"]))  # the same flags on a model that takes edges
    assert gif_frames(tmp_path / "x.gif").shape[0] == SAMPLE_CFG.frames


@pytest.mark.parametrize("change, words", [
    ({"--prompt": None}, ["--prompt"]),
    ({"--prior": None}, ["--adapter DIR", "--prior DIR", "or both"]),
    ({"--mode": "composed"}, ["--mode composed needs --adapter DIR"]),
    ({"--adapter": "PLAIN", "--mode": "blend"}, ["unknown --mode 'blend'", "cfg-mix", "inverse"]),
    ({"--adapter": "SHORT"}, ["cannot be composed", "frame counts differ: adapter 4, prior 5", "frames=5"]),
    ({"--adapter": "PLAIN", "--mcmc": "mala"}, ["needs an energy", "ula or uhmc"]),
    ({"--mcmc": "gibbs"}, ["unknown MCMC kind 'gibbs'", "uhmc"]),
    ({"--mcmc": "ula", "--mcmc-steps": "0"}, ["MCMC steps", "0"]),
    ({"--adapter": "PLAIN", "--mix": "1.5"}, ["--mix in [0, 1]"]),
    ({"--adapter": "PLAIN", "--mix-min-logsnr": "inf"}, ["--mix-min-logsnr", "below inf"]),
    ({"--adapter": "PLAIN", "--mix-min-logsnr": "nan"}, ["--mix-min-logsnr", "nan"]),
    ({"--adapter": "PLAIN", "--mode": "composed", "--strength-decay": "cosine"}, ["decay", "'linear'"]),
    # a setting the run's method does not read is an error, not ignored (the default mode is the recipe, cfg-mix)
    ({"--adapter": "PLAIN", "--prior-strength": "0.3"},
     ["--prior-strength is set, but --mode cfg-mix does not use it", "pass --mode composed for Algorithm 1"]),
    ({"--adapter": "PLAIN", "--composition": "paper"}, ["--composition is set, but --mode cfg-mix"]),
    ({"--adapter": "PLAIN", "--mode": "composed", "--mix": "0.3"}, ["--mix is set, but --mode composed does not"]),
    ({"--mix-min-logsnr": "-3"}, ["--mix-min-logsnr is set, but --mode prior does not use it"]),
    ({"--dtype": "int8"}, ["--dtype must be auto"]),
    ({"--sampler": "euler"}, ["unknown sampler 'euler'", *SAMPLERS]),
    ({"--out": "OUT/x.png"}, ["--out", ".gif", ".mp4", "x.png"]),
    ({"--out": "OUT/x"}, ["--out", ".gif", ".mp4"]),
    ({"--first-frame": "OUT/missing.png"}, ["missing.png", "does not exist"]),
    ({"--prior": "OUT"}, ["config.json"]),
    ({"--prior": "NARROW"}, ["384", "text_dim=16"]),
    ({"--steps": "3.5"}, ["--steps", "invalid int value"]),
    ({"--steps": "0"}, ["steps", "0"]),
    ({"--num": "0"}, ["--num", "0"]),
    ({"--fps": "0"}, ["--fps", "0"]),
    ({"--upscale": "0"}, ["--upscale", "0"]),
    ({"--device": "foo"}, ["--device", "'foo'"]),
    pytest.param({"--device": "cuda"}, ["--device", "CUDA is not available"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
    ({"--prior": "NOTEXT"}, ["text_encoder"]),
    ({"--prior": None, "--adapter": "PLAIN", "--prior-prompt-suffix": ", at night"},
     ["--prior-prompt-suffix", "--mode adapter samples without the prior"]),
    # guidance that overflows float32: the clamped NaN would be written as a black video
    ({"--guidance": "1e300", "--clip-x0": "0"}, ["the prior samples hold NaN or Inf", "lower --guidance",
                                                 "video-adapter info DIR"]),
])
def test_sample_errors(capsys, files, tmp_path, change, words):
    args = sample_args(files, tmp_path / "x.gif")
    subs = {"PLAIN": str(files["plain"]), "NARROW": str(files["narrow"]), "NOTEXT": str(files["notext"]),
            "SHORT": str(files["short"]), "OUT": str(tmp_path)}
    for flag, value in change.items():
        i = args.index(flag) if flag in args else None
        if value is None:
            if i is not None:
                del args[i:i + 2]
            continue
        for k, v in subs.items():
            value = value.replace(k, v)
        if i is None:
            args += [flag, value]
        else:
            args[i + 1] = value
    msg = fails(capsys, *args)
    for w in words:
        assert w in msg, (w, msg)
    assert "Traceback" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("extra, flag", [(["--prior-strength", "-0.5"], "--prior-strength -0.5"),
                                         (["--strength-decay", "linear", "--strength-end", "-0.1"],
                                          "--strength-end -0.1")])
def test_a_negative_prior_strength_needs_asking_for(capsys, files, tmp_path, extra, flag):
    args = [*sample_args(files, tmp_path / "x.gif"), "--adapter", str(files["prior2"]), "--mode", "composed", *extra]
    msg = fails(capsys, *args)
    assert msg == (f"error: {flag} is negative: a negative gamma samples away from the prior, not toward it; pass a "
                   "value of at least 0, or --allow-negative-strength to do this on purpose")
    assert list(tmp_path.iterdir()) == []
    assert run(capsys, *args, "--allow-negative-strength").strip().endswith(f"wrote {tmp_path / 'x.gif'}")
    SampleConfig(prior_strength=0.0).settings().validate()  # zero: the adapter alone, fine
    with pytest.raises(ValueError, match="--allow-negative-strength"):  # what evaluate's settings are checked with
        SampleConfig(prior_strength=-0.1).settings().validate()


def test_sample_refuses_guidance_that_drops_no_given_condition(capsys, files, tmp_path):
    """--guided-conditions edges without --edges-from: the null pass would equal the conditional one."""
    msg = fails(capsys, *sample_args(files, tmp_path / "x.gif"), "--guided-conditions", "edges")
    assert "names no condition these samples are given (first_frame, text)" in msg
    assert list(tmp_path.iterdir()) == []
    out = run(capsys, *sample_args(files, tmp_path / "x.gif"), "--guided-conditions", "first_frame")
    assert out.strip().endswith(f"wrote {tmp_path / 'x.gif'}")


def test_sample_warns_of_a_first_frame_far_below_the_model_size(capsys, files, tmp_path):
    for size, factor in (((1, 1), "8.0"), ((3, 4), "2.7")):
        Image.new("RGB", size[::-1], (200, 10, 10)).save(tmp_path / "tiny.png")
        args = sample_args(files, tmp_path / "x.gif")
        args[args.index("--first-frame") + 1] = str(tmp_path / "tiny.png")
        with pytest.warns(UserWarning) as said:
            run(capsys, *args)
        assert [str(w.message) for w in said] == [
            f"{tmp_path / 'tiny.png'} is {size[0]}x{size[1]} pixels (height x width): it is enlarged {factor}x to the "
            f"model's 8x8, so it conditions on a blurred image; give one of at least 8x8"]
    Image.new("RGB", (4, 4)).save(tmp_path / "half.png")  # 2x: fine
    args[args.index("--first-frame") + 1] = str(tmp_path / "half.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(capsys, *args)
        run(capsys, *sample_args(files, tmp_path / "y.gif"))  # 12x10 for 8x8: shrunk, not enlarged


@pytest.mark.parametrize("prompt", ["", "   "])
def test_sample_warns_that_an_empty_prompt_samples_the_unconditional_model(capsys, files, tmp_path, prompt):
    args = sample_args(files, tmp_path / "x.gif")
    args[args.index("--prompt") + 1:args.index("--prompt") + 2] = [prompt, "a cat", prompt]
    with pytest.warns(UserWarning) as said:
        run(capsys, *args)
    assert len(said) == 1 and "empty --prompt" in str(said[0].message) and "unconditional model" in \
        str(said[0].message)


def test_sample_composites_a_transparent_first_frame_over_black_and_says_so(capsys, files, tmp_path):
    rgba = np.zeros((12, 10, 4), dtype=np.uint8)
    rgba[..., :3] = np.asarray(Image.open(files["image"]).convert("RGB"))
    rgba[..., 3] = 255
    rgba[:, :5, 3] = 0  # the left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    black = rgba[..., :3].copy()
    black[:, :5] = 0
    Image.fromarray(black).save(tmp_path / "black.png")
    outputs = {}
    for name in ("cut.png", "black.png"):
        args = sample_args(files, tmp_path / f"{name}.gif")
        args[args.index("--first-frame") + 1] = str(tmp_path / name)
        with pytest.warns(UserWarning) if name == "cut.png" else warnings.catch_warnings() as said:
            outputs[name] = gif_frames(Path(run(capsys, *args).split()[-1]))
        if name == "cut.png":
            assert [str(w.message) for w in said] == [
                f"{tmp_path / 'cut.png'} has transparent pixels; they are composited over black (save it without an "
                "alpha channel to choose another background)"]
    assert np.array_equal(outputs["cut.png"], outputs["black.png"])


def test_sample_refuses_an_out_it_cannot_write_before_sampling(capsys, files, tmp_path, monkeypatch):
    sampled = []
    monkeypatch.setattr("video_adapter.interfaces.sample.generate", lambda *a, **k: sampled.append(1))
    (tmp_path / "taken.gif").write_bytes(b"a file")
    (tmp_path / "folder.gif").mkdir()
    msg = fails(capsys, *sample_args(files, tmp_path / "taken.gif" / "x.gif"))
    assert f"cannot make the folder {tmp_path / 'taken.gif'}: {tmp_path / 'taken.gif'} is a file" in msg
    assert f"--out {tmp_path / 'folder.gif'} is a folder" in fails(capsys, *sample_args(files, tmp_path / "folder.gif"))
    assert not sampled


def test_sample_dry_run_keeps_prompts_as_text(capsys):
    out = run_json(capsys, "sample", "--dry-run", "--prompt", "42", "[1, 2]", "a cat", "--steps", "9")
    assert out["prompt"] == ["42", "[1, 2]", "a cat"] and out["steps"] == 9
    assert {k: v for k, v in out.items() if k not in ("prompt", "steps")} == {
        k: v for k, v in json.loads(json.dumps(dataclasses.asdict(SampleConfig()))).items()
        if k not in ("prompt", "steps")}  # through JSON, as the dry run prints it (tuples as lists)


def test_demo_dry_run(capsys):
    out = run_json(capsys, "demo", "--dry-run", "--steps", "5", "--out", "somewhere")
    assert out == dataclasses.asdict(DemoConfig(steps=5, out="somewhere"))



# -------------------------------------------------------------------------------------------------- composition


def compose_args(files, out, *extra):
    return ["sample", "--adapter", str(files["plain"]), "--prior", str(files["prior2"]), "--prompt", "a red square",
            "another prompt", "--steps", "4", "--sampler", "ddpm", "--out", str(out), "--first-frame",
            str(files["image"]), "--seed", "3", *extra]


@pytest.mark.slow
def test_sample_composed_modes(capsys, files, tmp_path):
    out = run(capsys, *compose_args(files, tmp_path / "default.gif"))
    assert "adapter/prior = 100.00%" in out and out.strip().endswith(f"wrote {tmp_path / 'default.gif'}")
    frames = {}
    for mode in ("composed", "adapter", "prior", "cfg-mix", "inverse"):
        path = tmp_path / f"{mode}.gif"
        gamma = ["--prior-strength", "0.5"] if mode in ("composed", "inverse") else []
        run(capsys, *compose_args(files, path, "--mode", mode, *gamma))
        frames[mode] = gif_frames(path)
    assert len({f.tobytes() for f in frames.values()}) == 5  # every mode samples something different
    # gamma = 0 is the adapter alone through the whole CLI; so is CFG Mix at w = 0
    run(capsys, *compose_args(files, tmp_path / "zero.gif", "--mode", "composed", "--prior-strength", "0"))
    run(capsys, *compose_args(files, tmp_path / "w0.gif", "--mode", "cfg-mix", "--mix", "0"))
    assert np.array_equal(gif_frames(tmp_path / "zero.gif"), frames["adapter"])
    assert np.array_equal(gif_frames(tmp_path / "w0.gif"), frames["adapter"])
    # MCMC between levels changes the sample, deterministically
    run(capsys, *compose_args(files, tmp_path / "ula.gif", "--mcmc", "ula", "--mcmc-steps", "1"))
    run(capsys, *compose_args(files, tmp_path / "ula2.gif", "--mcmc", "ula", "--mcmc-steps", "1"))
    assert np.array_equal(gif_frames(tmp_path / "ula.gif"), gif_frames(tmp_path / "ula2.gif"))
    assert not np.array_equal(gif_frames(tmp_path / "ula.gif"), gif_frames(tmp_path / "default.gif"))


def test_the_defaults_are_the_recipe_everywhere(capsys, files, tmp_path):
    """The recipe (docs/analysis.md): with both models, sample is CFG Mix at w 0.2 from log-SNR -2 up, bit for bit;
    --mode composed is Algorithm 1, normalized unless --composition paper; evaluate and demo default to the same."""
    def frames(name, *extra):
        run(capsys, *compose_args(files, tmp_path / f"{name}.gif", *extra))
        return gif_frames(tmp_path / f"{name}.gif")

    default = frames("default")
    assert np.array_equal(default, frames("recipe", "--mode", "cfg-mix", "--mix", "0.2", "--mix-min-logsnr", "-2"))
    assert not np.array_equal(default, frames("no-band", "--mode", "cfg-mix", "--mix-min-logsnr=-inf"))
    assert not np.array_equal(default, frames("w0.5", "--mode", "cfg-mix", "--mix", "0.5"))
    algorithm_1 = frames("composed", "--mode", "composed", "--prior-strength", "0.5")
    assert not np.array_equal(default, algorithm_1)
    assert np.array_equal(algorithm_1, frames("norm", "--mode", "composed", "--prior-strength", "0.5",
                                              "--composition", "normalized"))
    assert not np.array_equal(algorithm_1, frames("paper", "--mode", "composed", "--prior-strength", "0.5",
                                                  "--composition", "paper"))
    for command in ("evaluate", "demo", "sample"):
        config = run_json(capsys, command, "--dry-run")
        assert (config["composition"], config["mix"], config["mix_min_logsnr"]) == ("normalized", 0.2, -2.0)
        assert config["guidance"] == 2.0  # alpha 2: the N = 128 sweep (docs/analysis.md, "Guidance itself")
    assert np.array_equal(default, frames("alpha2", "--guidance", "2"))
    assert not np.array_equal(default, frames("alpha5", "--guidance", "5"))
    assert run_json(capsys, "sample", "--dry-run")["mode"] == "auto"


@pytest.mark.slow
def test_sample_says_before_a_long_cpu_run_how_to_make_it_short(capsys, files, tmp_path):
    out = run(capsys, *compose_args(files, tmp_path / "long.gif", "--steps", "101", "--device", "cpu"))
    assert "note: 101 ddpm steps on the CPU" in out and "--sampler dpmpp-2m --steps 25" in out
    assert "note:" not in run(capsys, *compose_args(files, tmp_path / "short.gif", "--device", "cpu"))


def test_sample_compare_grid(capsys, files, tmp_path):
    out = run(capsys, *compose_args(files, tmp_path / "cmp.gif", "--compare"))
    assert f"wrote {tmp_path / 'cmp.gif'}" in out and f"wrote {tmp_path / 'cmp.mp4'}" in out
    grid = gif_frames(tmp_path / "cmp.gif")
    single = gif_frames(Path(run(capsys, *compose_args(files, tmp_path / "one.gif")).split()[-1]))
    assert grid.shape[0] == single.shape[0] == SAMPLE_CFG.frames
    assert grid.shape[1] > 3.5 * single.shape[1]  # four rows: prior, adapter, cfg-mix, composed
    assert (tmp_path / "cmp.mp4").stat().st_size > 0


def test_sample_condition_routing(capsys, files, tmp_path):
    """Edges requested from an edge adapter and a prior without edges: an error, unless --partial-conditions."""
    args = ["sample", "--adapter", str(files["edges"]), "--prior", str(files["plain"]), "--prompt", "a red square",
            "--steps", "2", "--edges-from", str(files["video"]), "--out", str(tmp_path / "x.gif")]
    msg = fails(capsys, *args)
    assert "the prior does not take edges" in msg and "--partial-conditions" in msg
    assert not (tmp_path / "x.gif").exists()
    run(capsys, *args, "--partial-conditions")
    assert (tmp_path / "x.gif").exists()


@pytest.mark.parametrize("suffix", ["", ", at night"])
def test_sample_encodes_each_prompt_once(capsys, files, tmp_path, monkeypatch, suffix):
    """Two models sharing an encoder, two prompts, --num 3: one encode call with the two unique prompts; with
    --prior-prompt-suffix a second call, the prior's styled prompts (the adapter's stay as they were)."""
    import video_adapter.generation.routing as routing

    seen = []
    real = routing.load_text_encoder

    def counting(spec, **kw):
        encoder = real(spec, **kw)
        encode = encoder.encode
        encoder.encode = lambda captions, **k: seen.append(list(captions)) or encode(captions, **k)
        return encoder

    monkeypatch.setattr(routing, "load_text_encoder", counting)
    run(capsys, *compose_args(files, tmp_path / "x.gif", "--num", "3", "--steps", "2",
                              *(["--prior-prompt-suffix", suffix] if suffix else [])))
    styled = [["a red square, at night", "another prompt, at night"]] if suffix else []
    assert seen == [["a red square", "another prompt"], *styled]
