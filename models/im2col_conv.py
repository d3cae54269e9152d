"""A 2-D convolution whose gradients XLA's CPU backend runs fast: the kernel gradient as one
matmul, im2col(x)^T @ dy, and the input gradient as a forward convolution (a CPU speed-up).

XLA's CPU backend computes the kernel gradient of a convolution (the "backward filter"
convolution) slowly inside large training graphs; writing it as a matrix product of the input
patches and the output gradient makes a whole NCSN++ / DDPM++ training step several times faster
on a CPU. The forward pass stays XLA's convolution, so the values are those of
`lax.conv_general_dilated`; both gradients are equal to its own up to summation order.

`conv_general_dilated` has the signature flax's `nn.Conv` calls (its `conv_general_dilated`
field); it supports NHWC / HWIO, any strides and explicit or named padding, no dilation, no
feature groups.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def _xla_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding) -> jax.Array:
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding) -> jax.Array:
    return _xla_conv(x, w, strides, padding)


def _conv_fwd(x, w, strides, padding):
    return _xla_conv(x, w, strides, padding), (x, w)


def _patches(x: jax.Array, kernel_hw: tuple[int, int], out_hw: tuple[int, int], strides: tuple[int, int],
             padding: Padding) -> jax.Array:
    """im2col: `[B, H, W, C] -> [B, H', W', kh * kw * C]`, the input window of each output pixel
    in the (kh, kw, C) order of an HWIO kernel."""
    (kh, kw), (ho, wo), (sh, sw) = kernel_hw, out_hw, strides
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    return jnp.concatenate([xp[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
                            for i in range(kh) for j in range(kw)], axis=-1)


def _input_grad(x: jax.Array, w: jax.Array, dy: jax.Array, strides: tuple[int, int], padding: Padding) -> jax.Array:
    """dL/dx of the convolution: a forward (HWIO) convolution of `dy`, zero-inserted by the
    strides, with the flipped kernel whose in/out channels are swapped in memory. XLA's CPU
    backend gives that form to its fast convolution library but runs the transposed-kernel form
    that `jax.vjp` emits in a generic loop, 3-4x slower (most of a U-Net training step)."""
    kernel_hw = w.shape[:2]
    pads = tuple((k - 1 - lo, n + k - 1 - ((m - 1) * s + 1) - (k - 1 - lo))
                 for (lo, _), k, n, m, s in zip(padding, kernel_hw, x.shape[1:3], dy.shape[1:3], strides, strict=True))
    if any(p < 0 for pad in pads for p in pad):  # padding wider than the kernel: not used by the networks
        _, input_vjp = jax.vjp(lambda x: _xla_conv(x, w, strides, padding), x)
        return input_vjp(dy)[0]
    if strides != (1, 1):
        zero = jnp.zeros((), dy.dtype)
        dy = lax.pad(dy, zero, [(0, 0, 0), (0, 0, strides[0] - 1), (0, 0, strides[1] - 1), (0, 0, 0)])
    return _xla_conv(dy, jnp.flip(w, (0, 1)).swapaxes(2, 3), (1, 1), pads)


def _conv_bwd(strides, padding, residuals, dy):
    x, w = residuals
    kh, kw, cin, cout = w.shape
    dx = _input_grad(x, w, dy, strides, padding)
    patches = _patches(x, (kh, kw), dy.shape[1:3], strides, padding)
    dw = jnp.dot(patches.reshape(-1, kh * kw * cin).T, dy.reshape(-1, cout),
                 preferred_element_type=jnp.promote_types(w.dtype, jnp.float32))  # bf16 sums in f32
    return dx, dw.reshape(kh, kw, cin, cout).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(x: jax.Array, w: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None, dimension_numbers=None,
                         feature_group_count: int = 1, precision=None, **unused) -> jax.Array:
    """`lax.conv_general_dilated` for `x: [B, H, W, Cin]`, `w: [kh, kw, Cin, Cout]` (NHWC /
    HWIO) with the im2col kernel gradient. Raises ValueError for what it does not support."""
    if feature_group_count != 1:
        raise ValueError("the im2col convolution does not support feature groups")
    for name, dilation in (("lhs_dilation", lhs_dilation), ("rhs_dilation", rhs_dilation)):
        if dilation is not None and any(d != 1 for d in dilation):
            raise ValueError(f"the im2col convolution does not support {name}={tuple(dilation)}")
    if dimension_numbers is not None and (lax.conv_dimension_numbers(x.shape, w.shape, dimension_numbers)
                                          != lax.conv_dimension_numbers(x.shape, w.shape, _DN)):
        raise ValueError(f"the im2col convolution takes NHWC / HWIO, got {dimension_numbers}")
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding)
    return _conv(x, w, strides, tuple((int(lo), int(hi)) for lo, hi in padding))
