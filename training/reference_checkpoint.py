"""Released score_sde checkpoints (Song et al. 2021) as this framework's train state.

- The JAX code's checkpoints (`checkpoint_<n>`, written by `flax.training.checkpoints`) are a
  msgpack of its train `State`: `step`, `optimizer` (`target` = the trained parameters, and the
  Adam state), `params_ema`, `model_state`, `lr`, `ema_rate`, `rng`. Read with
  `flax.serialization.msgpack_restore` (no pickle, no old Flax needed).
- The PyTorch port's `.pth` holds `model` (a state dict, keys prefixed `module.`), `ema`
  (`shadow_params`, a list in `model.parameters()` order), `optimizer` and `step`; the script
  reads it with torch and hands it here as numpy (torch is needed for that file only).

`save_converted` maps both weight sets with `models.convert` (every key and shape checked) and
writes one orbax step of the train state (params, EMA params, step; a fresh optimiser state)
into an empty workdir, where `score-sde sample / likelihood / evaluate / inpaint` find it. The
EMA parameters are the ones the reference samples and evaluates with, and so do we.
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from models import build_model, input_shape_of
from models.convert import (
    ConversionError,
    from_flax2021,
    from_pytorch,
    pytorch_ema_state_dict,
    strip_data_parallel,
)
from training.checkpoint import PERIODIC_DIR, PREEMPTION_DIR
from training.data import data_shape_of
from training.experiment import build_experiment, checkpointer_for
from training.state import create_train_state
from training.train_loop import CONFIG_FILE

FORMATS = ("flax2021", "pytorch")


@dataclasses.dataclass(frozen=True)
class ReferenceWeights:
    """The two weight sets of a reference checkpoint, in the reference's own layout.

    format: "flax2021" (nested parameter trees) or "pytorch" (flat state dicts).
    """

    format: str
    params: Mapping[str, Any]
    ema_params: Mapping[str, Any]
    step: int
    source: str


def read_flax2021(path: str | pathlib.Path) -> ReferenceWeights:
    """The trained and EMA parameters and the step of a score_sde (JAX) checkpoint file."""
    path = pathlib.Path(path)
    try:
        state = flax.serialization.msgpack_restore(path.read_bytes())
    except (ValueError, TypeError) as error:  # msgpack's errors derive from ValueError
        raise ConversionError(f"{path} is not a msgpack checkpoint of the 2021 JAX code "
                              f"({type(error).__name__}: {error})") from None
    target = state.get("optimizer", {}).get("target") if isinstance(state, dict) else None
    if not isinstance(target, dict) or not isinstance(state.get("params_ema"), dict):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ConversionError(f"{path} has no optimizer.target and params_ema (found {keys}): not a train "
                              "state of the 2021 JAX code")
    return ReferenceWeights("flax2021", target, state["params_ema"], _step(state.get("step", 0), path), str(path))


def pytorch_weights(checkpoint: Mapping[str, Any], source: str) -> ReferenceWeights:
    """The trained and EMA state dicts and the step of a score_sde_pytorch checkpoint, given
    as the loaded dict with tensors turned into numpy arrays (`ema.shadow_params` a list)."""
    missing = [key for key in ("model", "ema") if key not in checkpoint]
    if missing:
        raise ConversionError(f"{source} has no {' or '.join(missing)} entry (found {sorted(checkpoint)}): not a "
                              "checkpoint of score_sde_pytorch")
    ema = checkpoint["ema"]
    if not isinstance(ema, Mapping) or "shadow_params" not in ema:
        raise ConversionError(f"{source}: its ema entry has no shadow_params")
    model = strip_data_parallel(checkpoint["model"])
    ema_params = pytorch_ema_state_dict(model, ema["shadow_params"], source=f"{source} (ema)")
    return ReferenceWeights("pytorch", model, ema_params, _step(checkpoint.get("step", 0), source), source)


def _step(value: Any, source: Any) -> int:
    step = np.asarray(value)
    if step.shape != () or not np.issubdtype(step.dtype, np.integer) or int(step) < 0:
        raise ConversionError(f"{source}: its step {value!r} is not a non-negative integer")
    return int(step)


def convert_weights(config: ml_collections.ConfigDict, weights: ReferenceWeights) -> tuple[Any, Any]:
    """`(params, ema_params)` of the config's network from `weights`; raises ConversionError
    naming every missing, extra or misshapen array, or non-finite values."""
    if weights.format not in FORMATS:
        raise ConversionError(f"unknown checkpoint format {weights.format!r}; known: {', '.join(FORMATS)}")
    convert = from_flax2021 if weights.format == "flax2021" else from_pytorch
    model, shape = build_model(config), input_shape_of(config)
    converted = []
    for name, tree in (("trained", weights.params), ("EMA", weights.ema_params)):
        params = convert(tree, model, shape, source=f"{weights.source} ({name} weights)")
        if not all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params)):
            raise ConversionError(f"{weights.source}: its {name} weights hold NaN or inf values")
        converted.append(params)
    return converted[0], converted[1]


def save_converted(config: ml_collections.ConfigDict, weights: ReferenceWeights,
                   workdir: str | pathlib.Path) -> pathlib.Path:
    """Write `weights` as step `weights.step` of the train state into `workdir` (with its
    config.json, as training writes it) and return the step's directory.

    Refuses (FileExistsError) a workdir that already holds checkpoints: nothing there is changed.
    """
    workdir = pathlib.Path(workdir)
    for name in (PERIODIC_DIR, PREEMPTION_DIR):
        if (workdir / name).is_dir() and any((workdir / name).iterdir()):
            raise FileExistsError(f"{workdir / name} already holds checkpoints; convert into a new workdir")
    params, ema_params = convert_weights(config, weights)
    exp = build_experiment(config, data_shape_of(config))
    state = create_train_state(exp.keys.init, lambda _: jax.tree.map(jnp.asarray, params), exp.optimizer)
    state = state.replace(step=jnp.asarray(weights.step, jnp.int32), ema_params=jax.tree.map(jnp.asarray, ema_params))
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpointer_for(config, workdir)
    try:
        ckpt.maybe_save(weights.step, state, force=True)
    finally:
        ckpt.close()
    (workdir / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))
    return workdir.absolute() / PREEMPTION_DIR / str(weights.step)
