"""DDIM and DPM-Solver++ follow the exact probability flow of Gaussian data with their orders of
convergence: halving the step (in their own noise schedule) divides the error by about 2 for DDIM
(first order, Song et al. 2021a), 4 for the 2M
multistep and at least 8 for 3M (Lu et al. 2022b). A solver that lost an order, e.g. a 2M whose
correction term had a wrong coefficient, converges at the lower rate and fails."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler

MEAN = np.array([1.0, -0.5])
COV = np.array([[0.5, 0.2], [0.2, 0.3]])
SDES = {"vp": sde_lib.VPSDE(), "subvp": sde_lib.subVPSDE(), "ve": sde_lib.VESDE()}
STEPS = (32, 64)  # in the asymptotic range for all three (2M is not yet at 8 -> 16)
SOLVERS = {  # name: (sampler for a number of steps, least error ratio per halving, most, final error bound)
    "ddim": (lambda sde, n: DDIMSampler(sde, num_steps=n), 1.8, 2.2, 0.03),
    "dpm_solver_2m": (lambda sde, n: DPMSolverPPSampler(sde, num_steps=n, order=2), 3.5, None, 3e-3),
    "dpm_solver_3m": (lambda sde, n: DPMSolverPPSampler(sde, num_steps=n, order=3), 6.0, None, 2e-4),
}


def exact_flow_map(sde, x_init, t_init, sigma_min):
    """The exact probability-flow map of N(MEAN, COV) from (x_init, t_init) to sigma_min, then the
    denoiser (the samplers' last step, sigma_min -> 0). In sigma space y = x / alpha - MEAN obeys
    dy/dsigma = sigma (S + sigma^2)^-1 y, so y(sigma) = (S + sigma^2)^(1/2) c, and the denoiser maps y
    to S (S + sigma^2)^-1 y."""
    evals, evecs = np.linalg.eigh(COV)
    sigma_t = float(sde.sigma(jnp.asarray(t_init)))
    y = np.asarray(x_init) / float(sde.alpha(jnp.asarray(t_init))) - MEAN
    gain = evals / np.sqrt((evals + sigma_min**2) * (evals + sigma_t**2))
    return MEAN + y @ evecs @ np.diag(gain) @ evecs.T


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_converges_to_the_exact_flow_map_at_its_order(x64, sde_name, solver):
    sde = SDES[sde_name]
    make, least, most, bound = SOLVERS[solver]
    data = sde_lib.gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    x_init = data.sample(jax.random.PRNGKey(7), 16, t=1.0, sde=sde)
    errors = []
    for num_steps in STEPS:
        sampler = make(sde, num_steps)
        x, _ = jax.jit(sampler, static_argnums=(1, 2))(jax.random.PRNGKey(0), data.score_fn(sde), x_init.shape, x_init)
        target = exact_flow_map(sde, x_init, 1.0, float(sde.sigma(jnp.asarray(sampler.eps))))
        errors.append(np.sqrt(np.mean((np.asarray(x) - target) ** 2)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert errors[-1] < bound, errors
    assert np.all(ratios > least), (errors, ratios)
    if most is not None:
        assert np.all(ratios < most), (errors, ratios)
