"""Sampling a trained network on the device mesh.

`make_sample_fn` jits one batch of any sampler (the `samplers` contract
`sampler(rng, score_fn, shape, x_init, t_init, *, indices) -> (samples, nfe)`) with the examples'
indices split along the mesh's data axis; `generate_samples` draws any number of samples in data
space, batch by batch, sample k from `fold_in(rng, seeds[k])` alone (`samplers.common`). The
training loop's snapshots, `score-sde sample` and the evaluation protocol (`training.evaluate`) all
sample through here. Builds on `training.experiment`.
"""
from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import sde_lib
from training.conditioning import Guidance, guided_score_fn
from training.experiment import Experiment
from training.sharding import batch_sharding, replicated, shard_batch
from training.state import Params


def make_sample_fn(sampler, sde: sde_lib.SDE, model: nn.Module, shape: tuple[int, ...], mesh: Mesh, *,
                   continuous: bool, precond: sde_lib.Preconditioning | None, guidance: Guidance | None = None
                   ) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """Jitted `sample(params, rng, labels=None, classifier_params=None, indices=None) -> (samples: shape,
    nfe)`: example i is drawn from `fold_in(rng, indices[i])` alone (`samplers.common`; default
    `indices = arange(B)`), whatever the batch; the indices are split along the mesh's data axis, so
    the whole chain runs data-parallel. `labels: [B]` (traced) select the classes under `guidance`
    (`training.conditioning`)."""
    guidance = guidance or Guidance()

    def sample(params, rng, indices, labels, classifier_params):
        score_fn = guided_score_fn(sde, model, params, labels, guidance, continuous=continuous, precond=precond,
                                   classifier_params=classifier_params)
        samples, nfe = sampler(rng, score_fn, shape, indices=indices)
        return samples, jnp.asarray(nfe)

    # Several processes: the samples are gathered to every process, which can then read them.
    samples_sharding = batch_sharding(mesh) if jax.process_count() == 1 else replicated(mesh)
    jitted = jax.jit(sample, in_shardings=(replicated(mesh), replicated(mesh), batch_sharding(mesh),
                                           batch_sharding(mesh), replicated(mesh)),
                     out_shardings=(samples_sharding, replicated(mesh)))
    default_indices = shard_batch(np.arange(shape[0], dtype=np.uint32), batch_sharding(mesh))

    def sample_fn(params, rng, labels=None, classifier_params=None, indices=None):
        return jitted(params, rng, default_indices if indices is None else indices, labels, classifier_params)

    return sample_fn


def generate_samples(exp: Experiment, sampler, params: Params, num_samples: int, rng: jax.Array, *,
                     batch_size: int, inverse_scaler: Callable[[np.ndarray], np.ndarray], seeds=None,
                     labels: np.ndarray | None = None, guidance: Guidance | None = None, classifier_params=None,
                     on_batch: Callable[[np.ndarray, np.ndarray], None] | None = None) -> tuple[np.ndarray, int]:
    """`num_samples` samples of `sampler` with the network `params`, in data space ([0, 1] for
    images), drawn `batch_size` at a time. Sample k is drawn from `fold_in(rng, seeds[k])` alone
    (`seeds` default `range(num_samples)`), so it does not depend on the batch size or the device count
    (the last batch is padded with further seeds, whose samples are dropped). `labels: [num_samples]`
    ints make sample k one of class `labels[k]` (see `make_sample_fn`). `on_batch(seeds, samples)` is
    called after each batch. Returns (samples, nfe)."""
    seeds = np.arange(num_samples) if seeds is None else np.asarray(seeds, np.int64)
    batch_size = min(batch_size, len(seeds))
    batch_size += -batch_size % exp.mesh.size
    sample_fn = make_sample_fn(sampler, exp.sde, exp.model, (batch_size, *exp.data_shape), exp.mesh,
                               continuous=exp.continuous, precond=exp.precond, guidance=guidance)
    if labels is not None:
        labels = np.asarray(labels, np.int32)
        labels = np.concatenate([labels, np.repeat(labels[-1:], -len(labels) % batch_size)])
    chunks, nfe = [], 0
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start:start + batch_size]
        padded = np.concatenate([chunk, chunk[-1] + 1 + np.arange(batch_size - len(chunk))])
        batch_labels = None if labels is None else labels[start:start + batch_size]
        samples, nfe = sample_fn(params, rng, batch_labels, classifier_params,
                                 shard_batch(padded.astype(np.uint32), batch_sharding(exp.mesh)))
        out = np.asarray(inverse_scaler(np.asarray(samples)))[:len(chunk)]
        if out.ndim == 4:
            out = np.clip(out, 0.0, 1.0)
        chunks.append(out)
        if on_batch is not None:
            on_batch(chunk, out)
    return np.concatenate(chunks), int(nfe)
