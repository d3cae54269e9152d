"""Data parallelism in one place: the device mesh, how a batch and the state are laid out.

One `Mesh` over every device of every host with a single axis `DATA_AXIS`; batches are split
along it and the train state is replicated (big_vision style, `jax.jit` with shardings, no pmap).
Multi-host runs start `jax.distributed` first (`maybe_initialize_distributed`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

_COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
_NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
_PROCESS_ID_ENV = "JAX_PROCESS_ID"
_AUTO_ENV = "SCORE_SDE_DISTRIBUTED"


def maybe_initialize_distributed() -> bool:
    """Start `jax.distributed` when the environment asks for a multi-host run.

    Either `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` are set (explicit
    cluster), or `SCORE_SDE_DISTRIBUTED=1` lets JAX detect the cluster (TPU pods, SLURM, ...).
    Must run before anything touches a device. Returns whether it initialised.
    """
    if os.environ.get(_COORDINATOR_ENV):
        missing = [k for k in (_NUM_PROCESSES_ENV, _PROCESS_ID_ENV) if not os.environ.get(k)]
        if missing:
            raise ValueError(f"{_COORDINATOR_ENV} is set but {missing} are not; set all three for a multi-host run")
        jax.distributed.initialize(
            coordinator_address=os.environ[_COORDINATOR_ENV],
            num_processes=int(os.environ[_NUM_PROCESSES_ENV]),
            process_id=int(os.environ[_PROCESS_ID_ENV]),
        )
    elif os.environ.get(_AUTO_ENV, "") == "1":
        jax.distributed.initialize()
    else:
        return False
    logging.info("jax.distributed: process %d of %d, %d global devices",
                 jax.process_index(), jax.process_count(), jax.device_count())
    return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis `DATA_AXIS` over `devices` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser state, keys)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Split the batch dimension along `DATA_AXIS`; `leading_axes` unsplit axes come before it
    (1 for a stack of batches `[n_steps, B, ...]`)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, *, grad_accum_steps: int = 1) -> None:
    """The global batch must split evenly over devices and hosts, and each of the
    `grad_accum_steps` micro-batches over the devices."""
    if batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} is not divisible by the {mesh.size} devices of the mesh")
    if batch_size % (mesh.size * grad_accum_steps):
        raise ValueError(f"batch size {batch_size} does not split into {grad_accum_steps} micro-batches "
                         f"(training.grad_accum_steps) over the {mesh.size} devices of the mesh")
    if batch_size % jax.process_count():
        raise ValueError(f"batch size {batch_size} is not divisible by the {jax.process_count()} processes")


def shard_batch(batch, sharding: NamedSharding, batch_axis: int = 0):
    """Place a host batch (a pytree of numpy arrays holding the GLOBAL batch) on the mesh.

    Every process computes the same global batch (data is a function of seed and step) and
    contributes the slice that belongs to it, so the result does not depend on the host count.
    """
    n_proc, index = jax.process_count(), jax.process_index()

    def put(x):
        x = np.asarray(x)
        if n_proc == 1:
            return jax.device_put(x, sharding)
        per = x.shape[batch_axis] // n_proc
        local = np.take(x, np.arange(index * per, (index + 1) * per), axis=batch_axis)
        return jax.make_array_from_process_local_data(sharding, local, x.shape)

    return jax.tree.map(put, batch)


def shard_host_batch(batch, sharding: NamedSharding, batch_axis: int = 0):
    """Place this process's slice of a global batch (a pytree of numpy arrays holding rows
    `[i * b, (i + 1) * b)` of the global batch, i = `jax.process_index()`, b = B / process count,
    as `training.data.make_pipeline(..., num_hosts, host_index)` reads them) on the mesh."""
    n_proc = jax.process_count()

    def put(x):
        x = np.asarray(x)
        if n_proc == 1:
            return jax.device_put(x, sharding)
        global_shape = x.shape[:batch_axis] + (x.shape[batch_axis] * n_proc,) + x.shape[batch_axis + 1:]
        return jax.make_array_from_process_local_data(sharding, x, global_shape)

    return jax.tree.map(put, batch)
