"""FIR up/down-sampling (Karras et al. 2020, "StyleGAN2"; used by NCSN++, Song et al. 2021).

Resampling filters the signal with a separable low-pass kernel (default [1, 3, 3, 1]) instead
of nearest-neighbour copies or box averaging, which reduces aliasing. All maps are NHWC,
`[B, H, W, C]`; upsampling doubles H and W, downsampling halves them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.layers import conv3x3, conv_function, default_init

Dtype = Any


def _kernel_2d(kernel: Sequence[float]) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == 1:
        k = np.outer(k, k)
    return k / k.sum()


def _separable(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`(u, v)` with `kernel = outer(u, v)` if the kernel is rank one (the FIR kernels are), else None."""
    i, j = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    u, v = kernel[:, j], kernel[i, :] / kernel[i, j]
    return (u, v) if np.allclose(np.outer(u, v), kernel, rtol=1e-12, atol=0) else None


def _fir_axis(x: jax.Array, taps: np.ndarray, axis: int, down: int) -> jax.Array:
    """Correlate `x` along `axis` with `taps` (valid part), keeping every `down`-th output."""
    n = (x.shape[axis] - len(taps)) // down + 1
    span = (n - 1) * down + 1
    return sum(float(t) * jax.lax.slice_in_dim(x, a, a + span, down, axis) for a, t in enumerate(taps) if t != 0)


def upfirdn2d(x: jax.Array, kernel: np.ndarray, *, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> jax.Array:
    """Zero-insert by `up`, pad, convolve each channel with `kernel`, keep every `down`-th pixel.

    Written as sums of shifted (strided) slices, one pass per axis for a separable kernel: XLA's
    CPU backend runs the equivalent depthwise, input-dilated convolution and its gradient one to
    two orders of magnitude slower, while these are plain fused elementwise loops (equal up to
    float rounding)."""
    # true convolution = correlation with the flipped kernel
    kernel = np.asarray(kernel, np.float64)[::-1, ::-1]
    # interior padding inserts up-1 zeros between pixels, not after the last one: pad those too
    lo, hi = pad[0], pad[1] + up - 1
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (lo, hi, up - 1), (lo, hi, up - 1), (0, 0, 0)])
    factors = _separable(kernel)
    if factors is not None:
        return _fir_axis(_fir_axis(x, factors[0], 1, down), factors[1], 2, down)
    kh, kw = kernel.shape
    ho, wo = (x.shape[1] - kh) // down + 1, (x.shape[2] - kw) // down + 1
    return sum(float(kernel[a, b]) * x[:, a:a + (ho - 1) * down + 1:down, b:b + (wo - 1) * down + 1:down]
               for a in range(kh) for b in range(kw) if kernel[a, b] != 0)


def upsample_2d(x: jax.Array, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> jax.Array:
    """FIR upsampling by `factor`: `[B, H, W, C] -> [B, fH, fW, C]`."""
    k = _kernel_2d(kernel) * factor**2
    p = k.shape[0] - factor
    return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: jax.Array, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> jax.Array:
    """FIR downsampling by `factor`: `[B, H, W, C] -> [B, H/f, W/f, C]`."""
    k = _kernel_2d(kernel)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def naive_downsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
    B, H, W, C = x.shape
    return x.reshape(B, H // factor, factor, W // factor, factor, C).mean(axis=(2, 4))


class FIRConv(nn.Module):
    """A 3x3 convolution fused with FIR resampling (StyleGAN2's `upsample_conv_2d` /
    `conv_downsample_2d`): `up` is a stride-2 transposed conv followed by the FIR filter,
    `down` the FIR filter followed by a stride-2 conv."""

    features: int
    up: bool = False
    down: bool = False
    kernel: tuple[float, ...] = (1, 3, 3, 1)
    init_scale: float = 1.0
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("kernel", default_init(self.init_scale), (3, 3, x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        w = w.astype(self.dtype)
        dn = ("NHWC", "HWIO", "NHWC")
        if self.up:
            # stride-2 conv on the zero-inserted input, [H, W] -> [2H + 1, 2W + 1], then filter back
            # to [2H, 2W]. The kernel is not flipped: the 2021 code flips it once and lets
            # conv_transpose(transpose_kernel=True) flip it back (its released weights assume that).
            if self.conv_impl == "xla":
                h = jax.lax.conv_general_dilated(x, w, (1, 1), [(2, 2), (2, 2)],
                                                 lhs_dilation=(2, 2), dimension_numbers=dn)
            else:  # the same map with the zeros inserted explicitly (im2col takes no lhs_dilation)
                zero = jnp.zeros((), x.dtype)
                x_dilated = jax.lax.pad(x, zero, [(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 0)])
                h = conv_function(self.conv_impl)(x_dilated, w, (1, 1), [(2, 2), (2, 2)],
                                                  dimension_numbers=dn)
            k = _kernel_2d(self.kernel) * 4
            p = k.shape[0] - 2 - 2
            h = upfirdn2d(h, k, pad=((p + 1) // 2 + 1, p // 2 + 1))
        elif self.down:
            k = _kernel_2d(self.kernel)
            p = k.shape[0] - 2 + 2
            h = upfirdn2d(x, k, pad=((p + 1) // 2, p // 2))
            h = conv_function(self.conv_impl)(h, w, (2, 2), "VALID", dimension_numbers=dn)
        else:
            h = conv_function(self.conv_impl)(x, w, (1, 1), "SAME", dimension_numbers=dn)
        return h + b.astype(self.dtype)


class Upsample(nn.Module):
    """x2 upsampling: nearest or FIR, optionally with a 3x3 conv to `out_ch` channels."""

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_ch = self.out_ch or x.shape[-1]
        if self.fir:
            if self.with_conv:
                return FIRConv(out_ch, up=True, kernel=self.fir_kernel, dtype=self.dtype, conv_impl=self.conv_impl)(x)
            return upsample_2d(x, self.fir_kernel)
        h = naive_upsample_2d(x)
        return conv3x3(h, out_ch, dtype=self.dtype, conv_impl=self.conv_impl) if self.with_conv else h


class Downsample(nn.Module):
    """/2 downsampling: average pooling or FIR, optionally with a conv to `out_ch` channels."""

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_ch = self.out_ch or x.shape[-1]
        if self.fir:
            if self.with_conv:
                return FIRConv(out_ch, down=True, kernel=self.fir_kernel, dtype=self.dtype,
                               conv_impl=self.conv_impl)(x)
            return downsample_2d(x, self.fir_kernel)
        if self.with_conv:
            return conv3x3(x, out_ch, stride=2, dtype=self.dtype, conv_impl=self.conv_impl)
        return naive_downsample_2d(x)
