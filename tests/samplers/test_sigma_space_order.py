"""The sigma-space solvers follow the exact probability flow of Gaussian data with their orders of
convergence: halving the step (in their own noise schedule) divides the error by about 2 for DDIM
(first order, Song et al. 2021a), 4 for the 2M multistep and at least 8 for 3M (Lu et al. 2022b),
about 16 for LMS and iPNDM of order 4 (4 for iPNDM's fixed equal-step weights on Karras steps) and
for UniPC-3 (its UniC corrector adds one order; Zhao et al. 2023).
The stochastic DPM-Solver++ 2M / 3M SDE are checked twice. Their drift without the noise
(s_noise = 0) is a multistep exponential integrator of the ODE dx_hat/dlambda = c (D - x_hat),
c = 1 + eta, whose exact flow map for Gaussian data is known, so it must converge at the multistep
order (this is where a wrong coefficient of the 2M / 3M correction terms or of their c-dependence
shows; the mean map below cannot see those, since for Gaussian data D is linear and the correction
terms have zero mean). And their mean map: with the same noise, two starts a, b give outputs
differing by M (a - b), and the reverse SDE's exact M is the posterior-mean gain
S (S + sigma_T^2)^-1 / alpha_T, which they reproduce exactly for Gaussian data (their sampling
variance is checked on the posterior in test_denoise).
A solver that lost an order, e.g. a 2M whose correction term had a wrong coefficient, converges at
the lower rate and fails (checked for 2M, 3M, 2M SDE, 3M SDE and iPNDM by perturbing one coefficient)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.ipndm import IPNDMSampler
from samplers.lms import LMSSampler
from samplers.unipc import UniPCSampler

MEAN = np.array([1.0, -0.5])
COV = np.array([[0.5, 0.2], [0.2, 0.3]])
SDES = {"vp": sde_lib.VPSDE(), "subvp": sde_lib.subVPSDE(), "ve": sde_lib.VESDE()}
STEPS = (32, 64)  # in the asymptotic range for all three (2M is not yet at 8 -> 16)
SOLVERS = {  # name: (sampler for a number of steps, least error ratio per halving, most, final error bound)
    "ddim": (lambda sde, n: DDIMSampler(sde, num_steps=n), 1.8, 2.2, 0.03),
    "dpm_solver_2m": (lambda sde, n: DPMSolverPPSampler(sde, num_steps=n, order=2), 3.5, None, 3e-3),
    "dpm_solver_3m": (lambda sde, n: DPMSolverPPSampler(sde, num_steps=n, order=3), 6.0, None, 2e-4),
    # LMS integrates to sigma = 0 itself (no last denoiser step): the flow map to 0 is its target
    "lms": (lambda sde, n: LMSSampler(sde, num_steps=n, order=4), 9.0, None, 1e-3),
    "unipc": (lambda sde, n: UniPCSampler(sde, num_steps=n, order=3), 9.0, None, 1e-3),
    # iPNDM: variable-step Adams-Bashforth of order 4; the fixed equal-step weights are of order 2 on
    # the graded Karras steps (samplers/ipndm.py)
    "ipndm_v": (lambda sde, n: IPNDMSampler(sde, num_steps=n, variable_step=True), 9.0, None, 1e-3),
    "ipndm": (lambda sde, n: IPNDMSampler(sde, num_steps=n), 3.5, 5.0, 3e-3),
    # The stochastic solvers' drift alone (s_noise = 0), at rates c = 1 + eta other than 2: at eta = 1
    # the denoiser of Gaussian data is constant along the noise-free path (the posterior mean is a
    # martingale), so every multistep correction vanishes and no coefficient would be tested; for
    # eta > 1 the third-order term barely shows. 3M from 64 steps: below, its error constant nearly
    # cancels (ratios 1.9, 6.1, 7.4 from 16 to 128 steps on VP; 5.3 at 64 -> 128 with a 10% wrong
    # quadratic term).
    "dpm_solver_2m_sde_drift": (
        lambda sde, n: DPMSolverSDESampler(sde, num_steps=n, order=2, eta=0.5, s_noise=0.0), 3.5, None, 3e-3),
    "dpm_solver_3m_sde_drift": (
        lambda sde, n: DPMSolverSDESampler(sde, num_steps=n, order=3, eta=0.5, s_noise=0.0), 6.0, None, 2e-5),
}
# UniPC-3 is at 1e-5 by 32 steps, where its first-order start dominates; 3M SDE drift: see SOLVERS
SOLVER_STEPS = {"unipc": (16, 32), "dpm_solver_3m_sde_drift": (64, 128)}



def exact_flow_map(sde, x_init, t_init, sigma_min, rate=1.0):
    """The exact map of N(MEAN, COV) from (x_init, t_init) to sigma_min along
    dx_hat/dlambda = rate (D - x_hat) (rate 1: the probability-flow ODE), then the denoiser (the
    samplers' last step, sigma_min -> 0). In sigma space y = x / alpha - MEAN obeys
    dy/dsigma = rate sigma (S + sigma^2)^-1 y, so y(sigma) = (S + sigma^2)^(rate/2) c, and the denoiser
    maps y to S (S + sigma^2)^-1 y."""
    evals, evecs = np.linalg.eigh(COV)
    sigma_t = float(sde.sigma(jnp.asarray(t_init)))
    y = np.asarray(x_init) / float(sde.alpha(jnp.asarray(t_init))) - MEAN
    gain = evals / (evals + sigma_min**2) * ((evals + sigma_min**2) / (evals + sigma_t**2)) ** (rate / 2)
    return MEAN + y @ evecs @ np.diag(gain) @ evecs.T


# Each solver on one SDE by default (rotating through the SDEs); every pair with -m slow.
ORDER_CASES = [pytest.param(sde_name, solver, marks=() if sde_name == list(SDES)[i % len(SDES)] else pytest.mark.slow)
               for i, solver in enumerate(SOLVERS) for sde_name in SDES]


@pytest.mark.parametrize("sde_name,solver", ORDER_CASES)
def test_solver_converges_to_the_exact_flow_map_at_its_order(x64, sde_name, solver):
    sde = SDES[sde_name]
    make, least, most, bound = SOLVERS[solver]
    data = sde_lib.gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    x_init = data.sample(jax.random.PRNGKey(7), 16, t=1.0, sde=sde, dtype=jnp.float64)
    errors = []
    for num_steps in SOLVER_STEPS.get(solver, STEPS):
        # the order at a fixed last level sigma(eps) (the default's few-step rule moves it with num_steps)
        sampler = dataclasses.replace(make(sde, num_steps), sigma_min=float(sde.sigma(jnp.asarray(1e-3))))
        x, _ = jax.jit(sampler, static_argnums=(1, 2))(jax.random.PRNGKey(0), data.score_fn(sde), x_init.shape, x_init)
        sigma_min = 0.0 if solver == "lms" else float(sde.sigma(jnp.asarray(sampler.eps)))
        rate = 1.0 + sampler.eta if isinstance(sampler, DPMSolverSDESampler) else 1.0
        target = exact_flow_map(sde, x_init, 1.0, sigma_min, rate)
        errors.append(np.sqrt(np.mean((np.asarray(x) - target) ** 2)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert errors[-1] < bound, errors
    assert np.all(ratios > least), (errors, ratios)
    if most is not None:
        assert np.all(ratios < most), (errors, ratios)


@pytest.mark.parametrize("sde_name,order", [
    pytest.param(sde_name, order, marks=() if (sde_name, order) in {("ve", 2), ("vp", 3)} else pytest.mark.slow)
    for sde_name in SDES for order in (2, 3)])
def test_dpm_solver_sde_mean_map_is_the_posterior_mean_gain(x64, sde_name, order):
    """With eta = 1 the first-order step is DDPM's posterior q(x_s | x_t, x_0 = D), whose mean is exact
    for any data (tower rule), so for Gaussian data the mean map is S (S + sigma_T^2)^-1 / alpha_T at
    any step count (measured 3e-7); a wrong decay or weight breaks it."""
    sde = SDES[sde_name]
    data = sde_lib.gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    a = data.sample(jax.random.PRNGKey(7), 16, t=1.0, sde=sde, dtype=jnp.float64)
    b = a[::-1] + 1.0
    alpha_t, sigma_t = float(sde.alpha(jnp.asarray(1.0))), float(sde.sigma(jnp.asarray(1.0)))
    gain = COV @ np.linalg.inv(COV + sigma_t**2 * np.eye(2)) / alpha_t
    run = jax.jit(DPMSolverSDESampler(sde, num_steps=12, order=order), static_argnums=(1, 2))
    out_a, _ = run(jax.random.PRNGKey(0), data.score_fn(sde), a.shape, a)
    out_b, _ = run(jax.random.PRNGKey(0), data.score_fn(sde), a.shape, b)
    difference = np.asarray(out_a) - np.asarray(out_b)
    np.testing.assert_allclose(difference, np.asarray(a - b) @ gain.T, atol=1e-4 * np.max(np.abs(difference)))
