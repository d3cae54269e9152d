"""Noise-level embeddings: Gaussian Fourier features (Tancik et al. 2020; NCSN++ on log sigma)
and the sinusoidal positional embedding of DDPM (Vaswani et al. 2017, sec. 3.5)."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


class GaussianFourierProjection(nn.Module):
    """Random Fourier features [sin(2 pi W x), cos(2 pi W x)], W ~ N(0, scale^2), fixed.

    `x: [B] -> [B, 2 * embedding_size]`. W is a parameter (as in the reference, so checkpoints
    carry it) but receives no gradient.
    """

    embedding_size: int = 256
    scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        W = self.param("W", nn.initializers.normal(stddev=self.scale), (self.embedding_size,))
        proj = x[:, None] * jax.lax.stop_gradient(W)[None, :] * 2 * jnp.pi
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


def timestep_embedding(timesteps: jax.Array, dim: int, max_positions: int = 10_000) -> jax.Array:
    """Sinusoidal embedding of (possibly fractional) timesteps, `[B] -> [B, dim]`."""
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be [B], got shape {timesteps.shape}")
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(max_positions) / (half - 1)))
    args = timesteps.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=1)
    return jnp.pad(emb, [[0, 0], [0, dim % 2]])
