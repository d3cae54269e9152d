"""Input checks and numerics shared by every sigma-space solver (`samplers.sigma_schedule`): the score's
shape, a sigma_min above the start level, float64 under x64, and the few-step sigma_min rule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.edm_heun import EDMHeunSampler
from samplers.ipndm import IPNDMSampler
from samplers.lms import LMSSampler
from samplers.sigma_schedule import few_step_sigma_min
from samplers.unipc import UniPCSampler

SOLVERS = [EDMHeunSampler, DDIMSampler, DPMSolverPPSampler, LMSSampler, IPNDMSampler, UniPCSampler,
           DPMSolverSDESampler]
DATA = sde_lib.gaussian(jnp.zeros((2,)), jnp.eye(2))


@pytest.mark.parametrize("make", SOLVERS)
def test_a_score_of_the_wrong_shape_is_named(make):
    """A [B, 1] score for [B, 2] data used to broadcast silently."""
    sampler = make(sde_lib.VPSDE(), num_steps=3)
    with pytest.raises(ValueError, match=r"shaped like x, \(1, 2\) .*, but returned shape \(1, 1\)"):
        sampler(jax.random.PRNGKey(0), lambda x, t: x[:, :1], (4, 2))


@pytest.mark.parametrize("make", SOLVERS)
def test_sigma_min_above_the_start_level_is_refused(make):
    """sigma_min above sigma(T) gave samples of std 0.01 (NaN for DDIM); above a concrete t_init's level too."""
    with pytest.raises(ValueError, match=r"sigma_min \(200.0\) must be below the start level 15"):
        make(sde_lib.VPSDE(), sigma_min=200.0)
    with pytest.raises(ValueError, match=r"sigma_min \(60.0\) must be below the start level 50"):
        make(sde_lib.VESDE(), sigma_min=60.0)
    sampler = make(sde_lib.VESDE(), sigma_min=1.0, num_steps=3)
    with pytest.raises(ValueError, match=r"sigma_min \(1.0\) must be below the start noise level 0.1"):
        sampler(jax.random.PRNGKey(0), DATA.score_fn(sampler.sde), (2, 2), x_init=jnp.zeros((2, 2)),
                t_init=float(sampler.sde.t_of_sigma(jnp.asarray(0.1))))


@pytest.mark.parametrize("make", [EDMHeunSampler, DDIMSampler, DPMSolverPPSampler])
def test_with_x64_the_solvers_run_in_float64(make):
    """Their prior draw was float32 whatever the x64 setting."""
    with jax.enable_x64(True):
        sampler = make(sde_lib.VESDE(), num_steps=2)
        x, _ = sampler(jax.random.PRNGKey(0), DATA.score_fn(sampler.sde), (3, 2))
        assert x.dtype == jnp.float64


def test_few_step_sigma_min_balances_truncation_and_discretisation():
    """The rule sigma_data c_k m^(-k/2): higher for few steps and low order, scaled by the data, and under
    every SDE's sigma(eps) floor by 100 levels for order >= 2 (so the default then matches sigma(eps))."""
    assert few_step_sigma_min(5, 2, 0.5) > few_step_sigma_min(10, 2, 0.5) > few_step_sigma_min(20, 2, 0.5)
    assert few_step_sigma_min(10, 3, 0.5) < few_step_sigma_min(10, 2, 0.5)
    assert few_step_sigma_min(10, 2, 1.0) == pytest.approx(2 * few_step_sigma_min(10, 2, 0.5))
    assert 0.05 < few_step_sigma_min(10, 2, 0.5) < 0.3
    sampler = DPMSolverPPSampler(sde_lib.VESDE(sigma_min=0.002, sigma_max=80.0), num_steps=10)
    x, sigmas, _ = _setup(sampler)
    np.testing.assert_allclose(sigmas[-2], few_step_sigma_min(10, 2, 0.5), rtol=1e-6)
    np.testing.assert_allclose(sigmas[0], 80.0, rtol=1e-6)
    x, sigmas, _ = _setup(DPMSolverPPSampler(sampler.sde, sigma_min=0.01, num_steps=10))
    np.testing.assert_allclose(sigmas[-2], 0.01, rtol=1e-6)


def _setup(sampler):
    """The levels built in a sampler's body (one example, `[n + 1, 1]`), checked against the host's
    float64 ones (`host_sigmas`, the batch's common start)."""
    from samplers.sigma_schedule import host_sigmas, sigma_space_setup

    x, sigmas, denoiser = sigma_space_setup(sampler, jax.random.PRNGKey(0), DATA.score_fn(sampler.sde), (2,),
                                            (None, None), None, sampler.num_steps, sampler.order)
    host = host_sigmas(sampler, None, None, sampler.num_steps, sampler.order)
    np.testing.assert_allclose(sigmas[:, 0], host, rtol=1e-5)
    return x, sigmas, denoiser


def test_run_on_another_solvers_schedule_is_that_solver():
    """`run` with the host schedule of a solver that differs only in its levels (a sigma_min / rho sweep,
    scripts/benchmark_samplers.py) gives that solver's samples from this one's compiled program."""
    sde = sde_lib.VESDE()
    base = IPNDMSampler(sde, num_steps=4)
    other = IPNDMSampler(sde, num_steps=4, sigma_min=0.3, rho=3.0)
    x_init = jax.random.normal(jax.random.PRNGKey(1), (3, 2)) * 50.0
    score_fn = DATA.score_fn(sde)
    expected, _ = other(jax.random.PRNGKey(0), score_fn, (3, 2), x_init=x_init)
    got, nfe = base.run(jax.random.PRNGKey(0), score_fn, (3, 2), x_init, None, other.host_schedule(x_init, None))
    assert nfe == 4
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-6)
    default, _ = base(jax.random.PRNGKey(0), score_fn, (3, 2), x_init=x_init)
    assert not np.allclose(np.asarray(default), np.asarray(expected), atol=1e-3)
