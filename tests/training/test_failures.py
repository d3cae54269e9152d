"""Failures of a training run (the Checkpointer itself is tested in test_checkpoint.py):
a corrupt newest checkpoint is reported and training resumes exactly from the previous good one;
a non-finite loss stops the run with a clear message and leaves the last good checkpoint intact."""
import logging
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import load_config
from training.evaluation import load_trained
from training.train_loop import NonFiniteLossError, train

OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "training.batch_size=16", "training.n_iters=100",
    "training.snapshot_freq=1000", "training.snapshot_freq_for_preemption=2", "training.log_freq=1",
    "eval.enable_loss=false", "training.snapshot_sampling=false",
]


def _config(*extra: str):
    return load_config("configs/digits.py", OVERRIDES + list(extra))


def _leaves(state) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def test_corrupt_newest_checkpoint_is_reported_and_training_resumes_exactly_from_the_previous(tmp_path, caplog):
    config = _config()
    straight = tmp_path / "straight"
    train(config, straight, max_steps=6, progress=False)

    workdir = tmp_path / "run"
    train(config, workdir, max_steps=4, progress=False)
    step_dir = workdir / "checkpoints-meta" / "4"
    data_file = sorted((step_dir / "default" / "d").iterdir())[0]
    data_file.write_bytes(b"garbage" + data_file.read_bytes()[7:-7])  # garbled and truncated
    with caplog.at_level(logging.INFO):
        train(config, workdir, max_steps=6, progress=False)

    prefix = f"Checkpoint at step 4 ({step_dir}) is partial or corrupt and was skipped: "
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(w.startswith(prefix) for w in warnings) == 1, warnings
    assert "Restored checkpoint at step 2 " in caplog.text
    # Step 4 was trained again from step 2 and saved anew; the damaged copy is kept aside.
    assert (workdir / "checkpoints-meta" / "4.corrupt").is_dir()
    _, resumed = load_trained(config, workdir)
    _, reference = load_trained(config, straight)
    assert int(resumed.step) == 6
    for a, b in zip(_leaves(resumed), _leaves(reference), strict=True):
        assert np.array_equal(a, b)


def test_non_finite_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    train(_config(), workdir, max_steps=4, progress=False)
    _, good = load_trained(_config(), workdir)

    exploding = _config("optim.lr=1e30", "optim.warmup=0")
    pattern = (r"Non-finite loss \((nan|inf|-inf)\) at step (5|6); training stopped, the last good checkpoint "
               rf"is step 4 in {re.escape(str(workdir))}\.")
    with pytest.raises(NonFiniteLossError, match=f"^{pattern}$"):
        train(exploding, workdir, max_steps=20, progress=False)

    checkpoints = sorted(int(p.name) for p in (workdir / "checkpoints-meta").iterdir() if p.name.isdigit())
    assert checkpoints == [2, 4]
    _, after = load_trained(_config(), workdir)
    assert int(after.step) == 4
    for a, b in zip(_leaves(after), _leaves(good), strict=True):
        assert np.array_equal(a, b)


def test_cli_train_exits_with_the_non_finite_message(tmp_path):
    root = pathlib.Path(__file__).resolve().parents[2]
    workdir = tmp_path / "run"
    overrides = [f"--config.{o}" for o in OVERRIDES + ["optim.lr=1e30", "optim.warmup=0"]]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    result = subprocess.run([sys.executable, "-m", "scripts.main", "train", "--config=configs/digits.py",
                             f"--workdir={workdir}", "--max_steps=20", *overrides],
                            cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert re.search(r"Non-finite loss \((nan|inf|-inf)\) at step \d+; training stopped, ", result.stderr)
    assert result.stdout == ""
