"""`video-adapter diagnose`: where, over noise levels, the prior knows more than the adapter, without sampling.

    video-adapter diagnose --adapter runs/robot-s/checkpoint --prior checkpoints/prior --data data/robot --num 64

Each of N held-out clips x0 is noised at every log-SNR of a grid with seeded noise eps (the same draws for every
model, whatever the batch size), and each model and composition predicts eps. For each, per level:

- eps MSE, mean (eps_hat - eps)^2: the denoising error itself (for guided predictions it also counts the cost of
  guidance, which trades MSE for sharpness);
- x0 MSE, mean (x0_hat - x0)^2 of the implied x0 = (x_t - sigma eps_hat) / alpha, raw, clipped to the data range
  (the samplers' default) and dynamically thresholded;
- for each composition and guidance alpha, the gamma that minimises the composed eps MSE. The composed eps is
  linear in gamma, eps(gamma) = b + gamma d (Algorithm 1: b = CFG_alpha(small), d = alpha eps_prior; normalized:
  d = alpha (eps_prior - eps_small(x|text)); CFG Mix, whose gamma is its weight w: d = CFG_alpha(prior) -
  CFG_alpha(small)), so gamma* = <eps - b, d> / <d, d> over all clips, exactly. gamma* > 0 at a level says the
  prior's prediction carries information the adapter's lacks there.

Writes diagnose.json, diagnose.md (tables) and diagnose.png into --out (docs/analysis.md reads them).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from ..common.devices import resolve_device, resolve_dtype
from ..common.files import atomic_write_text, make_out_dir
from ..common.tables import table_markdown
from ..data.dataset import VideoFolderDataset
from ..generation.loading import load_models
from ..generation.routing import model_conds, route_conditions
from ..maths.composition import COMPOSE_IN, COMPOSITIONS, cfg_mix, in_prediction
from ..maths.conditioning import sobel_x
from ..maths.guidance import classifier_free, cond_uncond, threshold_x0
from ..maths.schedule import diffuse, x0_from_eps

X0_HANDLING = ("raw", "clip", "dynamic")
# Algorithm 1's two forms, and CFG Mix, (1 - w) CFG(small) + w CFG(prior): the product of the two guided experts with
# exponents summing to 1, the one combination that beat both experts on egocentric (docs/analysis.md).
DIAGNOSED = (*COMPOSITIONS, "cfg-mix")


@dataclass(frozen=True)
class DiagnoseConfig:
    adapter: str = ""                     # the small model's checkpoint directory
    prior: str = "checkpoints/prior"      # the prior: a checkpoint directory, or http://HOST:PORT (serve-prior)
    prior_token_file: str = ""            # token of a prior served over HTTP (else $VIDEO_ADAPTER_PRIOR_TOKEN)
    data: str = ""                        # held-out clips: a make-data folder (its test/ split) or a folder of videos
    condition: str = "first_frame"        # what conditions besides the caption: first_frame | edges | none
    num: int = 64                         # clips (the first N of the folder)
    batch_size: int = 16                  # clips per forward
    logsnrs: tuple[float, ...] = (-10.0, -8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0)  # noise levels
    guidance: tuple[float, ...] = (1.0, 5.0)  # classifier-free guidance alphas (1: none)
    gammas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)  # prior strengths of the compositions
    compositions: tuple[str, ...] = DIAGNOSED  # paper, normalized (Algorithm 1 as written, normalized) and cfg-mix
    compose_in: tuple[str, ...] = ("eps", "x0")  # combine the predictions of eps, x0 or v
    clip_x0: float = 1.0                  # the "clip" x0 handling: clip to [-v, v]
    dynamic_threshold: float = 0.995      # the "dynamic" x0 handling: Imagen's thresholding at this quantile
    seed: int = 0                         # noise draws
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"                   # model precision: auto (bfloat16 on CUDA) | float32 | bfloat16 | float16
    out: str = "outputs/diagnose"         # diagnose.json, diagnose.md, diagnose.png

    def validate(self) -> None:
        if not self.adapter or not self.prior or not self.data:
            raise ValueError("pass --adapter DIR, --prior DIR and --data DIR (held-out clips of the adapter's domain)")
        if self.condition not in ("first_frame", "edges", "none"):
            raise ValueError(f"--condition must be first_frame, edges or none, not {self.condition!r}")
        if self.num < 1 or self.batch_size < 1 or not self.logsnrs:
            raise ValueError("--num and --batch-size must be at least 1, and --logsnrs must name a level")
        if not all(math.isfinite(v) for v in (*self.logsnrs, *self.guidance, *self.gammas)):
            raise ValueError("--logsnrs, --guidance and --gammas must be finite numbers")
        if unknown := [c for c in self.compositions if c not in DIAGNOSED]:
            raise ValueError(f"unknown --compositions {unknown}; choose from {', '.join(DIAGNOSED)}")
        if unknown := [s for s in self.compose_in if s not in COMPOSE_IN]:
            raise ValueError(f"unknown --compose-in {unknown}; choose from {', '.join(COMPOSE_IN)}")
        if not 0 < self.dynamic_threshold <= 1:
            raise ValueError(f"--dynamic-threshold must be in (0, 1], got {self.dynamic_threshold}")


def composed_name(composition: str, space: str, alpha: float, gamma: float) -> str:
    return f"{composition}{'' if space == 'eps' else ' in ' + space} a{alpha:g} g{gamma:g}"


def predictions(cfg: DiagnoseConfig, x: Tensor, logsnr: Tensor, u: Tensor, c: Tensor, pu: Tensor,
                p: Tensor) -> dict[str, Tensor]:
    """Every prediction diagnosed at one level, by name: the single models, alone and guided, and each composition
    (its equation from `composition`, so what is measured is what is sampled)."""
    out = {"adapter": c, "prior": p}
    for alpha in cfg.guidance:
        if alpha != 1:
            out[f"adapter cfg {alpha:g}"] = classifier_free(u, c, alpha)
            out[f"prior cfg {alpha:g}"] = classifier_free(pu, p, alpha)
    for composition in cfg.compositions:
        if composition == "cfg-mix":  # weights summing to 1: the same eps in every prediction space
            for alpha in cfg.guidance:
                small_cfg, prior_cfg = classifier_free(u, c, alpha), classifier_free(pu, p, alpha)
                for w in cfg.gammas:
                    out[composed_name("cfg-mix", "eps", alpha, w)] = cfg_mix(small_cfg, prior_cfg, w)
            continue
        guided, unguided = COMPOSITIONS[composition]
        for space in cfg.compose_in:
            for alpha in cfg.guidance:
                for gamma in cfg.gammas:
                    name = composed_name(composition, space, alpha, gamma)
                    out[name] = in_prediction(unguided, space)(x, logsnr, (c, p), gamma) if alpha == 1 else \
                        in_prediction(guided, space)(x, logsnr, (u, c, p), alpha, gamma)
    return out


def gamma_terms(composition: str, alpha: float, u: Tensor, c: Tensor, pu: Tensor,
                p: Tensor) -> tuple[Tensor, Tensor]:
    """(b, d) with the composed eps = b + gamma d (in eps; exactly linear in gamma)."""
    base = c if alpha == 1 else classifier_free(u, c, alpha)
    if composition == "cfg-mix":
        return base, (p if alpha == 1 else classifier_free(pu, p, alpha)) - base
    return base, alpha * (p if composition == "paper" else p - c)


def x0_errors(cfg: DiagnoseConfig, x: Tensor, logsnr: Tensor, eps_hat: Tensor, x0: Tensor) -> dict[str, Tensor]:
    """Summed squared x0 errors under each handling of X0_HANDLING."""
    raw = x0_from_eps(x, eps_hat, logsnr)
    handled = {"raw": raw, "clip": raw.clamp(-cfg.clip_x0, cfg.clip_x0),
               "dynamic": threshold_x0(raw, cfg.dynamic_threshold)}
    return {k: (v - x0).double().square().sum() for k, v in handled.items()}


def load_clips(cfg: DiagnoseConfig, spec) -> tuple[Tensor, list[str], dict[str, Tensor]]:
    """The first --num clips [N, C, F, H, W] of the held-out folder, their captions and pixel conditions."""
    root = Path(cfg.data)
    folder = root / "test" if (root / "test").is_dir() else root
    data = VideoFolderDataset(folder, frames=spec.frames, size=(spec.height, spec.width), random_crop=False)
    n = min(cfg.num, len(data))
    video = torch.stack([data[i]["video"] for i in range(n)])
    pixels = {"first_frame": video[:, :, 0]} if cfg.condition == "first_frame" else \
        {"edges": sobel_x(video)} if cfg.condition == "edges" else {}
    return video, [data.captions[i] for i in range(n)], pixels


class Totals:
    """Sums over clips, per level: squared errors per (prediction, measure), and the gamma* inner products."""

    def __init__(self, levels: int):
        self.sums = defaultdict(lambda: [0.0] * levels)
        self.elements = [0] * levels

    def add(self, key: tuple, level: int, value: Tensor) -> None:
        self.sums[key][level] += float(value)


@torch.no_grad()
def measure(cfg: DiagnoseConfig, small, prior, conds, video: Tensor, device: torch.device) -> Totals:
    """Every sum the report needs, over all clips and levels (`small` and `prior`: ScoreModels)."""
    totals = Totals(len(cfg.logsnrs))
    batches = [slice(i, i + cfg.batch_size) for i in range(0, len(video), cfg.batch_size)]
    noise = [torch.randn(video.shape, generator=torch.Generator().manual_seed(cfg.seed * 1000 + j))
             for j in range(len(cfg.logsnrs))]  # per level, whatever the batch size
    bar = tqdm(total=len(batches) * len(cfg.logsnrs), desc="diagnose")
    for part in batches:
        x0 = video[part].to(device)
        cond_s, cond_p = (c.map(lambda v: v[part]).to(device) for c in conds)
        for j, level in enumerate(cfg.logsnrs):
            eps = noise[j][part].to(device)
            logsnr = torch.full((len(x0),), level, dtype=torch.float64)
            x = diffuse(x0, eps, logsnr.to(device, torch.float32))
            c, u = (e.float() for e in cond_uncond(small, x, logsnr, cond_s))
            p, pu = (e.float() for e in cond_uncond(prior, x, logsnr, cond_p))
            logsnr32 = logsnr.to(device, torch.float32)
            for name, eps_hat in predictions(cfg, x, logsnr32, u, c, pu, p).items():
                totals.add((name, "eps"), j, (eps_hat - eps).double().square().sum())
                for handling, value in x0_errors(cfg, x, logsnr32, eps_hat, x0).items():
                    totals.add((name, "x0 " + handling), j, value)
            for composition in cfg.compositions:
                for alpha in cfg.guidance:
                    b, d = gamma_terms(composition, alpha, u, c, pu, p)
                    totals.add(("gamma*", composition, alpha, "rd"), j, ((eps - b).double() * d).sum())
                    totals.add(("gamma*", composition, alpha, "dd"), j, d.double().square().sum())
                    totals.add(("gamma*", composition, alpha, "rr"), j, (eps - b).double().square().sum())
            totals.elements[j] += x0.numel()
            bar.update()
    bar.close()
    return totals


def report(cfg: DiagnoseConfig, totals: Totals) -> dict:
    """Means per element from the sums; gamma* = <r, d> / <d, d> and the eps MSE there, (<r, r> - <r, d>^2 / <d, d>)
    / n."""
    n = totals.elements
    names = list(dict.fromkeys(k[0] for k in totals.sums if k[0] != "gamma*"))
    measures = ["eps"] + [f"x0 {h}" for h in X0_HANDLING]
    methods = {name: {m: [s / c for s, c in zip(totals.sums[(name, m)], n)] for m in measures} for name in names}
    best = {}
    for composition in cfg.compositions:
        for alpha in cfg.guidance:
            rd, dd, rr = (totals.sums[("gamma*", composition, alpha, k)] for k in ("rd", "dd", "rr"))
            gamma = [a / b if b > 0 else 0.0 for a, b in zip(rd, dd)]
            best[f"{composition} a{alpha:g}"] = {
                "gamma": gamma,
                "eps_mse_at_gamma": [(r - (a * a / b if b > 0 else 0.0)) / c for r, a, b, c in zip(rr, rd, dd, n)],
                "eps_mse_at_0": [r / c for r, c in zip(rr, n)]}
    return {"config": asdict(cfg), "logsnrs": list(cfg.logsnrs), "methods": methods, "best_gamma": best}


def markdown(results: dict) -> str:
    levels = results["logsnrs"]
    header = ["prediction", *(f"{v:g}" for v in levels)]
    parts = []
    titles = {"eps": "eps MSE", "x0 raw": "x0 MSE, raw", "x0 clip": "x0 MSE, clipped to the data range",
              "x0 dynamic": "x0 MSE, dynamic thresholding"}
    for measure, title in titles.items():
        rows = [[name, *(f"{v:.4g}" for v in m[measure])] for name, m in results["methods"].items()]
        parts.append(f"**{title}** by log-SNR\n\n" + table_markdown(header, rows))
    rows = []
    for key, b in results["best_gamma"].items():
        rows.append([f"{key}: gamma*", *(f"{v:.3g}" for v in b["gamma"])])
        rows.append([f"{key}: eps MSE at gamma* / at 0", *(f"{a / z:.3f}" if z > 0 else "-"
                                                           for a, z in zip(b["eps_mse_at_gamma"], b["eps_mse_at_0"]))])
    parts.append("**The gamma minimising the composed eps MSE** (closed form; for cfg-mix, its weight w) by "
                 "log-SNR, and how much of the error it removes\n\n" + table_markdown(header, rows))
    return "\n\n".join(parts) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels, methods = results["logsnrs"], results["methods"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), dpi=110)
    singles = [n for n in methods if n.startswith(("adapter", "prior"))]
    for ax, measure in zip(axes[:2], ("eps", "x0 clip")):
        for name in singles:
            ax.plot(levels, methods[name][measure], marker="o", label=name)
        for key in results["best_gamma"]:  # each composition at its median gamma, as a reference line
            gammas = results["config"]["gammas"]
            name = composed_name(key.split(" a")[0], "eps", float(key.split(" a")[1]), gammas[len(gammas) // 2])
            ax.plot(levels, methods[name][measure], linestyle="--", label=name)
        ax.set(xlabel="log-SNR", ylabel=f"{measure} MSE", yscale="log", title=f"held-out {measure} MSE")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    for key, b in results["best_gamma"].items():
        axes[2].plot(levels, b["gamma"], marker="o", label=key)
    axes[2].axhline(0, color="k", linewidth=0.5)
    axes[2].set(xlabel="log-SNR", ylabel="gamma*", title="MSE-optimal prior strength")
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_diagnose(cfg: DiagnoseConfig) -> dict:
    cfg.validate()
    device = resolve_device(cfg.device)
    placement = (device, resolve_dtype(cfg.dtype, device))
    models = load_models({"small": cfg.adapter, "prior": cfg.prior}, {"small": placement, "prior": placement},
                         token_file=cfg.prior_token_file)
    spec = models["small"].spec
    if spec.space != "pixels":
        raise ValueError(f"diagnose noises pixel clips; these models work in {spec.space}")
    video, captions, pixels = load_clips(cfg, spec)
    routes = route_conditions(models, {"text", *pixels}, partial=False)
    conds = model_conds(models, captions, pixels, routes, torch.device("cpu"))
    out = Path(cfg.out)
    make_out_dir(out)
    results = report(cfg, measure(cfg, models["small"], models["prior"], conds, video, device))
    results["clips"] = len(video)
    atomic_write_text(out / "diagnose.json", json.dumps(results, indent=1))
    atomic_write_text(out / "diagnose.md", markdown(results))
    plot(results, out / "diagnose.png")
    print(markdown(results))
    for name in ("diagnose.json", "diagnose.md", "diagnose.png"):
        print(f"wrote {out / name}")
    return results
