"""Noticing that a run is being preempted, so the loop can save a checkpoint and stop cleanly.

Schedulers (Kubernetes, Slurm, cloud spot / preemptible VMs) send SIGTERM some seconds before they
kill a job. One process notes the signal and stops after its current step. Several processes must
stop at the same step, or the collective save would hang: there JAX's preemption service
(started by `jax.distributed.initialize`) agrees on a common step,
`multihost_utils.reached_preemption_sync_point`.
"""
from __future__ import annotations

import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils


class PreemptionWatch:
    """`reached(step)` is True once the run should save and stop. A context manager: it handles
    SIGTERM (single process, main thread) while open and restores the previous handler after."""

    def __init__(self):
        self._signalled = threading.Event()
        self._previous = None

    def __enter__(self) -> PreemptionWatch:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        logging.warning("SIGTERM received: saving a checkpoint after the current step, then stopping")
        self._signalled.set()

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            try:
                return multihost_utils.reached_preemption_sync_point(step)
            except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
                return False
        return self._signalled.is_set()
