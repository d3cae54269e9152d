"""Failures of a training run (the Checkpointer itself is tested in test_checkpoint.py):
a corrupt newest checkpoint is reported and training resumes exactly from the previous good one;
a non-finite loss or gradient norm stops the run with a clear message and leaves the last good
checkpoint intact; snapshot sampling works with a sample batch not divisible by the device count."""
import contextlib
import io
import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import load_config
from training import train_loop
from training.experiment import load_trained
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
    with caplog.at_level(logging.INFO, logger="absl"):
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


@jax.custom_jvp
def _zero_with_infinite_slope(x: jax.Array) -> jax.Array:
    return 0.0 * x


@_zero_with_infinite_slope.defjvp
def _zero_with_infinite_slope_jvp(primals, tangents):
    return _zero_with_infinite_slope(primals[0]), jnp.inf * tangents[0]


def test_infinite_gradient_with_finite_loss_stops_before_saving_nan_parameters(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    train(_config(), workdir, max_steps=4, progress=False)
    _, good = load_trained(_config(), workdir)

    make_objective = train_loop.make_objective

    def objective_with_infinite_gradient(*args, **kwargs):
        objective = make_objective(*args, **kwargs)

        def patched(params, x, key, labels=None):  # the loss value is unchanged, its gradient infinite
            first = jax.tree.leaves(params)[0]
            return objective(params, x, key, labels) + _zero_with_infinite_slope(jnp.sum(first))

        return patched

    monkeypatch.setattr(train_loop, "make_objective", objective_with_infinite_gradient)
    # Step 5 ends the run, so it would be saved: a finite loss but NaN parameters after clipping.
    with pytest.raises(NonFiniteLossError) as raised:
        train(_config(), workdir, max_steps=5, progress=False)
    assert str(raised.value) == (f"Non-finite gradient norm (inf) at step 5; training stopped, the last good "
                                 f"checkpoint is step 4 in {workdir}.")
    checkpoints = sorted(int(p.name) for p in (workdir / "checkpoints-meta").iterdir() if p.name.isdigit())
    assert checkpoints == [2, 4]
    _, after = load_trained(_config(), workdir)
    for a, b in zip(_leaves(after), _leaves(good), strict=True):
        assert np.array_equal(a, b)


SAMPLING_SCRIPT = """
import sys
import numpy as np
import jax
from configs import load_config
from training import train_loop

shapes = []
write_samples = train_loop.MetricWriter.write_samples
def record(self, step, samples, *args, **kwargs):
    shapes.append((step, samples.shape, bool(np.isfinite(samples).all())))
    return write_samples(self, step, samples, *args, **kwargs)
train_loop.MetricWriter.write_samples = record
config = load_config("configs/digits.py", OVERRIDES + ["training.n_iters=2", "training.snapshot_freq=2",
    "training.snapshot_sampling=true", "sampling.batch_size=3", "sampling.num_steps=3"])
train_loop.train(config, sys.argv[1], progress=False)
print(jax.device_count(), shapes)
"""


def test_snapshot_sampling_with_a_batch_not_divisible_by_the_device_count(run_on_four_devices, tmp_path):
    script = f"OVERRIDES = {OVERRIDES!r}\nimport sys; sys.argv = ['', {str(tmp_path / 'run')!r}]\n{SAMPLING_SCRIPT}"
    result = run_on_four_devices(script, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "4 [(2, (3, 8, 8, 1), True)]"
    assert (tmp_path / "run" / "samples" / "step_2.png").is_file()


def test_cli_train_exits_with_the_non_finite_message(tmp_path, caplog):
    """In-process `scripts.main.main` (a fresh process would add seconds of imports; the CLI's exit
    path is the same, and tests/scripts/test_cli.py runs the command as a process). The message is
    the mode's absl error log line, which a process writes to stderr."""
    from scripts import main as cli

    workdir = tmp_path / "run"
    overrides = [f"--config.{o}" for o in OVERRIDES + ["optim.lr=1e30", "optim.warmup=0"]]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        cli.main(["score-sde", "train", "--config=configs/digits.py", f"--workdir={workdir}", "--max_steps=20",
                  *overrides])
    assert exited.value.code == 1, err.getvalue()[-3000:]
    assert "Traceback" not in err.getvalue() + caplog.text
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert re.match(r"Non-finite loss \((nan|inf|-inf)\) at step \d+; training stopped, ", errors[0]), errors
    assert out.getvalue() == ""
