"""Perturbation kernels of VP, sub-VP and VE against a fine Euler-Maruyama simulation.

For these linear SDEs the transition from t0 keeps the Gaussian family, so starting the
simulation from the exact kernel at a small t0 and running it to t1 must reproduce
`marginal_prob(x0, t1)`: mean and per-dimension variance within Monte Carlo error.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib

N_PATHS = 20_000
STEP = 1e-3
T0 = 0.04
SEGMENT_STEPS = 240  # four segments of 0.24: checkpoints at 0.28, 0.52, 0.76, 1.0
X0 = np.array([1.5, -0.7, 3.0])
Z_MAX = 5.0

SDES = [
    sde_lib.VPSDE(),
    sde_lib.VPSDE(beta_min=0.5, beta_max=8.0),
    sde_lib.subVPSDE(),
    sde_lib.subVPSDE(beta_min=0.3, beta_max=12.0),
    sde_lib.VESDE(),
    sde_lib.VESDE(sigma_min=0.05, sigma_max=5.0),
]


@functools.partial(jax.jit, static_argnums=(0,))
def _euler_maruyama(sde, x, t_start, rng):
    """SEGMENT_STEPS Euler-Maruyama steps of `sde.sde` from `t_start` with step STEP."""

    def step(x, inputs):
        k, key = inputs
        t = jnp.full((x.shape[0],), t_start + k * STEP, x.dtype)
        drift, diffusion = sde.sde(x, t)
        z = jax.random.normal(key, x.shape, x.dtype)
        return x + drift * STEP + diffusion[:, None] * np.sqrt(STEP) * z, None

    keys = jax.random.split(rng, SEGMENT_STEPS)
    x, _ = jax.lax.scan(step, x, (jnp.arange(SEGMENT_STEPS), keys))
    return x


def _z_scores(samples, mean, var):
    """Standardised errors of the sample mean and sample variance, per dimension."""
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mean) / np.sqrt(var / n)
    z_var = (samples.var(0, ddof=1) - var) / (var * np.sqrt(2.0 / (n - 1)))
    return z_mean, z_var


# Each SDE class with its default schedule by default; the other schedules (the same formulas) with -m slow.
@pytest.mark.parametrize("sde", [pytest.param(sde, marks=() if i % 2 == 0 else pytest.mark.slow)
                                 for i, sde in enumerate(SDES)], ids=repr)
def test_marginal_prob_matches_euler_maruyama_simulation(x64, sde):
    rng = jax.random.key(0)
    init_key, rng = jax.random.split(rng)
    x0 = jnp.broadcast_to(jnp.asarray(X0), (N_PATHS, X0.size))
    mean0, std0 = sde.marginal_prob(x0, jnp.full((N_PATHS,), T0))
    x = mean0 + std0[:, None] * jax.random.normal(init_key, x0.shape, x0.dtype)
    t = T0
    for _ in range(4):
        seg_key, rng = jax.random.split(rng)
        x = _euler_maruyama(sde, x, t, seg_key)
        t = round(t + SEGMENT_STEPS * STEP, 10)
        mean, std = sde.marginal_prob(jnp.asarray(X0)[None], jnp.array([t]))
        mean, var = np.asarray(mean[0]), float(std[0]) ** 2 * np.ones(X0.size)
        z_mean, z_var = _z_scores(np.asarray(x), mean, var)
        assert np.all(np.abs(z_mean) < Z_MAX), (t, z_mean)
        assert np.all(np.abs(z_var) < Z_MAX), (t, z_var)
        # The check has the power it claims: a 10% error in the variance would fail it.
        for wrong in (0.9 * var, 1.1 * var):
            assert np.all(np.abs(_z_scores(np.asarray(x), mean, wrong)[1]) > Z_MAX)
    assert t == pytest.approx(sde.T)
