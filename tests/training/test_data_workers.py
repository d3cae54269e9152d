"""Training reads the same batches whether they come from reader threads only or from grain
worker processes (`data.num_workers`), so the losses of the first steps are identical."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "training.batch_size=16", "training.n_iters=4",
    "training.log_freq=1", "eval.enable_loss=false", "training.snapshot_sampling=false",
    "data.random_flip=true", "data.uniform_dequantization=true",
]


def _losses(workdir: pathlib.Path, num_workers: int) -> list[float]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    command = [sys.executable, "-m", "scripts.main", "train", f"--config={REPO / 'configs' / 'digits.py'}",
               f"--workdir={workdir}", *[f"--config.{o}" for o in OVERRIDES], f"--config.data.num_workers={num_workers}"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.mark.slow  # two training processes plus grain workers: ~25-40 s on 2 cores
def test_worker_processes_feed_the_same_batches_as_threads(tmp_path):
    threads = _losses(tmp_path / "threads", 0)
    workers = _losses(tmp_path / "workers", 2)
    assert len(threads) == 4 and workers == threads
