"""Resume exactness: a training process killed (SIGKILL) once a checkpoint is on disk, then
restarted in the same workdir, ends bit-identical to an uninterrupted run of the same length."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from configs import load_config
from training.experiment import load_trained
from training.train_loop import train

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "digits.py"
N_STEPS = 16
KILL_AFTER = 4  # kill once the preemption checkpoint of this step is complete
OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "model.dropout=0.1", "training.batch_size=16",
    f"training.n_iters={N_STEPS}", "training.snapshot_freq=1000", "training.snapshot_freq_for_preemption=2",
    "training.log_freq=2", "eval.enable_loss=false", "training.snapshot_sampling=false",
    "data.uniform_dequantization=true",
]


def _train_command(workdir: pathlib.Path) -> list[str]:
    return [sys.executable, "-m", "scripts.main", "train", f"--config={CONFIG}", f"--workdir={workdir}",
            *[f"--config.{o}" for o in OVERRIDES]]


def _env() -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")


def _saved_steps(workdir: pathlib.Path) -> list[int]:
    """Complete preemption checkpoints (orbax renames a step's directory only when it is whole)."""
    directory = workdir / "checkpoints-meta"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.exists() else []


def _kill_after_checkpoint(workdir: pathlib.Path, step: int, timeout_s: float = 240.0) -> int:
    """Start training, SIGKILL it as soon as checkpoint `step` is complete; returns the newest
    complete checkpoint at the kill."""
    process = subprocess.Popen(_train_command(workdir), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    try:
        while not _saved_steps(workdir) or _saved_steps(workdir)[-1] < step:
            assert process.poll() is None, f"training ended before step {step}:\n{process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return _saved_steps(workdir)[-1]


def test_killed_and_restarted_run_is_bit_identical_to_uninterrupted(tmp_path):
    config = load_config(CONFIG, OVERRIDES)
    killed = tmp_path / "killed"
    at_kill = _kill_after_checkpoint(killed, KILL_AFTER)
    assert KILL_AFTER <= at_kill < N_STEPS, "the kill must interrupt the run"

    restart = subprocess.run(_train_command(killed), cwd=REPO, env=_env(), capture_output=True, text=True,
                             timeout=240)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert f"Restored checkpoint at step {at_kill}" in restart.stderr

    straight = tmp_path / "straight"
    train(config, straight, progress=False)

    _, resumed_state = load_trained(config, killed)
    exp, reference_state = load_trained(config, straight)
    assert int(resumed_state.step) == int(reference_state.step) == N_STEPS
    resumed, reference = jax.tree.leaves(resumed_state), jax.tree.leaves(reference_state)
    assert len(resumed) == len(reference)
    for a, b in zip(resumed, reference, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # Training moved every parameter array: the comparison is not between two initialisations.
    initial, _ = exp.init_state()
    for a, b in zip(jax.tree.leaves(initial.params), jax.tree.leaves(reference_state.params), strict=True):
        assert not np.array_equal(np.asarray(a), np.asarray(b))
