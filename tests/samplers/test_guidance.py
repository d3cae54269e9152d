"""Guidance on a 2-component Gaussian mixture with its exact classifier: scale 1 gives the exact
component score and samples; classifier-free guidance is (1 + w) s_cond - w s_uncond."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from samplers.edm_heun import EDMHeunSampler
from samplers.guidance import cfg_score_fn, guided_score_fn, with_labels

WEIGHTS = np.array([0.7, 0.3])
MEANS = np.array([[-2.0, 0.0], [2.0, 1.0]])
COVS = np.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, 0.1], [0.1, 0.2]]])
SDES = {"vp": sde_lib.VPSDE(), "subvp": sde_lib.subVPSDE(), "ve": sde_lib.VESDE(sigma_max=20.0)}


def mixture(dtype):
    return sde_lib.GaussianMixture(jnp.asarray(WEIGHTS, dtype), jnp.asarray(MEANS, dtype), jnp.asarray(COVS, dtype))


def component(k, dtype):
    return sde_lib.gaussian(jnp.asarray(MEANS[k], dtype), jnp.asarray(COVS[k], dtype))


def exact_classifier(sde, dtype):
    """log p_t(k | x): the mixture's posterior over components at time t, `[B, 2]`."""

    def logp(x, t):
        joint = jnp.stack([jnp.log(WEIGHTS[k]) + component(k, dtype).log_prob(x, t, sde) for k in range(2)], -1)
        return jax.nn.log_softmax(joint, axis=-1)

    return logp


def points(dtype):
    x = jax.random.normal(jax.random.key(0), (16, 2), dtype) * 2.0
    t = jax.random.uniform(jax.random.key(1), (16,), dtype, 0.01, 1.0)
    return x, t


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("label", [0, 1])
def test_scale_one_with_exact_classifier_is_the_component_score(x64, name, label):
    sde = SDES[name]
    x, t = points(jnp.float64)
    guided = guided_score_fn(mixture(jnp.float64).score_fn(sde), exact_classifier(sde, jnp.float64), label, 1.0)
    np.testing.assert_allclose(guided(x, t), component(label, jnp.float64).score(x, t, sde), rtol=1e-9, atol=1e-9)


def test_per_example_labels_and_scale_enter_linearly(x64):
    sde = SDES["vp"]
    x, t = points(jnp.float64)
    labels = jnp.arange(16) % 2
    score, classifier = mixture(jnp.float64).score_fn(sde), exact_classifier(sde, jnp.float64)
    g1 = guided_score_fn(score, classifier, labels, 1.0)(x, t)
    g3 = guided_score_fn(score, classifier, labels, 3.0)(x, t)
    np.testing.assert_allclose(g3 - score(x, t), 3.0 * (g1 - score(x, t)), rtol=1e-9, atol=1e-12)
    comp = jnp.where(labels[:, None] == 0, component(0, jnp.float64).score(x, t, sde),
                     component(1, jnp.float64).score(x, t, sde))
    np.testing.assert_allclose(g1, comp, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["ve", pytest.param("vp", marks=pytest.mark.slow)])
def test_guided_edm_heun_samples_have_the_component_moments(name):
    sde = SDES[name]
    guided = guided_score_fn(mixture(jnp.float32).score_fn(sde), exact_classifier(sde, jnp.float32), 1, 1.0)
    n = 2000
    x, nfe = EDMHeunSampler(sde, num_steps=18)(jax.random.key(2), guided, (n, 2))
    assert nfe == 35
    x = np.asarray(x, np.float64)
    chol = np.linalg.cholesky(COVS[1])
    y = np.linalg.solve(chol, (x - MEANS[1]).T).T  # whitened: N(0, I) if right
    assert np.abs(y.mean(0)).max() < 4 / np.sqrt(n) + 0.03
    assert np.abs(np.cov(y.T) - np.eye(2)).max() < 4 * np.sqrt(2 / n) + 0.05


def test_cfg_weight_zero_is_the_conditional_score_and_w_follows_the_formula(x64):
    sde = SDES["ve"]
    x, t = points(jnp.float64)
    cond, uncond = component(0, jnp.float64).score_fn(sde), mixture(jnp.float64).score_fn(sde)
    np.testing.assert_array_equal(cfg_score_fn(cond, uncond, 0.0)(x, t), cond(x, t))
    np.testing.assert_allclose(cfg_score_fn(cond, uncond, 2.5)(x, t), 3.5 * cond(x, t) - 2.5 * uncond(x, t),
                               rtol=1e-12)


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_cfg_with_exact_scores_equals_classifier_guidance_with_scale_one_plus_w(x64, w):
    sde = SDES["subvp"]
    x, t = points(jnp.float64)
    uncond = mixture(jnp.float64).score_fn(sde)

    def conditional(x, t, labels):  # a label-conditional "model": label 2 is the null label
        comps = [component(k, jnp.float64).score(x, t, sde) for k in range(2)]
        return jnp.where((labels == 0)[:, None], comps[0], jnp.where((labels == 1)[:, None], comps[1], uncond(x, t)))

    cfg = cfg_score_fn(with_labels(conditional, 1), with_labels(conditional, 2), w)
    cg = guided_score_fn(uncond, exact_classifier(sde, jnp.float64), 1, 1.0 + w)
    np.testing.assert_allclose(cfg(x, t), cg(x, t), rtol=1e-8, atol=1e-8)


def test_bad_labels_and_weights_are_rejected():
    sde = SDES["vp"]
    x, t = points(jnp.float32)
    guided = guided_score_fn(mixture(jnp.float32).score_fn(sde), exact_classifier(sde, jnp.float32), jnp.zeros(3, int))
    with pytest.raises(ValueError, match="labels must be"):
        guided(x, t)
    with pytest.raises(ValueError, match="guidance_weight"):
        cfg_score_fn(lambda x, t: x, lambda x, t: x, -1.0)
