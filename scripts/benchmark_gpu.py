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
                         score evaluations: images/s, compile time, nfe
A case that would start after `--budget_s` is skipped and listed under `skipped`, so the whole
run stays within its budget (8 minutes on one GPU is the target). `--toy` shrinks the networks,
image size and batch so that the script can be checked on a CPU; its figures mean nothing.
"""
from __future__ import annotations

import json
import pathlib
import time

import jax
import numpy as np
from absl import app, flags, logging

from configs.load import load_config
from scripts.benchmark_train_step import benchmark
from training import builders
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


def sampling_benchmark(config, *, batch_size: int, repeats: int) -> dict:
    """Images/s of `config.sampling` at `batch_size` (median of `repeats` calls after compiling)."""
    exp = build_experiment(config, data_shape_of(config))
    state, _ = exp.init_state()
    sample_fn = make_sample_fn(builders.build_sampler(config, exp.sde), exp.sde, exp.model,
                               (batch_size, *exp.data_shape), exp.mesh, continuous=config.training.continuous,
                               precond=exp.precond)
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    compiled = sample_fn.lower(state.ema_params, key).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(state.ema_params, key))
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        samples, nfe = jax.block_until_ready(compiled(state.ema_params, jax.random.fold_in(key, i)))
        times.append(time.perf_counter() - start)
    if not np.all(np.isfinite(np.asarray(samples))):
        raise FloatingPointError("non-finite samples in the benchmark")
    median = float(np.median(times))
    return {"images_per_s": batch_size / median, "seconds_per_batch": median, "compile_s": compile_s,
            "nfe": int(nfe), "batch_size": batch_size}


def run_all(*, batch_size: int, nfe: int, repeats: int, peak_tflops: float, budget_s: float, toy: bool) -> dict:
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

    for net, path in CONFIGS.items():
        for dtype in DTYPES:
            if not in_budget(f"train/{net}/{dtype}"):
                continue
            config = load_config(path, [*extra, f"model.compute_dtype={dtype}", f"training.batch_size={batch_size}"])
            r = benchmark(config, batch_size=batch_size, repeats=repeats)
            flops = r["flops_per_step"]
            r["mfu"] = (flops * r["images_per_s"] / batch_size / (peak * 1e12)) if flops and peak else None
            result["train"].setdefault(net, {})[dtype] = r
        for method, options in (("pc", ["sampling.predictor=euler_maruyama", "sampling.corrector=none"]),
                                ("dpm_solver", ["sampling.order=2"])):
            if not in_budget(f"sample/{net}/{method}"):
                continue
            # PC without noise removal: nfe = num_steps (the final denoising step would add one).
            config = load_config(path, [*extra, f"sampling.method={method}", f"sampling.num_steps={nfe}",
                                    "sampling.noise_removal=false", *options])
            result["sample"].setdefault(net, {})[method] = sampling_benchmark(config, batch_size=batch_size,
                                                                              repeats=repeats)
    result["total_s"] = time.perf_counter() - start
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    batch_size = FLAGS.batch_size or (4 if FLAGS.toy else 128)
    result = run_all(batch_size=batch_size, nfe=FLAGS.nfe, repeats=FLAGS.repeats, peak_tflops=FLAGS.peak_tflops,
                     budget_s=FLAGS.budget_s, toy=FLAGS.toy)
    text = json.dumps(result, indent=2)
    print(text)
    if FLAGS.output:
        pathlib.Path(FLAGS.output).write_text(text + "\n")


if __name__ == "__main__":
    app.run(main)
