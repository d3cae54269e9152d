"""Training the noise-conditional classifier of classifier guidance on the score model's SDE
(Song et al. 2021, app. I.4): x_t = alpha(t) x_0 + std(t) z with t ~ U(eps, T), cross-entropy of
the class of x_0. The run reuses the score model's train step, train state and checkpointing; its
state lives in `<workdir>/guidance_classifier` beside the score model's (the digits classifier of
digits-FID, `training.digits_classifier`, is another thing: a clean-image feature extractor).
"""
from __future__ import annotations

import contextlib
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

import sde_lib
from configs import builders
from models.classifier import NoiseConditionalClassifier
from samplers.guidance import ClassifierFn
from training.checkpoint import Checkpointer
from training.data import build_dataset, data_shape_of, iterate_batches
from training.errors import UsageError
from training.sharding import batch_sharding, make_mesh, shard_batch
from training.state import TrainState, abstract_train_state, init_sharded_state
from training.train_step import Objective, jit_train_steps, make_train_step

CLASSIFIER_DIR = "guidance_classifier"
EMA_RATE = 0.999


def build_classifier(config: ml_collections.ConfigDict) -> NoiseConditionalClassifier:
    """The classifier of `config.classifier` over `classifier.num_classes` (else `model.num_classes`)."""
    c = config.classifier
    num_classes = c.num_classes or config.model.num_classes
    if num_classes < 2:
        raise UsageError("the guidance classifier needs classifier.num_classes (or model.num_classes) >= 2, "
                         f"got {num_classes}")
    return NoiseConditionalClassifier(num_classes, nf=c.nf, hidden_dims=tuple(c.hidden_dims))


def classifier_objective(model: NoiseConditionalClassifier, sde: sde_lib.SDE, eps: float) -> Objective:
    """`objective(params, x_0: [B, ...], key, labels: [B]) -> [B]` cross-entropy at a random t."""

    def objective(params, x, key, labels):
        t_key, z_key = jax.random.split(key)
        t = jax.random.uniform(t_key, x.shape[:1], x.dtype, eps, sde.T)
        mean, std = sde.marginal_prob(x, t)
        x_t = mean + sde_lib.batch_broadcast(std, x) * jax.random.normal(z_key, x.shape, x.dtype)
        logits = model.apply({"params": params}, x_t, t)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))

    return objective


def classifier_fn(model: NoiseConditionalClassifier, params) -> ClassifierFn:
    """`classifier(x: [B, ...], t: [B]) -> logits [B, K]`, for `samplers.guidance.guided_score_fn`."""
    return lambda x, t: model.apply({"params": params}, x, t)


def _checkpointer(workdir: pathlib.Path, n_iters: int) -> Checkpointer:
    return Checkpointer(workdir / CLASSIFIER_DIR, keep=1, snapshot_freq=n_iters, preemption_freq=n_iters)


def _abstract(model, optimizer, shape, mesh, key):
    init = lambda k: model.init(k, jnp.zeros((1, *shape)), jnp.ones((1,)))["params"]  # noqa: E731
    return init, abstract_train_state(key, init, optimizer, mesh)


def train_guidance_classifier(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Train (or resume) the classifier for `classifier.n_iters` steps; returns a record with its
    final training loss and its test accuracy at t = 0.1, 0.5 and 1 (chance is 1/K at T)."""

    workdir = pathlib.Path(workdir)
    c = config.classifier
    sde = builders.build_sde(config)
    model = build_classifier(config)
    mesh = make_mesh()
    optimizer = optax.adam(c.lr)
    shape = data_shape_of(config)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 7)
    init, abstract = _abstract(model, optimizer, shape, mesh, key)
    ckpt = _checkpointer(workdir, c.n_iters)
    state = ckpt.restore_latest(abstract)
    if state is None:
        state, _ = init_sharded_state(key, init, optimizer, mesh)
    step = int(jax.device_get(state.step))
    objective = classifier_objective(model, sde, config.training.eps)
    train_fn = jit_train_steps(make_train_step(objective, optimizer, ema_rate=EMA_RATE), mesh)
    ds = build_dataset(config, "train", batch_size=c.batch_size, seed=config.seed, shuffle=True)
    losses = []
    logging.info("Training the guidance classifier from step %d to %d", step, c.n_iters)
    with contextlib.closing(iterate_batches(ds, start_step=step)) as batches:
        while step < c.n_iters:
            batch = {k: np.asarray(v)[None] for k, v in next(batches).items()}
            state, metrics = train_fn(state, shard_batch(batch, batch_sharding(mesh, leading_axes=1), batch_axis=1))
            losses.append(metrics["loss"])
            step += 1
    ckpt.maybe_save(step, state, force=True)
    ckpt.close()
    record = {"step": step, "num_classes": model.num_classes,
              "final_loss": float(np.mean(jax.device_get(losses[-50:]))) if losses else None}
    record.update(accuracy_at_times(config, model, state.ema_params, sde))
    return record


def accuracy_at_times(config: ml_collections.ConfigDict, model, params, sde: sde_lib.SDE,
                  times: tuple[float, ...] = (0.1, 0.5, 1.0)) -> dict:
    """Accuracy on (at most 2000 examples of) the test split, perturbed to each time in `times`."""

    ds = build_dataset(config, "test", batch_size=500, seed=config.seed, shuffle=False, evaluation=True,
                       drop_remainder=False)
    batches = [ds[i] for i in range(min(len(ds), 4))]
    x = jnp.asarray(np.concatenate([b["image"] for b in batches]))
    y = np.concatenate([b["label"] for b in batches])
    record = {}
    for i, time in enumerate(times):
        t = jnp.full(x.shape[:1], time, x.dtype)
        mean, std = sde.marginal_prob(x, t)
        noise = jax.random.normal(jax.random.PRNGKey(i), x.shape, x.dtype)
        logits = model.apply({"params": params}, mean + sde_lib.batch_broadcast(std, x) * noise, t)
        record[f"test_accuracy_t{time:g}"] = float(np.mean(np.argmax(np.asarray(logits), -1) == y))
    return record


def load_guidance_classifier(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
                             ) -> tuple[NoiseConditionalClassifier, object]:
    """`(model, EMA params)` of the classifier trained in `workdir`; FileNotFoundError if none."""

    workdir = pathlib.Path(workdir)
    model = build_classifier(config)
    optimizer = optax.adam(config.classifier.lr)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 7)
    _, abstract = _abstract(model, optimizer, data_shape_of(config), make_mesh(), key)
    ckpt = _checkpointer(workdir, config.classifier.n_iters)
    try:
        state: TrainState | None = ckpt.restore_latest(abstract)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no guidance classifier in {(workdir / CLASSIFIER_DIR).absolute()}; train it "
                                "first with `score-sde train_guidance_classifier`")
    return model, state.ema_params
