"""Cost of the samplers around a real network: compile time, time per call, and overhead.

    python -m scripts.benchmark_sampler_overhead --batch=8 --steps=3 --repeats=3 --out=/tmp/overhead.json

For each config (default: CIFAR-10 DDPM++ and NCSN++, continuous) the network is initialised twice
(two "checkpoints" of the same shapes) and every sampler is run with few steps at `--batch`:
- compile_s: first call minus the median later call (tracing and XLA compilation);
- per_call_s: median time of a call (sampling only, the result on the host);
- overhead: per_call_s / (nfe x forward_s), with forward_s the median time of one jitted score
  evaluation (network forward) at that batch: 1.0 means the sampler costs nothing beyond its network
  calls;
- second_checkpoint_compiles: new compilations when the same sampler is called with the second
  checkpoint's weights (expected 0: the weights are traced inputs).
Calls are timed in rounds that alternate between the forward and the samplers, so load from other
processes spreads over all of them. Prints one JSON document (and writes it to `--out`).
"""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

import models
from configs.builders import build_sde
from configs.load import load_config
from samplers import common
from samplers.ald import AnnealedLangevinSampler
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.edm_heun import EDMHeunSampler
from samplers.lms import LMSSampler
from samplers.ode import ODESampler
from samplers.pc import PCSampler
from samplers.unipc import UniPCSampler
from scripts import json_report

flags.DEFINE_list("configs", ["configs/vp/cifar10_ddpmpp_continuous.py", "configs/ve/cifar10_ncsnpp_continuous.py"],
                  "Config files of the networks.")
flags.DEFINE_list("overrides", [], "Config overrides applied to every config (e.g. model.nf=16 for a dry run).")
flags.DEFINE_integer("batch", 8, "Batch size.")
flags.DEFINE_integer("steps", 3, "Steps of each sampler (few: the ratio, not the sample, is measured).")
flags.DEFINE_integer("repeats", 3, "Timed rounds (each calls the forward and every sampler once).")
flags.DEFINE_list("samplers", None, "Samplers to run (default: all of SAMPLERS).")
flags.DEFINE_string("out", None, "Also write the JSON document here.")
FLAGS = flags.FLAGS

SAMPLERS = {  # name -> sampler with `steps` steps
    "pc": lambda sde, n: PCSampler(sde, "euler_maruyama", "none", num_steps=n),
    "ode_euler": lambda sde, n: ODESampler(sde, "euler", num_steps=n),
    "ald": lambda sde, n: AnnealedLangevinSampler(sde, num_scales=n, n_steps_each=1, denoise=False),
    "edm_heun": lambda sde, n: EDMHeunSampler(sde, num_steps=n),
    "ddim": lambda sde, n: DDIMSampler(sde, num_steps=n, eta=1.0),
    "dpm_solver": lambda sde, n: DPMSolverPPSampler(sde, num_steps=n),
    "lms": lambda sde, n: LMSSampler(sde, num_steps=n),
    "unipc": lambda sde, n: UniPCSampler(sde, num_steps=n),
    "dpm_solver_sde": lambda sde, n: DPMSolverSDESampler(sde, num_steps=n),
}


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def benchmark(config_path: str, names: list[str], batch: int, steps: int, repeats: int,
              overrides: list[str] = ()) -> dict:
    config = load_config(config_path, list(overrides))
    sde = build_sde(config)
    model = models.build_model(config)
    shape = (batch, *models.input_shape_of(config)[1:])
    checkpoints = [models.init_params(jax.random.key(seed), model, (1, *shape[1:])) for seed in (0, 1)]

    def score(params):
        return models.get_score_fn(sde, model, params, train=False, continuous=config.training.continuous)

    forward = jax.jit(lambda params, x, t: score(params)(x, t))
    x, t = jax.random.normal(jax.random.key(2), shape), jnp.full((batch,), 0.5)
    samplers = {name: SAMPLERS[name](sde, steps) for name in names}
    record = {"config": config_path, "overrides": list(overrides), "batch": batch, "steps": steps,
              "params": sum(leaf.size for leaf in jax.tree.leaves(checkpoints[0])), "samplers": {}}
    first_forward = _timed(lambda: forward(checkpoints[0], x, t))
    first = {}
    for name, sampler in samplers.items():
        first[name] = _timed(lambda s=sampler: s(jax.random.key(3), score(checkpoints[0]), shape)[0])
    times = {name: [] for name in ["forward", *samplers]}
    for _ in range(repeats):  # alternate, so that other processes' load falls on every entry alike
        times["forward"].append(_timed(lambda: forward(checkpoints[0], x, t)))
        for name, sampler in samplers.items():
            times[name].append(_timed(lambda s=sampler: s(jax.random.key(4), score(checkpoints[0]), shape)[0]))
    forward_s = statistics.median(times["forward"])
    record["forward_s"] = forward_s
    record["forward_compile_s"] = first_forward - forward_s
    for name, sampler in samplers.items():
        compiled = common._per_example._cache_size()
        _, nfe = sampler(jax.random.key(5), score(checkpoints[1]), shape)
        per_call = statistics.median(times[name])
        record["samplers"][name] = {
            "nfe": nfe, "compile_s": first[name] - per_call, "per_call_s": per_call,
            "overhead": per_call / (nfe * forward_s),
            "second_checkpoint_compiles": common._per_example._cache_size() - compiled,
        }
    return record


def main(_):
    names = FLAGS.samplers or list(SAMPLERS)
    result = {"device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
              "jax_version": jax.__version__,
              "note": "wall-clock on a shared machine; calls alternate between entries", "runs": []}
    for path in FLAGS.configs:  # written after each config, so a killed run keeps what it measured
        result["runs"].append(benchmark(path, names, FLAGS.batch, FLAGS.steps, FLAGS.repeats, FLAGS.overrides))
        json_report.write(result, FLAGS.out)
    json_report.emit(result, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
