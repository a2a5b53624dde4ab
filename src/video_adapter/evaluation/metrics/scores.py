"""Scoring sets of generated videos against real ones, with bootstrap confidence intervals.

A `Scorer` holds the feature networks a run asked for and the real set's features, computed once; `score` turns
generated videos into every metric with a 95% interval. Each interval resamples the generated set with replacement
(the real set stays fixed, as the reference distribution), so it is the spread due to which N samples were drawn.

  metric      network                                             comparable with published numbers
  fvd         StyleGAN-V's I3D (detectors.I3D), 400-d              yes, at 16 frames and the same N
  fid, kid    StyleGAN2-ADA's Inception over frames, 2048-d       yes for the protocol; tiny frames upscaled
  is          the same Inception's class probabilities            yes for the protocol
  fvd-va      our encoder trained on the broad corpus (video_net)  no: our own features ("FVD-VA")
  accuracy    our per-domain caption classifier (video_net)       no: our own task measure
  style       our domain classifier (video_net "domain"): the      no: our own measure (style retention, realness)
              share of videos put in class `style_label`
  edge-fidelity  none: each output's Sobel x-gradient correlated   no
              with its input edges (pixels.edge_fidelity), mean
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from ...data.video_io import to_uint8
from .detectors import Detector, i3d_features, inception_features, inception_probs, load_detector, video_frames
from .stats import FrechetReference, inception_score, kid

NETWORK = {"fvd": "i3d", "fid": "inception", "kid": "inception", "is": "inception", "fvd-va": "encoder",
           "accuracy": "classifier", "style": "style", "edge-fidelity": ""}  # the network each metric runs on ("": none)
METRICS = tuple(NETWORK)
FEATURES = ("i3d", "inception", "encoder")  # networks whose features are compared with the real set's


@dataclass(frozen=True)
class Value:
    """A metric's point estimate and its bootstrap 95% interval; `draws` are the statistic over each resample."""
    value: float
    low: float
    high: float
    draws: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci95": [self.low, self.high]}

    def minus(self, other: Value) -> Value:
        """self - other with a paired bootstrap interval. Valid when both were scored over the same resamples of
        paired samples, as `Scorer.score` does for every method (one seed per metric; sample i of every method has
        the same condition and seed): the draws then share the resample's luck, and their difference does not.
        Much narrower than the two marginal intervals, so it tests "did the composition move the metric"."""
        if self.draws is None or other.draws is None or len(self.draws) != len(other.draws):
            raise ValueError("a paired difference needs both values' bootstrap draws, over the same resamples "
                             "(the same --num and --bootstrap)")
        diff = self.draws - other.draws
        low, high = np.percentile(diff, [2.5, 97.5])
        return Value(self.value - other.value, float(low), float(high), diff)


def bootstrap(statistic, n: int, rounds: int, seed: int) -> tuple[float, float, np.ndarray | None]:
    """2.5th and 97.5th percentiles of `statistic(indices)` over `rounds` resamples of range(n) with replacement,
    and the `rounds` values themselves (for `Value.minus`)."""
    if rounds < 2:
        return float("nan"), float("nan"), None
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(rounds)], dtype=np.float64)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high), values


def frechet_with_ci(real: FrechetReference, fake: np.ndarray, rounds: int, seed: int) -> Value:
    # Resampling with replacement repeats rows, which shrinks the covariance: the interval sits above the point
    # estimate (FD's small-sample bias), so read it as the spread over draws, not as a centred error bar.
    fd = lambda idx: real.distance(fake[idx])
    return Value(fd(np.arange(len(fake))), *bootstrap(fd, len(fake), rounds, seed))


@dataclass
class Scorer:
    """The metrics `names` of generated videos against `real` videos [N, C, F, H, W] in [-1, 1].

    `networks` maps "i3d" / "inception" to TorchScript detector paths ("" = environment variable, then cache dir)
    and "encoder" / "classifier" / "style" to our video_net directories; a metric whose network is missing is an
    error here, before anything is generated, never a silently skipped column. "style" scores the share of videos
    the domain classifier puts in class `style_label`; "edge-fidelity" needs the input edges at `score`.
    """
    names: tuple[str, ...]
    real: Tensor
    networks: dict[str, str]
    device: str = "cpu"
    batch_size: int = 32
    bootstrap_rounds: int = 200
    seed: int = 0
    style_label: str = ""
    _real: dict[str, np.ndarray] = field(default_factory=dict, init=False)
    _nets: dict[str, object] = field(default_factory=dict, init=False)
    _reference: dict[str, FrechetReference] = field(default_factory=dict, init=False)

    def __post_init__(self):
        if unknown := sorted(set(self.names) - set(METRICS)):
            raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
        from .video_net import load_video_net

        for net in sorted({NETWORK[m] for m in self.names} - {""}):
            path = self.networks.get(net, "")
            if net in ("i3d", "inception"):
                self._nets[net] = load_detector(net, path or None, self.device)
            elif not path:
                flag, metric = {"encoder": ("--encoder", "fvd-va"), "classifier": ("--classifier", "accuracy"),
                                "style": ("--style-classifier", "style")}[net]
                raise ValueError(f"metric {metric} needs {flag} DIR (a video_net trained with `video-adapter "
                                 f"train-video-net`), or drop it from --metrics")
            else:
                self._nets[net] = load_video_net(path, device=self.device)
        if "style" in self.names:
            from .style import check_class

            check_class(self._nets["style"], self.style_label)  # a wrong net or label fails before any sampling
        self._real = {key: self._features(key, self.real) for key in self._feature_keys()}
        self._reference = {key: FrechetReference(f) for key, f in self._real.items()}

    def _feature_keys(self) -> list[str]:
        return sorted({NETWORK[m] for m in self.names if m != "is" and NETWORK[m] in FEATURES})

    def _features(self, key: str, videos: Tensor) -> np.ndarray:
        from .video_net import video_net_features

        if key == "encoder":
            return video_net_features(self._nets["encoder"], videos, self.batch_size)
        uint8 = to_uint8(videos)
        if key == "i3d":
            return i3d_features(self._nets["i3d"], uint8, self.batch_size)
        return inception_features(self._nets["inception"], video_frames(uint8), self.batch_size)

    def records(self) -> dict[str, dict]:
        """Which file produced each metric: detectors' path and sha256, our networks' directories."""
        return {name: net.record() if isinstance(net, Detector) else {"path": self.networks[name]}
                for name, net in self._nets.items()}

    def score(self, videos: Tensor, captions: list[str], edges: Tensor | None = None) -> dict[str, Value]:
        """Every metric of `videos` [N, C, F, H, W] (generated for `captions`, and for `edges` [N, C, F, H, W], the
        input edges that edge-fidelity compares with) against the real set."""
        from .pixels import edge_fidelity
        from .style import class_hits
        from .video_net import caption_predictions

        feats = {key: self._features(key, videos) for key in self._feature_keys()}
        out = {}
        for i, name in enumerate(self.names):
            seed = self.seed + 7919 * i  # each metric its own resamples, the same for every method
            if name in ("fvd", "fid", "fvd-va"):
                key = NETWORK[name]
                out[name] = frechet_with_ci(self._reference[key], feats[key], self.bootstrap_rounds, seed)
            elif name == "kid":
                real, fake = self._real["inception"], feats["inception"]
                # 10 subsets per bootstrap round: the interval is dominated by the resample, not the subsets
                stat = lambda idx: kid(real, fake[idx], num_subsets=10, seed=seed)[0]
                out[name] = Value(kid(real, fake, seed=seed)[0], *bootstrap(stat, len(fake), self.bootstrap_rounds,
                                                                            seed))
            elif name == "is":
                probs = inception_probs(self._nets["inception"], video_frames(to_uint8(videos)), self.batch_size)
                per_video = probs.reshape(len(videos), -1, probs.shape[-1])  # resample videos, not frames
                stat = lambda idx: inception_score(per_video[idx].reshape(-1, probs.shape[-1]), splits=1)[0]
                out[name] = Value(stat(np.arange(len(videos))), *bootstrap(stat, len(videos),
                                                                           self.bootstrap_rounds, seed))
            else:
                if name == "accuracy":
                    per_video = caption_predictions(self._nets["classifier"], videos, captions, self.batch_size)
                elif name == "style":
                    per_video = class_hits(self._nets["style"], videos, self.style_label, self.batch_size)
                elif edges is None:
                    raise ValueError("edge-fidelity needs the input edges: run with --condition edges")
                else:
                    per_video = edge_fidelity(videos, edges)
                out[name] = mean_with_ci(per_video, self.bootstrap_rounds, seed)
        return out


def mean_with_ci(per_video: np.ndarray, rounds: int, seed: int) -> Value:
    """The mean of a per-video measure with its bootstrap interval over the videos."""
    per_video = np.asarray(per_video, dtype=np.float64)
    stat = lambda idx: float(per_video[idx].mean())
    return Value(stat(np.arange(len(per_video))), *bootstrap(stat, len(per_video), rounds, seed))


def noised(videos: Tensor, std: float, generator) -> Tensor:
    """Videos in [-1, 1] plus Gaussian pixel noise of standard deviation `std` from `generator`, clamped to [-1, 1]:
    how far a metric moves for noise alone."""
    import torch

    noise = torch.randn(videos.shape, generator=generator, dtype=videos.dtype)
    return (videos + std * noise.to(videos.device)).clamp(-1, 1)


def feature_separation(features, a: Tensor, b: Tensor, seed: int = 0) -> dict[str, float]:
    """Does a feature network see what FVD must? The Fréchet distance from real set `a` to another real set `b` (the
    sampling floor at this N) and to `b` shuffled in time, with Gaussian noise of 0.3, and frozen on its first frame.

    `features` maps videos [N, C, F, H, W] in [-1, 1] to [N, d] (e.g. a partial of video_net_features)."""
    import torch

    from .stats import feature_stats, frechet_distance

    gen = torch.Generator().manual_seed(seed)
    variants = {"same distribution": b, "shuffled in time": b[:, :, torch.randperm(b.shape[2], generator=gen)],
                "noise 0.3": noised(b, 0.3, gen),
                "frozen on the first frame": b[:, :, :1].expand_as(b)}
    ref = feature_stats(features(a))
    return {name: frechet_distance(*ref, *feature_stats(features(v))) for name, v in variants.items()}
