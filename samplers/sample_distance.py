"""Distances between two sample sets, to score samplers against exact samples.

Both take `x: [n, ...]`, `y: [m, ...]` (flattened to vectors) and return a scalar.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sde_lib.base import Array


def sliced_wasserstein(rng: Array, x: Array, y: Array, num_projections: int = 256) -> Array:
    """Sliced 2-Wasserstein distance: sqrt of the mean over random directions of W2^2 in 1-D.

    `x` and `y` must hold the same number of samples (1-D W2 then pairs sorted projections).
    """
    x = jnp.reshape(x, (x.shape[0], -1))
    y = jnp.reshape(y, (y.shape[0], -1))
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs equal sample counts and dims, got {x.shape} and {y.shape}")
    directions = jax.random.normal(rng, (x.shape[1], num_projections), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)
    px = jnp.sort(x @ directions, axis=0)
    py = jnp.sort(y @ directions, axis=0)
    return jnp.sqrt(jnp.mean((px - py) ** 2))


def sliced_wasserstein_1(rng: Array, x: Array, y: Array, num_projections: int = 256) -> Array:
    """Sliced 1-Wasserstein distance: the mean over random directions of W1 in 1-D (the mean absolute
    difference of the sorted projections). `x` and `y` must hold the same number of samples."""
    x = jnp.reshape(x, (x.shape[0], -1))
    y = jnp.reshape(y, (y.shape[0], -1))
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein_1 needs equal sample counts and dims, got {x.shape} and {y.shape}")
    directions = jax.random.normal(rng, (x.shape[1], num_projections), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)
    return jnp.mean(jnp.abs(jnp.sort(x @ directions, axis=0) - jnp.sort(y @ directions, axis=0)))


def mmd_rbf(x: Array, y: Array, bandwidth: float = 1.0) -> Array:
    """Unbiased squared maximum mean discrepancy with an RBF kernel of the given bandwidth."""
    x = jnp.reshape(x, (x.shape[0], -1))
    y = jnp.reshape(y, (y.shape[0], -1))

    def kernel(a, b):
        sq = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
        return jnp.exp(-jnp.maximum(sq, 0.0) / (2 * bandwidth**2))

    n, m = x.shape[0], y.shape[0]
    kxx = (jnp.sum(kernel(x, x)) - n) / (n * (n - 1))
    kyy = (jnp.sum(kernel(y, y)) - m) / (m * (m - 1))
    return kxx + kyy - 2 * jnp.mean(kernel(x, y))
