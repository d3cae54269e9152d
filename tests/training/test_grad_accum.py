"""Gradient accumulation: n micro-batches summed in a `lax.scan` make the same optimiser step as
one batch (up to float rounding); the configuration is checked where it enters."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import models
from configs import load_config
from configs.validate import ConfigError
from models.mlp import MLP
from training.sharding import check_batch_size, make_mesh
from training.state import create_train_state
from training.train_step import make_train_step, micro_batches


def _setup():
    model = MLP(hidden_dims=(32, 32), nf=16)

    def objective(params, x, key, labels=None):
        del key, labels  # no noise: the one-batch and the accumulated step see the same loss
        out = model.apply({"params": params}, x, jnp.full((x.shape[0],), 0.5), train=False)
        return jnp.sum((out - jnp.flip(x, axis=1)) ** 2, axis=(1, 2, 3))

    optimizer = optax.adam(1e-2)
    state = create_train_state(jax.random.PRNGKey(0), lambda k: models.init_params(k, model, (1, 8, 8, 1)), optimizer)
    return objective, optimizer, state


def _run(n_accum: int, batches):
    objective, optimizer, state = _setup()
    step = jax.jit(make_train_step(objective, optimizer, ema_rate=0.9, grad_accum_steps=n_accum))
    metrics = []
    for batch in batches:
        state, m = step(state, {"image": batch})
        metrics.append(jax.device_get(m))
    return jax.device_get(state), metrics


def test_accumulated_steps_equal_the_one_batch_steps():
    batches = np.random.default_rng(0).normal(size=(3, 16, 8, 8, 1)).astype(np.float32)
    state_1, metrics_1 = _run(1, batches)
    state_4, metrics_4 = _run(4, batches)
    for m1, m4 in zip(metrics_1, metrics_4, strict=True):
        np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
        np.testing.assert_allclose(m4["grad_norm"], m1["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state_4), jax.tree.leaves(state_1), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    _, _, initial = _setup()
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(jax.tree.leaves(jax.device_get(initial.params)), jax.tree.leaves(state_1.params), strict=True))
    assert moved > 1e-3  # three Adam steps at lr 1e-2 moved the parameters: the comparison is not vacuous


def test_micro_batches_partition_the_batch_by_stride():
    x = np.arange(12).reshape(12, 1)
    split = np.asarray(micro_batches({"image": jnp.asarray(x)}, 3)["image"])
    assert split.shape == (3, 4, 1)
    np.testing.assert_array_equal(split[1, :, 0], [1, 4, 7, 10])
    assert sorted(split.reshape(-1).tolist()) == list(range(12))


def test_grad_accum_steps_must_divide_the_batch():
    with pytest.raises(ConfigError, match="training.grad_accum_steps"):
        load_config("configs/digits.py", ["training.batch_size=12", "training.grad_accum_steps=5"])
    with pytest.raises(ValueError, match="micro-batches"):
        check_batch_size(12, make_mesh(), grad_accum_steps=24)
    with pytest.raises(ValueError, match="at least 1"):
        make_train_step(lambda p, x, k: x, optax.sgd(1.0), ema_rate=0.9, grad_accum_steps=0)
