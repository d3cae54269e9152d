"""Training speed side by side with the PyTorch reference (yang-song/score_sde_pytorch) on CPU.

    python -m scripts.benchmark_vs_pytorch --reference_dir=/path/to/score_sde_pytorch \
        [--networks=ddpmpp,ncsnpp] [--batch_size=8] [--rounds=5] [--steps_per_round=2] \
        [--override=model.conv_impl=xla]

For each network (DDPM++ = `vp/cifar10_ddpmpp_continuous`, NCSN++ = `ve/cifar10_ncsnpp_continuous`,
the same config file name in both code bases) two worker processes are started: ours runs the
jitted step of `training.train_step` as `scripts.benchmark_train_step` builds it; the peer runs the
reference's own `losses.get_step_fn` training step (loss, backward, Adam with warm-up and gradient
clipping, EMA update) on its own model, imported from `--reference_dir` (its CUDA extensions are
not built: on a CPU the reference calls its native upfirdn2d). Both get uniform random batches
scaled to [-1, 1]; both use every core (JAX's CPU client and torch's default thread count).
After a warm-up each, the parent alternates rounds of `--steps_per_round` steps between the two,
so a change in machine load hits both alike, and prints one JSON object: per network, the median
images/s of each side, `ratio` = ours / reference, the per-round ratios, and the same per second
of process CPU time (`ratio_cpu`; less sensitive to other jobs on a shared machine). Where torch or the reference directory is absent the peer is skipped with a message
(ours is still timed). The reference code is never part of this repository.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys

import jax
import numpy as np
from absl import app, flags, logging

from configs import load_config
from scripts import benchmark_train_step, json_report  # the first defines the --batch_size, --output flags
from scripts.pytorch_reference_worker import serve

ROOT = pathlib.Path(__file__).resolve().parent.parent

NETWORKS = {"ddpmpp": "vp/cifar10_ddpmpp_continuous.py", "ncsnpp": "ve/cifar10_ncsnpp_continuous.py"}

flags.DEFINE_list("networks", list(NETWORKS), f"Networks to compare: {', '.join(NETWORKS)}.")
flags.DEFINE_string("reference_dir", None, "A checkout of yang-song/score_sde_pytorch (peer skipped if absent).")
flags.DEFINE_integer("rounds", 5, "Alternating timed rounds per network.")
flags.DEFINE_integer("steps_per_round", 2, "Training steps per timed round.")
flags.DEFINE_multi_string("override", [], "key=value applied to our config (e.g. model.conv_impl=xla).")
flags.DEFINE_bool("worker", False, "Internal: run as our side's worker process.")
flags.DEFINE_string("network", None, "Internal: the worker's network.")
FLAGS = flags.FLAGS


def _ours_step(network: str, batch_size: int, overrides: list[str]):
    config = load_config(ROOT / "configs" / NETWORKS[network], overrides)
    compiled, state, batches, _ = benchmark_train_step.compile_step(config, batch_size=batch_size)
    holder = {"state": state}

    def step():
        holder["state"], metrics = compiled(holder["state"], batches)
        if not np.all(np.isfinite(np.asarray(jax.block_until_ready(metrics)["loss"]))):
            raise FloatingPointError("non-finite loss in our training step")
    return step


class _Worker:
    """A warm worker process of this script, stepped through its stdin."""

    def __init__(self, side: str, network: str):
        if side == "ours":
            args = ["-m", "scripts.benchmark_vs_pytorch", "--worker", f"--network={network}",
                    f"--batch_size={FLAGS.batch_size}", *(f"--override={o}" for o in FLAGS.override)]
        else:
            args = [str(ROOT / "scripts" / "pytorch_reference_worker.py"), FLAGS.reference_dir, NETWORKS[network],
                    str(FLAGS.batch_size)]
        # the reference must not see this repository's packages (its own are named alike)
        env = {k: v for k, v in os.environ.items() if side == "ours" or k != "PYTHONPATH"}
        self.side = side
        self.process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.side} worker exited (code {self.process.wait()})")
        return json.loads(line)

    def run(self, steps: int) -> dict:
        """`{"seconds", "cpu_seconds"}` of `steps` training steps."""
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def peer_missing(reference_dir: str | None) -> str | None:
    """Why the PyTorch reference cannot run here, or None if it can."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    if not reference_dir:
        return "--reference_dir is not given"
    if not (pathlib.Path(reference_dir) / "losses.py").is_file():
        return f"{reference_dir} is not a score_sde_pytorch checkout (no losses.py)"
    return None


def compare(network: str, with_peer: bool) -> dict:
    """Alternating timed rounds of ours and (if `with_peer`) the reference on `network`."""
    sides = ["ours", "reference"] if with_peer else ["ours"]
    workers = {}
    try:
        for side in sides:  # one at a time: start-up and compilation do not overlap the other's timing
            workers[side] = _Worker(side, network)
        rounds = {side: [] for side in sides}
        for _ in range(FLAGS.rounds):
            for side in sides:
                rounds[side].append(workers[side].run(FLAGS.steps_per_round))
    finally:
        for worker in workers.values():
            worker.close()
    images = FLAGS.batch_size * FLAGS.steps_per_round
    result = {}
    for clock, key in (("images_per_s", "seconds"), ("images_per_cpu_s", "cpu_seconds")):
        rates = {side: [images / r[key] for r in rounds[side]] for side in sides}
        result.update({f"{side}_{clock}": statistics.median(rates[side]) for side in sides})
        result.update({f"{side}_rounds_{clock}": rates[side] for side in sides})
        if with_peer:
            suffix = "" if clock == "images_per_s" else "_cpu"
            result[f"ratio{suffix}"] = result[f"ours_{clock}"] / result[f"reference_{clock}"]
            result[f"round_ratios{suffix}"] = [a / b for a, b in zip(rates["ours"], rates["reference"], strict=True)]
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    unknown = sorted(set(FLAGS.networks) - set(NETWORKS))
    if unknown:
        raise app.UsageError(f"unknown networks {unknown}; known: {sorted(NETWORKS)}")
    if FLAGS.batch_size == 0:
        FLAGS.batch_size = 8
    if FLAGS.batch_size < 1 or FLAGS.rounds < 1 or FLAGS.steps_per_round < 1:
        raise app.UsageError("--batch_size, --rounds and --steps_per_round must be positive")
    if FLAGS.worker:
        serve(_ours_step(FLAGS.network, FLAGS.batch_size, FLAGS.override))
        return
    missing = peer_missing(FLAGS.reference_dir)
    if missing:
        logging.warning("skipping the PyTorch reference: %s", missing)
    result = {"batch_size": FLAGS.batch_size, "rounds": FLAGS.rounds, "steps_per_round": FLAGS.steps_per_round,
              "overrides": FLAGS.override, "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()[0],
              "peer": "skipped: " + missing if missing else "score_sde_pytorch"}
    for network in FLAGS.networks:
        result[network] = compare(network, with_peer=missing is None)
    result["load_average_end"] = os.getloadavg()[0]
    json_report.emit(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
