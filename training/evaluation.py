"""Sample quality and likelihood of a trained model: sampling on the mesh, FID and KID from a
pluggable feature extractor, bits/dim over a data split.

FID: Heusel et al. 2017, eq. 2 (Frechet distance of Gaussians fitted to features).
KID: Binkowski et al. 2018, unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets.
IS: Salimans et al. 2016, exp E_x KL(p(y|x) || p(y)), mean and spread over splits.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zipfile
from collections.abc import Callable
from typing import Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.linalg
import scipy.special
from absl import logging
from jax.sharding import Mesh

import models
import sde_lib
from training.sharding import batch_sharding, replicated, shard_batch

Params = object


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


def make_score_fn(sde: sde_lib.SDE, model: nn.Module, params: Params, *, continuous: bool,
                  precond: sde_lib.Preconditioning | None) -> sde_lib.ScoreFn:
    """The evaluation-mode score function (dropout off) of a network."""
    return models.get_score_fn(sde, model, params, train=False, continuous=continuous, precond=precond)


def make_sample_fn(sampler, sde: sde_lib.SDE, model: nn.Module, shape: tuple[int, ...], mesh: Mesh, *,
                   continuous: bool, precond: sde_lib.Preconditioning | None
                   ) -> Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """Jitted `sample(params, rng, indices) -> (samples: shape, nfe)`: example i is drawn from
    `fold_in(rng, indices[i])` alone (`samplers.common`), whatever the batch; the indices are split
    along the mesh's data axis, so the whole chain runs data-parallel."""

    def sample(params, rng, indices):
        score_fn = make_score_fn(sde, model, params, continuous=continuous, precond=precond)
        samples, nfe = sampler(rng, score_fn, shape, indices=indices)
        return samples, jnp.asarray(nfe)

    return jax.jit(sample, in_shardings=(replicated(mesh), replicated(mesh), batch_sharding(mesh)),
                   out_shardings=(batch_sharding(mesh), replicated(mesh)))


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


def load_trained(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, step: int = 0):
    """`(experiment, state)` of the newest good checkpoint of `workdir` (or exactly `step` if > 0).

    Raises FileNotFoundError naming the workdir when there is nothing to restore.
    """
    from training.data import data_shape_of
    from training.train_loop import build_experiment, checkpointer_for

    workdir = pathlib.Path(workdir)
    # From the config, not the data: sampling needs only the checkpoint, not the training split.
    exp = build_experiment(config, data_shape_of(config))
    ckpt = checkpointer_for(config, workdir)
    try:
        state = ckpt.restore_latest(exp.abstract_state(), max_step=step or None)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint to restore in {workdir.absolute()} (looked in checkpoints/ and "
                                "checkpoints-meta/); train first with `score-sde train`")
    if step and int(state.step) != step:
        raise FileNotFoundError(f"no good checkpoint at step {step} in {workdir.absolute()}; "
                                f"the newest one before it is step {int(state.step)}")
    return exp, state


def generate_samples(exp, params: Params, num_samples: int, rng: jax.Array, *, batch_size: int,
                     inverse_scaler: Callable[[np.ndarray], np.ndarray], seeds=None,
                     on_batch: Callable[[np.ndarray, np.ndarray], None] | None = None) -> tuple[np.ndarray, int]:
    """`num_samples` samples of the config's sampler with `params`, in data space ([0, 1] for
    images), drawn `batch_size` at a time. Sample k is drawn from `fold_in(rng, seeds[k])` alone
    (`seeds` default `range(num_samples)`), so it does not depend on the batch size or the device count
    (the last batch is padded with further seeds, whose samples are dropped). `on_batch(seeds, samples)`
    is called after each batch. Returns (samples, nfe)."""
    from training import builders

    config = exp.config
    sampler = builders.build_sampler(config, exp.sde)
    seeds = np.arange(num_samples) if seeds is None else np.asarray(seeds, np.int64)
    batch_size = min(batch_size, len(seeds))
    batch_size += -batch_size % exp.mesh.size
    sample_fn = make_sample_fn(sampler, exp.sde, exp.model, (batch_size, *exp.data_shape), exp.mesh,
                               continuous=config.training.continuous, precond=exp.precond)
    chunks, nfe = [], 0
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start:start + batch_size]
        padded = np.concatenate([chunk, chunk[-1] + 1 + np.arange(batch_size - len(chunk))])
        samples, nfe = sample_fn(params, rng, shard_batch(padded.astype(np.uint32), batch_sharding(exp.mesh)))
        out = np.asarray(inverse_scaler(np.asarray(samples)))[:len(chunk)]
        if out.ndim == 4:
            out = np.clip(out, 0.0, 1.0)
        chunks.append(out)
        if on_batch is not None:
            on_batch(chunk, out)
    return np.concatenate(chunks), int(nfe)


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


def bits_per_dim_over_split(exp, params: Params, split: str, rng: jax.Array, *,
                            max_examples: int | None = None) -> dict:
    """Negative log-likelihood of `split` under the probability flow of `params` (Song et al. 2021,
    sec. 4.3), over the split in its stored order, `config.eval.batch_size` at a time on the mesh.

    Images: uniformly dequantised 8-bit data (Theis et al. 2016; always, as in the 2021 code,
    whatever `data.uniform_dequantization` says for training), bits/dim with the bin width of the
    model's data range (2/256 if `data.centered`, else 1/256; `samplers.likelihood.bits_per_dim`).
    Returns {"bpd", "bpd_stderr", "bpd_median", "num_examples", "nfe", "bin_width", "dequantization"}.
    2-D point data are continuous: nats/dim without dequantisation, returned as
    {"nll_nats_per_dim", "nll_nats_per_dim_stderr", "num_examples", "nfe", "unit"} (no "bpd").
    Divergence by Hutchinson with `eval.num_probes` Rademacher probes; batch i uses
    `fold_in(rng, i)`; solver tolerances `sampling.rtol` / `sampling.atol`. nfe is the mean per batch.
    """
    from samplers import likelihood
    from training.data import build_dataset
    from training.datasets import is_point_dataset

    config = exp.config
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be positive, got {max_examples}")
    points = is_point_dataset(config.data.dataset)
    data_config = config.copy_and_resolve_references()
    data_config.data.uniform_dequantization = not points
    batch_size = min(config.eval.batch_size, max_examples or config.eval.batch_size)
    batch_size += -batch_size % exp.mesh.size
    ds = build_dataset(data_config, split, batch_size=batch_size, seed=config.seed, shuffle=False, evaluation=True,
                       drop_remainder=False)

    def nll(params, x, key):
        score_fn = make_score_fn(exp.sde, exp.model, params, continuous=config.training.continuous,
                                 precond=exp.precond)
        out = likelihood.log_likelihood(key, exp.sde, score_fn, x, num_probes=config.eval.num_probes,
                                        rtol=config.sampling.rtol, atol=config.sampling.atol)
        return out.logp, out.nfe

    mesh = exp.mesh
    nll_fn = jax.jit(nll, in_shardings=(replicated(mesh), batch_sharding(mesh), replicated(mesh)),
                     out_shardings=(batch_sharding(mesh), replicated(mesh)))
    logps, nfes, remaining = [], [], max_examples or float("inf")
    for i in range(len(ds)):
        if remaining <= 0:
            break
        x = np.asarray(ds[i]["image"])[: int(min(remaining, batch_size))]
        count = len(x)
        # Pad to the compiled batch with copies of the last example (kept in distribution for the
        # batch-wide step-size control); their values are dropped.
        x = np.concatenate([x, np.repeat(x[-1:], batch_size - count, axis=0)])
        logp, nfe = nll_fn(params, shard_batch(x, batch_sharding(mesh)), jax.random.fold_in(rng, i))
        logps.append(np.asarray(logp)[:count])
        nfes.append(int(nfe))
        remaining -= count
    logp = np.concatenate(logps).astype(np.float64)
    dims = int(np.prod(exp.data_shape))
    record = {"num_examples": int(len(logp)), "nfe": float(np.mean(nfes))}
    if points:
        nats = -logp / dims
        return {"nll_nats_per_dim": float(nats.mean()), "nll_nats_per_dim_stderr": _stderr(nats), **record,
                "unit": "nats/dim of continuous 2-D points (no dequantization)"}
    bin_width = (2.0 if config.data.centered else 1.0) / 256.0
    bpd = np.asarray(likelihood.bits_per_dim(logp, dims, bin_width))
    # The median is reported beside the mean: one example whose flow diverges (a poorly fitted score
    # field far from the data) can dominate the mean by orders of magnitude.
    return {"bpd": float(bpd.mean()), "bpd_stderr": _stderr(bpd), "bpd_median": float(np.median(bpd)),
            **record, "bin_width": bin_width, "dequantization": "uniform"}


def _stderr(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
