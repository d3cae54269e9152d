"""Convolutions, NIN projections, self-attention and residual blocks of DDPM / NCSN++.

Ho et al. 2020 ("DDPM", appendix B) and Song et al. 2021 (NCSN++ / DDPM++, appendix H).
Inputs are NHWC, `[B, H, W, C]`. Every layer computes in `dtype` (bfloat16 for mixed
precision) and keeps float32 parameters.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import im2col_conv
from models.normalization import group_norm

Dtype = Any
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "swish": nn.swish,
    "silu": nn.swish,
    "elu": nn.elu,
    "relu": nn.relu,
    "lrelu": lambda x: nn.leaky_relu(x, negative_slope=0.2),
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The reference's nonlinearities by name: swish | elu | relu | lrelu."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown nonlinearity {name!r}; known: {sorted(ACTIVATIONS)}") from None


def default_init(scale: float = 1.0) -> nn.initializers.Initializer:
    """DDPM's initialiser: fan-average uniform variance scaling; scale 0 means (almost) zero, so
    the last layer of a residual branch starts as the identity map."""
    return nn.initializers.variance_scaling(1e-10 if scale == 0 else scale, "fan_avg", "uniform")


CONV_IMPLS = {"xla": jax.lax.conv_general_dilated, "im2col": im2col_conv.conv_general_dilated}


def conv_function(conv_impl: str) -> Callable[..., jax.Array]:
    """The convolution primitive of `conv_impl`: "xla" (XLA's) or "im2col" (the same forward
    pass with the kernel gradient as one matmul, faster on CPUs; `models.im2col_conv`)."""
    try:
        return CONV_IMPLS[conv_impl]
    except KeyError:
        raise ValueError(f"unknown conv_impl {conv_impl!r}; known: {sorted(CONV_IMPLS)}") from None


def conv3x3(x: jax.Array, features: int, *, stride: int = 1, dilation: int = 1, use_bias: bool = True,
            init_scale: float = 1.0, dtype: Dtype = jnp.float32, conv_impl: str = "xla") -> jax.Array:
    """A 3x3 'SAME' convolution with DDPM initialisation (call inside a compact method)."""
    return nn.Conv(features, (3, 3), strides=(stride, stride), kernel_dilation=(dilation, dilation),
                   padding="SAME", use_bias=use_bias, kernel_init=default_init(init_scale),
                   dtype=dtype, conv_general_dilated=conv_function(conv_impl))(x)


def conv1x1(x: jax.Array, features: int, *, use_bias: bool = True, init_scale: float = 1.0,
            dtype: Dtype = jnp.float32, conv_impl: str = "xla") -> jax.Array:
    return nn.Conv(features, (1, 1), use_bias=use_bias, kernel_init=default_init(init_scale),
                   dtype=dtype, conv_general_dilated=conv_function(conv_impl))(x)


class NIN(nn.Module):
    """Network-in-network: a per-pixel linear map over channels, `[..., C] -> [..., features]`."""

    features: int
    init_scale: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("W", default_init(self.init_scale), (x.shape[-1], self.features))
        b = self.param("b", nn.initializers.zeros, (self.features,))
        return jnp.einsum("...c,cd->...d", x, w.astype(self.dtype)) + b.astype(self.dtype)


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection (DDPM; NCSN++'s AttnBlockpp
    when `skip_rescale`, which divides the sum by sqrt 2). `[B, H, W, C] -> [B, H, W, C]`."""

    skip_rescale: bool = False
    init_scale: float = 0.0
    num_groups: int | None = None  # None: the NCSN++ rule min(C // 4, 32)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        B, H, W, C = x.shape
        h = group_norm(x, self.num_groups, self.dtype)
        q = NIN(C, dtype=self.dtype)(h)
        k = NIN(C, dtype=self.dtype)(h)
        v = NIN(C, dtype=self.dtype)(h)
        logits = jnp.einsum("bhwc,bHWc->bhwHW", q, k).reshape(B, H, W, H * W) * C**-0.5
        # softmax in float32: bf16 logits lose the small differences that matter after exp
        w = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        h = jnp.einsum("bhwHW,bHWc->bhwc", w.reshape(B, H, W, H, W), v)
        h = NIN(C, init_scale=self.init_scale, dtype=self.dtype)(h)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class Combine(nn.Module):
    """NCSN++'s combiner of an input-pyramid level with features: 1x1 conv, then sum or concat."""

    method: str = "cat"
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        h = conv1x1(x, y.shape[-1], dtype=self.dtype, conv_impl=self.conv_impl)
        if self.method == "cat":
            return jnp.concatenate([h, y], axis=-1)
        if self.method == "sum":
            return h + y
        raise ValueError(f"progressive_combine must be 'sum' or 'cat', got {self.method!r}")


def time_bias(temb: jax.Array, features: int, act, dtype: Dtype) -> jax.Array:
    """The per-channel bias a residual block adds from the noise embedding, `[B, F] -> [B, 1, 1, f]`."""
    return nn.Dense(features, kernel_init=default_init(), dtype=dtype)(act(temb))[:, None, None, :]
