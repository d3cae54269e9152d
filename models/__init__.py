"""Noise-conditional score networks (flax.linen), their score functions, EMA and preconditioning.

Public API:
- `MODELS`: registry of network classes: ncsnpp (NCSN++ / DDPM++), ddpm, ncsnv2_64,
  ncsnv2_128, ncsnv2_256, ncsn, mlp. Call `model.apply({'params': p}, x, noise_labels,
  train=bool, rngs={'dropout': key}, class_labels=None)`; networks embed the noise label they get,
  and with `num_classes > 0` (ncsnpp, ddpm, mlp) also a class label (index num_classes = null).
- `build_model(config)`, `init_params(rng, model, input_shape)`, `count_params(config)`,
  `input_shape_of(config)`, `num_label_classes(model)`.
- `get_score_fn(sde, model, params, *, train, continuous, dropout_rng=None, precond=None, labels=None)`
  -> a `jax.tree_util.Partial` (weights and labels traced by the samplers; `samplers.common`),
  `noise_labels(sde, t, continuous)`, `network_noise_labels(model, labels)`,
  `get_model_fn(model, params, *, train, dropout_rng=None, labels=None)`.
- EDM preconditioning: `build_precond(name, ...)`, `get_denoiser_fn(model, params, precond, ...)`.
- EMA: `ema_update(ema_params, params, rate, step=None, warmup=False)`, `ema_rate_at`.
- `models.convert`: the 2021 reference networks' parameters (score_sde Flax trees, score_sde_pytorch
  state dicts) in our layout, every key and shape checked (`from_flax2021`, `from_pytorch`).
"""
from models import ddpm, mlp, ncsn, ncsnpp, ncsnv2  # noqa: F401  (registration)
from models.apply import get_model_fn
from models.build import (
    build_model,
    count_params,
    default_conv_impl,
    init_params,
    input_shape_of,
    num_label_classes,
)
from models.ema import ema_rate_at, ema_update
from models.preconditioning import build_precond, get_denoiser_fn
from models.registry import MODELS
from models.score_fn import get_score_fn, network_noise_labels, noise_labels

__all__ = [
    "MODELS", "build_model", "build_precond", "count_params", "default_conv_impl", "ema_rate_at", "ema_update",
    "get_denoiser_fn", "get_model_fn", "get_score_fn", "init_params", "input_shape_of", "network_noise_labels",
    "noise_labels",
    "num_label_classes",
]
