"""A run's objects and its trained state: the one path from (config, workdir) to a model.

`build_experiment(config, data_shape)` turns a config into a typed `Experiment` (SDE, network,
loss, preconditioning, optimiser, mesh, named run keys); `load_trained(config, workdir, step)`
restores the newest good checkpoint into it, and is what every mode that uses a trained model
(sample, likelihood, evaluate, the application modes) calls. `make_score_fn` is the
evaluation-mode score function of a network. The training loop (`training.train_loop`),
sampling on the mesh (`training.sampling`), bits/dim (`training.likelihood`) and the
evaluation protocol (`training.evaluate`) build on this module; it imports none of them.
"""
from __future__ import annotations

import dataclasses
import pathlib

import flax.linen as nn
import jax
import ml_collections
import optax
from jax.sharding import Mesh

import models
import sde_lib
from configs import builders
from training.checkpoint import Checkpointer
from training.data import data_shape_of
from training.sharding import make_mesh
from training.state import Params, TrainState, abstract_train_state, init_sharded_state


@dataclasses.dataclass(frozen=True)
class RunKeys:
    """The run key split once into named purposes."""

    init: jax.Array
    sample: jax.Array
    eval: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> RunKeys:
        init, sample, evaluation = jax.random.split(jax.random.PRNGKey(seed), 3)
        return cls(init, sample, evaluation)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything built from a config that training, sampling and evaluation share.

    `data_shape` is one example's shape (`[H, W, C]`, or `[2]` for points); `continuous` says
    whether the network is conditioned on continuous time (`training.continuous`).
    """

    sde: sde_lib.SDE
    model: nn.Module
    loss: builders.Loss
    precond: sde_lib.Preconditioning | None
    optimizer: optax.GradientTransformation
    mesh: Mesh
    keys: RunKeys
    data_shape: tuple[int, ...]
    continuous: bool

    def _init_params(self, key: jax.Array) -> Params:
        return models.init_params(key, self.model, (1, *self.data_shape))

    def init_state(self) -> tuple[TrainState, TrainState]:
        """A fresh replicated state and its abstract pytree (for restoring)."""
        return init_sharded_state(self.keys.init, self._init_params, self.optimizer, self.mesh)

    def abstract_state(self) -> TrainState:
        """The state's abstract pytree, to restore into (nothing allocated or compiled)."""
        return abstract_train_state(self.keys.init, self._init_params, self.optimizer, self.mesh)


def build_experiment(config: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> Experiment:
    """Objects of a run; `data_shape` is one example's shape (`[H, W, C]` or `[2]`)."""
    sde = builders.build_sde(config)
    return Experiment(sde=sde, model=models.build_model(config), loss=builders.build_loss(config, sde),
                      precond=builders.build_precond(config), optimizer=builders.build_optimizer(config),
                      mesh=make_mesh(), keys=RunKeys.from_seed(config.seed), data_shape=tuple(data_shape),
                      continuous=config.training.continuous)


def checkpointer_for(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Checkpointer:
    """The workdir's checkpoints with the config's retention and save frequencies."""
    t = config.training
    return Checkpointer(workdir, keep=t.keep_checkpoints, snapshot_freq=t.snapshot_freq,
                        preemption_freq=t.snapshot_freq_for_preemption)


def make_score_fn(sde: sde_lib.SDE, model: nn.Module, params: Params, *, continuous: bool,
                  precond: sde_lib.Preconditioning | None) -> sde_lib.ScoreFn:
    """The evaluation-mode score function (dropout off) of a network."""
    return models.get_score_fn(sde, model, params, train=False, continuous=continuous, precond=precond)


def load_trained(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                 step: int = 0) -> tuple[Experiment, TrainState]:
    """`(experiment, state)` of the newest good checkpoint of `workdir` (or exactly `step` if > 0).

    The state is restored into its abstract pytree (nothing is allocated before the read); the
    data shape comes from the config, so only the checkpoint is needed, not the training split.
    Raises FileNotFoundError naming the workdir when there is nothing to restore.
    """
    workdir = pathlib.Path(workdir)
    exp = build_experiment(config, data_shape_of(config))
    ckpt = checkpointer_for(config, workdir)
    try:
        state = ckpt.restore_latest(exp.abstract_state(), max_step=step or None)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint to restore in {workdir.absolute()} (looked in checkpoints/ and "
                                "checkpoints-meta/); train first with `score-sde train`")
    if step and int(state.step) != step:
        raise FileNotFoundError(f"no good checkpoint at step {step} in {workdir.absolute()}; "
                                f"the newest one before it is step {int(state.step)}")
    return exp, state
