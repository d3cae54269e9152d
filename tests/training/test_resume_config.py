"""Resuming a workdir with a changed config: keys that fix the train state (model, data shape,
optimiser kind) stop the run before any work, touching nothing saved; other keys may change
(and config.json then records them); checkpoints of another shape are an error, never skipped."""
import json
import logging
import pathlib

import jax
import pytest

from configs import load_config
from training.checkpoint import CheckpointMismatchError, _flat_shapes
from training.experiment import build_experiment
from training.train_loop import ResumeConfigError, state_config_differences, train

OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "training.batch_size=16", "training.n_iters=8",
    "training.snapshot_freq=4", "training.snapshot_freq_for_preemption=2", "training.log_freq=2",
    "eval.enable_loss=false", "training.snapshot_sampling=false",
]


def _config(*extra: str):
    return load_config("configs/digits.py", OVERRIDES + list(extra))


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    """A workdir trained to step 4 (checkpoints at 2 and 4), to copy."""
    workdir = tmp_path_factory.mktemp("resume") / "run"
    train(_config(), workdir, max_steps=4, progress=False)
    return workdir


def _copy(trained: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    import shutil

    return pathlib.Path(shutil.copytree(trained, tmp_path / "run"))


def test_changed_model_stops_naming_the_keys_and_touches_nothing(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    before = _files(workdir)
    config_file = workdir / "config.json"
    with pytest.raises(ResumeConfigError) as raised:
        train(_config("model.hidden_dims=(64,64)", "optim.grad_clip=-1.0", "training.n_iters=20"), workdir,
              progress=False)
    assert str(raised.value) == (
        f"The run in {workdir} was saved with another model, data shape or optimiser than this config "
        "(saved -> now): model.hidden_dims: [32, 32] -> [64, 64]; optim.grad_clip: 1.0 -> -1.0. Nothing was "
        f"changed. Train in a new workdir, or resume with the saved values (see {config_file}).")
    assert _files(workdir) == before


def test_changed_schedule_keys_resume_from_the_last_checkpoint_and_update_config_json(trained, tmp_path, caplog):
    workdir = _copy(trained, tmp_path)
    config = _config("training.n_iters=6", "training.log_freq=1", "optim.lr=1e-3", "model.ema_rate=0.99",
                     "sampling.batch_size=5", "eval.num_samples=7")
    with caplog.at_level(logging.INFO, logger="absl"):
        state = train(config, workdir, progress=False)
    assert "Restored checkpoint at step 4 " in caplog.text
    assert int(state.step) == 6
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["training"]["n_iters"] == 6 and saved["optim"]["lr"] == 1e-3 and saved["model"]["ema_rate"] == 0.99


def test_checkpoint_of_another_shape_without_config_json_is_an_error_not_a_fresh_start(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    (workdir / "config.json").unlink()  # a workdir from before config.json, or one copied without it
    before = _files(workdir)
    step_dir = workdir / "checkpoints-meta" / "4"
    with pytest.raises(CheckpointMismatchError) as raised:
        train(_config("model.hidden_dims=(64,64)"), workdir, progress=False)
    assert str(raised.value) == (
        f"Checkpoint at step 4 ({step_dir}) does not fit the train state of this config (saved with another model, "
        "data shape or optimiser): params/Dense_1/bias: saved (32,) float32, expected (64,) float32; "
        "params/Dense_1/kernel: saved (64, 32) float32, expected (64, 64) float32; params/Dense_2/bias: saved (32,) "
        "float32, expected (64,) float32; and 57 more. Nothing was changed; train in a new workdir, or resume with "
        "the config the checkpoints were saved with.")
    assert _files(workdir) == before


def test_differences_cover_state_keys_only():
    saved = {"model": {"name": "mlp", "hidden_dims": [32, 32], "dropout": 0.1, "ema_rate": 0.999},
             "data": {"dataset": "digits", "image_size": 8, "num_channels": 1, "centered": False},
             "optim": {"optimizer": "Adam", "lr": 2e-4, "grad_clip": 1.0, "weight_decay": 0.0},
             "training": {"n_iters": 10, "batch_size": 16}, "sampling": {"batch_size": 64}, "seed": 1}
    same_state = json.loads(json.dumps(saved))
    same_state["model"].update(dropout=0.0, ema_rate=0.9)
    same_state["data"]["centered"] = True
    same_state["optim"].update(lr=1.0, grad_clip=0.5, weight_decay=0.0)
    same_state["training"].update(n_iters=99, batch_size=8)
    same_state["sampling"]["batch_size"] = 3
    same_state["seed"] = 2
    assert state_config_differences(saved, same_state) == []

    other = json.loads(json.dumps(saved))
    other["model"].update(name="ncsnpp", new_key=3)  # a key the saved config predates is not compared
    other["data"].update(image_size=16, num_channels=3)
    other["optim"].update(optimizer="adam", weight_decay=1e-4, grad_clip=-1.0)
    assert state_config_differences(saved, other) == [
        'data.image_size: 8 -> 16', 'data.num_channels: 1 -> 3', 'model.name: "mlp" -> "ncsnpp"',
        'optim.grad_clip: 1.0 -> -1.0', 'optim.optimizer: "Adam" -> "adam"', 'optim.weight_decay: 0.0 -> 0.0001']


def _state_shapes(*overrides: str) -> dict:
    config = load_config("configs/digits.py", ["model.nf=8", "model.num_res_blocks=1", *overrides])
    return _flat_shapes(build_experiment(config, (8, 8, 1)).abstract_state())


def test_free_model_keys_leave_the_state_alone_and_the_switches_change_it():
    reference = _state_shapes()
    for override in ("model.dropout=0.3", "model.ema_rate=0.5", "model.ema_warmup=true", "model.conv_impl=xla",
                     "optim.grad_clip=0.5", "optim.weight_decay=0.0"):
        assert _state_shapes(override) == reference, override
    for override in ("optim.grad_clip=-1.0", "optim.weight_decay=1e-4", "model.nf=16"):
        assert _state_shapes(override) != reference, override
    assert jax.tree.leaves(reference)


def test_unreadable_config_json_is_an_error_and_is_kept(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text('{"model": {"name": "mlp"')
    with pytest.raises(ResumeConfigError) as raised:
        train(_config(), workdir, progress=False)
    assert str(raised.value).startswith(f"{workdir / 'config.json'} cannot be read (")
    assert str(raised.value).endswith(f"); it describes the run saved in {workdir}. Repair it, or train in a new "
                                      "workdir.")
    assert (workdir / "config.json").read_text() == '{"model": {"name": "mlp"'
    assert sorted(p.name for p in workdir.iterdir()) == ["config.json"]
