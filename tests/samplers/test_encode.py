"""Probability-flow encoding: the Gaussian flow map in closed form, exact round trips, and slerp
interpolations that stay in the data's range of log-density."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.encode import FlowCodec, interpolate, slerp
from sde_lib import VESDE, VPSDE, gaussian

MEAN = np.array([0.5, -1.0, 2.0])
COV = np.array([[1.0, 0.4, 0.0], [0.4, 0.5, 0.1], [0.0, 0.1, 0.3]])
SDES = {"vp": VPSDE(), "ve": VESDE(sigma_max=20.0)}


def _flow_map(sde, x, t0, t1):
    """The probability flow of N(mu, S) maps each eigen-coordinate of S linearly:
    x_t1 - alpha_1 mu = U diag(sqrt(c(t1) / c(t0))) U^T (x_t0 - alpha_0 mu), c = alpha^2 lambda + s^2."""
    lam, U = np.linalg.eigh(COV)

    def moments(t):
        t = jnp.asarray(t)
        return float(sde.alpha(t)), float(sde.marginal_std(t))

    (a0, s0), (a1, s1) = moments(t0), moments(t1)
    scale = np.sqrt((a1**2 * lam + s1**2) / (a0**2 * lam + s0**2))
    return a1 * MEAN + ((np.asarray(x) - a0 * MEAN) @ U) * scale @ U.T


@pytest.mark.parametrize("name", list(SDES))
def test_encoding_is_the_exact_gaussian_flow_map_and_round_trips(x64, name):
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    codec = FlowCodec(sde, rtol=1e-7, atol=1e-7)
    score_fn = data.score_fn(sde)
    x = data.sample(jax.random.PRNGKey(0), 16, dtype=jnp.float64)
    z, nfe = jax.jit(codec.encode, static_argnums=0)(score_fn, x)
    scale = float(sde.marginal_std(jnp.asarray(1.0)))
    np.testing.assert_allclose(z, _flow_map(sde, x, codec.eps, sde.T), atol=1e-5 * scale)
    x_back, _ = jax.jit(codec.decode, static_argnums=0)(score_fn, z)
    np.testing.assert_allclose(x_back, x, atol=1e-5)
    assert 10 < int(nfe) < 2000


def test_round_trip_in_float32_meets_the_solver_tolerance():
    sde = VPSDE()
    data = gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32), event_shape=(3, 1))
    codec = FlowCodec(sde, rtol=1e-5, atol=1e-5)
    x = data.sample(jax.random.PRNGKey(1), 8)
    z, _ = codec.encode(data.score_fn(sde), x)
    x_back, _ = codec.decode(data.score_fn(sde), z)
    assert z.shape == x.shape
    np.testing.assert_allclose(x_back, x, atol=2e-3)


def test_slerp_endpoints_norm_and_parallel_case(x64):
    z0 = jax.random.normal(jax.random.PRNGKey(0), (4, 50), jnp.float64)
    z1 = jax.random.normal(jax.random.PRNGKey(1), (4, 50), jnp.float64)
    np.testing.assert_allclose(slerp(z0, z1, 0.0), z0, atol=1e-12)
    np.testing.assert_allclose(slerp(z0, z1, 1.0), z1, atol=1e-12)
    # unit vectors stay on the sphere; a straight line would cut inside it
    u0 = z0 / jnp.linalg.norm(z0, axis=1, keepdims=True)
    u1 = z1 / jnp.linalg.norm(z1, axis=1, keepdims=True)
    np.testing.assert_allclose(jnp.linalg.norm(slerp(u0, u1, 0.3), axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(slerp(z0, 2 * z0, 0.5), 1.5 * z0, atol=1e-9)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "ve" else pytest.mark.slow) for n in SDES])
def test_slerp_interpolations_stay_in_the_data_log_density_range(x64, name):
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    reference = data.log_prob(data.sample(jax.random.PRNGKey(2), 4000, dtype=jnp.float64))
    x = data.sample(jax.random.PRNGKey(3), 8, dtype=jnp.float64)
    codec = FlowCodec(sde, rtol=1e-6, atol=1e-6)
    path = interpolate(codec, data.score_fn(sde), x[:4], x[4:], jnp.linspace(0.0, 1.0, 7))
    assert path.shape == (7, 4, 3)
    np.testing.assert_allclose(path[0], x[:4], atol=1e-4)
    np.testing.assert_allclose(path[-1], x[4:], atol=1e-4)
    logp = data.log_prob(jnp.reshape(path, (-1, 3)))
    assert float(jnp.min(logp)) >= float(jnp.min(reference))
    assert float(jnp.max(logp)) <= float(jnp.max(reference)) + 1e-6
