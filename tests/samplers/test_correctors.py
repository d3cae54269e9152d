"""Correctors: Langevin steps keep / restore the exact marginal p_t, with exact Gaussian scores."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import samplers
import sde_lib

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[1.5, 0.4], [0.4, 0.3]])
SDES = {
    "vp": sde_lib.VPSDE(N=100),
    "subvp": sde_lib.subVPSDE(N=100),
    "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0, N=100),
}


def _exact_moments(sde, t):
    alpha = float(sde.alpha(jnp.asarray(t)))
    std = float(sde.marginal_std(jnp.asarray(t)))
    return alpha * np.asarray(MEAN), alpha**2 * np.asarray(COV) + std**2 * np.eye(2)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _run(name, sde, snr, n_steps, n, t, rng, scale):
    data = sde_lib.gaussian(MEAN, COV)
    corrector = samplers.CORRECTORS.get(name)(sde, data.score_fn(sde), snr, n_steps)
    init_key, key = jax.random.split(rng)
    x = data.sample(init_key, n, t=t, sde=sde)
    mean = jnp.mean(x, 0)
    x = mean + scale * (x - mean)  # start from a too-wide (scale > 1) distribution
    return corrector.update(key, x, jnp.full((n,), t))


# Both correctors and every SDE by default (Langevin on VP and sub-VP, ALD on VE); the other three
# pairs with -m slow.
@pytest.mark.parametrize("name,corrector", [
    pytest.param(name, corrector, id=f"{name}-{corrector}",
                 marks=() if (corrector == "ald") == (name == "ve") else pytest.mark.slow)
    for corrector in ("langevin", "ald") for name in SDES])
def test_langevin_converges_to_exact_marginal_from_a_wrong_start(name, corrector):
    # 300 steps relax a 2x too wide start; the 2-D ULA bias at these step sizes is about 1-2%,
    # while a step missing the factor 2 in sqrt(2 eps) would halve the variance. ALD scales its
    # step by the noise level alone, so it mixes only where the noise dominates the data (late t).
    sde, n = SDES[name], 4000
    t = 0.3 if corrector == "langevin" else 0.8
    x, _ = _run(corrector, sde, 0.16, 300, n, t, jax.random.key(0), 2.0)
    mean, cov = _exact_moments(sde, t)
    emp_cov = np.cov(np.asarray(x).T)
    assert np.all(np.abs(np.mean(x, 0) - mean) < 5 * np.sqrt(np.diag(cov) / n)), (np.mean(x, 0), mean)
    np.testing.assert_allclose(emp_cov, cov, atol=0.08 * np.max(np.diag(cov)))


def test_langevin_step_size_uses_discrete_alpha_on_subvp(x64):
    # The 2021 code read VP-only attributes here; sub-VP must use its own beta schedule.
    sde = SDES["subvp"]
    data = sde_lib.gaussian(MEAN, COV)
    x = data.sample(jax.random.key(0), 16, t=0.5, sde=sde, dtype=jnp.float64)
    t = jnp.full((16,), 0.5)
    score, noise = data.score(x, t, sde), jax.random.normal(jax.random.key(1), x.shape, x.dtype)
    corr = samplers.CORRECTORS.get("langevin")(sde, data.score_fn(sde), 0.2, 1)
    eps = corr.step_size(t, score, noise)
    ratio = np.mean(np.linalg.norm(noise, axis=1)) / np.mean(np.linalg.norm(score, axis=1))
    expected = 2 * (1 - sde.discrete_betas[sde.timestep_index(t)]) * (0.2 * ratio) ** 2
    np.testing.assert_allclose(eps, expected, rtol=1e-12)


def test_ald_step_size_scales_with_marginal_variance(x64):
    sde = SDES["ve"]
    corr = samplers.CORRECTORS.get("ald")(sde, lambda x, t: -x, 0.1, 1)
    t = jnp.array([0.2, 0.9])
    eps = corr.step_size(t, jnp.ones((2, 2)), jnp.ones((2, 2)))
    np.testing.assert_allclose(eps, 2 * (0.1 * sde.sigma(t)) ** 2, rtol=1e-12)


def test_nfe_is_n_steps_and_none_corrector_is_free():
    sde = SDES["vp"]
    assert samplers.CORRECTORS.get("langevin")(sde, lambda x, t: -x, 0.1, 3).nfe == 3
    none = samplers.CORRECTORS.get("none")(sde, lambda x, t: -x, 0.1, 3)
    x = jnp.ones((2, 2))
    assert none.nfe == 0
    np.testing.assert_array_equal(none.update(jax.random.key(0), x, jnp.ones(2))[0], x)


def test_bad_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="snr"):
        samplers.CORRECTORS.get("langevin")(SDES["vp"], lambda x, t: -x, 0.0, 1)
    with pytest.raises(ValueError, match="n_steps"):
        samplers.CORRECTORS.get("langevin")(SDES["vp"], lambda x, t: -x, 0.1, -1)
