"""Noticing that a run is being preempted, so the loop can save a checkpoint and stop cleanly.

Schedulers (Kubernetes, Slurm, cloud spot / preemptible VMs) send SIGTERM some seconds before they
kill a job. One process notes the signal and stops after its current step. Several processes must
stop at the same step, or the collective save would hang: there JAX's preemption service
(started by `jax.distributed.initialize`) agrees on a common step,
`multihost_utils.reached_preemption_sync_point`.

A first Ctrl-C (SIGINT) is treated as SIGTERM: the run saves after its current step and exits
cleanly, so no steps are lost and a save in progress is never cut; a second Ctrl-C aborts at
once (KeyboardInterrupt; the steps since the last checkpoint are lost, the checkpoints kept).
With several processes Ctrl-C keeps its default meaning (abort).
"""
from __future__ import annotations

import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils


class PreemptionWatch:
    """`reached(step)` is True once the run should save and stop. A context manager: it handles
    SIGTERM and SIGINT (main thread) while open and restores the previous handlers after."""

    def __init__(self):
        self._signalled = threading.Event()
        self._interrupted = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionWatch:
        # Several processes must stop at one agreed step, which only the preemption service gives.
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_sigterm(self, signum, frame) -> None:
        logging.warning("SIGTERM received: saving a checkpoint after the current step, then stopping")
        self._signalled.set()

    def _on_sigint(self, signum, frame) -> None:
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True
        logging.warning("Ctrl-C: saving a checkpoint after the current step, then stopping "
                        "(press Ctrl-C again to abort at once)")
        self._signalled.set()

    def reached(self, step: int) -> bool:
        if self._interrupted:
            return True
        if jax.process_count() > 1:
            try:
                return multihost_utils.reached_preemption_sync_point(step)
            except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
                return False
        return self._signalled.is_set()
