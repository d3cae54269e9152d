"""NCSN++ and DDPM++: the configurable U-Net of Song et al. 2021 ("Score-Based Generative
Modeling through SDEs", sec. 4.4 and appendix H).

NCSN++ (VE) uses FIR resampling, BigGAN blocks, an input pyramid and Fourier features of
log sigma; DDPM++ (VP) is the same network with positional embeddings of 999 t and no pyramid.
Every architectural option of the reference is a field; `build_model` fills them from a config.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.embeddings import GaussianFourierProjection, timestep_embedding
from models.fir import Downsample, Upsample
from models.layers import AttnBlock, Combine, conv3x3, default_init, get_activation
from models.normalization import group_norm
from models.registry import MODELS
from models.resblocks import ResnetBlockBigGANpp, ResnetBlockDDPMpp

Dtype = Any
CHOICES = {
    "resblock_type": ("ddpm", "biggan"),
    "progressive": ("none", "output_skip", "residual"),
    "progressive_input": ("none", "input_skip", "residual"),
    "progressive_combine": ("sum", "cat"),
    "embedding_type": ("fourier", "positional"),
    "conv_impl": ("xla", "im2col"),
}


@functools.cache
def _checkpointed(block_cls: type[nn.Module]) -> type[nn.Module]:
    """`block_cls` under `nn.remat` (its activations recomputed in the backward pass), named like
    `block_cls` so the parameter tree, and checkpoints, are those of the plain network. `train`
    (argument 3, counting self) is a Python bool, hence static."""
    checkpointed = nn.remat(block_cls, static_argnums=(3,))
    checkpointed.__name__ = block_cls.__name__
    return checkpointed


@MODELS.register("ncsnpp")
class NCSNpp(nn.Module):
    """`(x: [B, H, W, C], noise_labels: [B]) -> [B, H, W, C]`.

    noise_labels are sigma (embedding 'fourier', which embeds log sigma) or a (fractional)
    timestep such as 999 t (embedding 'positional'). With `scale_by_sigma` and Fourier
    embeddings the output is divided by sigma here (`output_divided_by_sigma`); otherwise
    `get_score_fn` applies the scaling.
    """

    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    conditional: bool = True
    fir: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "none"
    progressive_input: str = "none"
    progressive_combine: str = "sum"
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    init_scale: float = 0.0
    scale_by_sigma: bool = False
    nonlinearity: str = "swish"
    centered: bool = True
    dtype: Dtype = jnp.float32
    conv_impl: str = "xla"  # xla | im2col (faster kernel gradients on CPUs)
    remat: bool = False  # recompute each residual block in the backward pass (less memory, ~1/3 more compute)

    def __post_init__(self):
        for field, allowed in CHOICES.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"NCSNpp: {field} must be one of {allowed}, got {getattr(self, field)!r}")
        super().__post_init__()

    @property
    def output_divided_by_sigma(self) -> bool:
        return self.scale_by_sigma and self.embedding_type == "fourier"

    def _embed(self, labels: jax.Array, act) -> jax.Array | None:
        if self.embedding_type == "fourier":
            temb = GaussianFourierProjection(self.nf, self.fourier_scale)(jnp.log(labels))
        else:
            temb = timestep_embedding(labels, self.nf)
        if not self.conditional:
            return None
        temb = temb.astype(self.dtype)
        temb = nn.Dense(4 * self.nf, kernel_init=default_init(), dtype=self.dtype)(temb)
        return nn.Dense(4 * self.nf, kernel_init=default_init(), dtype=self.dtype)(act(temb))

    @nn.compact
    def __call__(self, x: jax.Array, noise_labels: jax.Array, train: bool = False) -> jax.Array:
        act = get_activation(self.nonlinearity)
        dt = self.dtype
        ci = self.conv_impl
        labels = noise_labels.astype(jnp.float32)
        temb = self._embed(labels, act)

        attn = functools.partial(AttnBlock, init_scale=self.init_scale, skip_rescale=self.skip_rescale, dtype=dt)
        upsample = functools.partial(Upsample, with_conv=self.resamp_with_conv, fir=self.fir,
                                     fir_kernel=self.fir_kernel, dtype=dt, conv_impl=ci)
        downsample = functools.partial(Downsample, with_conv=self.resamp_with_conv, fir=self.fir,
                                       fir_kernel=self.fir_kernel, dtype=dt, conv_impl=ci)
        pyramid_up = functools.partial(Upsample, with_conv=self.progressive == "residual", fir=self.fir,
                                       fir_kernel=self.fir_kernel, dtype=dt, conv_impl=ci)
        pyramid_down = functools.partial(Downsample, with_conv=self.progressive_input == "residual",
                                         fir=self.fir, fir_kernel=self.fir_kernel, dtype=dt, conv_impl=ci)
        block_cls = ResnetBlockDDPMpp if self.resblock_type == "ddpm" else ResnetBlockBigGANpp
        if self.remat:
            block_cls = _checkpointed(block_cls)
        if self.resblock_type == "ddpm":
            resblock = functools.partial(block_cls, act=act, dropout=self.dropout,
                                         init_scale=self.init_scale, skip_rescale=self.skip_rescale, dtype=dt, conv_impl=ci)
        else:
            resblock = functools.partial(block_cls, act=act, dropout=self.dropout, fir=self.fir,
                                         fir_kernel=self.fir_kernel, init_scale=self.init_scale,
                                         skip_rescale=self.skip_rescale, dtype=dt, conv_impl=ci)

        out_channels = x.shape[-1]
        x = x.astype(dt)
        if not self.centered:  # data in [0, 1]: the network works on [-1, 1]
            x = 2 * x - 1.0
        num_resolutions = len(self.ch_mult)

        # Downsampling path
        input_pyramid = x if self.progressive_input != "none" else None
        hs = [conv3x3(x, self.nf, dtype=dt, conv_impl=ci)]
        for i_level in range(num_resolutions):
            for _ in range(self.num_res_blocks):
                h = resblock(out_ch=self.nf * self.ch_mult[i_level])(hs[-1], temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attn()(h)
                hs.append(h)
            if i_level != num_resolutions - 1:
                h = downsample()(hs[-1]) if self.resblock_type == "ddpm" else resblock(down=True)(hs[-1], temb, train)
                if self.progressive_input == "input_skip":
                    input_pyramid = pyramid_down()(input_pyramid)
                    h = Combine(method=self.progressive_combine, dtype=dt, conv_impl=ci)(input_pyramid, h)
                elif self.progressive_input == "residual":
                    input_pyramid = pyramid_down(out_ch=h.shape[-1])(input_pyramid)
                    input_pyramid = input_pyramid + h
                    if self.skip_rescale:
                        input_pyramid = input_pyramid / math.sqrt(2.0)
                    h = input_pyramid
                hs.append(h)

        h = hs[-1]
        h = resblock()(h, temb, train)
        h = attn()(h)
        h = resblock()(h, temb, train)

        # Upsampling path
        pyramid = None
        for i_level in reversed(range(num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                h = resblock(out_ch=self.nf * self.ch_mult[i_level])(jnp.concatenate([h, hs.pop()], -1), temb, train)
            if h.shape[1] in self.attn_resolutions:
                h = attn()(h)
            if self.progressive != "none":
                if self.progressive == "output_skip":
                    out = conv3x3(act(group_norm(h, dtype=dt)), out_channels, init_scale=self.init_scale, dtype=dt, conv_impl=ci)
                    pyramid = out if pyramid is None else pyramid_up()(pyramid) + out
                else:  # residual
                    if pyramid is None:
                        pyramid = conv3x3(act(group_norm(h, dtype=dt)), h.shape[-1], dtype=dt, conv_impl=ci)
                    else:
                        pyramid = pyramid_up(out_ch=h.shape[-1])(pyramid) + h
                        if self.skip_rescale:
                            pyramid = pyramid / math.sqrt(2.0)
                        h = pyramid
            if i_level != 0:
                h = upsample()(h) if self.resblock_type == "ddpm" else resblock(up=True)(h, temb, train)
        if hs:
            raise AssertionError("skip connections left unused")

        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = conv3x3(act(group_norm(h, dtype=dt)), out_channels, init_scale=self.init_scale, dtype=dt, conv_impl=ci)
        h = h.astype(jnp.float32)
        if self.output_divided_by_sigma:
            h = h / labels.reshape((-1,) + (1,) * (h.ndim - 1))
        return h
