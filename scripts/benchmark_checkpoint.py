"""Cost of the per-array checksums of checkpoints: save and restore times of a config's full
train state (params, EMA, optimiser state) with and without them.

    python -m scripts.benchmark_checkpoint --config=configs/ve/cifar10_ncsnpp_continuous.py --repeats=3

The state has the config's shapes (`jax.eval_shape`, nothing compiled) filled with random
values (incompressible, as trained weights nearly are). Each repeat saves a new step and
restores it, alternating verification off and on so that a busy machine slows both alike.
Prints one JSON object: median seconds of save (until on disk) and restore for each, their
ratios, the state's size in MB and the parameter count.
"""
from __future__ import annotations

import json
import pathlib
import statistics
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from training.checkpoint import Checkpointer
from training.data import data_shape_of
from training.experiment import build_experiment

config_flags.DEFINE_config_file("config", "configs/ve/cifar10_ncsnpp_continuous.py", "Config file.",
                                lock_config=True)
flags.DEFINE_integer("repeats", 3, "Save/restore pairs per setting; medians are reported.", lower_bound=1)
flags.DEFINE_string("workdir", None, "Where to write the checkpoints (default: a temporary folder).")
FLAGS = flags.FLAGS


def random_state(config):
    """A train state of the config's structure with random float values, on the default device."""
    abstract = build_experiment(config, data_shape_of(config)).abstract_state()
    rng = np.random.default_rng(0)

    def fill(leaf):
        if np.issubdtype(leaf.dtype, np.floating):
            return jax.device_put(rng.standard_normal(leaf.shape).astype(leaf.dtype), leaf.sharding)
        return jax.device_put(np.zeros(leaf.shape, leaf.dtype), leaf.sharding)

    return abstract, jax.tree.map(fill, abstract)


def benchmark(config, workdir: pathlib.Path, repeats: int) -> dict:
    abstract, state = random_state(config)
    times: dict[str, dict[str, list[float]]] = {k: {"save": [], "restore": []} for k in ("off", "on")}
    step = 0
    for _ in range(repeats):
        for setting in ("off", "on"):
            step += 1
            ckpt = Checkpointer(workdir / setting, keep=1, snapshot_freq=0, preemption_freq=1,
                                verify=setting == "on")
            start = time.perf_counter()
            ckpt.maybe_save(step, state.replace(step=np.int32(step)))
            ckpt.wait()
            times[setting]["save"].append(time.perf_counter() - start)
            start = time.perf_counter()
            restored = ckpt.restore_latest(abstract)
            jax.block_until_ready(restored)
            times[setting]["restore"].append(time.perf_counter() - start)
            ckpt.close()
    median = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in times.items()}
    leaves = jax.tree.leaves(state)
    return {
        "state_mb": round(sum(leaf.nbytes for leaf in leaves) / 2**20, 1),
        "param_count": int(sum(leaf.size for leaf in jax.tree.leaves(state.params))),
        "device": jax.devices()[0].device_kind, "repeats": repeats,
        "save_s": {k: round(v["save"], 3) for k, v in median.items()},
        "restore_s": {k: round(v["restore"], 3) for k, v in median.items()},
        "save_ratio_on_off": round(median["on"]["save"] / median["off"]["save"], 3),
        "restore_ratio_on_off": round(median["on"]["restore"] / median["off"]["restore"], 3),
    }


def main(argv):
    del argv
    if FLAGS.workdir:
        result = benchmark(FLAGS.config, pathlib.Path(FLAGS.workdir), FLAGS.repeats)
    else:
        with tempfile.TemporaryDirectory() as folder:
            result = benchmark(FLAGS.config, pathlib.Path(folder), FLAGS.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
