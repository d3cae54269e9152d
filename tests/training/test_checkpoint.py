"""Checkpointer: keep-N, preemption copies, fallback past partial or corrupt steps, exact warning."""
import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training.checkpoint import Checkpointer, corrupt_checkpoint_message
from training.state import TrainState


def _state(step: int) -> TrainState:
    return TrainState(step=jnp.int32(step), params={"w": jnp.full((3, 4), float(step))}, opt_state=(jnp.zeros(2),),
                      ema_params={"w": jnp.full((3, 4), step + 0.5)}, rng=jax.random.PRNGKey(7))


ABSTRACT = jax.eval_shape(lambda: _state(0))


def _save(workdir, steps, **kwargs) -> Checkpointer:
    options = {"keep": 3, "snapshot_freq": 2, "preemption_freq": 1} | kwargs
    ckpt = Checkpointer(workdir, **options)
    for step in steps:
        ckpt.maybe_save(step, _state(step))
    ckpt.wait()
    return ckpt


def _data_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    """The array data files of a step (what a truncated copy or a lost file would hit)."""
    return sorted((step_dir / "default" / "d").iterdir())


def test_restores_latest_state_exactly(tmp_path):
    ckpt = _save(tmp_path, range(1, 6))
    state = ckpt.restore_latest(ABSTRACT)
    ckpt.close()
    assert int(state.step) == 5
    np.testing.assert_array_equal(state.params["w"], np.full((3, 4), 5.0))
    np.testing.assert_array_equal(state.ema_params["w"], np.full((3, 4), 5.5))
    np.testing.assert_array_equal(state.rng, jax.random.PRNGKey(7))


def test_keeps_newest_n_periodic_and_two_preemption_steps(tmp_path):
    ckpt = _save(tmp_path, range(1, 11), keep=2)
    ckpt.close()
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [8, 10]
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints-meta").iterdir() if p.name.isdigit()) == [9, 10]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_corrupt_latest_is_reported_and_skipped_for_previous(tmp_path, caplog, damage):
    _save(tmp_path, [1, 2, 3]).close()
    step_dir = tmp_path / "checkpoints-meta" / "3"
    target = _data_files(step_dir)[0]
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    else:
        target.unlink()
    ckpt = Checkpointer(tmp_path, keep=3, snapshot_freq=2, preemption_freq=1)
    with caplog.at_level(logging.WARNING):
        state = ckpt.restore_latest(ABSTRACT)
    ckpt.close()
    assert int(state.step) == 2
    np.testing.assert_array_equal(state.params["w"], np.full((3, 4), 2.0))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    prefix = f"Checkpoint at step 3 ({step_dir}) is partial or corrupt and was skipped: "
    assert len(warnings) == 1 and warnings[0].startswith(prefix), warnings
    assert step_dir.exists(), "a corrupt checkpoint must not be deleted"


def test_corrupt_message_names_step_path_and_error():
    message = corrupt_checkpoint_message(12, "/w/checkpoints/12", ValueError("DATA_LOSS: short read"))
    assert message == ("Checkpoint at step 12 (/w/checkpoints/12) is partial or corrupt and was skipped: "
                       "ValueError: DATA_LOSS: short read")


def test_partial_save_directory_is_ignored(tmp_path):
    _save(tmp_path, [1, 2]).close()
    # What a save killed mid-write leaves: orbax's temporary directory, never renamed to "3".
    (tmp_path / "checkpoints-meta" / "3.orbax-checkpoint-tmp-1700000000").mkdir()
    ckpt = Checkpointer(tmp_path, keep=3, snapshot_freq=2, preemption_freq=1)
    assert int(ckpt.restore_latest(ABSTRACT).step) == 2
    ckpt.close()


def test_step_counter_mismatch_counts_as_corrupt(tmp_path, caplog):
    ckpt = Checkpointer(tmp_path, keep=3, snapshot_freq=0, preemption_freq=1)
    ckpt.maybe_save(1, _state(1))
    ckpt.maybe_save(2, _state(5))  # a state whose counter disagrees with its directory
    ckpt.wait()
    with caplog.at_level(logging.WARNING):
        state = ckpt.restore_latest(ABSTRACT)
    ckpt.close()
    assert int(state.step) == 1
    assert any("its step counter reads 5" in r.getMessage() for r in caplog.records)


def test_resaving_a_corrupt_step_sets_it_aside(tmp_path):
    _save(tmp_path, [1, 2], snapshot_freq=0).close()  # no periodic copy of step 2 to fall back on
    step_dir = tmp_path / "checkpoints-meta" / "2"
    for f in _data_files(step_dir):
        f.unlink()
    ckpt = Checkpointer(tmp_path, keep=3, snapshot_freq=0, preemption_freq=1)
    assert int(ckpt.restore_latest(ABSTRACT).step) == 1
    ckpt.maybe_save(2, _state(2))
    ckpt.wait()
    assert int(ckpt.restore_latest(ABSTRACT).step) == 2
    ckpt.close()
    assert (tmp_path / "checkpoints-meta" / "2.corrupt").exists()
