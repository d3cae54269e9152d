"""Accelerator benchmark of the CIFAR-10 networks: training and sampling throughput, model-FLOP
utilisation, peak memory and compile times, as one JSON object.

    python -m scripts.benchmark_gpu --output=gpu_bench.json            # on the accelerator host
    python -m scripts.benchmark_gpu --toy --output=toy.json            # a CPU dry run at toy sizes

For DDPM++ (VP) and NCSN++ (VE), CIFAR-10 configs, at `--batch_size` (default 128; 4 with `--toy`):
  train[<net>][<dtype>]  the train step of `scripts.benchmark_train_step` (images/s, step time,
                         compile time, XLA memory analysis, FLOPs) in float32 and bfloat16 compute;
                         `mfu` = FLOPs per step x steps/s / `--peak_tflops` (bfloat16 dense peak of
                         the device; None when the device is not in `PEAK_TFLOPS` and no flag is given)
  sample[<net>][<method>] PC (Euler-Maruyama, no corrector) and DPM-Solver++ (2M) at `--nfe` (20)
                         score evaluations: images/s, compile time, nfe, and `overhead` = time per
                         batch / (nfe x one jitted network forward at that batch; 1.0: the sampler
                         costs nothing beyond its network calls)
A case that would start after `--budget_s` is skipped and listed under `skipped`, so the whole
run stays within its budget (8 minutes on one GPU is the target). `--toy` shrinks the networks,
image size and batch so that the script can be checked on a CPU; its figures mean nothing.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

import models
from configs import builders
from configs.load import load_config
from scripts import json_report
from scripts.benchmark_train_step import benchmark
from training.data import data_shape_of
from training.experiment import build_experiment
from training.sampling import make_sample_fn

# --batch_size (0 here: 128), --repeats and --output are the flags of scripts.benchmark_train_step.
flags.DEFINE_integer("nfe", 20, "Score evaluations per sample.")
flags.DEFINE_float("peak_tflops", 0.0, "Device peak (dense bfloat16 TFLOP/s) for the MFU; 0: from PEAK_TFLOPS.")
flags.DEFINE_float("budget_s", 450.0, "Skip the cases that would start after this many seconds.")
flags.DEFINE_bool("toy", False, "Tiny networks and shapes, for a CPU dry run.")
FLAGS = flags.FLAGS

CONFIGS = {"ddpmpp": "configs/vp/cifar10_ddpmpp_continuous.py", "ncsnpp": "configs/ve/cifar10_ncsnpp_continuous.py"}
DTYPES = ("float32", "bfloat16")
# Dense bfloat16 peak TFLOP/s by device kind (vendor data sheets, SXM parts).
PEAK_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H200": 989.0, "NVIDIA A100-SXM4-80GB": 312.0,
               "NVIDIA A100-SXM4-40GB": 312.0, "TPU v4": 275.0, "TPU v5 lite": 197.0}
TOY = ["model.nf=16", "model.ch_mult=(1,2)", "model.num_res_blocks=1", "model.attn_resolutions=(4,)",
       "data.image_size=8"]


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def sampling_benchmark(config, *, batch_size: int, repeats: int) -> dict:
    """Images/s of `config.sampling` at `batch_size` (median of `repeats` calls after compiling), and
    the sampler's overhead: seconds per batch / (nfe x one jitted network forward at that batch)."""
    exp = build_experiment(config, data_shape_of(config))
    state, _ = exp.init_state()
    sample_fn = make_sample_fn(builders.build_sampler(config, exp.sde), exp.sde, exp.model,
                               (batch_size, *exp.data_shape), exp.mesh, continuous=config.training.continuous,
                               precond=exp.precond)
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    samples, nfe = jax.block_until_ready(sample_fn(state.ema_params, key))
    first_call_s = time.perf_counter() - start
    if not np.all(np.isfinite(np.asarray(samples))):
        raise FloatingPointError("non-finite samples in the benchmark")
    seconds = _median_seconds(lambda: sample_fn(state.ema_params, key)[0], repeats)
    forward = jax.jit(lambda params, x, t: models.get_score_fn(
        exp.sde, exp.model, params, train=False, continuous=config.training.continuous, precond=exp.precond)(x, t))
    x = jax.random.normal(key, (batch_size, *exp.data_shape))
    t = jnp.full((batch_size,), 0.5)
    jax.block_until_ready(forward(state.ema_params, x, t))
    forward_s = _median_seconds(lambda: forward(state.ema_params, x, t), 3 * repeats)
    return {"images_per_s": batch_size / seconds, "seconds_per_batch": seconds,
            "compile_s": first_call_s - seconds, "nfe": int(nfe), "batch_size": batch_size,
            "forward_s": forward_s, "overhead": seconds / (int(nfe) * forward_s)}


def run_all(*, batch_size: int, nfe: int, repeats: int, peak_tflops: float, budget_s: float, toy: bool,
            on_case: Callable[[dict], None] = lambda result: None) -> dict:
    """Every case in turn; `on_case(result so far)` after each one (so a killed run keeps its figures)."""
    device = jax.devices()[0]
    peak = peak_tflops or PEAK_TFLOPS.get(device.device_kind)
    extra = TOY if toy else []
    result = {"device": f"{device.platform}:{device.device_kind}", "device_count": jax.device_count(),
              "jax_version": jax.__version__, "batch_size": batch_size, "nfe": nfe, "peak_tflops": peak,
              "toy": toy, "train": {}, "sample": {}, "skipped": []}
    start = time.perf_counter()

    def in_budget(name: str) -> bool:
        if time.perf_counter() - start > budget_s:
            result["skipped"].append(name)
            logging.warning("budget of %.0f s spent: skipping %s", budget_s, name)
            return False
        logging.info("benchmarking %s", name)
        return True

    # Cheapest-to-lose last: float32 training of both networks, then bfloat16, then sampling.
    for dtype in DTYPES:
        for net, path in CONFIGS.items():
            if not in_budget(f"train/{net}/{dtype}"):
                continue
            config = load_config(path, [*extra, f"model.compute_dtype={dtype}", f"training.batch_size={batch_size}"])
            r = benchmark(config, batch_size=batch_size, repeats=repeats)
            flops = r["flops_per_step"]
            r["mfu"] = (flops * r["images_per_s"] / batch_size / (peak * 1e12)) if flops and peak else None
            result["train"].setdefault(net, {})[dtype] = r
            on_case(result)
    for method, options in (("pc", ["sampling.predictor=euler_maruyama", "sampling.corrector=none"]),
                            ("dpm_solver", ["sampling.order=2"])):
        for net, path in CONFIGS.items():
            if not in_budget(f"sample/{net}/{method}"):
                continue
            # PC without the final denoising step (which would add one evaluation): nfe = num_steps.
            config = load_config(path, [*extra, f"sampling.method={method}", f"sampling.num_steps={nfe}",
                                        "sampling.denoise=false", *options])
            result["sample"].setdefault(net, {})[method] = sampling_benchmark(config, batch_size=batch_size,
                                                                              repeats=repeats)
            on_case(result)
    result["total_s"] = time.perf_counter() - start
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    batch_size = FLAGS.batch_size or (4 if FLAGS.toy else 128)
    result = run_all(batch_size=batch_size, nfe=FLAGS.nfe, repeats=FLAGS.repeats, peak_tflops=FLAGS.peak_tflops,
                     budget_s=FLAGS.budget_s, toy=FLAGS.toy,
                     on_case=lambda partial: json_report.write(partial, FLAGS.output))
    json_report.emit(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
