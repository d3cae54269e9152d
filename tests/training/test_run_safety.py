"""No lost run: one trainer per workdir (a second one is refused naming the holder, a stale lock
is taken over), every checkpoint corrupt is refused (or deliberately restarted), metrics.jsonl
survives a crash (records past the restored step and a torn line are dropped), a failed save
stops the run at once naming the last good step, and Ctrl-C saves before exiting (twice aborts)."""
import errno
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import load_config
from training.checkpoint import Checkpointer, CheckpointSaveError
from training.experiment import load_trained
from training.logging import read_metrics
from training.train_loop import AllCheckpointsCorruptError, train
from training.workdir_lock import LOCK_FILE, WorkdirLockedError

OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(16,16)", "model.nf=8", "training.batch_size=8", "training.n_iters=100",
    "training.snapshot_freq=1000", "training.snapshot_freq_for_preemption=2", "training.log_freq=1",
    "eval.enable_loss=false", "training.snapshot_sampling=false",
]
REPO = pathlib.Path(__file__).resolve().parents[2]


def _config(*extra: str):
    return load_config(REPO / "configs" / "digits.py", OVERRIDES + list(extra))


def _steps(folder: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    """A workdir trained for 4 steps (checkpoints-meta/2 and /4)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train(_config(), workdir, max_steps=4, progress=False)
    return workdir


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _snapshot(workdir: pathlib.Path) -> dict:
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}


HOLD_LOCK = """
import sys, time
from training.workdir_lock import WorkdirLock
with WorkdirLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_trainer_is_refused_naming_the_holder_and_nothing_changes(trained, tmp_path):
    workdir = _copy(trained, tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workdir)], cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(workdir)
        with pytest.raises(WorkdirLockedError, match=rf"in use by score-sde train on host .* pid {holder.pid}; "):
            train(_config(), workdir, max_steps=6, progress=False)
        assert _snapshot(workdir) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_message(trained, tmp_path, caplog):
    workdir = _copy(trained, tmp_path / "run")
    (workdir / LOCK_FILE).write_text("score-sde train on host gone pid 999999")
    with caplog.at_level(logging.WARNING):
        state = train(_config(), workdir, max_steps=6, progress=False)
    assert int(state.step) == 6
    assert "Taking over the stale lock of score-sde train on host gone pid 999999" in caplog.text
    assert not (workdir / LOCK_FILE).exists()


def _damage_every_step(workdir: pathlib.Path) -> None:
    for name in ("checkpoints", "checkpoints-meta"):
        for step in _steps(workdir / name):
            for f in (workdir / name / str(step)).rglob("*"):
                if f.is_file() and f.parent.name == "d":
                    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])


def test_all_checkpoints_corrupt_is_refused_unless_restarting_deliberately(trained, tmp_path):
    workdir = _copy(trained, tmp_path / "run")
    _damage_every_step(workdir)
    before = _snapshot(workdir)
    with pytest.raises(AllCheckpointsCorruptError, match=r"every checkpoint in .* is partial or corrupt "
                       r"\(checkpoints-meta/4, checkpoints-meta/2\); nothing was changed\. .*--restart_from_scratch"):
        train(_config(), workdir, max_steps=6, progress=False)
    assert _snapshot(workdir) == before  # config.json, metrics and steps untouched

    state = train(_config(), workdir, max_steps=2, progress=False, restart_from_scratch=True)
    assert int(state.step) == 2
    names = sorted(p.name for p in (workdir / "checkpoints-meta").iterdir())
    assert names == ["2", "2.corrupt", "4.corrupt"]
    assert [r["step"] for r in read_metrics(workdir) if "loss" in r] == [1, 2]


def test_metrics_after_a_crash_keep_one_curve_and_readers_skip_a_torn_line(trained, tmp_path):
    workdir = _copy(trained, tmp_path / "run")
    # As after kill -9 at step 7 (logged, never saved) and a disk that filled mid-line.
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 1.0}) + "\n" + json.dumps({"step": 6, "loss": 1.0}) + "\n")
        f.write('{"step": 7, "lo')
    assert [r["step"] for r in read_metrics(workdir)] == [1, 2, 3, 4, 5, 6]  # the torn line is skipped
    train(_config(), workdir, max_steps=6, progress=False)
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]  # every line parses
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (workdir / "loss.png").is_file()
    events = sorted((workdir / "tensorboard").iterdir())
    assert len(events) == 2  # the resumed writer's file carries purge_step=5 for TensorBoard


def test_a_failed_background_save_stops_the_run_at_once_naming_the_last_good_step(trained, tmp_path, monkeypatch):
    workdir = _copy(trained, tmp_path / "run")
    saves = []
    check = Checkpointer.check

    def failing_check(self):
        if saves:  # the background write of the first new step hit a full disk
            self._started = saves[0]
            raise Checkpointer._save_failed(self, OSError(errno.ENOSPC, "No space left on device"))
        return check(self)

    maybe_save = Checkpointer.maybe_save

    def recording_save(self, step, state, *, force=False):
        if step <= 4 or not self.is_due(step):
            return maybe_save(self, step, state, force=force)
        saves.append(step)  # started, and its background write will fail: nothing reaches the disk
        return True

    monkeypatch.setattr(Checkpointer, "check", failing_check)
    monkeypatch.setattr(Checkpointer, "maybe_save", recording_save)
    with pytest.raises(CheckpointSaveError) as raised:
        train(_config(), workdir, max_steps=20, progress=False)
    message = str(raised.value)
    assert saves == [6]  # stopped right after the failed save, not at the next one
    assert message.startswith("Saving checkpoint step 6 failed (OSError: [Errno 28] No space left on device); "
                              "training stopped, the last good checkpoint is step 4; a step needs about ")
    assert f"MB free in {workdir}. Free space, then rerun" in message and "\n" not in message


@pytest.mark.slow  # a process of its own without the compilation cache: about a minute
def test_a_full_disk_during_an_async_save_is_one_line_with_the_last_good_step(trained, tmp_path):
    """A real failed write (a file size limit, as a full disk), in a process of its own."""
    workdir = _copy(trained, tmp_path / "run")
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))\n"
        "from scripts.main import main\n"
        "main(sys.argv)\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    result = subprocess.run([sys.executable, "-c", script, "train", f"--config={REPO / 'configs' / 'digits.py'}",
                             f"--workdir={workdir}", "--max_steps=8", *[f"--config.{o}" for o in OVERRIDES]],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert last.startswith("score-sde train: Saving checkpoint"), last
    assert "the last good checkpoint is step 4" in last and "MB free" in last
    assert _steps(workdir / "checkpoints-meta") == [2, 4]


def test_ctrl_c_during_a_save_saves_and_stops_and_twice_aborts(trained, tmp_path, monkeypatch):
    workdir = _copy(trained, tmp_path / "run")
    maybe_save = Checkpointer.maybe_save
    presses = {"at": 6, "times": 1}

    def save_then_ctrl_c(self, step, state, *, force=False):
        started = maybe_save(self, step, state, force=force)
        if step == presses["at"]:
            for _ in range(presses["times"]):
                signal.raise_signal(signal.SIGINT)  # while the asynchronous save is in flight
        return started

    monkeypatch.setattr(Checkpointer, "maybe_save", save_then_ctrl_c)
    state = train(_config(), workdir, max_steps=50, progress=False)
    assert int(state.step) == 7  # stopped after the next step, which it saved
    assert _steps(workdir / "checkpoints-meta")[-1] == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    presses.update(at=8, times=2)
    with pytest.raises(KeyboardInterrupt):
        train(_config(), workdir, max_steps=50, progress=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _, restored = load_trained(_config(), workdir)  # what was saved still restores
    assert int(restored.step) >= 7 and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored.params))
