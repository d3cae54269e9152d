"""NCSNv2 (Song & Ermon 2020, "Improved Techniques for Training Score-Based Generative Models"):
an unconditional RefineNet whose output is divided by the noise level (their technique 3).

Three depths as in the reference: `ncsnv2_64` (CIFAR-10 / 64 px), `ncsnv2_128`, `ncsnv2_256`.
The division by sigma happens in `get_score_fn` (`scale_by_sigma`), since the network's
discrete labels are indices, not noise levels.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import get_activation
from models.refinenet import refinenet_forward
from models.registry import MODELS

Dtype = Any


class NCSNv2(nn.Module):
    """`(x: [B, H, W, C], noise_labels: [B]) -> [B, H, W, C]`, sigma times the score; the
    labels are ignored (the network is unconditional)."""

    nf: int = 128
    nonlinearity: str = "elu"
    interpolation: str = "bilinear"
    centered: bool = True
    dtype: Dtype = jnp.float32

    scale_by_sigma: ClassVar[bool] = True
    stages: ClassVar[tuple] = ((1, None, 1), (2, "down", 1), (2, "down", 2), (2, "down", 4))
    refine_mults: ClassVar[tuple] = (2, 2, 2, 1)

    @nn.compact
    def __call__(self, x: jax.Array, noise_labels: jax.Array, train: bool = False,
                 class_labels: jax.Array | None = None) -> jax.Array:
        if class_labels is not None:
            raise ValueError(f"{type(self).__name__} is not class-conditional; it takes no class_labels")
        del noise_labels, train  # unconditional, no dropout
        h = x.astype(self.dtype)
        if not self.centered:
            h = 2 * h - 1.0
        h = refinenet_forward(h, None, nf=self.nf, stages=self.stages, refine_mults=self.refine_mults,
                              act=get_activation(self.nonlinearity), interpolation=self.interpolation,
                              num_classes=None, dtype=self.dtype)
        return h.astype(jnp.float32)


MODELS.register("ncsnv2_64")(NCSNv2)


@MODELS.register("ncsnv2_128")
class NCSNv2Deeper(NCSNv2):
    """NCSNv2 for 128 px: one more down-sampling stage and 4 nf channels at the bottom."""

    stages: ClassVar[tuple] = ((1, None, 1), (2, "down", 1), (2, "down", 1), (4, "down", 2), (4, "down", 4))
    refine_mults: ClassVar[tuple] = (4, 2, 2, 1, 1)


@MODELS.register("ncsnv2_256")
class NCSNv2Deepest(NCSNv2):
    """NCSNv2 for 256 px: two more down-sampling stages than `ncsnv2_64`."""

    stages: ClassVar[tuple] = ((1, None, 1), (2, "down", 1), (2, "down", 1), (2, "down", 1),
                               (4, "down", 2), (4, "down", 4))
    refine_mults: ClassVar[tuple] = (4, 2, 2, 2, 1, 1)
