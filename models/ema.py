"""Exponential moving average of parameters (Polyak averaging; the 2021 reference's `ema_rate`).

A pure function over pytrees, so it lives in the train state and runs inside the jitted step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_rate_at(rate: float, step: jax.Array | int | None = None, warmup: bool = False) -> jax.Array:
    """The decay used at `step`: `rate`, or with warm-up min(rate, (1 + step) / (10 + step))
    so early averages are not dominated by the random initialisation."""
    if not warmup:
        return jnp.asarray(rate, jnp.float32)
    if step is None:
        raise ValueError("ema warm-up needs the step")
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(rate), (1.0 + step) / (10.0 + step))


def ema_update(ema_params, params, rate: float, step: jax.Array | int | None = None, warmup: bool = False):
    """ema <- r ema + (1 - r) params, leaf by leaf, with r from `ema_rate_at`."""
    r = ema_rate_at(rate, step, warmup)
    return jax.tree.map(lambda e, p: (r * e + (1.0 - r) * p).astype(e.dtype), ema_params, params)
