"""The DDPM U-Net of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", appendix B),
as in the 2021 score-SDE code: GroupNorm(32), residual blocks with a time bias, attention at
16x16, conv down/upsampling, zero-initialised output layers."""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.embeddings import add_label_embedding, timestep_embedding
from models.fir import Downsample, Upsample
from models.layers import AttnBlock, conv3x3, default_init, get_activation
from models.normalization import group_norm
from models.registry import MODELS
from models.resblocks import ResnetBlockDDPMpp

Dtype = Any


@MODELS.register("ddpm")
class DDPM(nn.Module):
    """`(x: [B, H, W, C], noise_labels: [B], class_labels: [B] | None) -> [B, H, W, C]`: an eps
    prediction, with noise_labels a (fractional) timestep, e.g. the step index i or 999 t, and
    with `num_classes > 0` a class label (or the null class) embedded beside it."""

    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    conditional: bool = True
    scale_by_sigma: bool = False
    nonlinearity: str = "swish"
    num_groups: int = 32
    centered: bool = True
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"  # xla | im2col (faster kernel gradients on CPUs)
    num_classes: int = 0  # class-conditional with this many classes (+ a learned null class); 0: unconditional

    @nn.compact
    def __call__(self, x: jax.Array, noise_labels: jax.Array, train: bool = False,
                 class_labels: jax.Array | None = None) -> jax.Array:
        act = get_activation(self.nonlinearity)
        dt = self.dtype
        ci = self.conv_impl
        resblock = functools.partial(ResnetBlockDDPMpp, act=act, dropout=self.dropout, skip_rescale=False,
                                     init_scale=0.0, num_groups=self.num_groups, dtype=dt, conv_impl=ci)
        attn = functools.partial(AttnBlock, skip_rescale=False, init_scale=0.0, num_groups=self.num_groups, dtype=dt)
        temb = None
        if self.conditional:
            temb = timestep_embedding(noise_labels.astype(jnp.float32), self.nf).astype(dt)
            temb = add_label_embedding(temb, class_labels, self.num_classes)
            temb = nn.Dense(4 * self.nf, kernel_init=default_init(), dtype=dt)(temb)
            temb = nn.Dense(4 * self.nf, kernel_init=default_init(), dtype=dt)(act(temb))

        out_channels = x.shape[-1]
        h = x.astype(dt)
        if not self.centered:  # data in [0, 1]: the network works on [-1, 1]
            h = 2 * h - 1.0
        num_resolutions = len(self.ch_mult)
        hs = [conv3x3(h, self.nf, dtype=dt, conv_impl=ci)]
        for i_level in range(num_resolutions):
            for _ in range(self.num_res_blocks):
                h = resblock(out_ch=self.nf * self.ch_mult[i_level])(hs[-1], temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attn()(h)
                hs.append(h)
            if i_level != num_resolutions - 1:
                hs.append(Downsample(with_conv=self.resamp_with_conv, dtype=dt, conv_impl=ci)(hs[-1]))

        h = hs[-1]
        h = resblock()(h, temb, train)
        h = attn()(h)
        h = resblock()(h, temb, train)

        for i_level in reversed(range(num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                h = resblock(out_ch=self.nf * self.ch_mult[i_level])(jnp.concatenate([h, hs.pop()], -1), temb, train)
            if h.shape[1] in self.attn_resolutions:
                h = attn()(h)
            if i_level != 0:
                h = Upsample(with_conv=self.resamp_with_conv, dtype=dt, conv_impl=ci)(h)
        if hs:
            raise AssertionError("skip connections left unused")
        h = act(group_norm(h, self.num_groups, dt))
        return conv3x3(h, out_channels, init_scale=0.0, dtype=dt, conv_impl=ci).astype(jnp.float32)
