"""Anomaly detection on digits: train on some classes, score held-out classes and noise images.

    python -m scripts.benchmark_anomaly --config=configs/digits.py --inlier_classes=0,1,2,3,4 --steps=2000

Trains the config's model (`training.experiment`, the train step and EMA) on the train
split restricted to `inlier_classes`, then scores the test split: inliers (test images of those
classes) against (a) the held-out classes and (b) uniform-noise images, with two scores
(`samplers.anomaly`): the denoising error (all test images) and the probability-flow NLL in
bits/dim (the first `--num_nll` images of each group; an adaptive ODE solve per batch, so costly).
Prints the AUROCs (anomaly = positive) as one JSON line and writes it to `--output` when given.
"""
from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from samplers import anomaly
from training.data import build_dataset, get_data_scaler
from training.experiment import build_experiment, make_score_fn
from training.sharding import batch_sharding, shard_batch
from training.train_step import jit_train_steps, make_objective, make_train_step

config_flags.DEFINE_config_file("config", "configs/digits.py", "Config file (digits).", lock_config=True)
flags.DEFINE_list("inlier_classes", ["0", "1", "2", "3", "4"], "Classes the model is trained on.")
flags.DEFINE_integer("steps", 2000, "Training steps.")
flags.DEFINE_integer("num_noise", 200, "Number of uniform-noise images scored.")
flags.DEFINE_integer("num_nll", 100, "Images per group scored by the NLL (0: skip the NLL score).")
flags.DEFINE_string("output", None, "Optional JSON output path.")
FLAGS = flags.FLAGS


def _split(config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images `[N, H, W, C]` (scaled as the model expects) and labels `[N]` of a split."""
    ds = build_dataset(config, split, batch_size=100, seed=config.seed, shuffle=False, evaluation=True,
                       drop_remainder=False)
    batches = [ds[i] for i in range(len(ds))]
    return (np.concatenate([np.asarray(b["image"]) for b in batches]),
            np.concatenate([np.asarray(b["label"]) for b in batches]))


def train_on_classes(config, images: np.ndarray, steps: int):
    """EMA parameters after `steps` updates on `images` (random batches with a fixed seed)."""
    exp = build_experiment(config, images.shape[1:])
    state, _ = exp.init_state()
    objective = make_objective(exp.model, exp.loss, exp.sde, continuous=config.training.continuous,
                               precond=exp.precond)
    step_fn = jit_train_steps(make_train_step(objective, exp.optimizer, ema_rate=config.model.ema_rate,
                                              ema_warmup=config.model.ema_warmup), exp.mesh)
    rng = np.random.default_rng(config.seed)
    batch, done = config.training.batch_size, 0
    sharding = batch_sharding(exp.mesh, leading_axes=1)
    while done < steps:
        chunk = min(50, steps - done)  # steps per jitted call (at most two compiled sizes)
        idx = rng.integers(0, images.shape[0], (chunk, batch))
        state, metrics = step_fn(state, shard_batch({"image": images[idx]}, sharding, batch_axis=1))
        done += chunk
    logging.info("trained %d steps, last loss %.4f", steps, float(metrics["loss"][-1]))
    return exp, state.ema_params


def _in_batches(fn, x: np.ndarray, batch: int) -> np.ndarray:
    """`fn(i, x_batch) -> [batch]` over `x` in fixed-size batches (the last padded), concatenated."""
    out = []
    for i, start in enumerate(range(0, len(x), batch)):
        chunk = x[start:start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        out.append(np.asarray(fn(i, jnp.asarray(padded, jnp.float32)))[:len(chunk)])
    return np.concatenate(out)


def main(_):
    config = FLAGS.config
    if FLAGS.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {FLAGS.steps}")
    inliers = [int(c) for c in FLAGS.inlier_classes]
    start = time.time()
    train_x, train_y = _split(config, "train")
    test_x, test_y = _split(config, "test")
    exp, params = train_on_classes(config, train_x[np.isin(train_y, inliers)], FLAGS.steps)
    score_fn = make_score_fn(exp.sde, exp.model, params, continuous=config.training.continuous,
                             precond=exp.precond)
    noise = get_data_scaler(config)(np.random.default_rng(1).random((FLAGS.num_noise,) + test_x.shape[1:]))
    groups = {"normal": test_x[np.isin(test_y, inliers)], "held_out": test_x[~np.isin(test_y, inliers)],
              "noise": noise}
    batch = config.eval.batch_size
    denoise_key, nll_key = jax.random.split(jax.random.PRNGKey(0))
    denoise = jax.jit(lambda x: anomaly.denoising_error(denoise_key, exp.sde, score_fn, x))
    methods = {"denoising_error": (lambda i, x: denoise(x), None)}
    if FLAGS.num_nll > 0:
        nll = jax.jit(lambda k, x: anomaly.nll_bits_per_dim(
            k, exp.sde, score_fn, x, num_probes=config.eval.num_probes, rtol=config.sampling.rtol,
            atol=config.sampling.atol))
        methods["nll_bits_per_dim"] = (lambda i, x: nll(jax.random.fold_in(nll_key, i), x), FLAGS.num_nll)
    result = {"config": str(config.data.dataset), "inlier_classes": inliers, "steps": FLAGS.steps,
              "num_examples": {name: len(x) for name, x in groups.items()}}
    for method, (fn, limit) in methods.items():
        scores = {name: _in_batches(fn, x[:limit], batch) for name, x in groups.items()}
        for name in ("held_out", "noise"):
            values = np.concatenate([scores["normal"], scores[name]])
            labels = np.r_[np.zeros(len(scores["normal"])), np.ones(len(scores[name]))]
            result[f"{method}/auroc_{name}"] = anomaly.auroc(values, labels)
        result.update({f"{method}/mean_{name}": float(v.mean()) for name, v in scores.items()})
        result[f"{method}/num_scored"] = {name: len(v) for name, v in scores.items()}
    result["seconds"] = round(time.time() - start, 1)
    line = json.dumps(result)
    print(line)  # the benchmark's output
    if FLAGS.output:
        pathlib.Path(FLAGS.output).write_text(line + "\n")


if __name__ == "__main__":
    app.run(main)
