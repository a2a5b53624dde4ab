"""The `video-adapter` command: train, sample, info, export, make-data, train-video-net,
score-classifier, evaluate, diagnose, demo.

Config dataclasses are the single source of options: every field becomes a `--flag` whose help is the
field's aligned comment, and `--dry-run` prints the resolved config without running anything.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import sys
import typing
from pathlib import Path


def _field_docs(cls) -> dict[str, str]:
    """The aligned `# comment` after each dataclass field, as its help text."""
    docs = {}
    for line in inspect.getsource(cls).splitlines():
        if m := re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line):
            docs[m.group(1)] = m.group(2)
    return docs


def _parse_value(text: str):
    """A KEY=VALUE value as a Python literal; true/false in any case are bools, as users write them in shells."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _tuple_item_type(hint):
    """`tuple[str, ...]` -> str, `tuple[float, float]` -> float; anything else is parsed as a Python literal."""
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    return args[0] if args and len(set(args)) == 1 and args[0] in (str, int, float) else _parse_value


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    docs = _field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{docs.get(f.name, '')} (default: {default!r})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif isinstance(default, tuple):
            parser.add_argument(flag, nargs="*", type=_tuple_item_type(hints.get(f.name)), default=None, help=help_)
        elif isinstance(default, dict):
            parser.add_argument(flag, nargs="*", default=None, metavar="KEY=VALUE", help=help_)
        else:
            parser.add_argument(flag, type=type(default) if default is not None else str, default=None, help=help_)


def dataclass_from_args(cls, args: argparse.Namespace, base=None):
    base = base or cls()
    overrides = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if isinstance(getattr(base, f.name), dict):  # KEY=VALUE pairs update the base's (e.g. --config's) dict
            value = {**getattr(base, f.name), **_key_values(value, f.name)}
        elif isinstance(getattr(base, f.name), tuple):
            value = tuple(value)
        overrides[f.name] = value
    return dataclasses.replace(base, **overrides)


def _key_values(items: list[str], name: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--{name.replace('_', '-')} takes KEY=VALUE pairs, got {item!r}")
        out[key] = _parse_value(value)
    return out


def _check_model_overrides(overrides: dict) -> None:
    """Unknown UNetConfig fields and values of the wrong type are usage errors, not tracebacks later on."""
    from ..common.config import field_type_errors
    from ..models.unet import UNetConfig

    known = [f.name for f in dataclasses.fields(UNetConfig)]
    for key in overrides:
        if key not in known:
            raise SystemExit(f"error: unknown --model field {key!r}; UNetConfig fields are: {', '.join(known)}")
    if wrong := field_type_errors(UNetConfig, overrides):
        raise SystemExit(f"error: --model {wrong[0]}")


def cmd_train(args) -> None:
    from ..training.train import TrainConfig, train

    base = None
    if args.config:
        try:
            base = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
        except (ValueError, OSError) as e:  # JSON's own errors say neither which file nor that it is --config's
            raise ValueError(f"--config {args.config}: {e}") from e
    cfg = dataclass_from_args(TrainConfig, args, base)
    _check_model_overrides(cfg.model)
    cfg.validate()
    model_cfg = cfg.model_config()  # validates preset and overrides before any work
    if args.dry_run:
        print(json.dumps({"train": dataclasses.asdict(cfg.resolved()), "model": model_cfg.to_dict()}, indent=2))
        return
    if not cfg.data:
        raise SystemExit("--data is required: a folder of videos with captions.jsonl or .txt sidecars, "
                         "or stream:KIND for clips of a make-data kind made on the fly")
    print(f"checkpoint: {train(cfg)}")


def _dry_run(args, cfg, **extra) -> bool:
    """With --dry-run, print the resolved config (and `extra`) and say so."""
    if args.dry_run:
        print(json.dumps({**extra, **dataclasses.asdict(cfg)}, indent=2))
    return args.dry_run


def cmd_sample(args) -> None:
    from .sample import SampleConfig, sample_to_files

    cfg = dataclass_from_args(SampleConfig, args)
    if _dry_run(args, cfg):
        return
    for path in sample_to_files(cfg):
        print(f"wrote {path}")


def cmd_info(args) -> None:
    from ..common.tables import human_count
    from ..models.checkpoint import load_model
    from ..models.unet import PRESETS, build_unet, count_parameters, preset

    target = args.target
    if target in PRESETS:
        cfg, where = preset(target), f"preset {target}"
        extra = {}
    elif Path(target).exists():
        model, config = load_model(target)  # the weights too: unreadable, non-finite or mismatched ones are errors
        cfg, where = model.cfg, str(target)
        extra = {k: config[k] for k in ("text_encoder", "step") if k in config}
    else:
        raise SystemExit(f"{target!r} is neither a checkpoint directory nor a preset ({', '.join(sorted(PRESETS))})")
    params = count_parameters(build_unet(cfg, "meta"))
    print(json.dumps({"source": where, "parameters": params, "parameters_human": human_count(params),
                      **extra, "unet": cfg.to_dict()}, indent=2))


def cmd_export(args) -> None:
    import torch

    from ..models.checkpoint import SHIP_SHARD_BYTES, export_model

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    out = export_model(args.src, args.out, dtypes[args.dtype], int(args.max_shard_mib * 2**20))
    sizes = sorted(f.stat().st_size for f in Path(out).glob("*.safetensors"))
    print(f"wrote {out}: {len(sizes)} weight file(s), largest {sizes[-1] / 2**20:.2f} MiB "
          f"(limit {args.max_shard_mib:g} MiB; default {SHIP_SHARD_BYTES / 2**20:g})")


def cmd_demo(args) -> None:
    from .demo import DemoConfig, run_demo

    cfg = dataclass_from_args(DemoConfig, args)
    if not _dry_run(args, cfg):
        run_demo(cfg)


def cmd_make_data(args) -> None:
    from ..data.datagen.make import MakeDataConfig, make_dataset

    cfg = dataclass_from_args(MakeDataConfig, args)
    if not _dry_run(args, cfg, kind=args.kind):
        print(f"wrote {make_dataset(args.kind, cfg)}")


def cmd_evaluate(args) -> None:
    from ..evaluation.evaluate import EvalConfig, run_evaluation

    cfg = dataclass_from_args(EvalConfig, args)
    if not _dry_run(args, cfg):
        run_evaluation(cfg)


def cmd_diagnose(args) -> None:
    from ..evaluation.diagnose import DiagnoseConfig, run_diagnose

    cfg = dataclass_from_args(DiagnoseConfig, args)
    if not _dry_run(args, cfg):
        run_diagnose(cfg)


def cmd_serve_prior(args) -> None:
    from .serve import ServeConfig, serve_prior

    cfg = dataclass_from_args(ServeConfig, args)
    if not _dry_run(args, cfg):
        serve_prior(cfg)


def cmd_app(args) -> None:
    from .app import AppConfig, run_app

    cfg = dataclass_from_args(AppConfig, args)
    if not _dry_run(args, cfg):
        run_app(cfg)


def cmd_embed_captions(args) -> None:
    from ..data.dataset import VideoFolderDataset
    from ..models.text import CachedTextEncoder, load_text_encoder

    captions = list(args.prompt)
    for root in map(Path, args.data):
        splits = [root / s for s in ("train", "test") if (root / s).is_dir()] or [root]  # a make-data root: both
        for folder in splits:
            captions += VideoFolderDataset(folder, verify="header").captions
    if not captions:
        raise SystemExit("no captions: pass --data FOLDER ... and/or --prompt TEXT ...")
    # the prior's captions under `evaluate/sample --prior-prompt-suffix`: every caption with each suffix too
    captions += [c + suffix for suffix in args.prompt_suffix for c in captions]
    encoder = CachedTextEncoder(load_text_encoder(args.text_encoder))
    path = encoder.write_table(args.out, captions)
    print(f"wrote {path}: {len(encoder)} captions of {encoder.spec}; where the encoder's weights are missing, "
          f"VIDEO_ADAPTER_TEXT_TABLE={path} stands in for it")


def cmd_train_video_net(args) -> None:
    from ..evaluation.metrics.video_net import VideoNetTrainConfig, train_video_net

    cfg = dataclass_from_args(VideoNetTrainConfig, args)
    if _dry_run(args, cfg):
        return
    if not cfg.data and cfg.objective != "domain":
        raise SystemExit("--data is required: a domain's train/ split (--objective caption) or stream:KIND / a "
                         "folder of the broad corpus (--objective text); --objective domain takes --classes instead")
    print(f"wrote {train_video_net(cfg)}")


def cmd_score_classifier(args) -> None:
    from ..evaluation.classifier_score import ClassifierScoreConfig, score_classifier

    cfg = dataclass_from_args(ClassifierScoreConfig, args)
    if not _dry_run(args, cfg):
        print(json.dumps(score_classifier(cfg), indent=1))


def _config_command(sub, name: str, cls, func, help: str, description: str, *positional: tuple[str, str]):
    """A subcommand whose options are the fields of config dataclass `cls`, plus --dry-run."""
    p = sub.add_parser(name, help=help, description=description)
    for arg, arg_help in positional:
        p.add_argument(arg, help=arg_help)
    add_dataclass_args(p, cls, skip=tuple(arg for arg, _ in positional))
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from ..data.datagen import KINDS
    from ..data.datagen.make import MakeDataConfig
    from ..evaluation.classifier_score import ClassifierScoreConfig
    from ..evaluation.diagnose import DiagnoseConfig
    from ..evaluation.evaluate import EvalConfig
    from ..evaluation.metrics.video_net import VideoNetTrainConfig
    from ..training.train import TrainConfig
    from .app import AppConfig
    from .demo import DemoConfig
    from .sample import SampleConfig
    from .serve import ServeConfig

    parser = argparse.ArgumentParser(prog="video-adapter", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = _config_command(sub, "train", TrainConfig, cmd_train, "train a video denoiser on captioned videos",
                        "Train (or resume, if --out holds a checkpoint) a space-time U-Net. Under `accelerate "
                        "launch` it runs on every process with no change.")
    p.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    _config_command(sub, "sample", SampleConfig, cmd_sample, "sample one model, or an adapter composed with a prior",
                    "Sample videos for prompts (optionally a first frame or edges) from one checkpoint or from "
                    "an adapter composed with a prior (Video Adapter: by default the recipe, CFG Mix at w 0.2 from "
                    "log-SNR -2; --mode composed for Algorithm 1), and write gif/mp4.")

    p = sub.add_parser("info", help="config and parameter count of a checkpoint or preset",
                       description="Print the config and parameter count of a checkpoint directory or a preset "
                                   "name (presets are built on the meta device, so even the 5.6B one is instant; a "
                                   "checkpoint's weights are loaded and checked).")
    p.add_argument("target", help="checkpoint directory or preset name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="re-write a checkpoint in bf16 shards small enough for git",
                       description="Write a model directory's weights in another dtype, in safetensors shards of at "
                                   "most --max-shard-mib each (with model.safetensors.index.json), plus config.json.")
    p.add_argument("src", help="model directory (e.g. runs/prior/checkpoint)")
    p.add_argument("--out", required=True, help="directory to write (replaced atomically)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="weight dtype (default: bf16)")
    p.add_argument("--max-shard-mib", type=float, default=16.0, help="largest file in MiB (default: 16)")
    p.set_defaults(func=cmd_export)

    _config_command(sub, "make-data", MakeDataConfig, cmd_make_data,
                    "generate a captioned video dataset (broad corpus or a domain)",
                    "Render clips of one generator in parallel into a dataset folder: train/ and test/ "
                    "(mp4 + captions.jsonl), data_card.json and preview.png.",
                    ("kind", f"one of: {', '.join(KINDS)}"))
    _config_command(sub, "evaluate", EvalConfig, cmd_evaluate,
                    "the paper's protocol on a domain: every method, the same seeds, metrics with intervals",
                    "Sample N test conditions of a domain with each method (Small (S)/(L) alone and with the prior, "
                    "the prior, CFG Mix, the prior finetuned or with LoRA), score them against the real test clips "
                    "(FVD-VA, task accuracy; FVD, FID, KID, IS with detector files) with bootstrap intervals, and "
                    "write results.json, table.md, a gamma-sweep plot and a qualitative grid. --cascade STAGE ... "
                    "upscales the grid's rows through super-resolution stages; the samples are composed and every "
                    "metric scored at the base resolution, as in the paper.")
    _config_command(sub, "diagnose", DiagnoseConfig, cmd_diagnose,
                    "held-out denoising error of the adapter, the prior and their compositions per noise level",
                    "Noise held-out clips at a grid of log-SNRs and measure the eps and x0 errors of the adapter, "
                    "the prior and each composition (no sampling), and the prior strength gamma that minimises the "
                    "composed error at each level: where the prior can help. Writes diagnose.json, .md and .png.")
    _config_command(sub, "serve-prior", ServeConfig, cmd_serve_prior,
                    "serve a prior's eps over HTTP, for `sample --prior http://HOST:PORT` and the app",
                    "Serve a prior's eps over HTTP (FastAPI, uvicorn) on 127.0.0.1 by default: GET /spec gives its "
                    "ModelSpec, POST /eps takes safetensors and captions as text and answers eps. Every request "
                    "needs the token of --token-file; bodies, batches and waiting are capped; concurrent requests "
                    "share forwards.", ("prior", "a checkpoint directory or a local diffusers pipeline directory"))
    _config_command(sub, "app", AppConfig, cmd_app,
                    "a local web page: prior, adapter, the recipe and Algorithm 1 side by side, with their weights",
                    "Serve a Gradio page on 127.0.0.1 by default: a prompt, a first frame (uploaded or from a test "
                    "clip of --data), the recipe's w, Algorithm 1's gamma, guidance, sampler, steps and seed in; the "
                    "prior, the adapter and both compositions from the same seed out as looping videos, and "
                    "optionally a gamma strip (Figure 6). "
                    "--cascade STAGE ... shows them upscaled through super-resolution stages (composed at the base "
                    "resolution).")
    p = sub.add_parser("embed-captions", help="a text table: every caption of some datasets, embedded once",
                       description="Embed every caption of the given datasets (and prompts) with a text encoder into "
                                   "one safetensors table. On a machine without the encoder's weights, "
                                   "VIDEO_ADAPTER_TEXT_TABLE=FILE makes train, sample, evaluate and diagnose read "
                                   "embeddings from it instead (a caption it lacks is an error).")
    p.add_argument("--data", nargs="*", default=[], help="dataset folders (a make-data root: train/ and test/)")
    p.add_argument("--prompt", nargs="*", default=[], help="more captions to include")
    p.add_argument("--prompt-suffix", nargs="*", default=[],
                   help="also every caption with each of these appended (for --prior-prompt-suffix)")
    p.add_argument("--text-encoder", default="minilm", help="text encoder spec (default: minilm)")
    p.add_argument("--out", required=True, help="the table file to write (.safetensors)")
    p.set_defaults(func=cmd_embed_captions)
    _config_command(sub, "train-video-net", VideoNetTrainConfig, cmd_train_video_net,
                    "train our metric network: the FVD-VA encoder or a domain's caption classifier",
                    "Train the compact (2+1)D video net of video_adapter.evaluation.metrics.video_net: --objective text "
                    "(contrastive with caption embeddings, on the broad corpus: features for FVD-VA) or --objective "
                    "caption (a classifier over a domain's training captions: task accuracy in evaluate). "
                    "--data takes several folders (their clips together, the classes the union of their captions).")
    _config_command(sub, "score-classifier", ClassifierScoreConfig, cmd_score_classifier,
                    "a caption classifier's accuracy on a labelled folder, with a bootstrap 95%% interval",
                    "Score a train-video-net caption classifier on a folder of captioned clips (each caption its "
                    "label, rewritten by the classifier's own caption rewrites): accuracy with a bootstrap 95% "
                    "interval, the number scored and left out, and chance; printed as JSON and written to --out. "
                    "--against OTHER scores a second classifier on the same clips and adds the paired difference "
                    "(this minus it) with its interval: the downstream test's two arms.")
    _config_command(sub, "demo", DemoConfig, cmd_demo,
                    "Video Adapter end to end on the CPU in minutes: domain data, an adapter, composed samples",
                    "Render a small robot domain, train a Small adapter on it on the CPU, and sample test captions "
                    "with the prior alone, the adapter alone and the two composed (the recipe and Algorithm 1): a "
                    "comparison grid "
                    "(gif and mp4) and a table of parameters, sampling time and a crude error.")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    # FileNotFoundError, checkpoint/video/text errors among these; FloatingPointError: a training run diverged
    except (ValueError, OSError, ImportError, FloatingPointError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
