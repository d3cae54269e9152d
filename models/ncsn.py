"""NCSN v1 (Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data
Distribution"): CondRefineNet, a RefineNet whose every normalisation is a conditional instance
norm++ indexed by the noise level. Its labels are integer indices into the descending list of
SMLD noise levels (discrete VE: `round((T - t)(N - 1))`)."""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import get_activation
from models.refinenet import refinenet_forward
from models.registry import MODELS

Dtype = Any


@MODELS.register("ncsn")
class NCSN(nn.Module):
    """`(x: [B, H, W, C], noise_labels: [B] int in [0, num_classes)) -> [B, H, W, C]`, the score."""

    num_classes: int = 10
    nf: int = 128
    nonlinearity: str = "elu"
    interpolation: str = "bilinear"
    centered: bool = True
    dtype: Dtype = jnp.float32

    scale_by_sigma: ClassVar[bool] = False
    stages: ClassVar[tuple] = ((1, None, 1), (2, "down", 1), (2, "down", 2), (2, "down", 4))
    refine_mults: ClassVar[tuple] = (2, 2, 2, 1)

    @nn.compact
    def __call__(self, x: jax.Array, noise_labels: jax.Array, train: bool = False,
                 class_labels: jax.Array | None = None) -> jax.Array:
        if class_labels is not None:
            raise ValueError(f"{type(self).__name__} is not class-conditional; it takes no class_labels")
        del train  # no dropout
        y = jnp.clip(noise_labels.astype(jnp.int32), 0, self.num_classes - 1)
        h = x.astype(self.dtype)
        if not self.centered:
            h = 2 * h - 1.0
        h = refinenet_forward(h, y, nf=self.nf, stages=self.stages, refine_mults=self.refine_mults,
                              act=get_activation(self.nonlinearity), interpolation=self.interpolation,
                              num_classes=self.num_classes, dtype=self.dtype)
        return h.astype(jnp.float32)
