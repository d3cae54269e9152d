"""Sampling a trained network on the device mesh.

`make_sample_fn` jits one batch of any sampler (the `samplers` contract
`sampler(rng, score_fn, shape, x_init, t_init) -> (samples, nfe)`) with the prior draw split along
the mesh's data axis; `generate_samples` draws any number of samples in data space, batch by
batch. The training loop's snapshots, `score-sde sample` and the evaluation protocol
(`training.evaluate`) all sample through here. Builds on `training.experiment`.
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
from training.sharding import batch_sharding, replicated
from training.state import Params


def make_sample_fn(sampler, sde: sde_lib.SDE, model: nn.Module, shape: tuple[int, ...], mesh: Mesh, *,
                   continuous: bool, precond: sde_lib.Preconditioning | None, guidance: Guidance | None = None
                   ) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """Jitted `sample(params, rng, labels=None, classifier_params=None) -> (samples: shape, nfe)`;
    the prior draw is split along the mesh's data axis, so the whole chain runs data-parallel.
    `labels: [B]` (traced) select the classes under `guidance` (`training.conditioning`)."""
    guidance = guidance or Guidance()

    def sample(params, rng, labels, classifier_params):
        prior_key, chain_key = jax.random.split(rng)
        x_init = jax.lax.with_sharding_constraint(sde.prior_sampling(prior_key, shape), batch_sharding(mesh))
        score_fn = guided_score_fn(sde, model, params, labels, guidance, continuous=continuous, precond=precond,
                                   classifier_params=classifier_params)
        samples, nfe = sampler(chain_key, score_fn, shape, x_init=x_init, t_init=sde.T)
        return samples, jnp.asarray(nfe)

    # Several processes: the samples are gathered to every process, which can then read them.
    samples_sharding = batch_sharding(mesh) if jax.process_count() == 1 else replicated(mesh)
    jitted = jax.jit(sample, in_shardings=(replicated(mesh), replicated(mesh), batch_sharding(mesh), replicated(mesh)),
                     out_shardings=(samples_sharding, replicated(mesh)))
    return lambda params, rng, labels=None, classifier_params=None: jitted(params, rng, labels, classifier_params)


def generate_samples(exp: Experiment, sampler, params: Params, num_samples: int, rng: jax.Array, *,
                     batch_size: int, inverse_scaler: Callable[[np.ndarray], np.ndarray],
                     labels: np.ndarray | None = None, guidance: Guidance | None = None, classifier_params=None
                     ) -> tuple[np.ndarray, int]:
    """`num_samples` samples of `sampler` with the network `params`, in data space ([0, 1] for
    images), drawn `batch_size` at a time; batch i uses `fold_in(rng, i)`. Returns (samples, nfe).
    `labels: [num_samples]` ints make sample i one of class `labels[i]` (see `make_sample_fn`)."""
    batch_size = min(batch_size, num_samples)
    batch_size += -batch_size % exp.mesh.size
    sample_fn = make_sample_fn(sampler, exp.sde, exp.model, (batch_size, *exp.data_shape), exp.mesh,
                               continuous=exp.continuous, precond=exp.precond, guidance=guidance)
    if labels is not None:
        labels = np.asarray(labels, np.int32)
        labels = np.concatenate([labels, np.repeat(labels[-1:], -len(labels) % batch_size)])
    chunks, nfe = [], 0
    for i in range(-(-num_samples // batch_size)):
        batch_labels = None if labels is None else labels[i * batch_size:(i + 1) * batch_size]
        samples, nfe = sample_fn(params, jax.random.fold_in(rng, i), batch_labels, classifier_params)
        chunks.append(np.asarray(inverse_scaler(np.asarray(samples))))
    out = np.concatenate(chunks)[:num_samples]
    if out.ndim == 4:
        out = np.clip(out, 0.0, 1.0)
    return out, int(nfe)
