"""The train state: everything a run needs to continue exactly where it stopped."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from models.build import ONE_OFF_COMPILER_OPTIONS
from training.sharding import replicated

Params = Any


@flax.struct.dataclass
class TrainState:
    """A pytree (saved as is by orbax).

    step: int32 scalar, the number of optimiser steps taken.
    params, ema_params: network parameters and their exponential moving average.
    opt_state: the optax state of `params`.
    rng: the run's base PRNG key; step i uses `jax.random.fold_in(rng, i)`, so the randomness
      of a step depends neither on the device count nor on where a run was resumed.
    """

    step: jax.Array
    params: Params
    opt_state: optax.OptState
    ema_params: Params
    rng: jax.Array


def create_train_state(
    rng: jax.Array,
    init_params: Callable[[jax.Array], Params],
    optimizer: optax.GradientTransformation,
) -> TrainState:
    """A fresh state at step 0: `init_params(key) -> params`; the EMA starts at the parameters."""
    params_key, run_key = jax.random.split(rng)
    params = init_params(params_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        ema_params=params,
        rng=run_key,
    )


def init_sharded_state(
    rng: jax.Array,
    init_params: Callable[[jax.Array], Params],
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
) -> tuple[TrainState, TrainState]:
    """The state created directly on the mesh, replicated, and its abstract shape.

    `jax.eval_shape` gives the abstract state (shapes, dtypes, shardings) used to restore a
    checkpoint; a jitted init with `out_shardings` allocates it in place (big_vision style).
    """
    abstract = abstract_train_state(rng, init_params, optimizer, mesh)
    shardings = jax.tree.map(lambda a: a.sharding, abstract)
    create = jax.jit(lambda key: create_train_state(key, init_params, optimizer), out_shardings=shardings)
    state = create.lower(rng).compile(ONE_OFF_COMPILER_OPTIONS)(rng)
    return state, abstract


def abstract_train_state(
    rng: jax.Array,
    init_params: Callable[[jax.Array], Params],
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
) -> TrainState:
    """Shapes, dtypes and (replicated) shardings of the state, without allocating or compiling."""
    sharding = replicated(mesh)
    abstract = jax.eval_shape(lambda key: create_train_state(key, init_params, optimizer), rng)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)
