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
from training.experiment import Experiment, make_score_fn
from training.sharding import batch_sharding, replicated
from training.state import Params


def make_sample_fn(sampler, sde: sde_lib.SDE, model: nn.Module, shape: tuple[int, ...], mesh: Mesh, *,
                   continuous: bool, precond: sde_lib.Preconditioning | None
                   ) -> Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]:
    """Jitted `sample(params, rng) -> (samples: shape, nfe)`; the prior draw is split along the
    mesh's data axis, so the whole chain runs data-parallel."""

    def sample(params, rng):
        prior_key, chain_key = jax.random.split(rng)
        x_init = jax.lax.with_sharding_constraint(sde.prior_sampling(prior_key, shape), batch_sharding(mesh))
        score_fn = make_score_fn(sde, model, params, continuous=continuous, precond=precond)
        samples, nfe = sampler(chain_key, score_fn, shape, x_init=x_init, t_init=sde.T)
        return samples, jnp.asarray(nfe)

    # Several processes: the samples are gathered to every process, which can then read them.
    samples_sharding = batch_sharding(mesh) if jax.process_count() == 1 else replicated(mesh)
    return jax.jit(sample, in_shardings=(replicated(mesh), replicated(mesh)),
                   out_shardings=(samples_sharding, replicated(mesh)))


def generate_samples(exp: Experiment, sampler, params: Params, num_samples: int, rng: jax.Array, *,
                     batch_size: int, inverse_scaler: Callable[[np.ndarray], np.ndarray]
                     ) -> tuple[np.ndarray, int]:
    """`num_samples` samples of `sampler` with the network `params`, in data space ([0, 1] for
    images), drawn `batch_size` at a time; batch i uses `fold_in(rng, i)`. Returns (samples, nfe)."""
    batch_size = min(batch_size, num_samples)
    batch_size += -batch_size % exp.mesh.size
    sample_fn = make_sample_fn(sampler, exp.sde, exp.model, (batch_size, *exp.data_shape), exp.mesh,
                               continuous=exp.continuous, precond=exp.precond)
    chunks, nfe = [], 0
    for i in range(-(-num_samples // batch_size)):
        samples, nfe = sample_fn(params, jax.random.fold_in(rng, i))
        chunks.append(np.asarray(inverse_scaler(np.asarray(samples))))
    out = np.concatenate(chunks)[:num_samples]
    if out.ndim == 4:
        out = np.clip(out, 0.0, 1.0)
    return out, int(nfe)
