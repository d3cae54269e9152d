"""Checkpoints with orbax: periodic keep-N snapshots plus a preemption-safe latest one.

Layout under the workdir (as in the 2021 code): `checkpoints/<step>` every `snapshot_freq`
steps, keeping the newest `keep`; `checkpoints-meta/<step>` every `preemption_freq` steps,
keeping the newest two. Saves are asynchronous and atomic (orbax writes to a temporary
directory and renames it when complete, so a killed save leaves no step behind).
`restore_latest` tries the newest step of either kind first; one that fails to restore
(truncated or missing files) is reported and skipped for the previous good one. A step whose
saved arrays do not have the structure, shapes and dtypes of the train state to restore into
(a different model, data shape or optimiser) is not corrupt: it raises
`CheckpointMismatchError`, since skipping it would start again and lose the run. Nothing is
deleted on error; a save that orbax refuses raises `CheckpointSaveError`. Arrays only (no pickle).

Orbax guarantees the atomic finalize of a step, not the integrity of its bytes (its compressed
chunks carry no checksum it checks). So each save also stores a CRC32 of every array, computed
on the host copy being saved, in the step's own metadata (`custom_metadata["leaf_crc32"]`); a
restored array that does not match it makes the step corrupt (skipped like a truncated one).
A failed asynchronous save (a full disk) is raised at the next `check()` as
`CheckpointSaveError` naming the last good step and the space a step needs; temporary folders
of saves that never finished are removed by `remove_partial_saves()` (writers only). A reader
(`writable=False`) creates no folders.
"""
from __future__ import annotations

import pathlib
import shutil
import zlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from training.errors import UserError

PERIODIC_DIR = "checkpoints"
PREEMPTION_DIR = "checkpoints-meta"
DIGEST_KEY = "leaf_crc32"
_TMP_MARK = ".orbax-checkpoint-tmp"


class CheckpointMismatchError(UserError, ValueError):
    """A saved step holds a train state of another structure than the one to restore into."""


class CheckpointSaveError(UserError, RuntimeError):
    """Orbax refused or failed to save a step, so the run would go on without the checkpoint it expects."""


class NoCheckpointError(UserError, FileNotFoundError):
    """The workdir holds no checkpoint (or none that restores) for a mode that needs one."""


def require_checkpoints(workdir: pathlib.Path) -> None:
    """Raise `NoCheckpointError` (creating nothing) unless `workdir` holds a saved step."""
    steps = [p for name in (PERIODIC_DIR, PREEMPTION_DIR) if (workdir / name).is_dir()
             for p in (workdir / name).iterdir() if p.name.isdigit()]
    if not steps:
        raise NoCheckpointError(f"no checkpoint in {workdir.absolute()} (looked in {PERIODIC_DIR}/ and "
                                f"{PREEMPTION_DIR}/): check --workdir, or train a model there first")


def _host_bytes(leaf: Any) -> memoryview | None:
    """The bytes of an array as saved, or None for an array this process does not hold whole."""
    if isinstance(leaf, jax.Array):
        if not leaf.is_fully_addressable:
            return None
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
    value = np.ascontiguousarray(jax.device_get(leaf))
    return memoryview(value.reshape(-1)).cast("B") if value.size else memoryview(b"")


def leaf_digests(tree: Any) -> dict[str, str]:
    """`{"params/Dense_0/kernel": "crc32 hex"}` of every array of a pytree this process holds whole."""
    digests = {}
    for path, leaf in ocp.tree.to_flat_dict(tree).items():
        data = _host_bytes(leaf)
        if data is not None:
            digests["/".join(map(str, path))] = f"{zlib.crc32(data):08x}"
    return digests


def _verify_digests(state: Any, stored: dict[str, str] | None) -> None:
    """Raise ValueError naming the first array whose bytes differ from those saved."""
    if not stored:  # a step saved before digests were stored: nothing to compare
        return
    for name, digest in leaf_digests(state).items():
        if name in stored and stored[name] != digest:
            raise ValueError(f"array {name} does not match the checksum saved with it (damaged bytes)")


def _size_mb(path: pathlib.Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.is_dir() else 0.0


def corrupt_checkpoint_message(step: int, path: pathlib.Path | str, error: BaseException) -> str:
    """The warning logged when a checkpoint cannot be restored."""
    return (f"Checkpoint at step {step} ({path}) is partial or corrupt and was skipped: "
            f"{type(error).__name__}: {error}")


def mismatch_message(step: int, path: pathlib.Path | str, differences: list[str]) -> str:
    """The error raised when a checkpoint does not fit the train state of the current config."""
    shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
    return (f"Checkpoint at step {step} ({path}) does not fit the train state of this config "
            f"(saved with another model, data shape or optimiser): {shown}. Nothing was changed; train in a "
            "new workdir, or resume with the config the checkpoints were saved with.")


def _flat_shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """`{"params/Dense_0/kernel": (shape, dtype name)}` of a pytree of arrays or array metadata."""
    return {"/".join(map(str, path)): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
            for path, leaf in ocp.tree.to_flat_dict(tree).items()}


def _differences(saved: dict, expected: dict) -> list[str]:
    """What differs between the saved and expected `_flat_shapes`, one line per array."""
    def describe(entry: tuple) -> str:
        return f"{entry[0]} {entry[1]}"

    lines = [f"{name}: saved {describe(saved[name])}, expected {describe(expected[name])}"
             for name in expected if name in saved and saved[name] != expected[name]]
    lines += [f"{name}: expected {describe(expected[name])}, not in the checkpoint" for name in expected
              if name not in saved]
    lines += [f"{name}: saved {describe(saved[name])}, not in this train state" for name in saved
              if name not in expected]
    return lines


class Checkpointer:
    """Saves and restores a train state pytree for one workdir.

    `maybe_save(step, state)` saves at the configured frequencies (or always with `force`),
    `restore_latest(abstract_state)` returns the newest state that restores cleanly, or None.
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep: int, snapshot_freq: int, preemption_freq: int,
                 asynchronous: bool = True, writable: bool = True, verify: bool = True):
        if keep < 1:
            raise ValueError(f"training.keep_checkpoints must be at least 1, got {keep}")
        self.workdir = pathlib.Path(workdir).absolute()
        self.snapshot_freq = snapshot_freq
        self.preemption_freq = preemption_freq
        self.verify = verify

        def manager(name: str, max_to_keep: int) -> ocp.CheckpointManager:
            options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=writable,
                                                   enable_async_checkpointing=asynchronous)
            return ocp.CheckpointManager(self.workdir / name, options=options,
                                         item_handlers=ocp.StandardCheckpointHandler())

        self.periodic = manager(PERIODIC_DIR, keep)
        self.preemption = manager(PREEMPTION_DIR, 2)
        self._bad: set[tuple[int, str]] = set()
        self._started: int | None = None  # the newest step whose save was started

    @property
    def corrupt_steps(self) -> list[str]:
        """`"checkpoints-meta/4"` for each step found partial or corrupt by the last restore."""
        return [f"{name}/{step}" for step, name in sorted(self._bad, reverse=True)]

    def set_aside_corrupt(self) -> None:
        """Rename every step found corrupt to `<step>.corrupt` (a deliberate restart from scratch)."""
        for step, name in sorted(self._bad):
            self._set_aside(step, self.periodic if name == PERIODIC_DIR else self.preemption)

    def remove_partial_saves(self) -> None:
        """Delete the temporary folders of saves that never finished (a kill or a full disk)."""
        for mgr in (self.periodic, self.preemption):
            for path in pathlib.Path(mgr.directory).glob(f"*{_TMP_MARK}*"):
                logging.warning("Removing %s, the remains of a save that did not finish", path)
                shutil.rmtree(path, ignore_errors=True)

    def _save_failed(self, error: BaseException) -> CheckpointSaveError:
        """The one-line error of a failed save (the newest one started, `self._started`)."""
        step = self._started
        # From the disk, not orbax's list, which holds a step from the moment its save starts.
        finalized = [p for m in (self.periodic, self.preemption) if pathlib.Path(m.directory).is_dir()
                     for p in pathlib.Path(m.directory).iterdir() if p.name.isdigit()]
        newest = max(finalized, key=lambda p: int(p.name), default=None)
        last = None if newest is None else int(newest.name)
        needed = 0.0 if newest is None else _size_mb(newest)
        kept = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint was saved"
        space = f"; a step needs about {needed:.1f} MB free in {self.workdir}" if needed else ""
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        return CheckpointSaveError(f"Saving checkpoint{'' if step is None else f' step {step}'} failed ({reason}); "
                                   f"training stopped, {kept}{space}. Free space, then rerun the command to resume.")

    def check(self) -> None:
        """Raise `CheckpointSaveError` if an asynchronous save has failed since the last check
        (cheap: it waits for nothing still in flight)."""
        for mgr in (self.periodic, self.preemption):
            try:
                mgr.check_for_errors()
                if not mgr.is_saving_in_progress():
                    mgr.wait_until_finished()  # returns at once; raises the error of a finished, failed save
            except Exception as error:  # noqa: BLE001 - any failure of a background save stops the run
                raise self._save_failed(error) from error

    def _due(self, step: int) -> list[ocp.CheckpointManager]:
        due = []
        if self.snapshot_freq > 0 and step % self.snapshot_freq == 0:
            due.append(self.periodic)
        if self.preemption_freq > 0 and step % self.preemption_freq == 0:
            due.append(self.preemption)
        return due

    def is_due(self, step: int) -> bool:
        return bool(self._due(step))

    def maybe_save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Save `state` at `step` where a frequency says so; `force` saves to the preemption
        directory at any step (end of a run). Returns whether a save started."""
        due = self._due(step)
        if force and self.preemption not in due:
            due.append(self.preemption)
        for mgr in due:
            # Corrupt steps at or after this one were skipped on restoring and are being trained
            # again: set them aside, or orbax would refuse to save a step before its newest.
            for bad_step in sorted(s for s, name in self._bad if name == mgr.directory.name and s >= step):
                self._set_aside(bad_step, mgr)
            if step in mgr.all_steps():
                continue
            try:
                started = mgr.save(step, args=ocp.args.StandardSave(state),
                                   custom_metadata={DIGEST_KEY: leaf_digests(state)} if self.verify else None)
            except Exception as error:  # noqa: BLE001 - this save, or the previous one still in flight, failed
                self._started = self._started if self._started is not None else step
                raise self._save_failed(error) from error
            self._started = step
            if not started:
                raise CheckpointSaveError(
                    f"Saving step {step} to {self.workdir / mgr.directory.name} was refused by orbax (its saved "
                    f"steps are {sorted(mgr.all_steps())}); the run stopped rather than go on unsaved.")
        return bool(due)

    def _set_aside(self, step: int, mgr: ocp.CheckpointManager) -> None:
        """Rename a corrupt step to `<step>.corrupt` (kept for inspection) so it can be re-saved."""
        path = pathlib.Path(mgr.directory) / str(step)
        target = path.with_name(f"{step}.corrupt")
        n = 0
        while target.exists():
            n += 1
            target = path.with_name(f"{step}.corrupt{n}")
        path.rename(target)
        logging.warning("Moved corrupt checkpoint %s to %s before saving step %d again", path, target, step)
        self._bad.discard((step, mgr.directory.name))
        mgr.reload()

    def wait(self) -> None:
        """Block until asynchronous saves are on disk; a failed one raises `CheckpointSaveError`."""
        for mgr in (self.periodic, self.preemption):
            try:
                mgr.wait_until_finished()
                mgr.check_for_errors()
            except Exception as error:  # noqa: BLE001 - any failure of a background save stops the run
                raise self._save_failed(error) from error

    def latest_step(self) -> int | None:
        steps = list(self.periodic.all_steps()) + list(self.preemption.all_steps())
        return max(steps) if steps else None

    def _candidates(self) -> list[tuple[int, ocp.CheckpointManager]]:
        entries = [(s, self.preemption) for s in self.preemption.all_steps()]
        entries += [(s, self.periodic) for s in self.periodic.all_steps()]
        return sorted(entries, key=lambda e: (e[0], e[1] is self.preemption), reverse=True)

    def restore_latest(self, abstract_state: Any, *, max_step: int | None = None) -> Any | None:
        """The newest checkpoint (at most `max_step`) that restores and matches `abstract_state`.

        A step whose files are missing or truncated, or whose restored step counter disagrees
        with its directory name, is logged as a warning and skipped for the previous one. A step
        whose saved arrays differ from `abstract_state` in structure, shape or dtype raises
        `CheckpointMismatchError` naming the differences.
        """
        expected = _flat_shapes(abstract_state)
        for step, mgr in self._candidates():
            if max_step is not None and step > max_step:
                continue
            path = self.workdir / mgr.directory.name / str(step)
            try:
                metadata = mgr.item_metadata(step)
                saved = _flat_shapes(metadata.tree)
            except Exception as error:  # noqa: BLE001 - unreadable metadata: a partial or corrupt step
                logging.warning(corrupt_checkpoint_message(step, path, error))
                self._bad.add((step, mgr.directory.name))
                continue
            differences = _differences(saved, expected)
            if differences:
                raise CheckpointMismatchError(mismatch_message(step, path, differences))
            try:
                state = mgr.restore(step, args=ocp.args.StandardRestore(abstract_state))
                _check_restored(state, step)
                if self.verify:
                    _verify_digests(state, (mgr.metadata(step).custom_metadata or {}).get(DIGEST_KEY))
            except Exception as error:  # noqa: BLE001 - any failure to read a step means: skip it
                logging.warning(corrupt_checkpoint_message(step, path, error))
                self._bad.add((step, mgr.directory.name))
                continue
            logging.info("Restored checkpoint at step %d from %s", step, path)
            return state
        return None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.periodic.close()
            self.preemption.close()


def _check_restored(state: Any, step: int) -> None:
    """A restored state must carry the step it was saved at and finite floating values."""
    saved_step = int(jax.device_get(state.step))
    if saved_step != step:
        raise ValueError(f"its step counter reads {saved_step}")
    for leaf in jax.tree.leaves((state.params, state.ema_params)):
        value = np.asarray(jax.device_get(leaf))
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ValueError("it holds non-finite parameters")
