"""Residual blocks of NCSN++ / DDPM++ (Song et al. 2021, appendix H): the DDPM block and the
BigGAN block (Brock et al. 2019) that resamples inside the residual branch.

Both take `x: [B, H, W, C]` and the noise embedding `temb: [B, E]` (or None for an
unconditional network) and add a per-channel bias projected from it (`Dense_0`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import fir as fir_lib
from models.layers import NIN, conv1x1, conv3x3, time_bias
from models.normalization import group_norm

Dtype = Any


class ResnetBlockDDPMpp(nn.Module):
    """GroupNorm-act-conv, + time bias, GroupNorm-act-dropout-conv, and a shortcut (NIN or conv)."""

    act: Callable[[jax.Array], jax.Array]
    out_ch: int | None = None
    conv_shortcut: bool = False
    dropout: float = 0.1
    skip_rescale: bool = False
    init_scale: float = 0.0
    num_groups: int | None = None  # None: the NCSN++ rule min(C // 4, 32); DDPM uses 32
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None, train: bool = False) -> jax.Array:
        C = x.shape[-1]
        out_ch = self.out_ch or C
        h = self.act(group_norm(x, self.num_groups, self.dtype))
        h = conv3x3(h, out_ch, dtype=self.dtype, conv_impl=self.conv_impl)
        if temb is not None:
            h = h + time_bias(temb, out_ch, self.act, self.dtype)
        h = self.act(group_norm(h, self.num_groups, self.dtype))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(h, out_ch, init_scale=self.init_scale, dtype=self.dtype, conv_impl=self.conv_impl)
        if C != out_ch:
            if self.conv_shortcut:
                x = conv3x3(x, out_ch, dtype=self.dtype, conv_impl=self.conv_impl)
            else:
                x = NIN(out_ch, dtype=self.dtype)(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class ResnetBlockBigGANpp(nn.Module):
    """BigGAN residual block; with `up` / `down` it resamples both branches (FIR or naive) and
    the shortcut becomes a 1x1 conv."""

    act: Callable[[jax.Array], jax.Array]
    up: bool = False
    down: bool = False
    out_ch: int | None = None
    dropout: float = 0.1
    fir: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"

    def _resample(self, x: jax.Array) -> jax.Array:
        if self.up:
            return fir_lib.upsample_2d(x, self.fir_kernel) if self.fir else fir_lib.naive_upsample_2d(x)
        if self.down:
            return fir_lib.downsample_2d(x, self.fir_kernel) if self.fir else fir_lib.naive_downsample_2d(x)
        return x

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None, train: bool = False) -> jax.Array:
        C = x.shape[-1]
        out_ch = self.out_ch or C
        h = self.act(group_norm(x, dtype=self.dtype))
        h, x = self._resample(h), self._resample(x)
        h = conv3x3(h, out_ch, dtype=self.dtype, conv_impl=self.conv_impl)
        if temb is not None:
            h = h + time_bias(temb, out_ch, self.act, self.dtype)
        h = self.act(group_norm(h, dtype=self.dtype))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(h, out_ch, init_scale=self.init_scale, dtype=self.dtype, conv_impl=self.conv_impl)
        if C != out_ch or self.up or self.down:
            x = conv1x1(x, out_ch, dtype=self.dtype, conv_impl=self.conv_impl)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h
