"""One jitted, data-parallel training step (optionally several per call with `lax.scan`).

The step's randomness is `fold_in(state.rng, state.step)`, split into a loss key and a dropout
key, so a step draws the same noise whatever the device count and whether the run was resumed.
"""
from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

import models
import sde_lib
from training.sharding import batch_sharding, replicated
from training.state import Params, TrainState

Objective = Callable[[Params, jax.Array, jax.Array], jax.Array]
"""`objective(params, x: [B, ...], key) -> [B]`, the per-example training loss."""

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def make_objective(model: nn.Module, loss, sde: sde_lib.SDE, *, continuous: bool,
                   precond: sde_lib.Preconditioning | None = None, train: bool = True) -> Objective:
    """Bind a network to a loss: a score function for DSM / DDPM / SMLD (through `precond` when
    given), the preconditioned denoiser for `sde_lib.EDMLoss`. `train` switches dropout on
    (its key is split from the objective's key)."""
    edm = isinstance(loss, sde_lib.EDMLoss)
    if edm and precond is None:
        raise ValueError("training.loss='edm' trains a preconditioned denoiser: set model.precond to edm, vp or ve")

    def objective(params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
        loss_key, dropout_key = jax.random.split(key)
        dropout_rng = dropout_key if train else None
        if edm:
            fn = models.get_denoiser_fn(model, params, precond, train=train, dropout_rng=dropout_rng)
        else:
            fn = models.get_score_fn(sde, model, params, train=train, continuous=continuous,
                                     dropout_rng=dropout_rng, precond=precond)
        return loss(fn, x, loss_key)

    return objective


def micro_batches(batch: Batch, n: int) -> Batch:
    """`[B, ...] -> [n, B / n, ...]` with micro-batch j = rows j, j + n, j + 2n, ...: each
    device's contiguous slice of a batch-sharded array then holds a share of every micro-batch,
    so splitting moves no data between devices."""
    def split(x):
        return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def make_train_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    ema_rate: float,
    ema_warmup: bool = False,
    grad_accum_steps: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`step(state, batch) -> (state, {"loss", "grad_norm"})` for one optimiser step on
    `batch["image"]: [B, ...]`; the EMA is updated after the optimiser step (2021 code).

    `grad_accum_steps = n > 1` computes the gradient of the batch mean as the average of the
    gradients of `n` micro-batches of `B / n` examples, one after another in a `lax.scan`
    (activation memory of one micro-batch; the same update as one batch up to float rounding
    when the objective's noise is the same). Micro-batch j draws its noise from
    `fold_in(step key, j)`, not from the one-batch draw: the same distribution, other values.
    """
    if grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps must be at least 1, got {grad_accum_steps}")

    def loss_and_grads(params: Params, batch: Batch, key: jax.Array):
        return jax.value_and_grad(lambda p: jnp.mean(objective(p, batch["image"], key)))(params)

    def accumulated_loss_and_grads(params: Params, batch: Batch, key: jax.Array):
        def add_micro_batch(total, inputs):
            j, micro = inputs
            value = loss_and_grads(params, micro, jax.random.fold_in(key, j))
            return jax.tree.map(jnp.add, total, value), None

        zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        indices = jnp.arange(grad_accum_steps)
        total, _ = jax.lax.scan(add_micro_batch, zeros, (indices, micro_batches(batch, grad_accum_steps)))
        return jax.tree.map(lambda v: v / grad_accum_steps, total)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(state.rng, state.step)
        if grad_accum_steps == 1:
            loss, grads = loss_and_grads(state.params, batch, key)
        else:
            loss, grads = accumulated_loss_and_grads(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step_count = state.step + 1
        ema_params = models.ema_update(state.ema_params, params, ema_rate, step=step_count, warmup=ema_warmup)
        new_state = state.replace(step=step_count, params=params, opt_state=opt_state, ema_params=ema_params)
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return step


def scan_steps(step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]]):
    """`steps(state, batches) -> (state, metrics)`: one step per leading index of `batches`
    (`[n, B, ...]`), in one `lax.scan`; metrics come back stacked `[n]`."""

    def steps(state: TrainState, batches: Batch) -> tuple[TrainState, Metrics]:
        return jax.lax.scan(step, state, batches)

    return steps


def jit_train_steps(step, mesh: Mesh):
    """The jitted `steps(state, batches [n, B, ...])` on `mesh`: batches split along the data
    axis, state replicated and donated (updated in place), metrics replicated."""
    return jax.jit(
        scan_steps(step),
        in_shardings=(replicated(mesh), batch_sharding(mesh, leading_axes=1)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=0,
    )


def make_eval_step(objective: Objective, mesh: Mesh):
    """Jitted `eval_step(params, batch, key) -> mean loss` (no gradients, dropout off)."""

    def eval_step(params: Params, batch: Batch, key: jax.Array) -> jax.Array:
        return jnp.mean(objective(params, batch["image"], key))

    return jax.jit(eval_step, in_shardings=(replicated(mesh), batch_sharding(mesh), replicated(mesh)),
                   out_shardings=replicated(mesh))
