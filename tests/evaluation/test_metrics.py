"""Metrics: exact Gaussian Fréchet distances, KID, IS, and the offline detector loaders on random TorchScript models."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest
import scipy.linalg
import torch
from einops import rearrange
from torch import Tensor

from video_adapter.evaluation.metrics import (
    I3D,
    INCEPTION,
    FrechetReference,
    feature_stats,
    find_weights,
    frechet_distance,
    i3d_features,
    inception_features,
    inception_probs,
    inception_score,
    kid,
    load_i3d,
    load_inception,
    video_frames,
)

from helpers import InceptionStandIn, random_i3d


def random_spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def closed_form_commuting(mu1, a, mu2, b) -> float:
    """FD for covariances with a shared eigenbasis and eigenvalues a, b."""
    return float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())


# -- Fréchet distance

def test_frechet_distance_closed_form_for_diagonal_and_commuting_covariances():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = closed_form_commuting(mu1, a, mu2, b)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_non_commuting_covariances_matches_scipy_sqrtm():
    d = 8
    s1, s2 = random_spd(d, 1), random_spd(d, 2)
    assert np.abs(s1 @ s2 - s2 @ s1).max() > 0.1  # genuinely non-commuting
    mu1, mu2 = np.arange(d) / d, np.zeros(d)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-6)


# The second case has singular covariances (d > N, as 2048-d features of few samples): the square root turns the
# ~1e-16 rounding eigenvalues of its null space into ~1e-7 ones, so the bound there is relative 1e-6 (scipy's sqrtm
# does no better).
@pytest.mark.parametrize("n, d, rel", [(500, 16, 1e-12), (10, 64, 1e-6)])
def test_frechet_distance_of_the_same_features_is_zero(n, d, rel):
    x = np.random.default_rng(3).normal(size=(n, d)) * np.linspace(0.5, 2, d)
    mu, sigma = feature_stats(x)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < rel * np.trace(sigma)


def test_frechet_distance_of_samples_approaches_the_gaussians_closed_form():
    """N = 100000 draws of two 4-d Gaussians with commuting covariances: the estimate's standard error is ~0.01."""
    rng = np.random.default_rng(4)
    mu1, mu2 = np.array([0.0, 1.0, -0.5, 0.2]), np.array([0.5, 0.0, 0.5, 0.2])
    a, b = np.array([1.0, 0.5, 2.0, 0.3]), np.array([0.4, 1.5, 2.0, 1.0])
    x1 = mu1 + rng.normal(size=(100_000, 4)) * np.sqrt(a)
    x2 = mu2 + rng.normal(size=(100_000, 4)) * np.sqrt(b)
    fd = frechet_distance(*feature_stats(x1), *feature_stats(x2))
    assert fd == pytest.approx(closed_form_commuting(mu1, a, mu2, b), abs=0.05)


@pytest.mark.parametrize("n", [5, 40, 120])
def test_frechet_reference_equals_the_direct_formula(n):
    """The n x n Gram path (n < d) and the d x d path (n >= d) both equal frechet_distance (to 1e-6: with n <= d
    the direct form takes square roots of roundoff-sized eigenvalues in the covariance's null space)."""
    rng = np.random.default_rng(3)
    real = rng.normal(size=(200, 60)) @ rng.normal(size=(60, 60))
    fake = rng.normal(size=(n, 60)) @ rng.normal(size=(60, 60)) + 0.5
    reference = FrechetReference(real)
    direct = frechet_distance(*feature_stats(real), *feature_stats(fake))
    assert reference.distance(fake) == pytest.approx(direct, rel=1e-6)
    with pytest.raises(ValueError, match="dimension 59"):
        reference.distance(fake[:, :59])


def test_feature_stats_conventions_and_errors():
    x = np.random.default_rng(5).normal(size=(50, 7)).astype(np.float32)
    mu, sigma = feature_stats(x)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-14)
    # ddof=0 is StyleGAN's FeatureStats.get_mean_cov: raw second moment / N - mean mean^T
    x64 = x.astype(np.float64)
    _, sigma0 = feature_stats(torch.from_numpy(x), ddof=0)
    np.testing.assert_allclose(sigma0, x64.T @ x64 / 50 - np.outer(mu, mu), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_stats(x[:1])
    with pytest.raises(ValueError, match=r"2-D array \[num_samples, feature_dim\]"):
        feature_stats(x[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        feature_stats(np.full((3, 2), np.nan))


def test_frechet_distance_rejects_mismatched_shapes():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"mu2 must be \[d\] and sigma2 \[d, d\]"):
        frechet_distance(mu, sigma, mu, np.eye(4))


# -- KID

def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out pair by pair."""
    m, d = x.shape

    def k(u, v):
        return (u @ v / d + 1) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return within - 2 * cross


def test_kid_is_the_unbiased_mmd_when_subsets_cover_both_sets():
    """With subset_size >= N every subset is a permutation of the whole set, and MMD is permutation invariant."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.3, 1.2, size=(12, 5))
    mean, std = kid(x, y, num_subsets=3, subset_size=1000)
    assert mean == pytest.approx(brute_force_mmd2(x, y), rel=1e-10)
    assert std < 1e-12


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted_ones():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    same, same_std = kid(a, b, num_subsets=20, subset_size=500, seed=1)
    shifted, _ = kid(a, b + 0.5, num_subsets=20, subset_size=500, seed=1)
    # the subset estimates scatter by ~0.005 around 0 (zero is the estimator's mean); a 0.5 shift gives ~1
    assert abs(same) < 0.01 and same_std < 0.02
    assert shifted > 0.5
    assert kid(a, b, num_subsets=5, subset_size=100, seed=2) == kid(a, b, num_subsets=5, subset_size=100, seed=2)
    assert kid(a, b, num_subsets=5, subset_size=100, seed=2) != kid(a, b, num_subsets=5, subset_size=100, seed=3)


def test_kid_errors():
    with pytest.raises(ValueError, match="different feature dimensions"):
        kid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        kid(np.zeros((1, 3)), np.zeros((5, 3)))


# -- Inception Score

def test_inception_score_exact_values():
    assert inception_score(np.full((40, 7), 1 / 7), splits=4) == pytest.approx((1.0, 0.0), abs=1e-12)
    k, splits = 5, 3
    one_hot = np.tile(np.eye(10)[:k], (splits, 1))  # each split holds each of k classes once
    assert inception_score(one_hot, splits=splits) == pytest.approx((k, 0.0), abs=1e-12)
    # two splits scoring 1 and k: mean and population std over splits, as StyleGAN
    mixed = np.concatenate([np.full((k, 10), 0.1), np.eye(10)[:k]])
    assert inception_score(mixed, splits=2) == pytest.approx(((1 + k) / 2, (k - 1) / 2), rel=1e-12)
    p = 0.8
    binary = np.array([[p, 1 - p], [1 - p, p]])
    expected = np.exp(p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p)))
    assert inception_score(binary, splits=1)[0] == pytest.approx(expected, rel=1e-12)


def test_inception_score_errors():
    with pytest.raises(ValueError, match="class probabilities"):
        inception_score(np.ones((10, 3)), splits=2)
    with pytest.raises(ValueError, match="splits must be between 1 and the number of samples"):
        inception_score(np.full((4, 2), 0.5), splits=10)


# -- detectors: offline loading of random TorchScript stand-ins

@pytest.fixture
def offline(monkeypatch):
    """Any socket use fails, so a loader that tried to download would fail the test."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline metrics test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(OSError, match="offline"):
        socket.create_connection(("example.com", 80))


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch, tmp_path):
    """Neither the user's environment nor their real cache directory takes part."""
    monkeypatch.delenv(I3D.env_var, raising=False)
    monkeypatch.delenv(INCEPTION.env_var, raising=False)
    monkeypatch.setenv("VIDEO_ADAPTER_CACHE", str(tmp_path / "cache"))


# Half the channels of every layer: the full I3D topology at a quarter of the cost (~1 s per 2 x 16-frame batch).
I3D_WIDTH = 0.5


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / I3D.filename
    random_i3d(I3D_WIDTH).save(str(path))
    return path


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    torch.manual_seed(0)
    model = InceptionStandIn().eval()
    with torch.no_grad():
        model.output.bias.normal_(0, 3)  # so that dropping the bias visibly changes the probabilities
    path = tmp_path_factory.mktemp("inception") / INCEPTION.filename
    torch.jit.script(model).save(str(path))
    return path


def random_videos(b: int, f: int, seed: int = 0) -> Tensor:
    return torch.randint(0, 256, (b, f, 32, 32, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.slow
def test_i3d_features_offline_through_the_loader(offline, i3d_file):
    detector = load_i3d(i3d_file)
    assert detector.sha256 == hashlib.sha256(i3d_file.read_bytes()).hexdigest()
    assert detector.record() == {"detector": "i3d", "file": "i3d_torchscript.pt", "path": str(i3d_file),
                                 "sha256": detector.sha256}
    assert not detector.module.training
    videos = random_videos(2, 16)
    features = i3d_features(detector, videos, batch_size=1)
    assert features.shape == (2, 400) and features.dtype == np.float64
    # StyleGAN-V's call: uint8 [B, C, T, H, W] with rescale, resize and return_features
    with torch.no_grad():
        direct = detector.module(rearrange(videos, "b f h w c -> b c f h w").contiguous(), rescale=True, resize=True,
                                 return_features=True)
    np.testing.assert_allclose(features, direct.double().numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(features[0] - features[1]).max() > 1e-2  # the features depend on the video


def test_i3d_features_reject_bad_videos(i3d_file, inception_file):
    detector = load_i3d(i3d_file)
    with pytest.raises(ValueError, match="must be uint8"):
        i3d_features(detector, random_videos(1, 16).float())
    with pytest.raises(ValueError, match=r"looks like \[B, C, F, H, W\]"):
        i3d_features(detector, rearrange(random_videos(1, 16), "b f h w c -> b c f h w"))
    with pytest.raises(ValueError, match=r"\[B, F, H, W, 3\]"):
        i3d_features(detector, random_videos(1, 16)[..., :1])
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d_features(detector, random_videos(1, 8))
    with pytest.raises(ValueError, match="needs the i3d detector"):
        i3d_features(load_inception(inception_file), random_videos(1, 16))


def test_inception_features_and_probs_offline_the_stylegan2_ada_way(offline, inception_file):
    detector = load_inception(inception_file)
    assert detector.sha256 == hashlib.sha256(inception_file.read_bytes()).hexdigest()
    videos = random_videos(2, 3)
    frames = video_frames(videos)
    assert frames.shape == (6, 3, 32, 32) and torch.equal(frames[4], videos[1, 1].permute(2, 0, 1))
    features = inception_features(detector, frames, batch_size=4)
    probs = inception_probs(detector, frames, batch_size=4)
    assert features.shape == (6, 2048) and probs.shape == (6, 1008) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(features, detector.module(frames, return_features=True).double(), rtol=1e-5,
                                   atol=1e-6)
        no_bias = detector.module(frames, no_output_bias=True).double().numpy()
        with_bias = detector.module(frames).double().numpy()
    np.testing.assert_allclose(probs, no_bias, rtol=1e-5, atol=1e-9)
    assert np.abs(with_bias - no_bias).max() > 1e-3
    assert inception_score(probs, splits=2)[0] >= 1
    with pytest.raises(ValueError, match=r"uint8 \[N, 3, H, W\]"):
        inception_features(detector, videos)


# -- detectors: where the files come from

def test_lookup_order_explicit_path_then_env_var_then_cache_dir(monkeypatch, tmp_path):
    files = {}
    for where in ("explicit", "env", "cache"):
        (tmp_path / where).mkdir(exist_ok=True)
        files[where] = tmp_path / where / I3D.filename
        files[where].write_bytes(where.encode())
    monkeypatch.setenv("VIDEO_ADAPTER_CACHE", str(tmp_path / "cache"))
    assert find_weights("i3d") == files["cache"]
    monkeypatch.setenv(I3D.env_var, str(files["env"]))
    assert find_weights("i3d") == files["env"]
    assert find_weights("i3d", files["explicit"]) == files["explicit"]
    # a location that is given and wrong fails, rather than falling back to the next one
    monkeypatch.setenv(I3D.env_var, str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        find_weights("i3d")


@pytest.mark.parametrize("spec", [I3D, INCEPTION], ids=lambda s: s.kind)
def test_missing_weights_error_names_the_file_the_places_and_the_source(offline, tmp_path, spec):
    with pytest.raises(FileNotFoundError) as err:
        load_i3d() if spec is I3D else load_inception()
    message = str(err.value)
    for part in (spec.filename, spec.env_var, spec.source, str(tmp_path / "cache" / spec.filename),
                 "Nothing is downloaded"):
        assert part in message
    with pytest.raises(FileNotFoundError, match="from the path argument"):
        find_weights(spec.kind, tmp_path / "nowhere.pt")


def test_a_file_that_is_not_torchscript_is_refused(tmp_path):
    path = tmp_path / INCEPTION.filename
    path.write_bytes(b"\x80\x04not a zip archive")
    with pytest.raises(ValueError, match="is not a TorchScript archive"):
        load_inception(path)
    with pytest.raises(ValueError, match="unknown detector kind 'clip'"):
        find_weights("clip")


# -- paired bootstrap differences


def test_a_paired_difference_resolves_what_two_marginal_intervals_cannot():
    """Set B is set A moved a little further from the real features, sample by sample (as a composition moves an
    adapter's samples): the marginal intervals overlap, the paired interval of FD(B) - FD(A) lies above 0."""
    from video_adapter.evaluation.metrics.scores import frechet_with_ci

    rng = np.random.default_rng(0)
    real = FrechetReference(rng.normal(size=(400, 4)))
    a = rng.normal(size=(64, 4)) + 0.5
    b = a + 0.05
    va, vb = frechet_with_ci(real, a, 200, seed=3), frechet_with_ci(real, b, 200, seed=3)
    assert vb.value > va.value and vb.low < va.high  # the marginal intervals overlap
    d = vb.minus(va)
    assert d.value == pytest.approx(vb.value - va.value) and 0 < d.low <= d.value <= d.high
    np.testing.assert_allclose(d.draws, vb.draws - va.draws)
    assert d.high - d.low < 0.2 * (va.high - va.low)
    assert va.minus(va).as_dict() == {"value": 0.0, "ci95": [0.0, 0.0]}
    # other resamples (another seed) are not paired: the same sets then differ by resampling luck alone
    assert frechet_with_ci(real, a, 200, seed=4).minus(va).high - va.minus(va).high > 0


def test_a_paired_difference_needs_both_draws():
    from video_adapter.evaluation.metrics.scores import Value, mean_with_ci

    with_draws = mean_with_ci(np.arange(10.0), 50, 0)
    for bad in (Value(1.0, 0.5, 1.5), mean_with_ci(np.arange(10.0), 40, 0)):
        with pytest.raises(ValueError, match="same resamples"):
            with_draws.minus(bad)
