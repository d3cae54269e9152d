"""Parameters of the 2021 reference networks in this framework's layout.

Two sources, both from Song et al. 2021 ("Score-Based Generative Modeling through SDEs"):
- the JAX code (yang-song/score_sde): a flax.linen parameter tree (`optimizer.target` /
  `params_ema` of its checkpoints). Our modules reproduce its names except for a few classes
  (`AttnBlockpp`, `ResnetBlockDDPM`, the FIR `Conv2d`, NCSNv2's `ConvMeanPool`), renamed here.
- the PyTorch port (yang-song/score_sde_pytorch): a `state_dict` whose NCSN++ / DDPM modules sit
  in one list, `all_modules.N`, in call order. The N-th list entry with parameters is our N-th
  top-level module with parameters in call order; inside it the names are ours again, with
  PyTorch layouts: conv OIHW -> HWIO, linear (out, in) -> (in, out), GroupNorm weight -> scale.

Every function checks each key and shape against the network built from the config and raises
`ConversionError` naming what is missing, extra or of another shape. Arrays are numpy.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from models.build import init_params
from models.ddpm import DDPM
from models.ncsnpp import NCSNpp
from models.ncsnv2 import NCSNv2

# The one PyTorch tensor that is not a parameter: the SMLD noise levels, rebuilt here from the config.
_PYTORCH_BUFFERS = ("sigmas",)


class ConversionError(ValueError):
    """Reference weights that do not fit the network of the given config."""


def _ncsnv2_conv_mean_pool(match: re.Match) -> str:
    # the reference wraps the two convolutions of a down-sampling block in ConvMeanPool modules;
    # ours are that block's Conv_1 (residual branch) and Conv_2 (shortcut), after its Conv_0
    return f"{match[1]}Conv_{int(match[2]) + 1}/"


# (network class, [(regex on the '/'-joined reference path, replacement)]); first isinstance match wins
_FLAX2021_RENAMES: list[tuple[type[nn.Module], list]] = [
    (NCSNpp, [(r"(^|/)AttnBlockpp_", r"\1AttnBlock_"),
              (r"(^|/)Conv2d_(\d+)/weight$", r"\1FIRConv_\2/kernel"),
              (r"(^|/)Conv2d_(\d+)/bias$", r"\1FIRConv_\2/bias")]),
    (DDPM, [(r"(^|/)ResnetBlockDDPM_", r"\1ResnetBlockDDPMpp_")]),
    (NCSNv2, [(r"(^|/)InstanceNorm2dPlus_", r"\1InstanceNormPlus_"),
              (r"(^|/)ConvMeanPool_(\d+)/Conv_0/", _ncsnv2_conv_mean_pool)]),
]
_PYTORCH_NETWORKS = (NCSNpp, DDPM)  # the port's NCSNv2 names its layers freely (no all_modules list)


def _unsupported(model: nn.Module, source: str, supported: Sequence[type]) -> ConversionError:
    names = ", ".join(cls.__name__ for cls in supported)
    return ConversionError(f"no converter from {source} for the network {type(model).__name__}; "
                           f"supported: {names}")


def expected_shapes(model: nn.Module, input_shape: Sequence[int]) -> tuple[dict[str, tuple], list[str]]:
    """`({'/'-path: shape}, top-level module names in call order)` of `model`'s parameters, from
    `jax.eval_shape` (nothing allocated). Call order is recorded while tracing, since a params
    dict is sorted by name once it passes through `jax.tree`."""
    order: list[str] = []

    def record(next_fun, args, kwargs, context):
        path = context.module.path
        if len(path) == 1 and path[0] not in order:
            order.append(path[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        shapes = jax.eval_shape(lambda key: init_params(key, model, input_shape), jax.random.key(0))
    flat = {"/".join(path): tuple(leaf.shape) for path, leaf in flatten_dict(shapes).items()}
    owners = {path.split("/", 1)[0] for path in flat}
    return flat, [name for name in order if name in owners]


def _fit(value: np.ndarray, shape: tuple) -> np.ndarray | None:
    """`value` in `shape`, allowing only leading unit axes (the 2021 norms' (1, 1, 1, C))."""
    value = np.asarray(value)
    if value.shape == shape:
        return value
    squeezed = value.shape[value.ndim - len(shape):] if value.ndim >= len(shape) else None
    if squeezed == shape and math.prod(value.shape[:value.ndim - len(shape)]) == 1:
        return value.reshape(shape)
    return None


def _assemble(converted: dict[str, tuple[str, tuple, np.ndarray]], expected: dict[str, tuple], source: str):
    """The nested params from `{our path: (reference name, its shape there, array in our layout)}`,
    or a ConversionError naming the missing, extra and misshapen arrays (the first few of each)."""
    extra, misshapen, params = [], [], {}
    for path, (ref_name, ref_shape, value) in converted.items():
        if path not in expected:
            extra.append(f"{ref_name} {ref_shape}")
            continue
        fitted = _fit(value, expected[path])
        if fitted is None:
            misshapen.append(f"{ref_name} {ref_shape} for {path} {expected[path]}")
            continue
        params[tuple(path.split("/"))] = np.asarray(fitted, np.float32)
    missing = [f"{path} {shape}" for path, shape in expected.items() if path not in converted]
    if missing or extra or misshapen:
        parts = [f"{len(items)} {kind} ({'; '.join(items[:3])}{'; ...' if len(items) > 3 else ''})"
                 for kind, items in (("missing", missing), ("extra", extra), ("of another shape", misshapen)) if items]
        raise ConversionError(f"{source} does not fit the config's network: {', '.join(parts)}")
    return unflatten_dict(params)


def from_flax2021(ref_params: Mapping, model: nn.Module, input_shape: Sequence[int], *,
                  source: str = "the 2021 JAX parameters"):
    """Our params from a 2021 score_sde parameter tree (nested dicts, or flat '/'-joined paths)."""
    renames = next((rules for cls, rules in _FLAX2021_RENAMES if isinstance(model, cls)), None)
    if renames is None:
        raise _unsupported(model, source, [cls for cls, _ in _FLAX2021_RENAMES])
    flat = {"/".join(map(str, path)): value for path, value in flatten_dict(dict(ref_params)).items()}
    converted = {}
    for name, value in flat.items():
        path = name
        for pattern, replacement in renames:
            path = re.sub(pattern, replacement, path)
        converted[path] = (name, np.shape(value), value)
    expected, _ = expected_shapes(model, input_shape)
    return _assemble(converted, expected, source)


def strip_data_parallel(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state dict without the `module.` prefix that torch.nn.DataParallel adds to every key."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def _pytorch_leaf(prefix: str, leaf: str, value: np.ndarray, expected: dict) -> tuple[str, np.ndarray]:
    """Our leaf name and layout of a PyTorch parameter `leaf` of the module at `prefix`."""
    if leaf != "weight":
        return f"{prefix}/{leaf}", value
    if f"{prefix}/scale" in expected:  # GroupNorm
        return f"{prefix}/scale", value
    if value.ndim == 4:  # convolution, OIHW -> HWIO
        return f"{prefix}/kernel", value.transpose(2, 3, 1, 0)
    if value.ndim == 2:  # linear, (out, in) -> (in, out)
        return f"{prefix}/kernel", value.T
    return f"{prefix}/kernel", value


def from_pytorch(state_dict: Mapping[str, np.ndarray], model: nn.Module, input_shape: Sequence[int], *,
                 source: str = "the PyTorch state dict"):
    """Our params from a score_sde_pytorch NCSN++ / DDPM `state_dict` (numpy arrays, with or
    without the `module.` prefix)."""
    if not isinstance(model, _PYTORCH_NETWORKS):
        raise _unsupported(model, source, _PYTORCH_NETWORKS)
    expected, order = expected_shapes(model, input_shape)
    groups: dict[int, dict[str, np.ndarray]] = {}
    converted = {}
    for key, value in strip_data_parallel(state_dict).items():
        match = re.fullmatch(r"all_modules\.(\d+)\.(.+)", key)
        if match:
            groups.setdefault(int(match[1]), {})[match[2]] = np.asarray(value)
        elif key not in _PYTORCH_BUFFERS:
            converted[f"<{key}>"] = (key, np.shape(value), value)  # reported as extra
    indices = sorted(groups)
    if len(indices) != len(order):
        raise ConversionError(f"{source} has {len(indices)} modules with parameters in all_modules, the config's "
                              f"network {len(order)} ({type(model).__name__}): another architecture or config")
    for index, name in zip(indices, order, strict=True):
        for rest, value in groups[index].items():
            *subs, leaf = rest.split(".")
            subs = [re.sub(r"^Conv2d_", "FIRConv_", sub) for sub in subs]  # the FIR resampling conv
            path, ours = _pytorch_leaf("/".join([name, *subs]), leaf, value, expected)
            converted[path] = (f"all_modules.{index}.{rest}", value.shape, ours)
    return _assemble(converted, expected, source)


def pytorch_trainable_keys(state_dict: Mapping[str, np.ndarray]) -> list[str]:
    """The keys of the parameters the port's EMA tracks, in `model.parameters()` order: all but
    buffers and the fixed Fourier-feature frequencies (`all_modules.N.W`, requires_grad=False)."""
    return [key for key in strip_data_parallel(state_dict)
            if key.startswith("all_modules.") and not re.fullmatch(r"all_modules\.\d+\.W", key)]


def pytorch_ema_state_dict(state_dict: Mapping[str, np.ndarray], shadow_params: Sequence[np.ndarray], *,
                           source: str = "the PyTorch EMA") -> dict[str, np.ndarray]:
    """The state dict with the EMA's `shadow_params` (a list in `model.parameters()` order, as
    score_sde_pytorch's ExponentialMovingAverage stores it) in place of the trained weights:
    the weights the reference samples and evaluates with."""
    ema = strip_data_parallel(state_dict)
    keys = pytorch_trainable_keys(ema)
    if len(keys) != len(shadow_params):
        raise ConversionError(f"{source} holds {len(shadow_params)} arrays for the model's {len(keys)} trainable "
                              "parameters")
    for key, value in zip(keys, shadow_params, strict=True):
        value = np.asarray(value)
        if value.shape != np.shape(ema[key]):
            raise ConversionError(f"{source}: the array for {key} has shape {value.shape}, the model's "
                                  f"{tuple(np.shape(ema[key]))}")
        ema[key] = value
    return ema
