"""The thin config layer of `models`: build a network from `config.model` / `config.data`,
initialise it, and count its parameters without allocating them."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models.ncsn import NCSN
from models.registry import MODELS

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Initialisation runs once and costs nothing to execute, but it is hundreds of unrolled random-number
# kernels: compiled at XLA's default optimisation (or run op by op) it dominates start-up on a CPU
# (a tiny NCSN++: 37 s of CPU at O2 and 49 s eagerly, 11 s at O0). One-off programs compile at O0.
ONE_OFF_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _module_kwargs(cls: type[nn.Module], config: ml_collections.ConfigDict) -> dict:
    """Fill the module's fields from same-named keys of `config.model`, plus the few that live
    elsewhere (data centring, compute dtype, number of noise levels)."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}
    model_cfg = config.model
    kwargs = {}
    for name in fields:
        if name in model_cfg:
            value = model_cfg[name]
            kwargs[name] = tuple(value) if isinstance(value, list | tuple) else value
    if "centered" in fields:
        kwargs["centered"] = bool(config.data.centered)
    if issubclass(cls, NCSN):  # NCSN v1's "classes" are its noise levels, not model.num_classes
        kwargs["num_classes"] = int(model_cfg.num_scales)
    if kwargs.get("conv_impl") == "auto":
        kwargs["conv_impl"] = default_conv_impl()
    if "dtype" in fields:
        try:
            kwargs["dtype"] = DTYPES[model_cfg.compute_dtype]
        except KeyError:
            raise ValueError(f"config.model.compute_dtype must be one of {sorted(DTYPES)}, "
                             f"got {model_cfg.compute_dtype!r}") from None
    return kwargs


def num_label_classes(model: nn.Module) -> int:
    """The number of class labels a network is conditioned on (0: unconditional). NCSN v1's
    `num_classes` counts its noise levels, not classes."""
    return 0 if isinstance(model, NCSN) else int(getattr(model, "num_classes", 0))


def default_conv_impl(backend: str | None = None) -> str:
    """What `model.conv_impl = "auto"` means on `backend` (default: JAX's): "im2col" on CPUs, where
    XLA's convolution weight gradient is several times slower than one im2col matmul (README,
    Benchmarks), "xla" on accelerators, whose convolution kernels are already fast."""
    return "im2col" if (backend or jax.default_backend()) == "cpu" else "xla"


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The network named `config.model.name`, its fields taken from the config.

    Raises KeyError listing the registered names when the name is unknown.
    """
    cls = MODELS.get(config.model.name)
    return cls(**_module_kwargs(cls, config))


def input_shape_of(config: ml_collections.ConfigDict, batch_size: int = 1) -> tuple[int, ...]:
    """`[B, H, W, C]` of the data the config describes."""
    return (batch_size, config.data.image_size, config.data.image_size, config.data.num_channels)


def init_params(rng: jax.Array, model: nn.Module, input_shape: Sequence[int]):
    """Initial parameters for inputs of `input_shape` (`[B, ...]`); float32 whatever the compute dtype.

    Traceable (inside `jit`/`eval_shape` it is plain code); called on a concrete key it runs as one
    program compiled with `ONE_OFF_COMPILER_OPTIONS`.
    """
    def init(key):
        x = jnp.zeros(tuple(input_shape), jnp.float32)
        labels = jnp.ones((input_shape[0],), jnp.float32)
        return model.init({"params": key}, x, labels, train=False)["params"]

    if isinstance(rng, jax.core.Tracer):
        return init(rng)
    return jax.jit(init).lower(rng).compile(ONE_OFF_COMPILER_OPTIONS)(rng)


def count_params(config_or_model: ml_collections.ConfigDict | nn.Module,
                 input_shape: Sequence[int] | None = None) -> int:
    """Number of parameters, from `jax.eval_shape` of the initialiser (nothing is allocated).

    Takes a config (input shape from `config.data` unless given) or a module and `input_shape`.
    """
    if isinstance(config_or_model, nn.Module):
        if input_shape is None:
            raise ValueError("count_params(model) needs input_shape")
        model = config_or_model
    else:
        model = build_model(config_or_model)
        input_shape = input_shape or input_shape_of(config_or_model)
    shapes = jax.eval_shape(lambda key: init_params(key, model, input_shape), jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
