"""Reverse-time SDE and probability-flow ODE (Song et al. 2021, eqs. 6 and 13): drift
f - g^2 score (f - g^2 score / 2 for the flow, with zero diffusion), and the same rule on the
forward discretisation (f - G^2 score, G)."""
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib

SDES = [sde_lib.VPSDE(N=100), sde_lib.subVPSDE(beta_min=0.3, beta_max=9.0, N=100), sde_lib.VESDE(N=100)]


def _score(x, t):
    """An arbitrary non-linear score depending on x and t, `[B, H, W] -> [B, H, W]`."""
    return jnp.sin(x) * (1.0 + t)[:, None, None] - 0.3 * x**2


def _inputs():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2, 3)))
    t = jnp.linspace(0.01, 1.0, 6)
    return x, t


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_reverse_drift_is_f_minus_g2_score(x64, sde):
    x, t = _inputs()
    drift, diffusion = sde.sde(x, t)
    g2 = (diffusion**2)[:, None, None]
    rev_drift, rev_diffusion = sde.reverse(_score).sde(x, t)
    np.testing.assert_allclose(rev_drift, drift - g2 * _score(x, t), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rev_diffusion, diffusion, rtol=1e-12)


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_probability_flow_drift_is_f_minus_half_g2_score_without_noise(x64, sde):
    x, t = _inputs()
    drift, diffusion = sde.sde(x, t)
    g2 = (diffusion**2)[:, None, None]
    rev_drift, rev_diffusion = sde.reverse(_score, probability_flow=True).sde(x, t)
    np.testing.assert_allclose(rev_drift, drift - 0.5 * g2 * _score(x, t), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(rev_diffusion, np.zeros(6))


@pytest.mark.parametrize("sde", SDES, ids=repr)
@pytest.mark.parametrize("probability_flow", [False, True])
def test_reverse_discretize_is_f_minus_g2_score(x64, sde, probability_flow):
    x, t = _inputs()
    f, G = sde.discretize(x, t)
    coefficient = 0.5 if probability_flow else 1.0
    rev = sde.reverse(_score, probability_flow=probability_flow)
    rev_f, rev_G = rev.discretize(x, t)
    np.testing.assert_allclose(rev_f, f - coefficient * (G**2)[:, None, None] * _score(x, t), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rev_G, np.zeros(6) if probability_flow else G, rtol=1e-12)
    assert rev.N == sde.N and rev.T == sde.T


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_probability_flow_of_exact_score_transports_gaussian_variance(x64, sde):
    """For N(mu, S) data, the flow's velocity along the marginal equals d/dt of the exact
    transport map x_t = m(t) + sqrt(C(t) / S) (x_0 - mu): here checked at one point per t."""
    mean, var = jnp.array([0.7, -1.2]), jnp.array([0.5, 2.0])
    data = sde_lib.gaussian(mean, jnp.diag(var))
    t = jnp.linspace(0.05, 0.95, 5)
    x0 = jnp.broadcast_to(jnp.array([[1.3, 0.4]]), (5, 2))

    def transport(tt):
        alpha, std = sde.alpha(tt)[:, None], sde.marginal_std(tt)[:, None]
        cov = alpha**2 * var[None] + std**2
        return alpha * mean[None] + jnp.sqrt(cov / var[None]) * (x0 - mean[None])

    h = 1e-6
    velocity = (transport(t + h) - transport(t - h)) / (2 * h)
    flow_drift, _ = sde.reverse(data.score_fn(sde), probability_flow=True).sde(transport(t), t)
    np.testing.assert_allclose(flow_drift, velocity, rtol=1e-6, atol=1e-6)
