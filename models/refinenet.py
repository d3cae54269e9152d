"""RefineNet blocks of NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020): residual
blocks with instance norm++, residual conv units (RCU), chained residual pooling (CRP) and
multi-resolution fusion (MSF), after Lin et al. 2017 ("RefineNet").

With `num_classes` set, every normalisation is conditional on the noise-level index `y: [B]`
(NCSN v1: conditional instance norm++ in all blocks); without it the blocks are NCSNv2's
(instance norm++ only in the residual blocks). Inputs are `[B, H, W, C]`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.normalization import ConditionalInstanceNormPlus, InstanceNormPlus

Dtype = Any
Act = Callable[[jax.Array], jax.Array]
# PyTorch's default conv initialisation, as NCSN / NCSNv2 were trained with it
_TORCH_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def ncsn_conv(x: jax.Array, features: int, kernel: int = 3, *, dilation: int = 1, use_bias: bool = True,
              dtype: Dtype = jnp.float32) -> jax.Array:
    return nn.Conv(features, (kernel, kernel), padding="SAME", kernel_dilation=(dilation, dilation),
                   use_bias=use_bias, kernel_init=_TORCH_INIT, dtype=dtype)(x)


def normalize(x: jax.Array, y: jax.Array | None, num_classes: int | None) -> jax.Array:
    """Instance norm++, conditional on `y` when `num_classes` is set (call inside a compact method)."""
    if num_classes is None:
        return InstanceNormPlus()(x)
    return ConditionalInstanceNormPlus(num_classes)(x, y)


def conv_mean_pool(x: jax.Array, features: int, kernel: int, dtype: Dtype) -> jax.Array:
    """Convolution then 2x2 mean pooling (halves H and W)."""
    h = ncsn_conv(x, features, kernel, dtype=dtype)
    return (h[:, ::2, ::2] + h[:, 1::2, ::2] + h[:, ::2, 1::2] + h[:, 1::2, 1::2]) / 4.0


class ResidualBlock(nn.Module):
    """Pre-activation residual block; `resample='down'` halves the resolution unless
    `dilation > 1`, where (as in NCSNv2) dilated convolutions widen the view instead."""

    output_dim: int
    act: Act
    resample: str | None = None
    dilation: int = 1
    num_classes: int | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        C, dt, d = x.shape[-1], self.dtype, self.dilation
        down = self.resample == "down"
        mid = C if down else self.output_dim
        h = self.act(normalize(x, y, self.num_classes))
        h = ncsn_conv(h, mid, dilation=d, dtype=dt)
        h = self.act(normalize(h, y, self.num_classes))
        if down and d == 1:
            h = conv_mean_pool(h, self.output_dim, 3, dt)
            shortcut = conv_mean_pool(x, self.output_dim, 1, dt)
        else:
            h = ncsn_conv(h, self.output_dim, dilation=d, dtype=dt)
            shortcut = x
            if self.output_dim != C or down:
                shortcut = ncsn_conv(x, self.output_dim, 3 if d > 1 else 1, dilation=d, dtype=dt)
        return shortcut + h


class RCUBlock(nn.Module):
    """Residual conv units: n_blocks times (n_stages times [norm] act conv) plus identity."""

    features: int
    n_blocks: int
    n_stages: int
    act: Act
    num_classes: int | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        for _ in range(self.n_blocks):
            residual = x
            for _ in range(self.n_stages):
                if self.num_classes is not None:
                    x = normalize(x, y, self.num_classes)
                x = ncsn_conv(self.act(x), self.features, use_bias=False, dtype=self.dtype)
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling: repeated 5x5 pooling + conv, each stage added to the output
    (max pooling in NCSNv2, normalised average pooling in conditional NCSN)."""

    features: int
    n_stages: int
    act: Act
    num_classes: int | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        x = self.act(x)
        path = x
        for _ in range(self.n_stages):
            if self.num_classes is None:
                path = nn.max_pool(path, (5, 5), strides=(1, 1), padding="SAME")
            else:
                path = normalize(path, y, self.num_classes)
                path = nn.avg_pool(path, (5, 5), strides=(1, 1), padding="SAME")
            path = ncsn_conv(path, self.features, use_bias=False, dtype=self.dtype)
            x = path + x
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: conv each input to `features`, resize to `shape`, sum."""

    shape: tuple[int, int]
    features: int
    interpolation: str = "bilinear"
    num_classes: int | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array], y: jax.Array | None = None) -> jax.Array:
        total = 0.0
        for x in xs:
            if self.num_classes is not None:
                x = normalize(x, y, self.num_classes)
            h = ncsn_conv(x, self.features, dtype=self.dtype)
            total = total + jax.image.resize(h, (h.shape[0], *self.shape, self.features), self.interpolation)
        return total


class RefineBlock(nn.Module):
    """RCU on each input, fuse (MSF) unless this is the coarsest block, CRP, output RCU."""

    output_shape: tuple[int, int]
    features: int
    act: Act
    interpolation: str = "bilinear"
    start: bool = False
    end: bool = False
    num_classes: int | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array], y: jax.Array | None = None) -> jax.Array:
        kw = dict(act=self.act, num_classes=self.num_classes, dtype=self.dtype)
        hs = [RCUBlock(x.shape[-1], 2, 2, **kw)(x, y) for x in xs]
        if self.start:
            h = hs[0]
        else:
            h = MSFBlock(self.output_shape, self.features, self.interpolation, self.num_classes,
                         self.dtype)(hs, y)
        h = CRPBlock(self.features, 2, **kw)(h, y)
        return RCUBlock(self.features, 3 if self.end else 1, 2, **kw)(h, y)


def refinenet_forward(x: jax.Array, y: jax.Array | None, *, nf: int, stages, refine_mults, act: Act,
                      interpolation: str, num_classes: int | None, dtype: Dtype) -> jax.Array:
    """The NCSN / NCSNv2 body (call inside a compact method): a ResNet of `stages`, each
    `(channel multiplier, resample, dilation)` with two residual blocks, then RefineBlocks from
    the coarsest stage up with `refine_mults` channels, then norm, act and a 3x3 conv."""
    out_channels = x.shape[-1]
    h = ncsn_conv(x, nf, dtype=dtype)
    layers = []
    for mult, resample, dilation in stages:
        kw = dict(act=act, dilation=dilation, num_classes=num_classes, dtype=dtype)
        h = ResidualBlock(mult * nf, resample=resample, **kw)(h, y)
        h = ResidualBlock(mult * nf, **kw)(h, y)
        layers.append(h)
    ref = None
    for i, (layer, mult) in enumerate(zip(reversed(layers), refine_mults, strict=True)):
        xs = [layer] if ref is None else [layer, ref]
        ref = RefineBlock(layer.shape[1:3], mult * nf, act, interpolation, start=i == 0,
                          end=i == len(layers) - 1, num_classes=num_classes, dtype=dtype)(xs, y)
    h = act(normalize(ref, y, num_classes))
    return ncsn_conv(h, out_channels, dtype=dtype)
