"""Distribution statistics on detector features: Fréchet distance (FID/FVD), KID and Inception Score.

Everything is numpy float64. Inputs may be numpy arrays or CPU tensors of any float dtype; they are converted
once, so a float32 detector output and its float64 copy give the same result.

The formulas follow StyleGAN2-ADA (NVlabs/stylegan2-ada-pytorch, metrics/frechet_inception_distance.py,
kernel_inception_distance.py, inception_score.py), which StyleGAN-V's FVD reuses; where this module differs
(the covariance normaliser, the matrix square root, 0 log 0) the function docstring says so and why.
"""

from __future__ import annotations

import numpy as np


def _features(x, name: str, columns: str = "feature_dim") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [num_samples, {columns}]; got shape {a.shape}. "
                         f"Flatten per-sample features first, e.g. x.reshape(len(x), -1).")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf; check the detector input (uint8 in [0, 255]) and output")
    return a


def _same_dim(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} have different feature dimensions ({a.shape[1]} vs {b.shape[1]}); "
                         f"compute both with the same detector and layer")


def feature_stats(features, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean [d] and covariance [d, d] of features [N, d], the covariance with normaliser N - ddof.

    The default ddof=1 is the unbiased estimate, `np.cov(features, rowvar=False)` as in pytorch-fid and TF-FVD.
    StyleGAN2-ADA and StyleGAN-V (metric_utils.FeatureStats.get_mean_cov) divide by N instead: pass ddof=0 to
    reproduce their numbers exactly. The two Fréchet distances differ by the factor (N-1)/N on the covariance
    terms, i.e. by less than 1/N relative (0.05% at the usual 2048 samples).
    """
    x = _features(features, "features")
    n = x.shape[0]
    if n - ddof < 1:
        raise ValueError(f"a covariance with normaliser N - {ddof} needs at least {ddof + 1} samples; got {n}. "
                         f"Pass more samples (FID/FVD are usually computed on 2048 or more).")
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (n - ddof)
    return mu, (sigma + sigma.T) / 2  # exactly symmetric, as eigh assumes


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    # Rounding leaves tiny negative eigenvalues on singular covariances (d > N is common for 2048-d features).
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _gaussian(mu, sigma, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"mu{which} must be [d] and sigma{which} [d, d]; got {mu.shape} and {sigma.shape}. "
                         f"Use feature_stats(features) to compute both.")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"mu{which} or sigma{which} contains NaN or inf")
    return mu, sigma


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), the quantity FID and FVD report:

        |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((sqrt(S1) S2 sqrt(S1))^(1/2)).

    StyleGAN and pytorch-fid take scipy.linalg.sqrtm(S1 @ S2) and drop its imaginary part. S1 S2 is not symmetric,
    so sqrtm runs a complex Schur decomposition that rounding (or singular covariances, d > N) turns into complex
    or inaccurate output. sqrt(S1) S2 sqrt(S1) is similar to S1 S2 (same eigenvalues) but symmetric positive
    semi-definite, so eigh gives real eigenvalues, its root's trace is the sum of their square roots, and roundoff
    negatives are clipped to 0. The value is the same wherever sqrtm is accurate.
    """
    mu1, sigma1 = _gaussian(mu1, sigma1, "1")
    mu2, sigma2 = _gaussian(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two Gaussians have different dimensions ({mu1.shape[0]} vs {mu2.shape[0]}); "
                         f"compute both with the same detector and layer")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


class FrechetReference:
    """The Fréchet distance from a fixed reference set to many others (bootstrap resamples, methods), fast.

    The reference's mean, covariance and sqrt(S1) are computed once. For a set of n features [n, d] with centred
    rows X and S2 = X^T X / (n - ddof), sqrt(S1) S2 sqrt(S1) = Y^T Y / (n - ddof) with Y = X sqrt(S1), whose nonzero
    eigenvalues are those of the n x n matrix Y Y^T / (n - ddof): an n^3 eigendecomposition instead of d^3 when
    n < d (128 generated videos against 2048-d Inception features). Equal to `frechet_distance` up to rounding.
    """

    def __init__(self, features, ddof: int = 1):
        self.ddof = ddof
        self.mu, self.sigma = feature_stats(features, ddof)
        self.root = _psd_sqrt(self.sigma)

    def distance(self, features) -> float:
        x = _features(features, "features")
        if x.shape[1] != self.mu.shape[0]:
            raise ValueError(f"features have dimension {x.shape[1]}, the reference {self.mu.shape[0]}; compute both "
                             "with the same detector and layer")
        n = x.shape[0]
        if n - self.ddof < 1:
            raise ValueError(f"a covariance with normaliser N - {self.ddof} needs at least {self.ddof + 1} samples")
        mu = x.mean(axis=0)
        y = (x - mu) @ self.root
        small = y @ y.T if n < x.shape[1] else y.T @ y
        eig = np.linalg.eigvalsh((small + small.T) / 2) / (n - self.ddof)
        tr_sigma2 = float(((x - mu) ** 2).sum()) / (n - self.ddof)
        diff = self.mu - mu
        return float(diff @ diff + np.trace(self.sigma) + tr_sigma2 - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples under k(a, b) = (a.b / d + 1)^3, StyleGAN2-ADA's per-subset term."""
    m, d = x.shape
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / m**2)


def kid(features_a, features_b, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation over `num_subsets` random subsets.

    As StyleGAN2-ADA's metrics/kernel_inception_distance.py: each subset draws min(subset_size, N_a, N_b) rows
    without replacement from each set and scores the unbiased MMD^2 under the cubic polynomial kernel
    (x.y / d + 1)^3; KID is the mean. StyleGAN draws from numpy's unseeded global generator; here the draws come
    from `seed`, so a result is reproducible. The std (ddof 0) is that of the subset estimates, not a standard
    error of the mean.
    """
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    _same_dim(a, b, "features_a and features_b")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 samples; got sets of {a.shape[0]} and {b.shape[0]} "
                         f"with subset_size={subset_size}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be at least 1; got {num_subsets}")
    rng = np.random.default_rng(seed)
    scores = [_mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)],
                             b[rng.choice(b.shape[0], m, replace=False)]) for _ in range(num_subsets)]
    return float(np.mean(scores)), float(np.std(scores))


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x log y with 0 log 0 = 0, its limit."""
    return np.where(x > 0, x * np.log(np.where(x > 0, y, 1.0)), 0.0)


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))): mean and std (ddof 0) over `splits` consecutive splits.

    As StyleGAN2-ADA's metrics/inception_score.py, with p(y) the mean prediction within each split and split i the
    rows [i N // splits, (i + 1) N // splits). One difference: a probability of exactly 0 contributes 0 here
    (0 log 0 = 0) where StyleGAN's np.log gives NaN; wherever StyleGAN's score is finite the two agree.
    """
    p = _features(probs, "probs", "num_classes")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1, atol=1e-3):
        raise ValueError("probs must be class probabilities (non-negative rows summing to 1); the StyleGAN "
                         "Inception detector called with no_output_bias=True already returns softmax outputs")
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of samples ({n}); got {splits}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = (_xlogy(part, part) - _xlogy(part, marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
