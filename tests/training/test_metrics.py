"""FID and KID against independent computations and their defining properties, and the cache of
reference-image features (computed once per extractor and data, never reused across them)."""
import itertools

import numpy as np
import pytest

from training.metrics import (
    frechet_distance,
    kernel_inception_distance,
    reference_features,
    sample_metrics,
)


def _gaussian_features(rng, n, mean, scale):
    d = len(mean)
    mixing = np.eye(d) * scale + 0.3 * rng.standard_normal((d, d))
    return rng.standard_normal((n, d)) @ mixing.T + mean


def _fid_by_symmetric_root(a, b):
    """Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), with symmetric square roots from eigh: the same
    quantity as the implementation's sqrtm(S_a S_b), by another route."""
    def sqrt_psd(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = sqrt_psd(sa)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa) + np.trace(sb)
                 - 2 * np.trace(sqrt_psd(root @ sb @ root)))


def test_fid_equals_the_frechet_distance_of_the_fitted_gaussians():
    rng = np.random.default_rng(0)
    a = _gaussian_features(rng, 500, np.zeros(4), 1.0)
    b = _gaussian_features(rng, 400, np.array([0.5, -1.0, 0.0, 2.0]), 2.0)
    assert frechet_distance(a, b) == pytest.approx(_fid_by_symmetric_root(a, b), rel=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = np.array([1.0, 2.0, -2.0, 0.5])
    assert frechet_distance(a + shift, b + shift) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    # Moving one set by c moves its mean only: FID grows by |c|^2 plus the cross term 2 c.(mu_a - mu_b).
    delta = a.mean(0) - b.mean(0)
    assert frechet_distance(a + shift, b) == pytest.approx(frechet_distance(a, b) + shift @ shift + 2 * shift @ delta,
                                                           rel=1e-9)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, b[:, :3])


def test_fid_of_two_gaussians_approaches_the_closed_form():
    rng = np.random.default_rng(1)
    # N(0, I) against N(m, 4 I) in d = 3: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + 3.
    m = np.array([1.0, 0.0, -1.0])
    a = rng.standard_normal((40000, 3))
    b = 2.0 * rng.standard_normal((40000, 3)) + m
    assert frechet_distance(a, b) == pytest.approx(m @ m + 3.0, rel=0.02)


def _unbiased_mmd2(x, y):
    d = x.shape[1]

    def k(u, v):
        return (u @ v / d + 1) ** 3

    m = len(x)
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return within - 2 * cross


def test_kid_is_the_unbiased_polynomial_kernel_mmd_and_vanishes_for_equal_distributions():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.7
    # One subset of the whole sets is a permutation of each, which the estimate does not see.
    kid = kernel_inception_distance(a, b, rng=np.random.default_rng(0), num_subsets=1, subset_size=12)
    assert kid == pytest.approx(_unbiased_mmd2(a, b), rel=1e-9)
    same = [kernel_inception_distance(rng.standard_normal((300, 5)), rng.standard_normal((300, 5)),
                                      rng=rng, num_subsets=1) for _ in range(20)]
    apart = kernel_inception_distance(rng.standard_normal((300, 5)), rng.standard_normal((300, 5)) + 0.7, rng=rng)
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3  # unbiased: zero mean
    assert apart > 10 * np.std(same)


class CountingExtractor:
    """A FeatureExtractor whose features are per-image means and variances, counting its calls."""

    name = "counting"

    def __init__(self, fingerprint="v1"):
        self.fingerprint = fingerprint
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        flat = np.asarray(images).reshape(len(images), -1)
        return np.stack([flat.mean(1), flat.var(1), flat.max(1)], axis=1)


def _images(seed=0, n=6):
    return np.random.default_rng(seed).random((n, 4, 4, 1), dtype=np.float32)


def test_reference_features_are_computed_once_and_then_read_back(tmp_path):
    extractor, loads = CountingExtractor(), []
    description = {"dataset": "digits", "split": "test", "num_real": 6}

    def load():
        loads.append(1)
        return _images()

    first, path = reference_features(extractor, load, description, tmp_path)
    again, same_path = reference_features(extractor, load, description, tmp_path)
    assert path == same_path and path.parent == tmp_path and path.suffix == ".npz"
    assert extractor.calls == 1 and len(loads) == 1  # neither the images nor the features are recomputed
    np.testing.assert_array_equal(again, first)
    np.testing.assert_allclose(first, extractor(_images()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no partial file left behind


def test_reference_features_are_not_reused_for_other_data_or_weights(tmp_path):
    description = {"dataset": "digits", "split": "test", "num_real": 6}
    _, path = reference_features(CountingExtractor("v1"), _images, description, tmp_path)
    other_split = CountingExtractor("v1")
    _, split_path = reference_features(other_split, lambda: _images(1), {**description, "split": "train"}, tmp_path)
    other_weights = CountingExtractor("v2")
    _, weights_path = reference_features(other_weights, _images, description, tmp_path)
    assert other_split.calls == other_weights.calls == 1 and len({path, split_path, weights_path}) == 3


def test_unreadable_or_mismatched_cache_files_are_recomputed(tmp_path, caplog):
    description = {"dataset": "digits", "split": "test", "num_real": 6}
    expected, path = reference_features(CountingExtractor(), _images, description, tmp_path)
    path.write_bytes(b"truncated")
    extractor = CountingExtractor()
    features, _ = reference_features(extractor, _images, description, tmp_path)
    assert extractor.calls == 1 and "unreadable" in caplog.text
    np.testing.assert_array_equal(features, expected)
    np.savez(path, features=np.zeros((6, 3), np.float32), description=np.asarray("{}"))  # a colliding key
    extractor = CountingExtractor()
    features, _ = reference_features(extractor, _images, description, tmp_path)
    assert extractor.calls == 1 and "other data" in caplog.text
    np.testing.assert_array_equal(features, expected)
    with np.load(path) as stored:  # replaced by the right features
        np.testing.assert_array_equal(stored["features"], expected)


def test_without_a_cache_dir_nothing_is_written(tmp_path):
    extractor = CountingExtractor()
    for _ in range(2):
        _, path = reference_features(extractor, _images, {"split": "test"}, None)
    assert path is None and extractor.calls == 2 and not any(tmp_path.iterdir())


def test_sample_metrics_take_images_or_precomputed_reference_features():
    extractor = CountingExtractor()
    real, samples = _images(0, 40), _images(1, 40)
    from_images = sample_metrics(extractor, real, samples, rng=np.random.default_rng(0))
    from_features = sample_metrics(extractor, None, samples, real_features=extractor(real),
                                   rng=np.random.default_rng(0))
    assert from_images == from_features
    with pytest.raises(ValueError, match="exactly one of real images and real_features"):
        sample_metrics(extractor, real, samples, real_features=extractor(real), rng=np.random.default_rng(0))
