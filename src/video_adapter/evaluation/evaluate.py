"""The paper's evaluation protocol (Table 1, Tables 3 and 9, Figures 6 and 7) on one domain.

    video-adapter evaluate --domain data/robot --prior checkpoints/prior --small-s runs/robot-s/checkpoint \
        --small-l runs/robot-l/checkpoint --encoder checkpoints/video-encoder --classifier runs/robot-cls --num 128

Every method samples the same N conditions from the domain's test split (caption and first frame, or edges) from
the same seeds, and each N-sample set is scored against the real test clips (`metrics.scores`), with bootstrap
intervals: the domain's own, or with --real DIR another set's (stylisation scored against the animation test set,
sim-to-real against robot-real, while the conditions come from --domain). Batches are seeded by their index, so a
sample depends on (seed, batch size, its index) alone and the batches can be spread over processes with results
identical to one process:

    torchrun --nproc_per_node N -m -- video_adapter evaluate ...    # "--": the launcher must not read our --num

Writes results.json, table.md, gamma_sweep.png and qualitative.gif / .mp4 into --out. With --save-samples DIR, every
sampled row's clips also become a training folder DIR/<row>/ (NNNNNN.mp4 + captions.jsonl; clip i is sampled from
condition i, test clip i mod the split's size, and carries its caption): e.g. sim clips' edges turned into real
videos, to train a downstream classifier on (paper Figure 10). --prior-prompt-suffix ", at night" appends a style to
the captions the prior gets, and to no other model's: the paper's augmented variants. The adapter, the saved
captions.jsonl and the scores keep each clip's own caption, its task label. With --cascade STAGE ..., the qualitative
grid shows every row (the real clips too) upscaled through the super-resolution stages, each row's captions their
text; the samples are composed and every metric is scored at the base resolution, as in the paper.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..common.devices import resolve_device, resolve_dtype
from ..common.files import atomic_write_text, make_out_dir
from ..common.tables import human_count, table_markdown
from ..data.captioned import safe_name, write_captioned_folder
from ..data.dataset import VideoFolderDataset
from ..data.video_io import write_grid
from ..generation.cascade import DEFAULT_AUG_LEVEL, DEFAULT_STAGE_GUIDANCE, load_cascade, upscale_rows, zoom_after
from ..generation.generate import SamplingSettings, check_guided, generate
from ..generation.loading import load_model
from ..generation.routing import model_conds, route_conditions
from ..maths.composition import DEFAULT_COMPOSITION, DEFAULT_MIX, DEFAULT_MIX_MIN_LOGSNR, PriorStrength
from ..maths.conditioning import CONDITIONS, sobel_x
from ..maths.guidance import DEFAULT_GUIDANCE
from ..maths.mcmc import MCMCConfig
from ..models.score_model import ScoreModel, check_compatible


class Method(NamedTuple):
    label: str        # as in the paper's tables
    mode: str         # composition.mode_fn mode
    model: str        # EvalConfig field naming the checkpoint sampled alone or as the adapter ("" for the prior)
    uses_prior: bool


METHODS = {
    "small-s": Method("Small (S)", "adapter", "small_s", False),
    "small-s+prior": Method("Small (S) + Prior", "composed", "small_s", True),
    "small-l": Method("Small (L)", "adapter", "small_l", False),
    "small-l+prior": Method("Small (L) + Prior", "composed", "small_l", True),
    "prior": Method("Prior", "prior", "", True),
    "cfg-mix": Method("CFG Mix (S, Prior)", "cfg-mix", "small_s", True),
    "finetuned": Method("Prior finetuned, same compute", "adapter", "finetuned", False),
    "lora": Method("Prior + LoRA, same compute", "adapter", "lora", False),
}


@dataclass(frozen=True)
class EvalConfig:
    domain: str = ""                      # dataset folder with a test/ split (make-data), or a folder of test clips
    real: str = ""                        # score against these clips, not --domain's (e.g. animation, robot-real)
    prior: str = "checkpoints/prior"      # the frozen prior: a model directory, or http://HOST:PORT (serve-prior)
    prior_token_file: str = ""            # token of a prior served over HTTP (else $VIDEO_ADAPTER_PRIOR_TOKEN)
    small_s: str = ""                     # Small (S) adapter checkpoint
    small_l: str = ""                     # Small (L) adapter checkpoint
    finetuned: str = ""                   # the prior finetuned on the domain for the adapter's compute (appendix C)
    lora: str = ""                        # the prior with LoRA, trained for the same compute, merged into a checkpoint
    methods: tuple[str, ...] = ()         # which of METHODS (empty: every one whose checkpoints are given)
    metrics: tuple[str, ...] = ("fvd-va", "accuracy")  # of metrics.scores.METRICS; fvd/fid/kid/is need detector files
    encoder: str = "checkpoints/video-encoder"  # video_net encoder for fvd-va (the shipped one: its README.md)
    classifier: str = ""                  # video_net caption classifier of this domain, for accuracy
    style_classifier: str = ""            # video_net domain classifier (objective domain), for metric style
    style_label: str = ""                 # its class whose share metric style reports (e.g. toon, real)
    i3d: str = ""                         # i3d_torchscript.pt ("": $VIDEO_ADAPTER_I3D, then the cache directory)
    inception: str = ""                   # inception-2015-12-05.pt ("": $VIDEO_ADAPTER_INCEPTION, then the cache)
    condition: str = "first_frame"        # what conditions besides the caption: first_frame | edges | none
    prior_prompt_suffix: str = ""         # appended to each caption for the prior only (Figure 10's augmentation)
    num: int = 128                        # samples per method (paper: 128 on Bridge); test clips repeat if fewer
    batch_size: int = 16                  # samples per batch; results depend on it (each batch has its own seed)
    prior_strength: float = 0.1           # gamma (paper: 0.1 Bridge, 0.2 Ego4D)
    guidance: float = DEFAULT_GUIDANCE    # alpha, each method's classifier-free guidance (5 before 2026-12-08)
    guided_conditions: tuple[str, ...] = CONDITIONS  # what guidance drops in its null pass (text: keep edges in both)
    composition: str = DEFAULT_COMPOSITION  # normalized: Algorithm 1 with exponents summing to 1 | paper: as written
    compose_in: str = "eps"               # combine the models' eps (paper), x0 or v predictions
    min_logsnr: float = -math.inf         # compose only at or above this log-SNR (and below the paper's cutoff)
    mix: float = DEFAULT_MIX              # CFG Mix weight of the prior (the recipe: 0.2)
    mix_min_logsnr: float = DEFAULT_MIX_MIN_LOGSNR  # CFG Mix from this log-SNR up, the adapter alone below (-inf: none)
    gamma_sweep: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)  # Figure 6: Small (S) + Prior at these gammas
    mix_sweep: tuple[float, ...] = ()     # Figure 6: CFG Mix at these prior weights w (with method cfg-mix)
    real_noise: tuple[float, ...] = ()    # also score the Real row's clips plus Gaussian noise of these std devs
    sampler: str = "ddim"                 # ddpm | ddim | dpmpp-2m | heun
    steps: int = 100                      # denoising steps per sample
    clip_x0: float = 1.0                  # clip each step's x0 prediction to [-v, v] (0: off)
    dynamic_threshold: float = 0.0        # Imagen's dynamic thresholding at this quantile of |x0| (0: off)
    mcmc: str = ""                        # MCMC between noise levels: ula | uhmc ("": none)
    mcmc_steps: int = 2                   # MCMC steps at every noise level
    mcmc_step_size: float = 0.1           # MCMC step = this x sigma^2
    bootstrap: int = 200                  # bootstrap resamples per interval (0: none)
    grid: int = 4                         # conditions shown in the qualitative grid
    seed: int = 0                         # base seed: batch i uses seed + i
    device: str = "auto"                  # auto | cpu | cuda (under accelerate: each process's own GPU)
    dtype: str = "auto"                   # auto | float32 | bfloat16 | float16
    out: str = "outputs/eval"             # results.json, table.md, gamma_sweep.png, qualitative.gif/mp4
    save_samples: str = ""                # also write each row's clips as a training folder DIR/<row>/ ("": off)
    cascade: tuple[str, ...] = ()         # SR stages, smallest first: the grid only is upscaled (metrics: base size)
    cascade_aug_level: float = DEFAULT_AUG_LEVEL  # noise augmentation level (cosine time) of the stages trained with it
    cascade_start: float = 1.0            # each stage from its upsampled input noised to this time (1: pure noise)
    cascade_guidance: float = DEFAULT_STAGE_GUIDANCE  # the stages' text guidance alpha, apart from --guidance

    def selected(self) -> list[str]:
        """The methods to run: as given, else those whose checkpoints are set; an error for a missing one."""
        names = list(self.methods) or [m for m, spec in METHODS.items() if not spec.model or getattr(self, spec.model)]
        for name in names:
            if name not in METHODS:
                raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
            spec = METHODS[name]
            if spec.model and not getattr(self, spec.model):
                raise ValueError(f"method {name} needs --{spec.model.replace('_', '-')} DIR")
            if spec.uses_prior and not self.prior:
                raise ValueError(f"method {name} needs --prior DIR")
        if self.prior_prompt_suffix and not any(METHODS[name].uses_prior for name in names):
            raise ValueError(f"--prior-prompt-suffix styles the prior's captions, but none of {', '.join(names)} "
                             "samples with the prior: add small-s+prior or prior to --methods, or drop it")
        return names

    def validate(self) -> None:
        if not self.domain:
            raise ValueError("pass --domain DIR: a make-data dataset (its test/ split is the real set)")
        if self.condition not in ("first_frame", "edges", "none"):
            raise ValueError(f"--condition must be first_frame, edges or none, not {self.condition!r}")
        if self.num < 2 or self.batch_size < 1:
            raise ValueError(f"--num must be at least 2 and --batch-size at least 1, got {self.num}, {self.batch_size}")
        sampling_settings(self, self.prior_strength).validate()
        check_guided(self.guided_conditions, {"text"} | ({self.condition} - {"none"}))
        if "edge-fidelity" in self.metrics and self.condition != "edges":
            raise ValueError("metric edge-fidelity compares outputs with their input edges: pass --condition edges")
        if "style" in self.metrics and not (self.style_classifier and self.style_label):
            raise ValueError("metric style needs --style-classifier DIR (train-video-net --objective domain) and "
                             "--style-label NAME (the class whose share it reports)")
        if not all(0 <= w <= 1 for w in self.mix_sweep):
            raise ValueError(f"--mix-sweep takes CFG Mix prior weights in [0, 1], got {self.mix_sweep}")
        if not all(math.isfinite(std) and std >= 0 for std in self.real_noise):
            raise ValueError(f"--real-noise takes standard deviations >= 0 (videos span [-1, 1]), "
                             f"got {self.real_noise}")
        self.selected()


class TestSet(NamedTuple):
    real: Tensor              # [N, C, F, H, W] in [-1, 1]: the test clips the conditions come from, repeated to --num
    captions: list[str]       # [N]
    pixels: dict[str, Tensor]  # the per-sample pixel conditions (first_frame [N, C, H, W] or edges [N, C, F, H, W])
    target: Tensor            # [N, ...]: the clips the samples are scored against (`real`, or --real's)
    reference: Tensor | None  # N other clips of the target set, scored like a method: the metrics' floor and the
    reference_captions: list[str]  # classifier's ceiling at this N (None when it has fewer than 2N clips)


def clips(path: str, spec, flag: str) -> VideoFolderDataset:
    """A dataset's test/ split, or a folder of clips, at the model's size; `flag` names the option in errors."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{flag} {path}: no such folder; pass a make-data dataset or a folder of clips")
    folder = root / "test" if (root / "test").is_dir() else root
    data = VideoFolderDataset(folder, frames=spec.frames, size=(spec.height, spec.width), random_crop=False)
    if len(data) < 2:
        raise ValueError(f"{flag}: {folder} has {len(data)} clips; it needs at least 2")
    return data


def test_set(cfg: EvalConfig, spec) -> TestSet:
    data = clips(cfg.domain, spec, "--domain")
    picks = [i % len(data) for i in range(cfg.num)]
    real = torch.stack([data[i]["video"] for i in picks])
    pixels = {"first_frame": real[:, :, 0]} if cfg.condition == "first_frame" else \
        {"edges": sobel_x(real)} if cfg.condition == "edges" else {}
    scored = clips(cfg.real, spec, "--real") if cfg.real else data
    target = torch.stack([scored[i % len(scored)]["video"] for i in range(cfg.num)]) if cfg.real else real
    others = range(cfg.num, 2 * cfg.num) if len(scored) >= 2 * cfg.num else range(0)
    reference = torch.stack([scored[i]["video"] for i in others]) if others else None
    return TestSet(real, [data.captions[i] for i in picks], pixels, target, reference,
                   [scored.captions[i] for i in others])


class Models:
    """Checkpoints loaded once per path, on this process's device."""

    def __init__(self, cfg: EvalConfig, device: torch.device):
        self.cfg, self.device, self.cache, self.text_encoders = cfg, device, {}, {}

    def __call__(self, path: str) -> ScoreModel:
        if path not in self.cache:
            self.cache[path] = load_model(path, self.device, resolve_dtype(self.cfg.dtype, self.device),
                                          token_file=self.cfg.prior_token_file)
        return self.cache[path]

    def of(self, method: str) -> dict[str, ScoreModel]:
        spec = METHODS[method]
        models = {"small": self(getattr(self.cfg, spec.model))} if spec.model else {}
        if spec.uses_prior:
            models["prior"] = self(self.cfg.prior)
        if len(models) == 2:
            check_compatible(models["small"], models["prior"])
        return models


def sampling_settings(cfg: EvalConfig, prior_strength: float) -> SamplingSettings:
    """The sampling settings of every method under this evaluation, at prior strength `prior_strength`."""
    mcmc = MCMCConfig(kind=cfg.mcmc, steps=cfg.mcmc_steps, step_size=cfg.mcmc_step_size) if cfg.mcmc else None
    return SamplingSettings(sampler=cfg.sampler, steps=cfg.steps, guidance=cfg.guidance,
                            strength=PriorStrength(prior_strength, min_logsnr=cfg.min_logsnr), mix=cfg.mix,
                            mix_min_logsnr=cfg.mix_min_logsnr,
                            guided_conditions=cfg.guided_conditions, composition=cfg.composition,
                            compose_in=cfg.compose_in, mcmc=mcmc, clip_x0=cfg.clip_x0,
                            dynamic_threshold=cfg.dynamic_threshold, seed=cfg.seed)


def sample_method(cfg: EvalConfig, method: str, models: Models, tests: TestSet,
                  prior_strength: float) -> tuple[Tensor, float]:
    """All --num samples of one method, [N, C, F, H, W] on the CPU, and the seconds this process spent sampling.

    Batch i is sampled from seed + i; under accelerate each process takes every world_size-th batch and the
    batches are gathered back in order."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    mode_models, mode = models.of(method), METHODS[method].mode
    routes = route_conditions(mode_models, {"text", *tests.pixels}, partial=False)
    settings = sampling_settings(cfg, prior_strength)
    starts = list(range(0, cfg.num, cfg.batch_size))
    mine, seconds = [], 0.0
    for index in range(state.process_index, len(starts), state.num_processes):
        part = slice(starts[index], starts[index] + cfg.batch_size)
        pixels = {name: value[part] for name, value in tests.pixels.items()}
        conds = model_conds(mode_models, tests.captions[part], pixels, routes, models.device, models.text_encoders,
                            prior_suffix=cfg.prior_prompt_suffix)  # a row without the prior ignores it
        done = generate(mode_models, conds, (mode,), replace(settings, seed=cfg.seed + index), models.device)
        seconds += done.seconds[mode]
        mine.append((index, done.videos[mode].cpu()))
    gathered = sorted(gather_object(mine) if state.num_processes > 1 else mine, key=lambda item: item[0])
    return torch.cat([x for _, x in gathered]), seconds


def parameters(method: str, models: Models) -> int:
    return sum(m.spec.parameters for m in models.of(method).values())


def experts(method: str) -> tuple[str, ...]:
    """The rows a composed method is compared with: its small model sampled alone, and the prior."""
    spec = METHODS[method]
    if spec.mode not in ("composed", "cfg-mix"):
        return ()
    return (*(m for m, s in METHODS.items() if s.mode == "adapter" and s.model == spec.model), "prior")


def paired_differences(scored: dict[str, tuple[str, dict]]) -> dict[str, dict]:
    """Each composed row (a method, or a sweep point: row -> (method, scores)) minus each of its experts that was
    sampled too, metric by metric, with the paired bootstrap interval (`Value.minus`). An interval clear of 0 says
    the prior moved that metric for these conditions and seeds; the marginal intervals of table.md cannot say it."""
    return {f"{row} - {expert}": {m: value.minus(scored[expert][1][m]).as_dict() for m, value in scores.items()}
            for row, (method, scores) in scored.items() for expert in experts(method) if expert in scored}


def results_markdown(results: dict, cfg: EvalConfig) -> str:
    """results.json as table.md: Table 1's rows with bootstrap intervals, and what they were sampled with."""
    metrics = list(cfg.metrics)
    rows = [(f"Real: {cfg.num} other test clips", results["real"], None)] if "real" in results else []
    rows += [(f"Real + noise {std}", scores, None) for std, scores in results.get("real_noised", {}).items()]
    rows += [(METHODS[name].label, row["metrics"], row) for name, row in results["methods"].items()]
    cells = [[label, *(f"{scores[m]['value']:.4g} [{scores[m]['ci95'][0]:.4g}, {scores[m]['ci95'][1]:.4g}]"
                       for m in metrics),
              *((human_count(row["parameters"]), f"{row['seconds_per_sample']:.3f}") if row else ("-", "-"))]
             for label, scores, row in rows]
    table = table_markdown(["method", *metrics, "parameters", "sampling s / sample"], cells)
    if results.get("paired"):
        table += "\n\nPaired differences (row minus expert; the same conditions, seeds and resamples):\n\n" + \
            table_markdown(["difference", *metrics], [[pair, *(
                f"{d[m]['value']:+.4g} [{d[m]['ci95'][0]:+.4g}, {d[m]['ci95'][1]:+.4g}]" for m in metrics)]
                for pair, d in results["paired"].items()])
    real_note = (" Real: test clips not among the conditions, scored like a method: the Fréchet distances' floor "
                 "and the classifier's accuracy on real video at this N" +
                 ("; Real + noise: the same clips with Gaussian pixel noise of that std (videos in [-1, 1])"
                  if results.get("real_noised") else "") + ".") if "real" in results else ""
    guided_note = "" if set(cfg.guided_conditions) == set(CONDITIONS) else \
        f" towards the {' and '.join(c.replace('_', ' ') for c in cfg.guided_conditions)} alone"
    mix_note = "" if "cfg-mix" not in results["methods"] else f", CFG Mix weight w {cfg.mix:g}" + (
        f" from log-SNR {cfg.mix_min_logsnr:g} up" if cfg.mix_min_logsnr > -math.inf else "")
    return table + (
        f"\n\n{cfg.num} samples per method conditioned on the caption"
        f"{'' if cfg.condition == 'none' else ' and ' + cfg.condition.replace('_', ' ')} of test clips of "
        f"{cfg.domain}"
        f"{f' (the prior: each caption + {cfg.prior_prompt_suffix!r})' if cfg.prior_prompt_suffix else ''}"
        f", the same seeds for every method; {cfg.sampler} {cfg.steps} steps, guidance {cfg.guidance:g}{guided_note}, "
        f"gamma {cfg.prior_strength:g}, composition {cfg.composition} in {cfg.compose_in}"
        f"{mix_note}. Brackets: bootstrap 95% "
        "intervals over the generated set "
        f"({cfg.bootstrap} resamples).{real_note} fvd-va and accuracy use our own networks and are not comparable "
        "with published numbers.\n")


def sweep_curves(results: dict, cfg: EvalConfig) -> dict[str, dict[float, dict]]:
    """Figure 6's curves (label -> strength -> scores): each swept method's sweep points, plus its main row at its
    main strength and Small (S) alone at strength 0, where the composition and CFG Mix both equal it exactly."""
    methods, curves = results["methods"], {}
    for key, method, main in (("gamma_sweep", "small-s+prior", cfg.prior_strength), ("mix_sweep", "cfg-mix", cfg.mix)):
        if results[key]:
            curve = {float(g): v for g, v in results[key].items()}
            if method in methods:
                curve.setdefault(main, methods[method]["metrics"])
            if "small-s" in methods:
                curve.setdefault(0.0, methods["small-s"]["metrics"])
            curves[METHODS[method].label] = curve
    return curves


def plot_sweep(sweeps: dict[str, dict[float, dict]], metrics: tuple[str, ...], path: Path) -> None:
    """Figure 6: each metric over prior strength, one line per method swept (`sweeps`: label -> strength -> scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), dpi=120, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, sweep in sweeps.items():
            gammas = sorted(sweep)
            values = [sweep[g][metric]["value"] for g in gammas]
            low = [sweep[g][metric]["ci95"][0] for g in gammas]
            high = [sweep[g][metric]["ci95"][1] for g in gammas]
            ax.plot(gammas, values, marker="o", label=label)
            ax.fill_between(gammas, low, high, alpha=0.2)
        ax.set(xlabel="prior strength (gamma; CFG Mix: w)", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def save_row(cfg: EvalConfig, row: str, videos: Tensor, captions: list[str]) -> None:
    """With --save-samples, one row's clips as the training folder --save-samples/<row, made a folder name>, each
    captioned with its condition's own caption (never with --prior-prompt-suffix: the caption is the task label)."""
    if cfg.save_samples:
        print(f"wrote {write_captioned_folder(Path(cfg.save_samples) / safe_name(row), videos, captions)}")


def run_evaluation(cfg: EvalConfig) -> dict:
    from accelerate import PartialState

    from .metrics.scores import Scorer, noised

    cfg.validate()
    state = PartialState(cpu=cfg.device == "cpu")
    device = state.device if cfg.device == "auto" and state.num_processes > 1 else resolve_device(cfg.device)
    models, names = Models(cfg, device), cfg.selected()
    spec = models(cfg.prior if cfg.prior else getattr(cfg, METHODS[names[0]].model)).spec
    tests = test_set(cfg, spec)
    stages = load_cascade(cfg.cascade, spec, device, resolve_dtype(cfg.dtype, device), cfg.cascade_aug_level,
                          cfg.cascade_start, cfg.cascade_guidance) \
        if state.is_main_process else []  # only the grid is upscaled, on the main process
    for name in names:  # every pair compatible and every condition taken, before anything is sampled
        route_conditions(models.of(name), {"text", *tests.pixels}, partial=False)
    scorer = Scorer(tuple(cfg.metrics), tests.target, {"i3d": cfg.i3d, "inception": cfg.inception,
                    "encoder": cfg.encoder, "classifier": cfg.classifier, "style": cfg.style_classifier}, str(device),
                    cfg.batch_size, cfg.bootstrap, cfg.seed, cfg.style_label) \
        if state.is_main_process else None
    if state.is_main_process:
        make_out_dir(Path(cfg.out))
        if cfg.save_samples:
            make_out_dir(Path(cfg.save_samples), "--save-samples")
    samples, results = {}, {"config": asdict(cfg), "methods": {}, "gamma_sweep": {}, "mix_sweep": {}}
    scored = {}  # row -> (method, its Values with their bootstrap draws), for the paired differences
    edges = tests.pixels.get("edges")  # edge-fidelity's reference: every row is compared with the input edges
    if tests.reference is None:
        state.print(f"no 'Real' reference row (nor --real-noise rows): it needs {2 * cfg.num} clips in "
                    f"{cfg.real or cfg.domain} (2 x --num)")
    elif state.is_main_process:
        # the Real row against the conditions' edges: the edge fidelity of clips that were not made from them
        results["real"] = {k: v.as_dict() for k, v in scorer.score(tests.reference, tests.reference_captions,
                                                                   edges).items()}
        # how much a metric moves for pixel noise alone, e.g. a classifier trained on clean renders
        results["real_noised"] = {f"{std:g}": {k: v.as_dict() for k, v in
                                               scorer.score(noised(tests.reference, std,
                                                                   torch.Generator().manual_seed(cfg.seed)),
                                                            tests.reference_captions, edges).items()}
                                  for std in cfg.real_noise}
    for name in names:
        state.print(f"[{name}] {METHODS[name].label}: {cfg.num} samples")
        samples[name], seconds = sample_method(cfg, name, models, tests, cfg.prior_strength)
        if state.is_main_process:
            save_row(cfg, name, samples[name], tests.captions)
            scored[name] = (name, scorer.score(samples[name], tests.captions, edges))
            results["methods"][name] = {"label": METHODS[name].label, "parameters": parameters(name, models),
                                        "seconds_per_sample": seconds * state.num_processes / cfg.num,
                                        "metrics": {k: v.as_dict() for k, v in scored[name][1].items()}}
    if cfg.gamma_sweep and "small-s+prior" in names:
        for gamma in cfg.gamma_sweep:
            state.print(f"[gamma sweep] Small (S) + Prior at gamma {gamma:g}")
            videos = samples["small-s+prior"] if gamma == cfg.prior_strength else \
                sample_method(cfg, "small-s+prior", models, tests, gamma)[0]
            if state.is_main_process:
                row = f"small-s+prior gamma {gamma:g}"
                save_row(cfg, row, videos, tests.captions)
                values = scorer.score(videos, tests.captions, edges)
                results["gamma_sweep"][str(gamma)] = {k: v.as_dict() for k, v in values.items()}
                if gamma != cfg.prior_strength:  # that point is the main row
                    scored[row] = ("small-s+prior", values)
    if cfg.mix_sweep and "cfg-mix" in names:
        for w in cfg.mix_sweep:
            state.print(f"[mix sweep] CFG Mix at prior weight {w:g}")
            videos = samples["cfg-mix"] if w == cfg.mix else \
                sample_method(replace(cfg, mix=w), "cfg-mix", models, tests, cfg.prior_strength)[0]
            if state.is_main_process:
                row = f"cfg-mix w {w:g}"
                save_row(cfg, row, videos, tests.captions)
                values = scorer.score(videos, tests.captions, edges)
                results["mix_sweep"][str(w)] = {k: v.as_dict() for k, v in values.items()}
                if w != cfg.mix:
                    scored[row] = ("cfg-mix", values)
    if not state.is_main_process:
        return results
    results["paired"] = paired_differences(scored) if cfg.bootstrap >= 2 else {}
    results["networks"] = scorer.records()
    out = Path(cfg.out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "table.md", results_markdown(results, cfg))
    paths = [out / "results.json", out / "table.md"]
    if sweeps := sweep_curves(results, cfg):
        plot_sweep(sweeps, cfg.metrics, out / "gamma_sweep.png")
        paths.append(out / "gamma_sweep.png")
    shown = min(cfg.grid, cfg.num)
    rows = {"real": tests.real[:shown], **{n: v[:shown] for n, v in samples.items()}}
    if stages:
        stage_settings = replace(sampling_settings(cfg, cfg.prior_strength), guidance=cfg.cascade_guidance)
        rows = upscale_rows(stages, rows, tests.captions[:shown], stage_settings, device, cfg.cascade_aug_level,
                            models.text_encoders, cfg.cascade_start)
    paths += write_grid(out / "qualitative.gif", [v for row in rows.values() for v in row],
                        labels=tests.captions[:shown] * len(rows), nrow=shown, row_labels=list(rows),
                        upscale=zoom_after(stages, 4), formats=("gif", "mp4"))
    print(results_markdown(results, cfg))
    for path in paths:
        print(f"wrote {path}")
    return results
