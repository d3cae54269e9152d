"""Predictors: one step against closed forms, with exact Gaussian scores."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import samplers
import sde_lib
from sde_lib.base import batch_broadcast

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[1.5, 0.4], [0.4, 0.3]])
SDES = {
    "vp": sde_lib.VPSDE(N=50),
    "subvp": sde_lib.subVPSDE(N=50),
    "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0, N=50),
}


def _setup(name, n=8, t=0.5):
    sde = SDES[name]
    data = sde_lib.gaussian(MEAN, COV)
    x = data.sample(jax.random.key(1), n, t=t, sde=sde, dtype=jnp.float64)
    return sde, data.score_fn(sde), x, jnp.full((n,), t)


def test_registry_lists_the_four_predictors():
    assert set(samplers.PREDICTORS.names()) >= {"euler_maruyama", "reverse_diffusion", "ancestral_sampling", "none"}


@pytest.mark.parametrize("name", SDES)
def test_euler_maruyama_step_is_reverse_sde_euler_step(x64, name):
    sde, score_fn, x, t = _setup(name)
    dt = -0.02
    rng = jax.random.key(3)
    x_new, x_mean = samplers.PREDICTORS.get("euler_maruyama")(sde, score_fn).update(rng, x, t, dt)
    f, g = sde.sde(x, t)
    # eq. 6: reverse drift f - g^2 score, noise g sqrt(|dt|)
    expected_mean = x + (f - batch_broadcast(g**2, x) * score_fn(x, t)) * dt
    z = jax.random.normal(rng, x.shape, x.dtype)
    np.testing.assert_allclose(x_mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(x_new, expected_mean + batch_broadcast(g, x) * np.sqrt(0.02) * z, rtol=1e-12)


@pytest.mark.parametrize("name", SDES)
def test_probability_flow_euler_step_is_deterministic_with_half_score(x64, name):
    sde, score_fn, x, t = _setup(name)
    pred = samplers.PREDICTORS.get("euler_maruyama")(sde, score_fn, probability_flow=True)
    a, a_mean = pred.update(jax.random.key(0), x, t, -0.02)
    b, _ = pred.update(jax.random.key(1), x, t, -0.02)
    f, g = sde.sde(x, t)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, a_mean)
    np.testing.assert_allclose(a, x - 0.02 * (f - 0.5 * batch_broadcast(g**2, x) * score_fn(x, t)), rtol=1e-12)


def test_ve_ancestral_mean_is_exact_posterior_mean_of_the_smld_chain(x64):
    # x_i = x_{i-1} + sqrt(s_i^2 - s_{i-1}^2) z, so E[x_{i-1} | x_i] = mu + (C + s_{i-1}^2)(C + s_i^2)^{-1}(x_i - mu).
    sde = SDES["ve"]
    i = 30
    t = jnp.full((6,), i / (sde.N - 1))
    data = sde_lib.gaussian(MEAN, COV)
    x = data.sample(jax.random.key(2), 6, t=t[0], sde=sde, dtype=jnp.float64)
    s_i, s_prev = sde.discrete_sigmas[i], sde.discrete_sigmas[i - 1]
    eye = np.eye(2)
    gain = (np.asarray(COV) + s_prev**2 * eye) @ np.linalg.inv(np.asarray(COV) + s_i**2 * eye)
    expected = np.asarray(MEAN) + (np.asarray(x) - np.asarray(MEAN)) @ gain.T
    pred = samplers.PREDICTORS.get("ancestral_sampling")(sde, data.score_fn(sde))
    _, x_mean = pred.update(jax.random.key(0), x, t, -1.0 / sde.N)
    np.testing.assert_allclose(x_mean, expected, rtol=1e-10)
    # the reverse-diffusion step of the SMLD discretisation has the same mean
    rd = samplers.PREDICTORS.get("reverse_diffusion")(sde, data.score_fn(sde))
    np.testing.assert_allclose(rd.update(jax.random.key(0), x, t, -1.0 / sde.N)[1], expected, rtol=1e-10)


def test_ve_ancestral_step_transports_point_mass_marginals_exactly(x64):
    # For (nearly) point-mass data the SMLD ancestral step is the exact reverse transition.
    sde = SDES["ve"]
    i, n = 25, 40000
    data = sde_lib.gaussian(MEAN, 1e-10 * jnp.eye(2))
    x = data.sample(jax.random.key(4), n, t=i / (sde.N - 1), sde=sde, dtype=jnp.float64)
    pred = samplers.PREDICTORS.get("ancestral_sampling")(sde, data.score_fn(sde))
    out, _ = pred.update(jax.random.key(5), x, jnp.full((n,), i / (sde.N - 1)), -1.0 / sde.N)
    var = sde.discrete_sigmas[i - 1] ** 2
    np.testing.assert_allclose(jnp.mean(out, 0), MEAN, atol=5 * np.sqrt(var / n))
    np.testing.assert_allclose(jnp.var(out, 0), [var, var], rtol=5 * np.sqrt(2 / n))


def test_vp_ancestral_step_is_the_ddpm_step(x64):
    sde, score_fn, x, _ = _setup("vp")
    i = 20
    t = jnp.full((x.shape[0],), i / (sde.N - 1))
    rng = jax.random.key(7)
    out, x_mean = samplers.PREDICTORS.get("ancestral_sampling")(sde, score_fn).update(rng, x, t, -1.0 / sde.N)
    beta = sde.discrete_betas[i]
    # Ho et al. 2020, Alg. 2 with eps = -sqrt(1 - alpha_bar) score
    np.testing.assert_allclose(x_mean, (x + beta * score_fn(x, t)) / np.sqrt(1 - beta), rtol=1e-12)
    z = jax.random.normal(rng, x.shape, x.dtype)
    np.testing.assert_allclose(out, x_mean + np.sqrt(beta) * z, rtol=1e-12)


def test_ancestral_rejects_subvp_and_probability_flow():
    score_fn = sde_lib.gaussian(MEAN, COV).score_fn(SDES["subvp"])
    with pytest.raises(ValueError, match="subVPSDE"):
        samplers.PREDICTORS.get("ancestral_sampling")(SDES["subvp"], score_fn)
    with pytest.raises(ValueError, match="probability-flow"):
        samplers.PREDICTORS.get("ancestral_sampling")(SDES["vp"], score_fn, probability_flow=True)


def test_none_predictor_is_identity_and_costs_nothing(x64):
    sde, score_fn, x, t = _setup("vp")
    pred = samplers.PREDICTORS.get("none")(sde, score_fn)
    out, mean = pred.update(jax.random.key(0), x, t, -0.1)
    assert pred.nfe == 0 and samplers.PREDICTORS.get("euler_maruyama").nfe == 1
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(mean, x)
