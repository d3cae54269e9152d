"""Normalisation layers: GroupNorm with the NCSN++ group rule, and NCSN's instance norm++.

Instance norm++ (Song & Ermon 2019, "NCSN", eq. in appendix A): instance normalisation that
adds back the (normalised) per-channel means, so colour shifts survive; the conditional version
(NCSN v1) learns gamma, alpha, beta per noise level.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def num_groups_for(channels: int) -> int:
    """The reference's GroupNorm group count min(C // 4, 32) (at least 1)."""
    return max(1, min(channels // 4, 32))


def group_norm(x: jax.Array, num_groups: int | None = None, dtype: Dtype = jnp.float32) -> jax.Array:
    """GroupNorm over `[B, H, W, C]` (call inside a compact method); statistics in float32."""
    groups = num_groups_for(x.shape[-1]) if num_groups is None else num_groups
    return nn.GroupNorm(num_groups=groups, epsilon=1e-6, dtype=dtype)(x)


def _instance_norm_plus(x: jax.Array, alpha: jax.Array, gamma: jax.Array, beta: jax.Array | None):
    x32 = x.astype(jnp.float32)
    means = jnp.mean(x32, axis=(1, 2))  # [B, C]
    m = jnp.mean(means, axis=-1, keepdims=True)
    v = jnp.var(means, axis=-1, keepdims=True)
    means_plus = (means - m) / jnp.sqrt(v + 1e-5)
    h = (x32 - means[:, None, None, :]) / jnp.sqrt(jnp.var(x32, axis=(1, 2), keepdims=True) + 1e-5)
    h = (h + means_plus[:, None, None, :] * alpha) * gamma
    if beta is not None:
        h = h + beta
    return h.astype(x.dtype)


def _normal_one(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class InstanceNormPlus(nn.Module):
    """Unconditional instance norm++ (NCSNv2). `[B, H, W, C] -> [B, H, W, C]`."""

    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        C = x.shape[-1]
        alpha = self.param("alpha", _normal_one, (C,))
        gamma = self.param("gamma", _normal_one, (C,))
        beta = self.param("beta", nn.initializers.zeros, (C,)) if self.use_bias else None
        return _instance_norm_plus(x, alpha, gamma, beta)


class ConditionalInstanceNormPlus(nn.Module):
    """Conditional instance norm++ (NCSN v1): gamma, alpha, beta looked up per noise level.

    `x: [B, H, W, C]`, `y: [B]` integer noise-level indices in [0, num_classes).
    """

    num_classes: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        C = x.shape[-1]
        n = 3 if self.use_bias else 2

        def init(key, shape, dtype=jnp.float32):
            scales = _normal_one(key, (self.num_classes, 2 * C), dtype)
            return jnp.concatenate([scales, jnp.zeros((self.num_classes, (n - 2) * C), dtype)], -1)

        table = self.param("embedding", init, (self.num_classes, n * C))
        coeffs = table[y][:, None, None, :]
        gamma, alpha = coeffs[..., :C], coeffs[..., C:2 * C]
        beta = coeffs[..., 2 * C:] if self.use_bias else None
        return _instance_norm_plus(x, alpha, gamma, beta)
