"""Guidance as the framework wires it (`training.conditioning`): CFG weight 0 is the conditional
score exactly, CFG follows its formula, and classifier guidance with the exact noise-conditional
classifier of a Gaussian mixture turns the exact mixture score into the exact component score."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
import sde_lib
from models.mlp import MLP
from training.conditioning import Guidance, check_labels, guided_score_fn
from training.train_step import drop_labels

SDE = sde_lib.VPSDE()
MEANS = jnp.array([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]])
MIXTURE = sde_lib.GaussianMixture(jnp.full((3,), 1 / 3), MEANS, jnp.broadcast_to(0.1 * jnp.eye(2), (3, 2, 2)))


class ExactEps(nn.Module):
    """The exact eps-prediction of MIXTURE under the VP SDE at the continuous label 999 t: through
    `get_score_fn` it gives the exact score (no parameters)."""

    @nn.compact
    def __call__(self, x, noise_labels, train=False):
        t = noise_labels / 999.0
        return -MIXTURE.score(x, t, SDE) * SDE.marginal_std(t)[:, None]


class ExactClassifier(nn.Module):
    """log p_t(y | x) of MIXTURE's components, the noise-conditional classifier in closed form."""

    @nn.compact
    def __call__(self, x, t):
        return jax.nn.log_softmax(MIXTURE.component_log_joint(x, t, SDE), axis=-1)


def test_classifier_guidance_with_the_exact_classifier_is_the_exact_conditional_score():
    x = jax.random.normal(jax.random.key(0), (6, 2)) * 2
    t = jnp.linspace(0.05, 1.0, 6)
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    score = guided_score_fn(SDE, ExactEps(), {}, labels, Guidance("classifier", 1.0, ExactClassifier()),
                            continuous=True, precond=None, classifier_params={})(x, t)
    for k in range(3):
        component = sde_lib.gaussian(MEANS[k], 0.1 * jnp.eye(2))
        rows = np.flatnonzero(np.asarray(labels) == k)
        np.testing.assert_allclose(np.asarray(score)[rows], np.asarray(component.score(x, t, SDE))[rows],
                                   rtol=2e-4, atol=2e-4)


@pytest.fixture(scope="module")
def conditional_mlp():
    model = MLP(hidden_dims=(32, 32), nf=16, num_classes=3)
    params = models.init_params(jax.random.key(1), model, (1, 2))
    return model, jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)


def test_cfg_weight_zero_is_the_conditional_score_exactly_and_w_follows_the_formula(conditional_mlp):
    model, params = conditional_mlp
    x, t, y = jax.random.normal(jax.random.key(3), (4, 2)), jnp.full((4,), 0.4), jnp.array([0, 1, 2, 1])

    def score(guidance, labels=y):
        return np.asarray(guided_score_fn(SDE, model, params, labels, guidance, continuous=True, precond=None)(x, t))

    cond = np.asarray(models.get_score_fn(SDE, model, params, train=False, continuous=True, labels=y)(x, t))
    null = np.asarray(models.get_score_fn(SDE, model, params, train=False, continuous=True)(x, t))
    np.testing.assert_array_equal(score(Guidance("cfg", 0.0)), cond)
    np.testing.assert_array_equal(score(Guidance("none")), cond)
    np.testing.assert_allclose(score(Guidance("cfg", 2.5)), 3.5 * cond - 2.5 * null, rtol=1e-5, atol=1e-5)
    assert not np.allclose(cond, null)


def test_labels_need_a_conditional_model_and_lie_in_range():
    model = MLP(hidden_dims=(8,), nf=8)
    params = models.init_params(jax.random.key(0), model, (1, 2))
    with pytest.raises(ValueError, match="class-conditional"):
        guided_score_fn(SDE, model, params, jnp.zeros(2, jnp.int32), Guidance(), continuous=True, precond=None)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        check_labels([0, 3], 3)
    with pytest.raises(ValueError, match="classifier"):
        Guidance("classifier", 1.0)


def test_label_dropout_replaces_labels_by_the_null_class_at_its_rate():
    labels = jnp.zeros(20_000, jnp.int32)
    dropped = np.asarray(drop_labels(jax.random.key(0), labels, 10, 0.2))
    assert set(np.unique(dropped)) == {0, 10}
    assert abs(np.mean(dropped == 10) - 0.2) < 0.01
