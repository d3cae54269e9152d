"""Noise-level embeddings: Gaussian Fourier features (Tancik et al. 2020; NCSN++) and the
sinusoidal positional embedding of DDPM (Vaswani et al. 2017, sec. 3.5), and the class-label
embedding that joins them in a conditional network (EDM's `map_label`, Karras et al. 2022).

A network embeds the noise label it is given: the transform from t or sigma to that label (log
sigma for the 2021 Fourier networks, EDM's c_noise) belongs to the caller (`models.score_fn`,
the preconditioning)."""
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


def add_label_embedding(temb: jax.Array, class_labels: jax.Array | None, num_classes: int) -> jax.Array:
    """`temb: [B, F]` plus a learned embedding of `class_labels: [B]` ints in [0, num_classes]
    (call inside a compact method). Index `num_classes` is the learned null class, used for every
    example when `class_labels` is None (unconditional score, classifier-free guidance).

    With `num_classes == 0` (an unconditional network) nothing is added and no parameter is made,
    so the parameter tree is that of the 2021 networks. An index outside [0, num_classes] gives
    NaN (jnp.take's fill), never another class's embedding."""
    if num_classes == 0:
        if class_labels is not None:
            raise ValueError("class labels given to an unconditional network (num_classes=0)")
        return temb
    if class_labels is None:
        class_labels = jnp.full(temb.shape[:1], num_classes, jnp.int32)
    table = nn.Embed(num_classes + 1, temb.shape[-1], name="label_embedding")
    return temb + table(jnp.asarray(class_labels, jnp.int32)).astype(temb.dtype)
