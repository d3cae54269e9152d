"""A network as a plain function of its input and noise labels."""
from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from sde_lib import Array

ModelFn = Callable[[Array, Array], Array]


def get_model_fn(model: nn.Module, params, *, train: bool, dropout_rng: Array | None = None) -> ModelFn:
    """`f(x: [B, ...], labels: [B]) -> [B, ...]`, the network applied with fixed parameters.

    With `train=True` dropout is active and draws from `dropout_rng` (required when the network
    has dropout); the same key gives the same output.
    """
    if train and dropout_rng is None and getattr(model, "dropout", 0.0) > 0:
        raise ValueError("train=True with dropout needs a dropout_rng")
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}

    def model_fn(x: Array, labels: Array) -> Array:
        return model.apply({"params": params}, x, labels, train=train, rngs=rngs)

    return model_fn
