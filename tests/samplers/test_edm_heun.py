"""EDM Heun sampler (Karras et al. 2022, Alg. 2) against the exact scores of Gaussian data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from samplers import SAMPLERS, EDMHeunSampler
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler

MEAN = np.array([1.0, -0.5])
COV = np.array([[0.5, 0.2], [0.2, 0.3]])
SDES = {"vp": sde_lib.VPSDE(), "subvp": sde_lib.subVPSDE(), "ve": sde_lib.VESDE()}


def exact_flow_map(sde, x_init, t_init, sigma_min):
    """The exact PF-ODE map of N(MEAN, COV) from (x_init, t_init) to sigma_min, then the denoiser.

    In sigma space y = x_hat - mean obeys dy/dsigma = sigma (S + sigma^2)^-1 y, solved by
    y(sigma) = (S + sigma^2)^(1/2) c; the denoiser then maps y to S (S + sigma^2)^-1 y.
    """
    evals, evecs = np.linalg.eigh(COV)
    sigma_t = float(sde.sigma(jnp.asarray(t_init)))
    x_hat = np.asarray(x_init) / float(sde.alpha(jnp.asarray(t_init)))
    gain = evals * np.sqrt(1.0 / ((evals + sigma_min**2) * (evals + sigma_t**2)))
    return MEAN + (x_hat - MEAN) @ evecs @ np.diag(gain) @ evecs.T


def assert_moments(x, mean, cov, allowance):
    """Mean and covariance within 4.5 standard errors plus a discretisation allowance."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4.5 * se_mean + allowance)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), 4.5 * se_cov + allowance)


def exact_start(sde, n, t_init=1.0):
    """Exact samples of p_t at t_init, so only the solver's error remains."""
    return sde_lib.gaussian(MEAN, COV).sample(jax.random.PRNGKey(7), n, t=t_init, sde=sde)


@pytest.mark.parametrize("name", SDES)
def test_heun_follows_exact_probability_flow_to_second_order(x64, name):
    sde = SDES[name]
    score_fn = sde_lib.gaussian(MEAN, COV).score_fn(sde)
    x_init = exact_start(sde, 64)
    errors = []
    for num_steps in (10, 20, 40):
        # the order at a fixed last level sigma(eps) (the default's few-step rule moves it with num_steps)
        sigma_min = float(sde.sigma(jnp.asarray(1e-3)))
        sampler = EDMHeunSampler(sde, num_steps=num_steps, sigma_min=sigma_min)
        x, _ = jax.jit(sampler, static_argnums=(1, 2))(jax.random.PRNGKey(0), score_fn, x_init.shape, x_init)
        errors.append(np.sqrt(np.mean((np.asarray(x) - exact_flow_map(sde, x_init, 1.0, sigma_min)) ** 2)))
    assert errors[-1] < 1e-2
    # Heun is second order: doubling the steps divides the error by about 4 (Euler: 2).
    assert errors[0] / errors[1] > 3.3 and errors[1] / errors[2] > 3.3, errors


# Churn makes the solve stochastic, whose first-order error needs more steps than plain Heun. Every
# SDE's own time change is checked to second order above; here plain Heun on VE and churned Heun
# on VP by default, all six with -m slow.
@pytest.mark.parametrize(("name", "S_churn", "num_steps"), [
    pytest.param(name, *case, marks=() if (name, case[0]) in {("ve", 0.0), ("vp", 30.0)} else pytest.mark.slow,
                 id=f"{case[0]}-{case[1]}-{name}")
    for name in SDES for case in [(0.0, 24), (30.0, 96)]])
def test_heun_reproduces_gaussian_mean_and_covariance(name, S_churn, num_steps):
    sde = SDES[name]
    score_fn = sde_lib.gaussian(MEAN, COV).score_fn(sde)
    sampler = EDMHeunSampler(sde, num_steps=num_steps, S_churn=S_churn)
    x, nfe = jax.jit(sampler, static_argnums=(1, 2))(jax.random.PRNGKey(1), score_fn, (8000, 2))
    assert nfe == 2 * num_steps - 1
    assert_moments(x, MEAN, COV, allowance=0.02)


def test_heun_starts_from_x_init_at_t_init():
    sde = SDES["vp"]
    score_fn = sde_lib.gaussian(MEAN, COV).score_fn(sde)
    x_init = exact_start(sde, 8000, t_init=0.4)
    sigma_min = float(sde.sigma(jnp.asarray(1e-3)))
    sampler = EDMHeunSampler(sde, num_steps=24, sigma_min=sigma_min)
    x, _ = sampler(jax.random.PRNGKey(2), score_fn, x_init.shape, x_init, t_init=0.4)
    assert_moments(x, MEAN, COV, allowance=0.01)
    np.testing.assert_allclose(x, exact_flow_map(sde, x_init, 0.4, sigma_min), atol=0.02)


def test_churn_outside_s_min_s_max_is_deterministic_heun():
    sde = SDES["ve"]
    score_fn = sde_lib.gaussian(MEAN, COV).score_fn(sde)
    rng = jax.random.PRNGKey(3)
    plain, _ = EDMHeunSampler(sde, num_steps=8)(rng, score_fn, (16, 2))
    out_of_range, _ = EDMHeunSampler(sde, num_steps=8, S_churn=40.0, S_min=1e3)(rng, score_fn, (16, 2))
    churned, _ = EDMHeunSampler(sde, num_steps=8, S_churn=40.0)(rng, score_fn, (16, 2))
    np.testing.assert_allclose(out_of_range, plain, rtol=1e-6)
    assert np.max(np.abs(churned - plain)) > 1e-2


@pytest.mark.parametrize("num_steps", [1, 2, 5])
def test_reported_nfe_counts_every_score_evaluation(num_steps):
    sde = SDES["vp"]
    exact = sde_lib.gaussian(MEAN, COV).score_fn(sde)
    calls = []

    def counting_score(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return exact(x, t)

    sampler = SAMPLERS.get("edm_heun")(sde=sde, num_steps=num_steps)
    x, nfe = jax.jit(sampler, static_argnums=(1, 2))(jax.random.PRNGKey(4), counting_score, (3, 2))
    jax.block_until_ready(x)
    assert nfe == len(calls) == 2 * num_steps - 1


def test_bad_arguments_are_rejected_with_their_name():
    with pytest.raises(ValueError, match="schedule"):
        EDMHeunSampler(SDES["vp"], schedule="cosine")
    with pytest.raises(ValueError, match="num_steps"):
        EDMHeunSampler(SDES["vp"], num_steps=0)
    with pytest.raises(ValueError, match="t_init"):
        EDMHeunSampler(SDES["vp"])(jax.random.PRNGKey(0), lambda x, t: x, (2, 2), t_init=0.5)


@pytest.mark.parametrize("make", [EDMHeunSampler, DDIMSampler, DPMSolverPPSampler])
def test_noise_range_and_start_time_are_checked_for_every_sigma_space_solver(make):
    with pytest.raises(ValueError, match=r"sigma_min \(5.0\) must be below sigma_max \(1.0\)"):
        make(SDES["ve"], sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma_min must be positive, got 0.0"):
        make(SDES["ve"], sigma_min=0.0)
    sampler = make(SDES["vp"], num_steps=4)
    score_fn = sde_lib.gaussian(MEAN, COV).score_fn(SDES["vp"])
    for bad in (5.0, 0.0, np.array([0.5, 1.5])):
        with pytest.raises(ValueError, match=r"t_init must lie in \(0, T=1"):
            sampler(jax.random.PRNGKey(0), score_fn, (2, 2), x_init=jnp.zeros((2, 2)), t_init=bad)
