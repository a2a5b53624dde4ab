"""Held-out loss of prior checkpoints, side by side: whether a retrained prior is better than the shipped one.

    python scripts/prior_heldout.py --models checkpoints/prior runs/prior/checkpoint \
        --bullet-test data/broad-bullet/test --num 256 --out heldout.json

Every model sees the same clips, noise levels and noise (heldout.heldout_loss), under each condition set it takes
(text alone, with the first frame, with the edges), so the differences are the weights'. The clips are held out from
training: the test split of a `make-data broad-bullet` set and procedural clips from stream positions far beyond any
a run reaches. The first model is the reference every other one is compared with.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm


def held_out_sources(bullet_test: Path | None, num: int, size, frames) -> dict[str, list[dict]]:
    from video_adapter.data.dataset import VideoFolderDataset
    from video_adapter.data.datagen.stream import ClipStream

    sources = {"broad-procedural": list(itertools.islice(ClipStream("broad-procedural", 0, size, frames,
                                                                    start=2**41), num))}
    if bullet_test:
        bullet = VideoFolderDataset(bullet_test, frames=frames, size=size, random_crop=False)
        sources["broad-bullet"] = [bullet[i] for i in range(min(num, len(bullet)))]
    return sources


def score(model, text_encoder, clips: list[dict], logsnrs, seed: int, batch: int) -> dict[str, float]:
    """Mean held-out MSE per condition set, over `logsnrs` and clips."""
    from video_adapter.training.preview import condition_sets
    from video_adapter.maths.conditioning import make_cond
    from video_adapter.evaluation.heldout import heldout_loss

    device = next(model.parameters()).device
    totals = dict.fromkeys(condition_sets(model.cfg), 0.0)
    for start in tqdm(range(0, len(clips), batch), desc="batches", leave=False):
        part = clips[start:start + batch]
        video = torch.stack([torch.as_tensor(c["video"]) for c in part]).to(device)
        cond = make_cond(video, text_encoder.encode([c["caption"] for c in part], device=device), model.cfg)
        for name, flags in condition_sets(model.cfg).items():
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                losses = heldout_loss(model, video, cond.with_flags(**flags), logsnrs, seed + start,
                                      model.cfg.prediction)
            totals[name] += float(losses.mean()) * len(part)
    return {name: total / len(clips) for name, total in totals.items()}


def main() -> None:
    from video_adapter.common.files import atomic_write_text
    from video_adapter.models.checkpoint import load_model
    from video_adapter.maths.schedule import logsnr_cosine
    from video_adapter.models.text import load_text_encoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, help="model directories; the first is the reference")
    p.add_argument("--bullet-test", type=Path, help="test split of `make-data broad-bullet` (optional)")
    p.add_argument("--num", type=int, default=256, help="clips per source")
    p.add_argument("--levels", type=int, default=16, help="noise levels, evenly spaced in cosine time")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args()
    if len({Path(m).resolve() for m in args.models}) != len(args.models):
        p.error("--models names a directory twice: the figures are keyed by directory, so list each once")
    # All loaded before any is scored, so a missing or mismatched model stops the run at once, not after an hour.
    models = {path: load_model(path) for path in args.models}
    shapes = {path: (m.cfg.frames, m.cfg.height, m.cfg.width) for path, (m, _) in models.items()}
    if len(set(shapes.values())) > 1:
        p.error(f"the models take different videos (frames, height, width): {shapes}; compare models of one size")
    frames, height, width = shapes[args.models[0]]
    sources = held_out_sources(args.bullet_test, args.num, (height, width), frames)
    # midpoints of equal bins of t: the levels that training samples uniformly
    logsnrs = logsnr_cosine((torch.arange(args.levels, dtype=torch.float64) + 0.5) / args.levels).float()
    results, encoders = {}, {}
    for path, (model, config) in models.items():
        model = model.float().to(args.device).eval()
        spec = config["text_encoder"]
        if spec not in encoders:
            encoders[spec] = load_text_encoder(spec, device=args.device, cache=True)
        results[path] = {name: score(model, encoders[spec], clips, logsnrs, args.seed, args.batch)
                         for name, clips in tqdm(sources.items(), desc=Path(path).name)}
        model.cpu()
    reference = results[args.models[0]]
    print(f"| model | source | condition | held-out MSE | x {args.models[0]} |\n|---|---|---|---:|---:|")
    for path, per_source in results.items():
        for source, per_cond in per_source.items():
            for cond, value in per_cond.items():
                print(f"| {path} | {source} | {cond} | {value:.5f} | {value / reference[source][cond]:.3f} |")
    if args.out:
        atomic_write_text(args.out, json.dumps({"levels": logsnrs.tolist(), "num": args.num, "seed": args.seed,
                                                "results": results}, indent=1))


if __name__ == "__main__":
    main()
