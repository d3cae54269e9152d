"""`discretize` of each SDE: the exact DDPM / SMLD / Euler-Maruyama steps, and convergence to
the continuous SDE as N grows (f / dt -> drift, G^2 / dt -> g^2 with error ~ 1 / N)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib

T_GRID = np.linspace(0.05, 0.95, 37)
X = np.stack([np.linspace(-2.0, 3.0, 37), np.linspace(1.0, 0.5, 37)], axis=1)


def _errors(sde):
    """Worst relative error of f / dt against the drift and of G^2 / dt against g^2."""
    dt = sde.T / sde.N
    f, G = sde.discretize(X, T_GRID)
    drift, diffusion = sde.sde(X, T_GRID)
    drift_err = jnp.max(jnp.abs(f / dt - drift)) / jnp.max(jnp.abs(drift)) if jnp.any(drift) else 0.0
    return float(drift_err), float(jnp.max(jnp.abs(G**2 / dt / diffusion**2 - 1)))


@pytest.mark.parametrize("cls", [sde_lib.VPSDE, sde_lib.VESDE])
def test_discretize_converges_to_sde_at_rate_one_over_n(x64, cls):
    coarse, fine = _errors(cls(N=100)), _errors(cls(N=1000))
    for c, f in zip(coarse, fine, strict=True):
        if c == 0.0:
            assert f == 0.0
            continue
        # First-order convergence: ten times more steps, about ten times smaller error.
        assert 4 < c / f < 25, (c, f)
        assert f < 0.05


def test_subvp_discretize_is_euler_maruyama_exactly(x64):
    sde = sde_lib.subVPSDE(beta_min=0.3, beta_max=11.0, N=250)
    f, G = sde.discretize(X, T_GRID)
    drift, diffusion = sde.sde(X, T_GRID)
    np.testing.assert_allclose(f, drift / 250, rtol=1e-13)
    np.testing.assert_allclose(G, diffusion * np.sqrt(1 / 250), rtol=1e-13)


def test_vp_discretize_is_the_ddpm_ancestral_step(x64):
    sde = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=50)
    i = np.arange(50)
    t = jnp.asarray(i / 49.0)
    x = jnp.stack([jnp.full(50, 2.0), jnp.full(50, -1.0)], axis=1)
    betas = 0.1 / 50 + i / 49 * (20.0 - 0.1) / 50  # beta_i = beta(t_i) / N, Ho et al. 2020
    f, G = sde.discretize(x, t)
    np.testing.assert_allclose(G, np.sqrt(betas), rtol=1e-12)
    np.testing.assert_allclose(f, (np.sqrt(1 - betas)[:, None] - 1) * np.asarray(x), rtol=1e-12)
    np.testing.assert_allclose(sde.discrete_alpha(t), 1 - betas, rtol=1e-12)
    np.testing.assert_allclose(sde.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-12)


def test_ve_discretize_is_the_smld_step(x64):
    sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0, N=40)
    i = np.arange(40)
    t = jnp.asarray(i / 39.0)
    sigmas = 0.01 * (50 / 0.01) ** (i / 39)
    np.testing.assert_allclose(sde.discrete_sigmas, sigmas, rtol=1e-12)
    f, G = sde.discretize(jnp.ones((40, 3)), t)
    previous = np.concatenate([[0.0], sigmas[:-1]])
    np.testing.assert_allclose(G, np.sqrt(sigmas**2 - previous**2), rtol=1e-12)
    assert not np.any(f)
    np.testing.assert_array_equal(sde.discrete_alpha(t), np.ones(40))


@pytest.mark.parametrize("sde", [sde_lib.VPSDE(N=10), sde_lib.subVPSDE(N=10), sde_lib.VESDE(N=10)], ids=repr)
def test_timestep_index_recovers_grid_steps_in_float32(sde):
    i = jnp.arange(10)
    t = i.astype(jnp.float32) * sde.T / (sde.N - 1)
    np.testing.assert_array_equal(sde.timestep_index(t), i)
    np.testing.assert_array_equal(sde.timestep_index(t + 0.5 / 9), i)


@pytest.mark.parametrize("sde", [sde_lib.VPSDE(N=20), sde_lib.subVPSDE(N=20), sde_lib.VESDE(N=20)], ids=repr)
def test_discretize_keeps_float32_under_jit(sde):
    f, G = jax.jit(sde.discretize)(jnp.ones((3, 2, 2), jnp.float32), jnp.array([0.1, 0.5, 0.9], jnp.float32))
    assert f.dtype == G.dtype == jnp.float32
    assert f.shape == (3, 2, 2) and G.shape == (3,)
