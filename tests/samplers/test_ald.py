"""Annealed Langevin dynamics (NCSN) with exact scores reproduces a Gaussian under VP, sub-VP and VE."""
import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from samplers.ald import AnnealedLangevinSampler, NCSNLangevin

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.5, 0.4], [0.4, 0.3]])
SDES = {"vp": sde_lib.VPSDE(), "subvp": sde_lib.subVPSDE(), "ve": sde_lib.VESDE(sigma_max=10.0)}


def whitened_errors(x):
    chol = np.linalg.cholesky(COV)
    y = np.linalg.solve(chol, (np.asarray(x, np.float64) - MEAN).T).T
    return np.abs(y.mean(0)).max(), np.abs(np.cov(y.T) - np.eye(2)).max()


# sub-VP (the VP noise levels over another alpha) with -m slow.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n == "subvp" else ()) for n in SDES])
def test_ald_reproduces_gaussian_mean_and_covariance(name):
    sde = SDES[name]
    data = sde_lib.gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    sigma_last = float(sde.sigma(jnp.asarray(1e-3)))
    # step_lr = sigma_L^2: a_i / (2 sigma_i^2) = 1/2 at the large levels, stable, and enough steps per level
    sampler = AnnealedLangevinSampler(sde, num_scales=50, n_steps_each=20, step_lr=sigma_last**2)
    n = 2000
    x, nfe = sampler(jax.random.key(0), data.score_fn(sde), (n, 2))
    assert nfe == 50 * 20 + 1
    mean_err, cov_err = whitened_errors(x)
    assert mean_err < 4 / np.sqrt(n) + 0.03, f"mean error {mean_err:.3f}"
    assert cov_err < 4 * np.sqrt(2 / n) + 0.05, f"covariance error {cov_err:.3f}"


def test_ald_with_a_score_off_by_half_fails_the_moment_check():
    sde = SDES["ve"]
    data = sde_lib.gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    score_fn = data.score_fn(sde)
    sampler = AnnealedLangevinSampler(sde, num_scales=50, n_steps_each=20, step_lr=1e-4)
    x, _ = sampler(jax.random.key(0), lambda x, t: 1.5 * score_fn(x, t), (2000, 2))
    assert whitened_errors(x)[1] > 4 * np.sqrt(2 / 2000) + 0.05


def test_step_size_is_ncsn_eps_times_sigma_ratio_squared(x64):
    sde = SDES["vp"]
    t = jnp.asarray([0.9, 0.5, 1e-3])
    s = sde.sigma(t)
    step = NCSNLangevin(sde, lambda x, t: x, 2e-5, 1, float(s[-1])).step_size(t, jnp.ones((3, 2)), jnp.ones((3, 2)))
    # the corrector's eps is NCSN's a_i / 2, a_i = step_lr s_i^2 / s_L^2
    np.testing.assert_allclose(step, 0.5 * 2e-5 * (s / s[-1]) ** 2, rtol=1e-12)
    np.testing.assert_allclose(step[-1], 1e-5, rtol=1e-12)


def test_denoise_is_one_tweedie_step_and_counts_one_evaluation(x64):
    sde = SDES["ve"]
    data = sde_lib.gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    kwargs = dict(num_scales=3, n_steps_each=2, step_lr=1e-4)
    raw, nfe_raw = AnnealedLangevinSampler(sde, denoise=False, **kwargs)(jax.random.key(1), data.score_fn(sde), (4, 2))
    den, nfe_den = AnnealedLangevinSampler(sde, denoise=True, **kwargs)(jax.random.key(1), data.score_fn(sde), (4, 2))
    assert (nfe_raw, nfe_den) == (6, 7)
    t = jnp.full((4,), 1e-3)
    s = sde.marginal_std(t)[:, None]
    np.testing.assert_allclose(den, raw + s**2 * data.score(raw, t, sde), rtol=1e-12)


def test_bad_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="n_steps_each"):
        AnnealedLangevinSampler(SDES["ve"], n_steps_each=0)
    with pytest.raises(ValueError, match="step_lr"):
        AnnealedLangevinSampler(SDES["ve"], step_lr=0.0)
    with pytest.raises(ValueError, match="eps"):
        AnnealedLangevinSampler(SDES["ve"], eps=2.0)


def test_ald_from_x_init_at_t_init_reproduces_the_data():
    sde = SDES["vp"]
    data = sde_lib.gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    n, t0 = 1000, 0.3
    x_init = data.sample(jax.random.key(3), n, t=t0, sde=sde)  # exact samples of p_{t0}
    sigma_last = float(sde.sigma(jnp.asarray(1e-3)))
    sampler = AnnealedLangevinSampler(sde, num_scales=20, n_steps_each=20, step_lr=sigma_last**2)
    x, _ = sampler(jax.random.key(4), data.score_fn(sde), (n, 2), x_init=x_init, t_init=t0)
    mean_err, cov_err = whitened_errors(x)
    assert mean_err < 4 / np.sqrt(n) + 0.03 and cov_err < 4 * np.sqrt(2 / n) + 0.05, (mean_err, cov_err)
    with pytest.raises(ValueError, match="x_init has shape"):
        sampler(jax.random.key(4), data.score_fn(sde), (n, 3), x_init=x_init, t_init=t0)


@dataclasses.dataclass
class UnhashableScore:
    """A non-frozen dataclass with __call__: unhashable, so not a jit static argument as is."""

    score_fn: Callable

    def __call__(self, x, t):
        return self.score_fn(x, t)


def test_unhashable_score_callable_samples_like_the_plain_function():
    sde = SDES["ve"]
    score_fn = sde_lib.gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32)).score_fn(sde)
    sampler = AnnealedLangevinSampler(sde, num_scales=5, n_steps_each=2, step_lr=1e-4)
    expected, _ = sampler(jax.random.key(0), score_fn, (8, 2))
    got, nfe = sampler(jax.random.key(0), UnhashableScore(score_fn), (8, 2))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert nfe == 5 * 2 + 1


def test_score_of_the_wrong_shape_is_rejected_naming_both_shapes():
    sampler = AnnealedLangevinSampler(SDES["ve"], num_scales=3, n_steps_each=1)
    with pytest.raises(ValueError, match=r"shaped like x, \(1, 4\) .*, but returned shape \(1,\)"):
        sampler(jax.random.key(0), lambda x, t: -x.sum(-1), (4, 4))
