"""A noise-conditional (time-dependent) classifier p_t(y | x_t) for classifier guidance (Song et al.
2021, sec. 5 and app. I.4; Dhariwal & Nichol 2021, sec. 4): trained on data perturbed by the same
SDE as the score model, so that grad_x log p_t(y | x) is defined at every time of the sampler.

Small by design: a residual MLP for point / flattened data, a strided CNN for images; the time
enters as the DDPM embedding of 999 t (any SDE's t lies in [0, 1]), added in every block.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.embeddings import timestep_embedding
from models.layers import default_init


class NoiseConditionalClassifier(nn.Module):
    """`(x: [B, ...], t: [B]) -> logits [B, num_classes]`.

    `hidden_dims` are the residual MLP widths for `x: [B, D]`, or the channels of the stride-2
    convolution levels for images `x: [B, H, W, C]` (followed by a global mean).
    """

    num_classes: int
    nf: int = 64
    hidden_dims: tuple[int, ...] = (128, 128)

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        temb = timestep_embedding(999.0 * t.astype(jnp.float32), self.nf)
        temb = nn.swish(nn.Dense(4 * self.nf, kernel_init=default_init())(temb))
        h = x.astype(jnp.float32)
        if h.ndim == 4:
            for width in self.hidden_dims:
                h = nn.Conv(width, (3, 3), strides=(2, 2), kernel_init=default_init())(h)
                h = nn.swish(h + nn.Dense(width, kernel_init=default_init())(temb)[:, None, None, :])
                h = h + nn.Conv(width, (3, 3), kernel_init=default_init())(nn.swish(nn.GroupNorm(
                    num_groups=min(8, width))(h)))
            h = jnp.mean(h, axis=(1, 2))
        else:
            h = h.reshape(h.shape[0], -1)
            h = nn.Dense(self.hidden_dims[0], kernel_init=default_init())(h)
            for width in self.hidden_dims:
                if h.shape[-1] != width:
                    h = nn.Dense(width, kernel_init=default_init())(h)
                r = nn.Dense(width, kernel_init=default_init())(nn.swish(h))
                r = r + nn.Dense(width, kernel_init=default_init())(temb)
                h = h + nn.Dense(width, kernel_init=default_init())(nn.swish(r))
        return nn.Dense(self.num_classes, kernel_init=default_init())(nn.swish(h))
