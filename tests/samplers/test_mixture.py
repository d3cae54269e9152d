"""Every sampler reproduces a 2-D Gaussian mixture from its exact scores, under VP, sub-VP and VE.

Closeness is the sliced 2-Wasserstein distance (`samplers.sample_distance`) between N sampler
outputs and N exact samples. At N = 4000 that distance is dominated by Monte Carlo noise (mostly
the multinomial spread of the points over well-separated modes), so the bound is set from the
exact-vs-exact distance at the same N: 1.5 times its 95% quantile over independent pairs.
The fast sigma-space solvers (EDM Heun at 35 evaluations, DPM-Solver++(2M) at 20) reach that bound,
while Euler's method on the same probability-flow ODE at the same evaluations does not (VE, where
the flow is hardest for uniform time steps) and needs several times more.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.edm_heun import EDMHeunSampler
from samplers.ode import ODESampler
from samplers.pc import PCSampler
from samplers.sample_distance import sliced_wasserstein

# Four well-separated, anisotropic (two of them rotated) components with unequal weights.
MIXTURE = sde_lib.GaussianMixture(
    jnp.array([0.4, 0.3, 0.2, 0.1]),
    jnp.array([[-2.5, 0.5], [2.0, 2.0], [0.0, -2.5], [3.0, -1.0]]),
    jnp.array([[[0.5, 0.3], [0.3, 0.3]], [[0.1, 0.0], [0.0, 0.6]],
               [[0.4, -0.15], [-0.15, 0.1]], [[0.05, 0.0], [0.0, 0.05]]]),
)
N = 4000
NOISE_PAIRS = 16
PROJECTIONS = 64  # plenty in 2-D, and sorting them is most of the cost on CPU
SDES = {"vp": sde_lib.VPSDE(), "subvp": sde_lib.subVPSDE(), "ve": sde_lib.VESDE()}
PROJECTION_KEY = jax.random.key(2)
EXACT = MIXTURE.sample(jax.random.key(1), N)


@functools.cache
def sw_bound() -> float:
    """1.5 x the 95% quantile of the exact-vs-exact sliced W2 at N samples (about 0.21 here)."""
    keys = jax.random.split(jax.random.key(100), (NOISE_PAIRS, 2))

    @jax.jit
    def noise(pair):
        a, b = MIXTURE.sample(pair[0], N), MIXTURE.sample(pair[1], N)
        return sliced_wasserstein(PROJECTION_KEY, a, b, PROJECTIONS)

    return 1.5 * float(np.quantile([float(noise(pair)) for pair in keys], 0.95))


@functools.cache
def distance_to_exact(sampler, score_scale: float = 1.0) -> tuple[float, int]:
    """Sliced W2 between N samples of `sampler` (started from its prior) and N exact samples; nfe.
    The scale is a traced argument: a scaled score compiles the same program as the exact one (the
    persistent compilation cache then serves it)."""
    score_fn = MIXTURE.score_fn(sampler.sde)

    @jax.jit
    def run(rng, scale):
        x, nfe = sampler(rng, lambda x, t: scale * score_fn(x, t), (N, 2))
        return sliced_wasserstein(PROJECTION_KEY, x, EXACT, PROJECTIONS), nfe

    distance, nfe = run(jax.random.key(0), jnp.float32(score_scale))
    return float(distance), int(nfe)


def test_bound_sits_above_exact_sample_noise_and_has_power():
    bound = sw_bound()
    assert 0.1 < bound < 0.35, bound
    # A score 25% too small (a wrong coefficient) leaves samples too wide: the bound catches it.
    distance, _ = distance_to_exact(DPMSolverPPSampler(SDES["vp"], num_steps=20), score_scale=0.75)
    assert distance > bound, (distance, bound)


PC_CONFIGS = [(name, predictor) for name in SDES
              for predictor in ("euler_maruyama", "reverse_diffusion", "ancestral_sampling")
              # ancestral sampling is defined for the VP (DDPM) and VE (SMLD) chains only
              if not (name == "subvp" and predictor == "ancestral_sampling")]


# The default run covers every predictor and every SDE once; all pairs run with -m slow.
DEFAULT_PC = {("vp", "reverse_diffusion"), ("subvp", "euler_maruyama"), ("ve", "ancestral_sampling")}


@pytest.mark.parametrize("name,predictor", [
    pytest.param(*case, marks=() if case in DEFAULT_PC else pytest.mark.slow) for case in PC_CONFIGS])
def test_pc_with_langevin_corrector_reaches_exact_mixture(name, predictor):
    distance, nfe = distance_to_exact(PCSampler(SDES[name], predictor, "langevin", num_steps=50))
    assert nfe == 100
    assert distance < sw_bound(), distance


FAST_SAMPLERS = {
    "ode_tsit5": lambda sde: ODESampler(sde, rtol=1e-4, atol=1e-4),
    "edm_heun_35": lambda sde: EDMHeunSampler(sde, num_steps=18),
    "ddim_50": lambda sde: DDIMSampler(sde, num_steps=50),
    "dpm_solver_2m_20": lambda sde: DPMSolverPPSampler(sde, num_steps=20, order=2),
}


# Every sampler on one SDE by default (rotating through the SDEs), all pairs with -m slow.
FAST_CASES = [pytest.param(name, sampler, marks=() if name == list(SDES)[i % len(SDES)] else pytest.mark.slow)
              for i, sampler in enumerate(FAST_SAMPLERS) for name in SDES]


@pytest.mark.parametrize("name,sampler", FAST_CASES)
def test_ode_and_sigma_space_samplers_reach_exact_mixture(name, sampler):
    distance, _ = distance_to_exact(FAST_SAMPLERS[sampler](SDES[name]))
    assert distance < sw_bound(), distance


STOCHASTIC_SAMPLERS = {
    "ddim_eta1_50": lambda sde: DDIMSampler(sde, num_steps=50, eta=1.0),
    "edm_heun_churn_63": lambda sde: EDMHeunSampler(sde, num_steps=32, S_churn=20.0),
}


@pytest.mark.parametrize("name,sampler", [
    pytest.param("vp", "ddim_eta1_50", marks=pytest.mark.slow),
    pytest.param("subvp", "ddim_eta1_50", marks=pytest.mark.slow),
    ("ve", "ddim_eta1_50"), ("vp", "edm_heun_churn_63")])
def test_stochastic_sigma_space_samplers_reach_exact_mixture(name, sampler):
    # DDIM with eta = 1 (ancestral) and EDM Heun with churn inject fresh noise at every step.
    distance, _ = distance_to_exact(STOCHASTIC_SAMPLERS[sampler](SDES[name]))
    assert distance < sw_bound(), distance


@pytest.mark.slow
def test_fast_solvers_reach_the_bound_where_euler_at_equal_nfe_does_not():
    sde, bound = SDES["ve"], sw_bound()
    heun, heun_nfe = distance_to_exact(EDMHeunSampler(sde, num_steps=18))
    dpm, dpm_nfe = distance_to_exact(DPMSolverPPSampler(sde, num_steps=20, order=2))
    assert (heun_nfe, dpm_nfe) == (35, 20)
    assert heun < bound and dpm < bound, (heun, dpm, bound)
    # probability-flow Euler in uniform time steps, the same ODE with the same prior
    for nfe in (heun_nfe, dpm_nfe):
        euler, euler_nfe = distance_to_exact(ODESampler(sde, "euler", num_steps=nfe))
        assert euler_nfe == nfe and euler > bound, (nfe, euler, bound)
    euler_many, _ = distance_to_exact(ODESampler(sde, "euler", num_steps=200))
    assert euler_many < bound, euler_many
