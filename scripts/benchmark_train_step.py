"""Training-step throughput of a config: images/s, compile time, step time, parameter count.

    python -m scripts.benchmark_train_step --config=configs/ve/cifar10_ncsnpp_continuous.py \
        --batch_size=128 --repeats=10 [--config.model.compute_dtype=bfloat16] [--output=bench.json]

Builds the run exactly as training does (`training.experiment.build_experiment`: SDE, loss,
optimiser, EMA, replicated state on the device mesh) and times the jitted step of
`training.train_step` on a synthetic batch of the config's data shape, uniform in [0, 1] and
scaled as the model expects (throughput does not depend on the pixel values, and no data set
has to be prepared). One call runs `--steps_per_call` optimiser steps in one `lax.scan`; the
first call after compiling is a warm-up and is not timed. Prints one JSON object:

  images_per_s     batch_size * steps_per_call / median call time
  step_ms          median call time / steps_per_call, in milliseconds (and the min / max)
  compile_s        lowering + XLA compilation of the step
  memory           XLA's memory analysis of the compiled step (bytes): arguments, outputs, temporaries
                   and `peak_estimate` = arguments + outputs + temporaries - aliased (donated) buffers
  flops_per_step   XLA's cost analysis of one optimiser step (model FLOPs, forward and backward;
                   it counts a loop body once, so with grad_accum_steps > 1 one micro-batch's)
  param_count      network parameters (jax.eval_shape, nothing allocated)
  device, device_count, compute_dtype, batch_size, steps_per_call, repeats (timed calls done)

`--max_seconds` stops the timed repeats once that much time has passed (at least one call
is timed), so a large config on a small CPU still reports.
"""
from __future__ import annotations

import statistics
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

import models
from configs import validate_config
from scripts import json_report
from training.data import data_shape_of, get_data_scaler
from training.experiment import build_experiment
from training.sharding import batch_sharding, check_batch_size, shard_batch
from training.train_step import jit_train_steps, make_objective, make_train_step

config_flags.DEFINE_config_file("config", None, "Config file (defines get_config()).", lock_config=True)
flags.DEFINE_integer("batch_size", 0, "Global batch size (0: the config's training.batch_size).")
flags.DEFINE_integer("repeats", 10, "Timed calls after the warm-up; the median is reported.")
flags.DEFINE_integer("steps_per_call", 1, "Optimiser steps per jitted call (lax.scan).")
flags.DEFINE_float("max_seconds", 0.0, "Stop the timed repeats after this many seconds (0: no limit).")
flags.DEFINE_bool("compile_only", False, "Report compile time, memory and FLOPs without initialising the state or timing steps.")
flags.DEFINE_string("output", None, "Also write the JSON to this path.")
FLAGS = flags.FLAGS


def compiled_memory(compiled) -> dict:
    """XLA's memory analysis of a compiled function, in bytes (what the device must hold)."""
    m = compiled.memory_analysis()
    if m is None:
        return {}
    out = {"argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
           "temp_bytes": m.temp_size_in_bytes, "alias_bytes": m.alias_size_in_bytes}
    out["peak_estimate_bytes"] = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    return out


def compiled_flops(compiled) -> float | None:
    """XLA's FLOP count of one call of a compiled function (None where the backend gives none)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def compile_step(config, *, batch_size: int, steps_per_call: int = 1, seed: int = 0, abstract: bool = False):
    """Build the run of `config` as training does and compile its jitted step on a synthetic batch.

    Returns `(compiled, state, batches, described)`: `compiled(state, batches) -> (state, metrics)`
    runs `steps_per_call` optimiser steps; `described` holds the fields of the module docstring
    that need no timing. With `abstract` the state is only its shapes and shardings (nothing
    allocated, and the initialisation, minutes to compile for a large network, is skipped): enough
    to compile and analyse the step, not to run it."""
    if batch_size < 1 or steps_per_call < 1:
        raise ValueError(f"batch_size and steps_per_call must be positive, got {batch_size}, {steps_per_call}")
    shape = data_shape_of(config)
    exp = build_experiment(config, shape)
    check_batch_size(batch_size, exp.mesh, grad_accum_steps=config.training.grad_accum_steps)
    state = exp.abstract_state() if abstract else exp.init_state()[0]
    objective = make_objective(exp.model, exp.loss, exp.sde, continuous=config.training.continuous,
                               precond=exp.precond)
    train_fn = jit_train_steps(make_train_step(objective, exp.optimizer, ema_rate=config.model.ema_rate,
                                               ema_warmup=config.model.ema_warmup,
                                               grad_accum_steps=config.training.grad_accum_steps), exp.mesh)
    rng = np.random.default_rng(seed)
    images = get_data_scaler(config)(rng.uniform(size=(steps_per_call, batch_size, *shape)).astype(np.float32))
    batches = shard_batch({"image": images}, batch_sharding(exp.mesh, leading_axes=1), batch_axis=1)

    start = time.perf_counter()
    compiled = train_fn.lower(state, batches).compile()
    compile_s = time.perf_counter() - start
    logging.info("compiled in %.1f s", compile_s)
    flops = compiled_flops(compiled)
    described = {
        "model": config.model.name,
        "param_count": models.count_params(exp.model, (1, *shape)),
        "batch_size": batch_size,
        "steps_per_call": steps_per_call,
        "grad_accum_steps": config.training.grad_accum_steps,
        "remat": bool(config.model.remat),
        "compute_dtype": config.model.compute_dtype,
        "param_dtype": "float32",
        "compile_s": compile_s,
        "memory": compiled_memory(compiled),
        "flops_per_step": flops,  # XLA counts the body of the steps' scan, one step, once
        "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
    }
    return compiled, state, batches, described


def benchmark(config, *, batch_size: int, repeats: int, steps_per_call: int = 1,
              max_seconds: float = 0.0, seed: int = 0, compile_only: bool = False) -> dict:
    """Time `repeats` calls of the jitted training step of `config` at `batch_size`; see the
    module docstring for the fields of the returned dict."""
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    compiled, state, batches, described = compile_step(config, batch_size=batch_size, steps_per_call=steps_per_call,
                                                       seed=seed, abstract=compile_only)
    if compile_only:
        return described

    state, metrics = compiled(state, batches)  # warm-up: first execution (allocation, autotuning)
    jax.block_until_ready(metrics)
    times = []
    deadline = time.perf_counter() + max_seconds if max_seconds > 0 else None
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = compiled(state, batches)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
        if deadline is not None and time.perf_counter() > deadline:
            break
    loss = np.asarray(metrics["loss"])
    if not np.all(np.isfinite(loss)):
        raise FloatingPointError(f"non-finite training loss {loss} in the benchmark")
    median = statistics.median(times)
    return {
        **described,
        "repeats": len(times),
        "images_per_s": batch_size * steps_per_call / median,
        "step_ms": 1e3 * median / steps_per_call,
        "step_ms_min": 1e3 * min(times) / steps_per_call,
        "step_ms_max": 1e3 * max(times) / steps_per_call,
        "final_loss": float(loss[-1]),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if FLAGS.config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/ve/cifar10_ncsnpp_continuous.py")
    config = validate_config(FLAGS.config)
    batch_size = FLAGS.batch_size or config.training.batch_size
    result = benchmark(config, batch_size=batch_size, repeats=FLAGS.repeats, steps_per_call=FLAGS.steps_per_call,
                       max_seconds=FLAGS.max_seconds, compile_only=FLAGS.compile_only)
    result["config"] = config_flags.get_config_filename(FLAGS["config"])
    json_report.emit(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
