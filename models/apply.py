"""A network as a plain function of its input and noise labels."""
from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from sde_lib import Array

ModelFn = Callable[[Array, Array], Array]


def get_model_fn(model: nn.Module, params, *, train: bool, dropout_rng: Array | None = None,
                 labels: Array | None = None) -> ModelFn:
    """`f(x: [B, ...], noise_labels: [B]) -> [B, ...]`, the network applied with fixed parameters.

    With `train=True` dropout is active and draws from `dropout_rng` (required when the network
    has dropout); the same key gives the same output. `labels` (`[B]` ints, or a scalar for the
    whole batch) are the class labels of a class-conditional network (`class_labels`).
    """
    if train and dropout_rng is None and getattr(model, "dropout", 0.0) > 0:
        raise ValueError("train=True with dropout needs a dropout_rng")
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}

    def model_fn(x: Array, noise_labels: Array) -> Array:
        if labels is None:
            return model.apply({"params": params}, x, noise_labels, train=train, rngs=rngs)
        class_labels = jnp.broadcast_to(jnp.asarray(labels, jnp.int32), x.shape[:1])
        return model.apply({"params": params}, x, noise_labels, train=train, rngs=rngs, class_labels=class_labels)

    return model_fn
