"""The training loop, top to bottom: build, restore, then per step train, log, checkpoint, sample.

Data are indexed by step (`ds[step]` is the batch of the step-th update) and the step's
randomness is `fold_in(rng, step)`, so a run restarted from any checkpoint continues exactly
as if it had never stopped. A workdir is resumed only with a config that builds the same train
state (`check_resume_config`); its config.json is rewritten only once the state is restored.

The run's objects come from `training.experiment`, snapshot samples from `training.sampling`;
nothing of the evaluation protocol (`training.evaluate`) is imported here.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from configs import builders
from configs.validate import flatten_keys
from training.data import build_dataset, data_shape_of, get_data_inverse_scaler, iterate_batches
from training.experiment import build_experiment, checkpointer_for
from training.logging import MetricWriter, plot_loss_curve
from training.preemption import PreemptionWatch
from training.sampling import make_sample_fn
from training.sharding import batch_sharding, check_batch_size, shard_batch, shard_host_batch
from training.state import TrainState
from training.train_step import jit_train_steps, make_eval_step, make_objective, make_train_step

CONFIG_FILE = "config.json"

# Config keys that fix the train state's pytree (its structure, shapes and dtypes): all of
# `model` except the keys below, which change training but not the parameters; the data keys
# that give one example's shape; the optimiser's kind. SDE parameters stay in: they are in
# `model` (and `num_scales` sizes the conditioning of the discrete-noise networks).
_FREE_MODEL_KEYS = frozenset({"model.ema_rate", "model.ema_warmup", "model.dropout", "model.conv_impl",
                              "model.remat"})
_STATE_KEYS = frozenset({"data.dataset", "data.image_size", "data.num_channels", "optim.optimizer"})
# Keys whose value matters to the state only through a switch: weight decay on adds a state
# to the optax chain, clipping on (grad_clip >= 0) adds another.
_STATE_SWITCHES = {"optim.weight_decay": lambda v: v > 0, "optim.grad_clip": lambda v: v >= 0}


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient norm; the run stops without saving."""


class ResumeConfigError(ValueError):
    """The workdir holds a run whose config builds another train state than the new config."""


def non_finite_message(step: int, value: float, last_checkpoint: int | None, workdir: pathlib.Path, *,
                       quantity: str = "loss") -> str:
    kept = (f"the last good checkpoint is step {last_checkpoint} in {workdir}" if last_checkpoint is not None
            else "no checkpoint had been saved")
    return f"Non-finite {quantity} ({value}) at step {step}; training stopped, {kept}."


def state_config_differences(saved: dict, new: dict) -> list[str]:
    """`"key: old -> new"` for each key that fixes the train state and differs between two
    configs as JSON dicts (config.json). A key absent from `saved` (a config written before
    the key existed) is not compared; the shape check on restoring still guards it."""
    old, now = flatten_keys(saved), flatten_keys(new)
    differences = []
    for key in sorted(now):
        if key not in old:
            continue
        if key in _STATE_SWITCHES:
            differs = _STATE_SWITCHES[key](old[key]) != _STATE_SWITCHES[key](now[key])
        elif key in _STATE_KEYS or (key.startswith("model.") and key not in _FREE_MODEL_KEYS):
            differs = old[key] != now[key]
        else:
            continue
        if differs:
            differences.append(f"{key}: {json.dumps(old[key])} -> {json.dumps(now[key])}")
    return differences


def check_resume_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    """Raise `ResumeConfigError` if `workdir/config.json` was written by a config that builds
    another train state (model, data shape, optimiser) than `config`; other keys may change."""
    path = workdir / CONFIG_FILE
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ResumeConfigError(f"{path} cannot be read ({error}); it describes the run saved in {workdir}. "
                                "Repair it, or train in a new workdir.") from None
    differences = state_config_differences(saved, json.loads(config.to_json_best_effort()))
    if differences:
        raise ResumeConfigError(
            f"The run in {workdir} was saved with another model, data shape or optimiser than this config "
            f"(saved -> now): {'; '.join(differences)}. Nothing was changed. Train in a new workdir, or resume "
            f"with the saved values (see {path}).")


def _check_frequencies(t: ml_collections.ConfigDict) -> None:
    n = t.n_jitted_steps
    if n < 1:
        raise ValueError(f"training.n_jitted_steps must be at least 1, got {n}")
    for key in ("log_freq", "eval_freq", "snapshot_freq", "snapshot_freq_for_preemption"):
        if t[key] % n:
            raise ValueError(f"training.{key}={t[key]} must be a multiple of training.n_jitted_steps={n}")


def _crossed(step: int, n: int, freq: int) -> bool:
    """Whether the last call, which went from step - n to step, reached a multiple of freq."""
    return freq > 0 and step // freq > (step - n) // freq


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, max_steps: int | None = None,
          time_budget_s: float | None = None, progress: bool = True) -> TrainState:
    """Train (or resume training) until `config.training.n_iters` optimiser steps.

    `max_steps` stops earlier at that step, `time_budget_s` after that much wall time (both
    save a checkpoint first). Raises `NonFiniteLossError` (without saving) on a NaN/inf loss or
    gradient norm, and `ResumeConfigError` (touching nothing) when the workdir holds a run of a
    config that builds another train state.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_resume_config(config, workdir)
    t = config.training
    _check_frequencies(t)
    n = t.n_jitted_steps
    exp = build_experiment(config, data_shape_of(config))
    check_batch_size(t.batch_size, exp.mesh, grad_accum_steps=t.grad_accum_steps)
    # Each process reads and decodes only its rows of every global batch.
    ds = build_dataset(config, "train", batch_size=t.batch_size, seed=config.seed, shuffle=True,
                       num_hosts=jax.process_count(), host_index=jax.process_index())

    ckpt = checkpointer_for(config, workdir)
    state = ckpt.restore_latest(exp.abstract_state())
    if state is None:
        state, _ = exp.init_state()
    if jax.process_index() == 0:
        (workdir / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))
    step = int(jax.device_get(state.step))
    stop_at = t.n_iters if max_steps is None else min(t.n_iters, max_steps)
    logging.info("Training from step %d to %d on %d device(s); workdir %s", step, stop_at, exp.mesh.size, workdir)

    continuous = exp.continuous
    objective = make_objective(exp.model, exp.loss, exp.sde, continuous=continuous, precond=exp.precond)
    train_fn = jit_train_steps(make_train_step(objective, exp.optimizer, ema_rate=config.model.ema_rate,
                                               ema_warmup=config.model.ema_warmup,
                                               grad_accum_steps=t.grad_accum_steps), exp.mesh)
    stacked_sharding = batch_sharding(exp.mesh, leading_axes=1)
    eval_fn = eval_ds = None
    if config.eval.enable_loss and t.eval_freq > 0:
        eval_objective = make_objective(exp.model, exp.loss, exp.sde, continuous=continuous, precond=exp.precond,
                                        train=False)
        eval_fn = make_eval_step(eval_objective, exp.mesh)
        eval_ds = build_dataset(config, config.eval.bpd_dataset, batch_size=t.batch_size, seed=config.seed,
                                shuffle=True, evaluation=True)
    sample_fn = None
    if t.snapshot_sampling and t.snapshot_freq > 0:
        num_samples = config.sampling.batch_size
        # Padded to a multiple of the device count (the draw is split over the mesh), cut back below.
        sample_shape = (num_samples + -num_samples % exp.mesh.size, *exp.data_shape)
        sample_fn = make_sample_fn(builders.build_sampler(config, exp.sde), exp.sde, exp.model, sample_shape,
                                   exp.mesh, continuous=continuous, precond=exp.precond)
        sample_indices = shard_batch(np.arange(sample_shape[0], dtype=np.uint32), batch_sharding(exp.mesh))
        inverse_scaler = get_data_inverse_scaler(config)

    writer = MetricWriter(workdir)
    lr_schedule = builders.learning_rate_schedule(config.optim.lr, config.optim.warmup)
    pending: list[tuple[int, dict]] = []
    window_start, window_steps = time.time(), 0
    start = time.time()
    bar = tqdm(total=stop_at, initial=step, disable=not progress or jax.process_index() != 0, unit="step",
               dynamic_ncols=True)

    def flush() -> None:
        """Fetch the metrics since the last flush, stop on a non-finite loss or gradient norm
        (an infinite gradient gives NaN parameters after a finite loss), log averages."""
        nonlocal window_start, window_steps
        if not pending:
            return
        fetched = jax.device_get([m for _, m in pending])
        losses = np.concatenate([np.atleast_1d(m["loss"]) for m in fetched])
        grad_norms = np.concatenate([np.atleast_1d(m["grad_norm"]) for m in fetched])
        first = pending[0][0]
        bad = np.flatnonzero(~(np.isfinite(losses) & np.isfinite(grad_norms)))
        if bad.size:
            ckpt.wait()
            bar.close()
            writer.close()
            i = int(bad[0])
            quantity, value = ("loss", losses[i]) if not np.isfinite(losses[i]) else ("gradient norm", grad_norms[i])
            raise NonFiniteLossError(non_finite_message(first + i + 1, float(value), ckpt.latest_step(), workdir,
                                                        quantity=quantity))
        last = first + len(losses)
        elapsed = time.time() - window_start
        images_per_s = window_steps * t.batch_size / max(elapsed, 1e-9)
        writer.write_scalars(last, {"loss": losses.mean(), "grad_norm": grad_norms.mean(),
                                    "lr": float(lr_schedule(last - 1)), "images_per_s": images_per_s})
        bar.set_postfix(loss=f"{losses[-1]:.4g}", img_s=f"{images_per_s:.0f}")
        pending.clear()
        window_start, window_steps = time.time(), 0

    # Batches are read ahead on threads (and data.num_workers processes) in step order, so the
    # data stay a function of (seed, step) and a resumed run reads what it would have read.
    # Closed on the way out, so reader threads and worker processes end with the loop.
    with PreemptionWatch() as preemption, \
            contextlib.closing(iterate_batches(ds, start_step=step, num_workers=config.data.num_workers)) as batches_ahead:
        while step < stop_at:
            batches = [next(batches_ahead) for _ in range(n)]  # ds[step], ..., ds[step + n - 1]
            stacked = {k: np.stack([np.asarray(b[k]) for b in batches]) for k in batches[0]}
            state, metrics = train_fn(state, shard_host_batch(stacked, stacked_sharding, batch_axis=1))
            pending.append((step, metrics))
            step += n
            window_steps += n
            bar.update(n)
            out_of_time = time_budget_s is not None and time.time() - start >= time_budget_s
            preempted = preemption.reached(step)
            last = step >= stop_at or out_of_time or preempted
            saving = ckpt.is_due(step) or last
            if _crossed(step, n, t.log_freq) or saving:
                flush()
            if eval_fn is not None and _crossed(step, n, t.eval_freq):
                eval_batch = shard_batch(eval_ds[(step // t.eval_freq) % len(eval_ds)], batch_sharding(exp.mesh))
                eval_loss = eval_fn(state.ema_params, eval_batch, jax.random.fold_in(exp.keys.eval, step))
                writer.write_scalars(step, {"eval_loss": float(eval_loss)})
            if saving:
                ckpt.maybe_save(step, state, force=last)
            if sample_fn is not None and _crossed(step, n, t.snapshot_freq):
                samples, _ = sample_fn(state.ema_params, jax.random.fold_in(exp.keys.sample, step), sample_indices)
                samples = np.asarray(samples)[:num_samples]
                writer.write_samples(step, np.clip(np.asarray(inverse_scaler(samples)), 0.0, 1.0))
            if out_of_time:
                logging.info("Time budget of %.0f s reached at step %d", time_budget_s, step)
                break
            if preempted:
                logging.warning("Preempted: saved step %d; restart with the same command to resume", step)
                break
    flush()
    bar.close()
    ckpt.close()
    writer.close()
    if jax.process_index() == 0:
        plot_loss_curve(workdir)
        (workdir / "train_summary.json").write_text(json.dumps({"step": step, "seconds": time.time() - start}))
    return state
