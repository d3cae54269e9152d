"""Score converters: exact inverses of each other, and on Gaussian data equal to the closed-form
posterior quantities (noise posterior mean, Tweedie mean, the EDM Wiener denoiser)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from sde_lib.base import batch_broadcast

MEAN = np.array([0.7, -1.2, 2.0])
VAR = np.array([0.3, 1.5, 0.8])
SDES = [sde_lib.VPSDE(), sde_lib.subVPSDE(), sde_lib.VESDE()]


def exact_score(sde):
    """-(x - alpha mu) / (alpha^2 VAR + s^2): the score of N(MEAN, diag VAR) data at time t."""

    def score_fn(x, t):
        alpha, std = sde.alpha(t)[:, None], sde.marginal_std(t)[:, None]
        return -(x - alpha * MEAN[None]) / (alpha**2 * VAR[None] + std**2)

    return score_fn


def _inputs(sde):
    t_key, x_key = jax.random.split(jax.random.key(0))
    t = jax.random.uniform(t_key, (64,), jnp.float64, 0.01, 1.0)
    alpha, std = sde.alpha(t)[:, None], sde.marginal_std(t)[:, None]
    x = alpha * MEAN[None] + jnp.sqrt(alpha**2 * VAR[None] + std**2) * jax.random.normal(x_key, (64, 3),
                                                                                        jnp.float64)
    return x, t


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_converters_are_exact_inverses(x64, sde):
    x, t = _inputs(sde)
    score = exact_score(sde)
    expected = score(x, t)
    round_trips = {
        "eps": sde_lib.score_from_eps(sde, sde_lib.eps_from_score(sde, score)),
        "data": sde_lib.score_from_data(sde, sde_lib.data_from_score(sde, score)),
        "denoiser": sde_lib.score_from_denoiser(sde, sde_lib.denoiser_from_score(sde, score)),
        "sigma_scaled": sde_lib.score_from_sigma_scaled(
            sde, lambda y, s: batch_broadcast(sde.marginal_std(s), y) * score(y, s)),
    }
    for name, fn in round_trips.items():
        np.testing.assert_allclose(fn(x, t), expected, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_converted_functions_are_the_gaussian_posterior_quantities(x64, sde):
    x, t = _inputs(sde)
    score = exact_score(sde)
    alpha, std = sde.alpha(t)[:, None], sde.marginal_std(t)[:, None]
    total_var = alpha**2 * VAR[None] + std**2
    # E[z | x_t] = s (x_t - alpha mu) / (alpha^2 VAR + s^2)
    np.testing.assert_allclose(sde_lib.eps_from_score(sde, score)(x, t),
                               std * (x - alpha * MEAN[None]) / total_var, rtol=1e-9)
    # E[x_0 | x_t] = mu + alpha VAR (x_t - alpha mu) / (alpha^2 VAR + s^2)
    np.testing.assert_allclose(sde_lib.data_from_score(sde, score)(x, t),
                               MEAN[None] + alpha * VAR[None] * (x - alpha * MEAN[None]) / total_var, rtol=1e-9)
    # The EDM denoiser in sigma space is the Wiener filter mu + VAR / (VAR + sigma^2) (x_hat - mu).
    sigma = sde.sigma(t)
    x_hat = x / alpha
    wiener = MEAN[None] + VAR[None] / (VAR[None] + sigma[:, None] ** 2) * (x_hat - MEAN[None])
    np.testing.assert_allclose(sde_lib.denoiser_from_score(sde, score)(x_hat, sigma), wiener, rtol=1e-7)
