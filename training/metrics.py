"""Sample-quality metrics in a feature space, and the cache of the reference images' features.

FID: Heusel et al. 2017, eq. 2 (Frechet distance of Gaussians fitted to features).
KID: Binkowski et al. 2018, unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets.
IS: Salimans et al. 2016, exp E_x KL(p(y|x) || p(y)), mean and spread over splits.

Pure numpy/scipy on features `[N, D]`; the feature spaces are the `FeatureExtractor`s of
`training.digits_classifier` and `training.inception`. Imports nothing of the training layer, so
any module may use it; the evaluation protocol that draws samples and reads reference images is
`training.evaluate`.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zipfile
from collections.abc import Callable
from typing import Protocol

import jax
import numpy as np
import scipy.linalg
import scipy.special
from absl import logging


class FeatureExtractor(Protocol):
    """Maps images `[B, H, W, C]` with values in [0, 1] to features `[B, D]` (numpy).

    The digits classifier (`training.digits_classifier`) implements it for 8x8 digits, the FID
    Inception-v3 loaded from a user's local weights file (`training.inception`) for photos. An
    extractor that also has `features_and_logits(images) -> (features, logits)` gets the
    Inception Score of its classifier reported too. `fingerprint` identifies the weights (and
    any setting that changes the features), so cached reference features are never reused
    across extractors.
    """

    name: str
    fingerprint: str

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets `[N, D]`: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [N, D] with the same D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product: regularise as in the reference FID code
        offset = np.eye(a.shape[1]) * 1e-6
        covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray, *, rng: np.random.Generator,
                              num_subsets: int = 10, subset_size: int = 1000) -> float:
    """KID: mean over subsets of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3."""
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2.0 * kxy.mean())
    return float(np.mean(values))


def inception_score(logits: np.ndarray, *, num_splits: int = 10) -> tuple[float, float]:
    """IS of class logits `[N, K]`: mean and standard deviation over `num_splits` equal splits of
    exp(mean_x KL(p(y|x) || p(y))), p(y) the split's mean prediction (Salimans et al. 2016)."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or len(logits) < num_splits:
        raise ValueError(f"need logits [N, K] with N >= num_splits={num_splits}, got {logits.shape}")
    log_p = scipy.special.log_softmax(logits, axis=1)
    scores = []
    for part in np.array_split(log_p, num_splits):
        log_marginal = scipy.special.logsumexp(part, axis=0) - np.log(len(part))
        kl = np.sum(np.exp(part) * (part - log_marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def fingerprint_of(*parts) -> str:
    """A short hex digest of strings and array pytrees (shapes, dtypes and bytes of every leaf)."""
    digest = hashlib.sha256()
    for part in parts:
        for leaf in jax.tree.leaves(part):
            array = np.asarray(leaf)
            digest.update(f"{array.shape}{array.dtype}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:20]


def reference_features(extractor: FeatureExtractor, load_images: Callable[[], np.ndarray], description: dict,
                       cache_dir: str | pathlib.Path | None) -> tuple[np.ndarray, pathlib.Path | None]:
    """Features of the reference images, computed once per (extractor, data) and then read back.

    `description` names the images (data set, split, count, size, ...); with the extractor's
    name and fingerprint it keys the cache file `<cache_dir>/<digest>.npz`, which holds the
    features and the description (checked on reading). `load_images()` gives `[N, H, W, C]` in
    [0, 1] and is called only on a miss. An unreadable or mismatched file is recomputed and
    replaced; the file is written atomically. Returns the features and the cache file (or None).
    """
    key = json.dumps({"extractor": extractor.name, "fingerprint": extractor.fingerprint, **description},
                     sort_keys=True)
    path = None if cache_dir is None else pathlib.Path(cache_dir) / f"{fingerprint_of(key)}.npz"
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["description"]) == key:
                    return stored["features"], path
            logging.warning("Reference features %s were made for other data; recomputing", path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            logging.warning("Reference features %s are unreadable (%s); recomputing", path, error)
    features = np.asarray(extractor(load_images()), np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One partial file per process: hosts sharing a file system may write the same entry at once.
        partial = path.with_name(f"{path.stem}.partial{os.getpid()}.npz")
        np.savez(partial, features=features, description=np.asarray(key))
        partial.replace(path)
    return features, path


def sample_metrics(extractor: FeatureExtractor, real: np.ndarray | None, samples: np.ndarray, *,
                   rng: np.random.Generator, real_features: np.ndarray | None = None) -> dict[str, float]:
    """FID and KID of `samples` against `real` images (both `[N, H, W, C]` in [0, 1]) or against
    their precomputed `real_features`, and the Inception Score of `samples` when the extractor
    has a classifier (`features_and_logits`)."""
    if (real is None) == (real_features is None):
        raise ValueError("give exactly one of real images and real_features")
    real_features = extractor(real) if real_features is None else real_features
    metrics = {}
    if hasattr(extractor, "features_and_logits"):
        sample_features, logits = extractor.features_and_logits(samples)
        metrics["inception_score"], metrics["inception_score_std"] = inception_score(
            logits, num_splits=min(10, len(samples)))
    else:
        sample_features = extractor(samples)
    metrics["fid"] = frechet_distance(real_features, sample_features)
    metrics["kid"] = kernel_inception_distance(real_features, sample_features, rng=rng)
    return metrics
