"""SDEdit: strength 0 returns the input, strength 1 forgets it (data moments), a mask keeps the
known region exactly and leaves an independent unknown block with its exact moments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.edit import edit_time, masked_score_fn, sdedit
from samplers.pc import PCSampler
from sde_lib import VESDE, VPSDE, gaussian

MEAN = np.array([0.5, -1.0, 2.0])
COV = np.array([[1.0, 0.4, 0.0], [0.4, 0.5, 0.0], [0.0, 0.0, 0.3]])  # {0, 1} independent of {2}
SDES = {"vp": VPSDE(), "ve": VESDE(sigma_max=20.0)}


def one_sde_by_default(default):
    """The SDE names, all but `default` with -m slow: the checks alternate their default SDE."""
    return [pytest.param(n, marks=() if n == default else pytest.mark.slow) for n in SDES]


def _sampler(sde, num_steps=200):
    """Euler-Maruyama steps the reverse SDE on the sampler's own grid from any t_init."""
    return PCSampler(sde, predictor="euler_maruyama", corrector="none", num_steps=num_steps)


def _moments(x):
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x.T)


@pytest.mark.parametrize("name", one_sde_by_default("vp"))
def test_strength_zero_returns_the_input(x64, name):
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    x = data.sample(jax.random.PRNGKey(0), 64, dtype=jnp.float64)
    edited, _ = sdedit(jax.random.PRNGKey(1), _sampler(sde, 20), data.score_fn(sde), x, 0.0)
    # t0 = eps: the input only carries noise of level sigma(eps) ~ 0.01
    np.testing.assert_allclose(edited, x, atol=0.05)
    assert float(jnp.mean(jnp.abs(edited - x))) < 0.01


@pytest.mark.parametrize("name", one_sde_by_default("ve"))
def test_strength_one_gives_data_moments(name):
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    n = 4000
    x = jnp.broadcast_to(jnp.asarray([3.0, 3.0, -3.0]), (n, 3))  # far from the data: must be forgotten
    sampler = _sampler(sde)
    edited, nfe = jax.jit(sdedit, static_argnums=(1, 2, 4))(jax.random.PRNGKey(2), sampler, data.score_fn(sde), x, 1.0)
    mean, cov = _moments(edited)
    se = np.sqrt(np.diag(COV) / n)
    np.testing.assert_array_less(np.abs(mean - MEAN), 4 * se + 0.02)
    np.testing.assert_allclose(cov, COV, atol=0.08)
    assert nfe == 200


@pytest.mark.parametrize("name", one_sde_by_default("ve"))
def test_mask_keeps_the_known_region_and_the_independent_block_exact(name):
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    n = 4000
    x = jnp.broadcast_to(jnp.asarray([3.0, 3.0, 2.5]), (n, 3))
    mask = jnp.asarray([0.0, 0.0, 1.0])  # keep coordinate 2; resample the independent block {0, 1}
    sampler = _sampler(sde)
    edited, _ = sdedit(jax.random.PRNGKey(3), sampler, data.score_fn(sde), x, 1.0, mask=mask)
    np.testing.assert_array_equal(edited[:, 2], x[:, 2])
    mean, cov = _moments(edited[:, :2])
    np.testing.assert_array_less(np.abs(mean - MEAN[:2]), 4 * np.sqrt(np.diag(COV)[:2] / n) + 0.02)
    np.testing.assert_allclose(cov, COV[:2, :2], atol=0.08)


def test_masked_score_is_the_point_mass_score_on_the_known_region(x64):
    sde = VPSDE()
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    x_known = jnp.asarray([[1.0, 2.0, 3.0]])
    mask = jnp.asarray([[1.0, 0.0, 1.0]])
    x, t = jnp.asarray([[0.2, -0.3, 0.9]]), jnp.asarray([0.4])
    got = masked_score_fn(sde, data.score_fn(sde), x_known, mask)(x, t)
    alpha, std = float(sde.alpha(t)[0]), float(sde.marginal_std(t)[0])
    pinned = (alpha * x_known - x) / std**2
    exact = data.score(x, t, sde)
    np.testing.assert_allclose(got, jnp.where(mask > 0, pinned, exact), rtol=1e-12)


def test_edit_time_floors_at_eps_and_rejects_bad_strength():
    assert edit_time(VPSDE(), 0.0, 1e-3) == 1e-3
    assert edit_time(VPSDE(), 0.5, 1e-3) == 0.5
    with pytest.raises(ValueError, match="strength must lie in"):
        edit_time(VPSDE(), 1.5, 1e-3)
