"""The prior p_T of each SDE: `prior_logp` against scipy's Gaussian density, and the moments
and dtype of `prior_sampling`."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sde_lib

CASES = [
    (sde_lib.VPSDE(), 1.0),
    (sde_lib.subVPSDE(beta_min=0.2, beta_max=15.0), 1.0),
    (sde_lib.VESDE(), 50.0),
    (sde_lib.VESDE(sigma_min=0.1, sigma_max=7.5), 7.5),
]


@pytest.mark.parametrize(("sde", "prior_std"), CASES, ids=repr)
def test_prior_logp_equals_scipy_gaussian_log_density(x64, sde, prior_std):
    z = prior_std * jax.random.normal(jax.random.key(1), (5, 2, 3, 2))
    expected = stats.norm(scale=prior_std).logpdf(np.asarray(z)).reshape(5, -1).sum(1)
    np.testing.assert_allclose(sde.prior_logp(z), expected, rtol=1e-12)
    flat = np.asarray(z).reshape(5, -1)
    mvn = stats.multivariate_normal(np.zeros(12), prior_std**2 * np.eye(12))
    np.testing.assert_allclose(sde.prior_logp(z), mvn.logpdf(flat), rtol=1e-12)


@pytest.mark.parametrize(("sde", "prior_std"), CASES, ids=repr)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_prior_sampling_has_prior_moments_and_requested_dtype(x64, sde, prior_std, dtype):
    n = 40_000
    z = sde.prior_sampling(jax.random.key(2), (n, 3), dtype)
    assert z.shape == (n, 3) and z.dtype == dtype
    z = np.asarray(z, np.float64)
    # Mean within 5 standard errors; variance within 5 standard errors (sd of s^2 ~ s^2 sqrt(2/n)).
    assert np.all(np.abs(z.mean(0)) < 5 * prior_std / np.sqrt(n))
    assert np.all(np.abs(z.var(0) / prior_std**2 - 1) < 5 * np.sqrt(2 / n))
    # The prior matches the marginal at T (closely for these schedules).
    assert float(sde.marginal_std(jnp.array([sde.T]))[0]) == pytest.approx(prior_std, rel=1e-3)


@pytest.mark.parametrize(("sde", "prior_std"), CASES[:3], ids=repr)
def test_prior_logp_keeps_float32(sde, prior_std):
    z = sde.prior_sampling(jax.random.key(3), (4, 6))
    out = sde.prior_logp(z)
    assert out.dtype == jnp.float32 and out.shape == (4,)
    expected = stats.norm(scale=prior_std).logpdf(np.asarray(z, np.float64)).sum(1)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
