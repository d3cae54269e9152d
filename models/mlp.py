"""A time-embedded residual MLP score network for low-dimensional data (2-D toys, small
flattened images): the smallest network that follows the same conventions as the U-Nets."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.embeddings import GaussianFourierProjection, add_label_embedding, timestep_embedding
from models.layers import default_init, get_activation
from models.registry import MODELS

Dtype = Any


@MODELS.register("mlp")
class MLP(nn.Module):
    """`(x: [B, ...], noise_labels: [B], class_labels: [B] | None) -> [B, ...]` (flattened
    internally to `[B, D]`).

    Each hidden width is a residual block h + W2 act(W1 act(h) + E act(temb)), the noise
    embedding entering every block as in the U-Nets; the labels are embedded as given, by
    `embedding_type` (Fourier or positional features). With `num_classes > 0` the class label
    (or the null class) is embedded and added to the noise features.
    """

    hidden_dims: tuple[int, ...] = (128, 128, 128)
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    nf: int = 64
    dropout: float = 0.0
    scale_by_sigma: bool = False
    nonlinearity: str = "swish"
    centered: bool = True
    dtype: Dtype = jnp.float32
    num_classes: int = 0  # class-conditional with this many classes (+ a learned null class); 0: unconditional

    @nn.compact
    def __call__(self, x: jax.Array, noise_labels: jax.Array, train: bool = False,
                 class_labels: jax.Array | None = None) -> jax.Array:
        act = get_activation(self.nonlinearity)
        dt = self.dtype
        labels = noise_labels.astype(jnp.float32)
        if self.embedding_type == "fourier":
            temb = GaussianFourierProjection(self.nf, self.fourier_scale)(labels)
        elif self.embedding_type == "positional":
            temb = timestep_embedding(labels, self.nf)
        else:
            raise ValueError(f"MLP: embedding_type must be 'fourier' or 'positional', got {self.embedding_type!r}")
        temb = add_label_embedding(temb.astype(dt), class_labels, self.num_classes)
        temb = nn.Dense(4 * self.nf, kernel_init=default_init(), dtype=dt)(temb)

        shape = x.shape
        h = x.reshape(shape[0], -1).astype(dt)
        if not self.centered:
            h = 2 * h - 1.0
        h = nn.Dense(self.hidden_dims[0], kernel_init=default_init(), dtype=dt)(h)
        for width in self.hidden_dims:
            if h.shape[-1] != width:
                h = nn.Dense(width, kernel_init=default_init(), dtype=dt)(h)
            r = nn.Dense(width, kernel_init=default_init(), dtype=dt)(act(h))
            r = r + nn.Dense(width, kernel_init=default_init(), dtype=dt)(act(temb))
            r = nn.Dropout(self.dropout)(act(r), deterministic=not train)
            h = h + nn.Dense(width, kernel_init=default_init(), dtype=dt)(r)
        out = nn.Dense(math.prod(shape[1:]), kernel_init=default_init(), dtype=dt)(act(h))
        return out.reshape(shape).astype(jnp.float32)
