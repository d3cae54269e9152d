"""Checkpointer: keep-N, preemption copies, fallback past partial or corrupt steps, exact warning;
a checkpoint of another train state is an error (never skipped as corrupt); a refused save raises."""
import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointSaveError,
    corrupt_checkpoint_message,
)
from training.state import TrainState


def _state(step: int, shape: tuple[int, ...] = (3, 4), extra: bool = False) -> TrainState:
    params = {"w": jnp.full(shape, float(step))} | ({"b": jnp.zeros(2)} if extra else {})
    return TrainState(step=jnp.int32(step), params=params, opt_state=(jnp.zeros(2),),
                      ema_params={"w": jnp.full(shape, step + 0.5)}, rng=jax.random.PRNGKey(7))


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


def _tree_bytes(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_checkpoint_of_another_shape_is_an_error_naming_the_arrays_not_skipped_as_corrupt(tmp_path, caplog):
    _save(tmp_path, [1, 2, 3]).close()
    before = _tree_bytes(tmp_path)
    ckpt = Checkpointer(tmp_path, keep=3, snapshot_freq=2, preemption_freq=1)
    step_dir = tmp_path / "checkpoints-meta" / "3"
    expected = (f"Checkpoint at step 3 ({step_dir}) does not fit the train state of this config (saved with another "
                "model, data shape or optimiser): params/w: saved (3, 4) float32, expected (5, 4) float32; "
                "ema_params/w: saved (3, 4) float32, expected (5, 4) float32; params/b: expected (2,) float32, "
                "not in the checkpoint. Nothing was changed; train in a new workdir, or resume with the config the "
                "checkpoints were saved with.")
    with caplog.at_level(logging.WARNING), pytest.raises(CheckpointMismatchError) as raised:
        ckpt.restore_latest(jax.eval_shape(lambda: _state(0, (5, 4), extra=True)))
    ckpt.close()
    assert str(raised.value) == expected
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "reported as corrupt"
    assert _tree_bytes(tmp_path) == before


def test_checkpoint_of_another_dtype_is_an_error(tmp_path):
    _save(tmp_path, [1]).close()
    abstract = jax.eval_shape(lambda: _state(0).replace(params={"w": jnp.zeros((3, 4), jnp.bfloat16)}))
    ckpt = Checkpointer(tmp_path, keep=3, snapshot_freq=2, preemption_freq=1)
    with pytest.raises(CheckpointMismatchError, match=r"params/w: saved \(3, 4\) float32, expected \(3, 4\) bfloat16"):
        ckpt.restore_latest(abstract)
    ckpt.close()


def test_refused_save_raises_naming_the_step(tmp_path):
    ckpt = _save(tmp_path, [4], snapshot_freq=0)
    with pytest.raises(CheckpointSaveError) as raised:
        ckpt.maybe_save(3, _state(3))  # orbax saves no step before its newest
    ckpt.close()
    assert str(raised.value) == (f"Saving step 3 to {tmp_path / 'checkpoints-meta'} was refused by orbax (its saved "
                                 "steps are [4]); the run stopped rather than go on unsaved.")


def test_corrupt_steps_after_the_restored_one_are_set_aside_so_retraining_saves_again(tmp_path):
    # A run saved at 2 and 5 (a forced save at the end of a time budget); 5 is damaged.
    _save(tmp_path, [2, 5], snapshot_freq=0).close()
    for f in _data_files(tmp_path / "checkpoints-meta" / "5"):
        f.unlink()
    ckpt = Checkpointer(tmp_path, keep=3, snapshot_freq=0, preemption_freq=1)
    assert int(ckpt.restore_latest(ABSTRACT).step) == 2
    ckpt.maybe_save(3, _state(3))  # before step 5: orbax would refuse it with 5 still in place
    ckpt.wait()
    assert int(ckpt.restore_latest(ABSTRACT).step) == 3
    ckpt.close()
    assert (tmp_path / "checkpoints-meta" / "5.corrupt").is_dir()
