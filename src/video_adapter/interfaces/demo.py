"""The demo: Video Adapter end to end on a CPU in minutes, with the shipped prior.

    video-adapter demo --out outputs/demo

1. renders a small robot domain (`make-data robot`, the Bridge analogue the prior never saw) into `data/`, or reuses
   it when a dataset of the same settings is already there;
2. trains a Small (S) adapter, 1.23% of the prior's parameters, on its train split into `run/` (a finished run of the
   same settings is reused);
3. samples test-split captions with their first frames from the same seeds four ways, the prior alone, the adapter
   alone, and the two composed by the recipe (cfg-mix: CFG Mix from log-SNR -2 up, docs/analysis.md) and by
   Algorithm 1 (composed, paper sec 3.3), and writes `compare.gif` / `compare.mp4` (rows: the real test clip, then
   those four; columns: captions) and `table.md` / `table.json`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..common.devices import resolve_device, resolve_dtype
from ..common.files import atomic_write_text
from ..common.tables import human_count, table_markdown
from ..data.datagen.make import CARD_NAME, MakeDataConfig, make_dataset
from ..data.dataset import VideoFolderDataset
from ..data.video_io import write_grid
from ..generation.generate import COMPARE_ROWS, SamplingSettings, generate
from ..generation.loading import load_models
from ..generation.routing import model_conds, route_conditions
from ..maths.composition import DEFAULT_COMPOSITION, DEFAULT_MIX, DEFAULT_MIX_MIN_LOGSNR, PriorStrength
from ..maths.guidance import DEFAULT_GUIDANCE
from ..models.checkpoint import read_unet_config
from ..models.score_model import ScoreModel
from ..models.unet import UNetConfig
from ..training.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[3]  # the source checkout (editable install), where checkpoints/ ships
DATA_KIND = "robot"
ROWS = ("real", *COMPARE_ROWS)


@dataclass(frozen=True)
class DemoConfig:
    out: str = "outputs/demo"             # everything the demo writes goes here
    prior: str = "checkpoints/prior"      # the frozen prior (a relative path is looked up here, then in the repository)
    clips: int = 320                      # robot clips to render (nine in ten train, the rest test)
    workers: int = 2                      # processes rendering clips
    preset: str = "small-s"               # adapter preset (video_adapter.unet.PRESETS): Small (S) at our prior's scale
    model: dict = field(default_factory=dict)  # UNetConfig overrides on the preset (the prior fixes frames and size)
    steps: int = 400                      # adapter training steps (about 4 minutes on 2 cores)
    batch_size: int = 8                   # clips per training step
    lr: float = 1e-3                      # a small model trained briefly tolerates a high rate
    prompts: int = 4                      # test clips (distinct captions) whose caption and first frame are sampled
    sampler: str = "dpmpp-2m"             # ddpm | ddim | dpmpp-2m | heun
    sample_steps: int = 25                # denoising steps of each method
    guidance: float = DEFAULT_GUIDANCE    # alpha: each model's classifier-free guidance, Algorithm 1's when composed
    mix: float = DEFAULT_MIX              # cfg-mix (the recipe): the prior's weight w
    mix_min_logsnr: float = DEFAULT_MIX_MIN_LOGSNR  # cfg-mix: mixes from this log-SNR up, the adapter alone below
    prior_strength: float = 0.1           # Algorithm 1's gamma, the prior's weight (paper: 0.1 on Bridge)
    composition: str = DEFAULT_COMPOSITION  # normalized: Algorithm 1 with exponents summing to 1 | paper: as written
    seed: int = 0                         # data, weights and samples are a deterministic function of it


@dataclass(frozen=True)
class DemoResult:
    paths: list[Path]                     # the files written
    rows: dict[str, Tensor]               # each grid row (ROWS), [prompts, C, F, H, W] in [-1, 1]
    table: list[dict]                     # one entry per method (COMPARE_ROWS), as in table.json


def resolve_prior(path: str) -> Path:
    """The prior's model directory: `path` as given, else (relative) inside the repository."""
    given = Path(path)
    candidates = list(dict.fromkeys([given.resolve(), (REPO / given).resolve()]))
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    looked = " or ".join(map(str, candidates))
    raise FileNotFoundError(f"no prior checkpoint at {looked} (a model directory with config.json); it ships with "
                            "the repository as checkpoints/prior, so run the demo from the repository root, or pass "
                            "--prior DIR")


def data_config(cfg: DemoConfig, prior: UNetConfig) -> MakeDataConfig:
    return MakeDataConfig(out=str(Path(cfg.out) / "data"), num=cfg.clips, seed=cfg.seed,
                          size=f"{prior.height}x{prior.width}", frames=prior.frames, workers=cfg.workers,
                          overwrite=True)


def dataset_is_current(mcfg: MakeDataConfig) -> bool:
    """Whether `mcfg.out` holds a complete dataset made with these settings (make-data writes its card last and
    renames the folder into place, so a card means complete)."""
    card = Path(mcfg.out) / CARD_NAME
    if not card.is_file():
        return False
    made = json.loads(card.read_text())
    wanted = {k: v for k, v in asdict(mcfg).items() if k not in ("out", "workers", "overwrite")}  # what, not how
    return made.get("kind") == DATA_KIND and {k: made.get("config", {}).get(k) for k in wanted} == wanted


def train_config(cfg: DemoConfig, data: Path, prior: UNetConfig, text_encoder: str) -> TrainConfig:
    # The prior fixes the adapter's frames and size (the two must denoise the same x) and its text encoder, so
    # both read one embedding of each caption.
    shape = {"frames": prior.frames, "height": prior.height, "width": prior.width}
    return TrainConfig(
        data=str(data / "train"), out=str(Path(cfg.out) / "run"), preset=cfg.preset, model={**cfg.model, **shape},
        text_encoder=text_encoder, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
        warmup_steps=cfg.steps // 20, ema_decay=0.995, sample_every=0, save_every=cfg.steps, log_every=10,
        seed=cfg.seed, num_workers=0, cache_videos=True)


def run_is_stale(tcfg: TrainConfig, same_data: bool) -> bool:
    """Whether `tcfg.out` holds a run that must not be reused: made on data since replaced, or with other settings
    (a finished run of the same settings is reused as it is)."""
    saved = Path(tcfg.out) / "checkpoint" / "config.json"
    if not saved.is_file():
        return False
    as_json = json.loads(json.dumps(asdict(tcfg)))  # tuples as lists, as config.json holds them
    return not same_data or json.loads(saved.read_text()).get("train_config") != as_json


def sampling_settings(cfg: DemoConfig) -> SamplingSettings:
    """The compositions' settings: the paper's cutoff and x0 clipping, the demo's sampler, guidance, w and gamma."""
    return SamplingSettings(sampler=cfg.sampler, steps=cfg.sample_steps, guidance=cfg.guidance, mix=cfg.mix,
                            mix_min_logsnr=cfg.mix_min_logsnr, strength=PriorStrength(cfg.prior_strength),
                            composition=cfg.composition, seed=cfg.seed)


def held_out_clips(test_dir: Path, count: int, prior: UNetConfig) -> tuple[Tensor, list[str]]:
    """The first `count` test clips of distinct captions: videos [count, C, F, H, W] in [-1, 1] and captions."""
    dataset = VideoFolderDataset(test_dir, frames=prior.frames, size=(prior.height, prior.width), random_crop=False)
    first: dict[str, int] = {}
    for index, caption in enumerate(dataset.captions):
        first.setdefault(caption, index)
    picks = list(first.values())[:count]
    if len(picks) < count:
        raise ValueError(f"{test_dir} has {len(picks)} distinct test captions and the demo asks for {count}; raise "
                         "--clips or lower --prompts")
    return torch.stack([dataset[i]["video"] for i in picks]), [dataset.captions[i] for i in picks]


def error_vs_real(videos: Tensor, real: Tensor) -> float:
    """Mean squared error against the real test clip of the same caption and first frame, over the frames after the
    given first one, in [-1, 1] units. A crude proxy, not a quality metric: the real clip is one of many plausible
    futures, so a blurred average can score better than a sharp, plausible sample."""
    return float(((videos[:, :, 1:] - real[:, :, 1:]) ** 2).mean())


def method_table(rows: dict[str, Tensor], models: dict[str, ScoreModel], seconds: dict[str, float]) -> list[dict]:
    small, prior = models["small"].spec.parameters, models["prior"].spec.parameters
    parameters = {"prior": prior, "adapter": small, "cfg-mix": small + prior, "composed": small + prior}
    return [{"method": method, "parameters": parameters[method],
             "adapter_over_prior": None if method == "prior" else small / prior,
             "sampling_s": round(seconds[method], 2),
             "mse_vs_real": round(error_vs_real(rows[method], rows["real"]), 5)}
            for method in COMPARE_ROWS]


def sampled_on(device: torch.device) -> str:
    """Where sampling ran, for the table: the precision `resolve_dtype` picks and the device."""
    if device.type == "cpu":
        return f"float32 on {torch.get_num_threads()} CPU threads"
    return f"bfloat16 on {torch.cuda.get_device_name(device)}"


def demo_markdown(table: list[dict], settings: SamplingSettings, prompts: int, frames: int,
                  device: torch.device) -> str:
    """table.md: each method's parameters, sampling time and crude error, and what they were sampled with."""
    rows = [[row["method"], human_count(row["parameters"]),
             "-" if row["adapter_over_prior"] is None else f"{100 * row['adapter_over_prior']:.2f}%",
             f"{row['sampling_s']:.1f}", f"{row['mse_vs_real']:.4f}"] for row in table]
    header = ["method", "parameters", "adapter / prior", "sampling s (this machine)", "MSE vs real clip (crude)"]
    return table_markdown(header, rows) + (
        f"\n\n{prompts} test captions with their first frames, the same seed ({settings.seed}) for every method; "
        f"{settings.sampler}, {settings.steps} steps, guidance alpha {settings.guidance:g}; cfg-mix (the recipe): "
        f"the prior's weight w {settings.mix:g} from log-SNR {settings.mix_min_logsnr:g} up; composed (Algorithm 1, "
        f"{settings.composition}): prior strength gamma {settings.strength.gamma:g} below log-SNR "
        f"{settings.strength.cutoff_logsnr:.3f} (the paper's cutoff); "
        f"{sampled_on(device)}. A composed model's parameters are both models', of which only "
        f"the adapter's were trained on the domain. MSE: mean squared error over frames 2-{frames} against the real "
        "test clip of the same caption and first frame, in [-1, 1] units; a crude proxy (one real clip is one of "
        "many plausible futures, and blur scores well), not FVD.\n")


def make_data(cfg: DemoConfig, prior: UNetConfig) -> tuple[Path, bool]:
    """Stage 1: the domain dataset, and whether an existing one was reused."""
    mcfg = data_config(cfg, prior)
    print(f"[1/3] {DATA_KIND} data: {cfg.clips} clips of {prior.frames}x{mcfg.size} in {mcfg.out}", flush=True)
    if dataset_is_current(mcfg):
        print(f"reusing {mcfg.out}: a complete dataset of these settings")
        return Path(mcfg.out), True
    return make_dataset(DATA_KIND, mcfg), False


def train_adapter(tcfg: TrainConfig, same_data: bool) -> Path:
    """Stage 2: the adapter's model directory."""
    print(f"[2/3] training a {tcfg.preset} adapter for {tcfg.steps} steps of {tcfg.batch_size} clips ({tcfg.out})",
          flush=True)
    if run_is_stale(tcfg, same_data):
        print(f"{tcfg.out} holds a run on other data or settings: training afresh")
        shutil.rmtree(tcfg.out)
    return train(tcfg)


def sample_methods(settings: SamplingSettings, adapter: Path, prior: Path, captions: list[str], real: Tensor,
                   device: torch.device) -> tuple[dict[str, Tensor], dict[str, float], dict[str, ScoreModel]]:
    """Stage 3: every method's samples for `captions` with the first frames of `real`, all from `settings.seed`, on
    `device` (a GPU if there is one, as accelerate picks for training); returns the grid rows, each method's
    sampling seconds and the models."""
    print(f"[3/3] sampling {len(captions)} test captions with their first frames: {', '.join(COMPARE_ROWS)} "
          f"({settings.sampler}, {settings.steps} steps)", flush=True)
    placement = (device, resolve_dtype("auto", device))
    models = load_models({"small": str(adapter), "prior": str(prior)}, {"small": placement, "prior": placement})
    # partial: a prior without first-frame conditioning still composes, on the text alone
    routes = route_conditions(models, {"text", "first_frame"}, partial=True)
    conds = model_conds(models, captions, {"first_frame": real[:, :, 0]}, routes, device)
    sampled = generate(models, conds, COMPARE_ROWS, settings, device)
    return {"real": real, **{m: v.cpu() for m, v in sampled.videos.items()}}, sampled.seconds, models


def write_outputs(out: Path, rows: dict[str, Tensor], table: list[dict], markdown: str, record: dict) -> list[Path]:
    captions = record["captions"]
    paths = write_grid(out / "compare.gif", [v for row in ROWS for v in rows[row]], labels=captions * len(ROWS),
                       nrow=len(captions), row_labels=list(ROWS), upscale=4, formats=("gif", "mp4"))
    atomic_write_text(out / "table.md", markdown)
    atomic_write_text(out / "table.json", json.dumps({"methods": table, **record}, indent=1))
    return paths + [out / "table.md", out / "table.json"]


def run_demo(cfg: DemoConfig) -> DemoResult:
    prior_dir = resolve_prior(cfg.prior)
    prior, prior_config = read_unet_config(prior_dir)
    clock, stages = time.perf_counter(), {}

    def lap(name: str) -> None:
        nonlocal clock
        stages[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    data, same_data = make_data(cfg, prior)
    lap("data_s")
    adapter = train_adapter(train_config(cfg, data, prior, prior_config["text_encoder"]), same_data)
    lap("train_s")
    real, captions = held_out_clips(data / "test", cfg.prompts, prior)
    settings, device = sampling_settings(cfg), resolve_device("auto")
    settings.validate()
    rows, seconds, models = sample_methods(settings, adapter, prior_dir, captions, real, device)
    lap("sample_s")

    table = method_table(rows, models, seconds)
    markdown = demo_markdown(table, settings, len(captions), prior.frames, device)
    record = {"stages": stages, "captions": captions, "adapter": str(adapter), "prior": str(prior_dir),
              "sample": asdict(settings)}
    paths = write_outputs(Path(cfg.out), rows, table, markdown, record)
    print("\n" + markdown)
    print("stage seconds: " + ", ".join(f"{name[:-2]} {s:.1f}" for name, s in stages.items()))
    for path in paths:
        print(f"wrote {path}")
    return DemoResult(paths, rows, table)
