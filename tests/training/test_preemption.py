"""Preemption: SIGTERM (what schedulers send before they kill a job) makes training save a
checkpoint at the step it reached and exit cleanly; the same command then resumes from it."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax

REPO = pathlib.Path(__file__).resolve().parents[2]
OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "training.batch_size=16",
    "training.n_iters=1000000", "training.snapshot_freq=1000000", "training.snapshot_freq_for_preemption=1000000",
    "training.log_freq=1", "eval.enable_loss=false", "training.snapshot_sampling=false",
]


def _train(workdir: pathlib.Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    command = [sys.executable, "-m", "scripts.main", "train", f"--config={REPO / 'configs' / 'digits.py'}",
               f"--workdir={workdir}", *[f"--config.{o}" for o in OVERRIDES], *extra]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _logged_steps(workdir: pathlib.Path) -> list[int]:
    path = workdir / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def test_sigterm_saves_the_step_reached_exits_cleanly_and_the_run_resumes(tmp_path):
    workdir = tmp_path / "run"
    process = _train(workdir)
    deadline = time.monotonic() + 240
    try:
        while len(_logged_steps(workdir)) < 3:  # training is under way (no checkpoint is due for 1e6 steps)
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    stopped_at = json.loads(stdout)["step"]
    assert "Preempted: saved step" in stderr
    assert (workdir / "checkpoints-meta" / str(stopped_at)).is_dir() and stopped_at >= 3

    resumed = _train(workdir, f"--max_steps={stopped_at + 2}")
    stdout, stderr = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["step"] == stopped_at + 2
    assert f"Training from step {stopped_at} to {stopped_at + 2}" in stderr
