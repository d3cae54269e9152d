"""A real multi-process run: two JAX processes on this machine (`jax.distributed` on a localhost
coordinator, one CPU device each, JAX's gloo CPU collectives) run `score-sde train` as two hosts
of one cluster would. Each reads only its half of every global batch; the parameters equal a
one-process run's, the checkpoint they save together restores in both, and a SIGTERM to one of
them stops both at the same step (JAX's preemption sync point) with that step saved; `sample` and
`evaluate` write their files once."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "model.dropout=0.1", "training.batch_size=16",
    "training.grad_accum_steps=2", "data.uniform_dequantization=true", "data.random_flip=true", "optim.warmup=0", "optim.lr=1e-2",
    "training.n_iters=4", "training.snapshot_freq=4", "training.snapshot_freq_for_preemption=1000000",
    "training.log_freq=1", "eval.enable_loss=false", "training.snapshot_sampling=false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _command(mode: str, workdir: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scripts.main", mode, f"--config={REPO / 'configs' / 'digits.py'}",
            f"--workdir={workdir}", *[f"--config.{o}" for o in OVERRIDES], *extra]


def _start(mode: str, workdir: pathlib.Path, *extra: str, processes: int = 2) -> list[subprocess.Popen]:
    """`processes` copies of the command as the hosts of one run (one process: no cluster)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    # The suite's fast-compile flag (tests/conftest.py) and no forced device count.
    env["XLA_FLAGS"] = "--xla_llvm_disable_expensive_passes=true"
    cluster = {}
    if processes > 1:
        cluster = {"JAX_COORDINATOR_ADDRESS": f"localhost:{_free_port()}", "JAX_NUM_PROCESSES": str(processes)}
    return [subprocess.Popen(_command(mode, workdir, *extra), cwd=REPO, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**env, **cluster, "JAX_PROCESS_ID": str(i)})
            for i in range(processes)]


def _finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[tuple[str, str]]:
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-4000:]
    return outs


def _report(stdout: str) -> dict:
    """The mode's JSON report (gloo prints its connection messages to stdout before it)."""
    return json.loads(stdout[stdout.index("{\n"):])


def _saved_params(workdir: pathlib.Path, step: int) -> dict:
    """The parameters of checkpoint `step`, read back onto this (single) process's device (a
    target is needed: orbax refuses to guess a layout for arrays saved from another topology)."""
    import orbax.checkpoint as ocp

    path = (workdir / "checkpoints" / str(step) / "default").absolute()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(path)
        tree = getattr(metadata, "item_metadata", metadata)
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                              getattr(tree, "tree", tree))
        return jax.device_get(checkpointer.restore(path, target)["params"])


def test_two_processes_train_like_one(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    outs = _finish(_start("train", two) + _start("train", one, processes=1))
    for out, _ in outs:
        assert _report(out)["step"] == 4
    assert any("process 1 of 2" in err for _, err in outs[:2])
    # Adam at lr 1e-2 moves each parameter by ~1e-2 a step: a host reading the wrong rows (or
    # gradients summed instead of averaged over hosts) would miss by far more than float rounding.
    params_two, params_one = _saved_params(two, 4), _saved_params(one, 4)
    for a, b in zip(jax.tree.leaves(params_two), jax.tree.leaves(params_one), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_two_processes_restore_their_checkpoint_and_continue(tmp_path):
    workdir = tmp_path / "run"
    _finish(_start("train", workdir, "--config.training.n_iters=2", "--config.training.snapshot_freq=2"))
    outs = _finish(_start("train", workdir, "--config.training.snapshot_freq=2"))
    for out, err in outs:
        assert _report(out)["step"] == 4
        assert "Restored checkpoint at step 2" in err
    assert (workdir / "checkpoints" / "4").is_dir()


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_saved_step(tmp_path):
    workdir = tmp_path / "run"
    procs = _start("train", workdir, "--config.training.n_iters=1000000", "--config.training.snapshot_freq=1000000")
    deadline = time.monotonic() + 240
    metrics = workdir / "metrics.jsonl"
    try:
        while not metrics.exists() or len(metrics.read_text().splitlines()) < 3:
            assert all(p.poll() is None for p in procs), procs[0].stderr.read()[-3000:]
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGTERM)
    except BaseException:
        for p in procs:
            p.kill()
        raise
    outs = _finish(procs, timeout=120)
    steps = {_report(out)["step"] for out, _ in outs}
    assert len(steps) == 1, steps
    (step,) = steps
    assert step >= 3 and (workdir / "checkpoints-meta" / str(step)).is_dir()
    assert all("Preempted: saved step" in err for _, err in outs)


@pytest.mark.slow
def test_two_processes_sample_and_write_the_samples_once(tmp_path):
    workdir = tmp_path / "run"
    _finish(_start("train", workdir, "--config.training.n_iters=2", "--config.training.snapshot_freq=2"))
    outs = _finish(_start("sample", workdir, "--config.sampling.num_steps=10", "--config.sampling.batch_size=8"))
    reports = [_report(out) for out, _ in outs]
    assert reports[0] == reports[1] | {"seconds": reports[0]["seconds"]}
    with np.load(reports[0]["npz"]) as saved:
        assert saved["samples"].shape == (8, 8, 8, 1) and np.isfinite(saved["samples"]).all()
    assert len(list((workdir / "samples").iterdir())) == 2  # one .png and one .npz


@pytest.mark.slow
def test_two_processes_evaluate_and_write_the_metrics_once(tmp_path):
    workdir = tmp_path / "run"
    _finish(_start("train", workdir, "--config.training.n_iters=2", "--config.training.snapshot_freq=2"))
    outs = _finish(_start("evaluate", workdir, "--config.eval.enable_sampling=false", "--config.eval.batch_size=8",
                          "--max_examples=8"))
    reports = [_report(out) for out, _ in outs]
    assert reports[0] == reports[1]
    assert reports[0]["num_examples"] == 8 and np.isfinite(reports[0]["bpd"])
    assert [p.name for p in (workdir / "eval").iterdir()] == ["metrics_step2.json"]
    assert json.loads((workdir / "eval" / "metrics_step2.json").read_text())["bpd"] == reports[0]["bpd"]
