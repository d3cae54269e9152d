"""Released score_sde checkpoints (2021 JAX msgpack, PyTorch .pth) convert into a workdir whose
restored EMA parameters give the reference network's output; bad input is one line, nothing written."""
import pathlib

import flax.serialization
import jax
import numpy as np
import pytest
from flax.traverse_util import unflatten_dict

from scripts.convert_checkpoint import main
from training.experiment import load_trained

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
TOLERANCE = 1e-5


def relative_error(value, reference) -> float:
    return float(np.linalg.norm(np.asarray(value) - reference) / np.linalg.norm(reference))


def cli_config(reference_networks, name: str) -> list[str]:
    meta = reference_networks.load(name)["meta"]
    return [f"--config={CONFIGS / reference_networks.CONFIGS[meta['config']]}",
            *(f"--config.{override}" for override in meta["overrides"])]


def run_cli(args: list[str]) -> str:
    """The one-line message of a refused conversion."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    message = str(exit_info.value.code)
    assert "\n" not in message and "Traceback" not in message
    return message


def write_2021_checkpoint(path: pathlib.Path, params: dict, ema: dict, step: int) -> None:
    """A train `State` of the 2021 JAX code as flax.training.checkpoints writes it (msgpack)."""
    adam = {"grad_ema": params, "grad_sq_ema": params}
    state = {"step": np.int64(step),
             "optimizer": {"target": params, "state": {"step": np.int64(step), "param_states": adam}},
             "lr": np.float64(2e-4), "model_state": {}, "ema_rate": np.float64(0.9999), "params_ema": ema,
             "rng": np.array([0, 42], np.uint32)}
    path.write_bytes(flax.serialization.msgpack_serialize(state))


@pytest.fixture(scope="module")
def flax2021_ddpm(reference_networks):
    fixture = reference_networks.load("flax2021_ddpm_small")
    ema = unflatten_dict({tuple(k.split("/")[1:]): v for k, v in fixture.items() if k.startswith("params/")})
    return fixture, jax.tree.map(lambda v: v + 0.5, ema), ema


def test_2021_checkpoint_restores_with_its_ema_weights_and_step(reference_networks, flax2021_ddpm, tmp_path):
    fixture, trained, ema = flax2021_ddpm
    source, workdir = tmp_path / "checkpoint_13", tmp_path / "run"
    write_2021_checkpoint(source, trained, ema, step=1300)
    assert main([str(source), f"--workdir={workdir}", *cli_config(reference_networks, "flax2021_ddpm_small")]) == 0

    config = reference_networks.config("flax2021_ddpm_small")
    _, state = load_trained(config, workdir)
    assert int(state.step) == 1300
    model, forward = reference_networks.forward("flax2021_ddpm_small")
    out = forward(state.ema_params, fixture["x"], fixture["labels"])
    assert relative_error(out, fixture["out"]) <= TOLERANCE
    np.testing.assert_array_equal(state.params["Conv_0"]["kernel"], trained["Conv_0"]["kernel"])

    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    message = run_cli([source, f"--workdir={workdir}", *cli_config(reference_networks, "flax2021_ddpm_small")])
    assert "already holds checkpoints" in message
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before


def test_pytorch_checkpoint_restores_with_its_ema_weights(reference_networks, tmp_path):
    """A .pth as score_sde_pytorch saves it: DataParallel's `module.` prefix, the `sigmas` buffer,
    and an EMA without the fixed Fourier frequencies (requires_grad=False)."""
    torch = pytest.importorskip("torch")
    from models.convert import pytorch_trainable_keys

    fixture = reference_networks.load("pytorch_ve_small")
    state_dict = {k[len("state_dict/"):]: v for k, v in fixture.items() if k.startswith("state_dict/")}
    trainable = pytorch_trainable_keys(state_dict)
    assert len(trainable) == len(state_dict) - 1  # all but the Fourier W
    model = {f"module.{k}": torch.tensor(v + 0.5 if k in trainable else v) for k, v in state_dict.items()}
    model["module.sigmas"] = torch.tensor(np.geomspace(50.0, 0.01, 1000))
    checkpoint = {"model": model, "step": 2400,
                  "ema": {"decay": 0.999, "num_updates": 2400,
                          "shadow_params": [torch.tensor(state_dict[k]) for k in trainable]},
                  "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": list(range(len(trainable)))}]}}
    source, workdir = tmp_path / "checkpoint_24.pth", tmp_path / "run"
    torch.save(checkpoint, source)
    assert main([str(source), f"--workdir={workdir}", *cli_config(reference_networks, "pytorch_ve_small")]) == 0

    _, state = load_trained(reference_networks.config("pytorch_ve_small"), workdir)
    assert int(state.step) == 2400
    _, forward = reference_networks.forward("pytorch_ve_small")
    out = forward(state.ema_params, fixture["x"].transpose(0, 2, 3, 1), fixture["labels"])
    assert relative_error(out, fixture["out"].transpose(0, 2, 3, 1)) <= TOLERANCE


def test_weights_of_another_network_are_refused_naming_the_arrays(reference_networks, flax2021_ddpm, tmp_path):
    _, trained, ema = flax2021_ddpm
    source, workdir = tmp_path / "checkpoint_1", tmp_path / "run"
    write_2021_checkpoint(source, trained, ema, step=1)
    message = run_cli([source, f"--workdir={workdir}", *cli_config(reference_networks, "flax2021_vp_small")])
    assert "does not fit the config's network" in message and "extra (Downsample_0/Conv_0/bias (32,)" in message
    assert not workdir.exists()


def test_unreadable_sources_are_one_line_errors(tmp_path):
    config = f"--config={CONFIGS / 'vp/cifar10_ddpm.py'}"
    workdir = tmp_path / "run"
    assert "does not exist" in run_cli([tmp_path / "nope", config, f"--workdir={workdir}"])
    garbage = tmp_path / "checkpoint_5"
    garbage.write_bytes(b"\xc1 not msgpack")
    assert "not a msgpack checkpoint" in run_cli([garbage, config, f"--workdir={workdir}"])
    other = tmp_path / "checkpoint_6"
    other.write_bytes(flax.serialization.msgpack_serialize({"params": {"w": np.zeros(2)}}))
    assert "no optimizer.target and params_ema" in run_cli([other, config, f"--workdir={workdir}"])
    assert "model.nff" in run_cli([other, config, "--config.model.nff=3", f"--workdir={workdir}"])
    assert not workdir.exists()
