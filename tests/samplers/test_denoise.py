"""Denoising: Tweedie's one-step posterior mean is the Wiener filter; posterior sampling matches the
exact Gaussian posterior; the noise-level estimator recovers sigma."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.ald import AnnealedLangevinSampler
from samplers.denoise import (
    estimate_noise_level,
    noise_time,
    posterior_denoise,
    posterior_sampler,
    resolve_sampler,
    tweedie_denoise,
)
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.edit import sdedit
from samplers.edm_heun import EDMHeunSampler
from samplers.pc import PCSampler
from sde_lib import VESDE, VPSDE, gaussian, subVPSDE

MEAN = np.array([0.5, -1.0, 2.0])
COV = np.array([[1.0, 0.4, 0.0], [0.4, 0.5, 0.1], [0.0, 0.1, 0.3]])
SDES = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE(sigma_max=20.0)}


def _wiener(y, sigma):
    """Posterior mean of N(mu, S) observed as y = x + sigma n: mu + S (S + sigma^2 I)^-1 (y - mu)."""
    out = []
    for yi, si in zip(y, sigma, strict=True):
        out.append(MEAN + COV @ np.linalg.solve(COV + si**2 * np.eye(3), yi - MEAN))
    return np.stack(out)


@pytest.mark.parametrize("name", list(SDES))
def test_tweedie_denoising_equals_wiener_filter(x64, name):
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    sigma = np.array([0.05, 0.3, 1.0, 4.0])
    x = data.sample(jax.random.PRNGKey(0), 4, dtype=jnp.float64)
    y = x + jnp.asarray(sigma)[:, None] * jax.random.normal(jax.random.PRNGKey(1), x.shape, jnp.float64)
    got = tweedie_denoise(sde, data.score_fn(sde), y, jnp.asarray(sigma))
    np.testing.assert_allclose(got, _wiener(np.asarray(y), sigma), rtol=1e-9, atol=1e-9)


def test_noise_time_inverts_sigma_and_rejects_unrepresentable_levels(x64):
    for sde in SDES.values():
        t = jnp.asarray([0.1, 0.5, 0.9])
        np.testing.assert_allclose(noise_time(sde, sde.sigma(t)), t, rtol=1e-10)
    with pytest.raises(ValueError, match="outside the range"):
        noise_time(VESDE(sigma_min=0.01, sigma_max=50.0), 60.0)
    with pytest.raises(ValueError, match="outside the range"):
        noise_time(VESDE(sigma_min=0.01, sigma_max=50.0), 0.001)
    with pytest.raises(ValueError, match="outside the range"):
        noise_time(VPSDE(), 0.0)


def test_estimate_noise_level_recovers_sigma_on_smooth_images():
    rows, cols = jnp.meshgrid(jnp.linspace(-1, 1, 64), jnp.linspace(-1, 1, 64), indexing="ij")
    clean = jnp.broadcast_to((0.5 * jnp.sin(2 * rows) + 0.3 * cols)[None, :, :, None], (3, 64, 64, 1))
    sigma = jnp.asarray([0.05, 0.2, 0.5])
    y = clean + sigma[:, None, None, None] * jax.random.normal(jax.random.PRNGKey(0), clean.shape)
    np.testing.assert_allclose(estimate_noise_level(y), sigma, rtol=0.06)
    with pytest.raises(ValueError, match="at least 2 entries"):
        estimate_noise_level(jnp.zeros((2, 1, 5, 1)))


@pytest.mark.parametrize("name,predictor,steps", [
    # every predictor and both SDEs by default; VE Euler-Maruyama and VP reverse diffusion with -m slow
    ("vp", "euler_maruyama", 200), pytest.param("ve", "euler_maruyama", 200, marks=pytest.mark.slow),
    # discrete chains from t* < T (their chain is matched to the grid from t*)
    pytest.param("vp", "reverse_diffusion", 100, marks=pytest.mark.slow), ("ve", "reverse_diffusion", 100),
    ("vp", "ancestral_sampling", 100)])
def test_posterior_sampling_reproduces_exact_posterior_moments(name, predictor, steps):
    """x | y ~ N(mu + S (S + s^2 I)^-1 (y - mu), S - S (S + s^2 I)^-1 S) for x ~ N(mu, S), y = x + s n."""
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    sigma, n = 0.7, 4000
    y_point = np.array([1.5, -0.2, 1.0])
    y = jnp.broadcast_to(jnp.asarray(y_point, jnp.float32), (n, 3))
    sampler = PCSampler(sde, predictor=predictor, corrector="none", num_steps=steps)
    samples, nfe = posterior_denoise(jax.random.PRNGKey(4), sampler, data.score_fn(sde), y, sigma)
    gain = COV @ np.linalg.inv(COV + sigma**2 * np.eye(3))
    post_mean, post_cov = MEAN + gain @ (y_point - MEAN), COV - gain @ COV
    samples = np.asarray(samples, np.float64)
    se = np.sqrt(np.diag(post_cov) / n)
    np.testing.assert_array_less(np.abs(samples.mean(0) - post_mean), 4 * se + 0.01)
    # Monte Carlo (~2.2% of a variance at n = 4000) plus the discretisation bias
    np.testing.assert_allclose(np.cov(samples.T), post_cov, atol=0.1 * np.max(np.diag(post_cov)))
    assert nfe == steps


def test_posterior_denoise_rejects_per_example_sigma_and_resolves_names():
    sampler = resolve_sampler("pc", VPSDE(), predictor="euler_maruyama", corrector="none", num_steps=10)
    assert isinstance(sampler, PCSampler) and sampler.num_steps == 10
    with pytest.raises(ValueError, match="one noise level"):
        posterior_denoise(jax.random.PRNGKey(0), sampler, lambda x, t: -x, jnp.zeros((2, 3)), jnp.ones(2))
    with pytest.raises(KeyError, match="unknown sampler"):
        resolve_sampler("nope", VPSDE())


def _scalar_posterior_problem():
    """N(0, 1) data observed as y = 1 with noise 0.5: the posterior is N(0.8, 0.2)."""
    data = gaussian(jnp.zeros((1,)), jnp.ones((1, 1)))
    return data, jnp.ones((4000, 1))


@pytest.mark.parametrize("sampler", [
    PCSampler(VESDE(sigma_max=20.0), "reverse_diffusion", "langevin", num_steps=100),
    EDMHeunSampler(VPSDE(), num_steps=10, S_churn=10.0),
    AnnealedLangevinSampler(VESDE(sigma_max=20.0)),
], ids=["pc_langevin", "edm_churn", "ald"])
def test_posterior_paths_refuse_samplers_that_target_the_marginal(sampler):
    """A Langevin corrector / churn samples p_t, not p(x_t | y): the chain would return the prior
    N(0, 1) (mean -0.015, var 1.016 measured for the PC chain), so posterior_denoise and sdedit refuse."""
    data, y = _scalar_posterior_problem()
    score_fn = data.score_fn(sampler.sde)
    with pytest.raises(ValueError, match="targets p_t, not p\\(x_t \\| y\\)"):
        posterior_denoise(jax.random.PRNGKey(0), sampler, score_fn, y, 0.5)
    with pytest.raises(ValueError, match="SDEdit cannot use"):
        sdedit(jax.random.PRNGKey(0), sampler, score_fn, y, 0.3)


def test_default_posterior_sampler_drops_the_langevin_corrector_and_samples_the_posterior(x64):
    """The PC default (reverse diffusion + Langevin, the VE family's) becomes posterior-correct; the
    reverse-SDE solver DPM-Solver++(2M) SDE samples N(0.8, 0.2) as well."""
    sde = VESDE(sigma_max=20.0)
    data, y = _scalar_posterior_problem()
    pc = posterior_sampler(PCSampler(sde, num_steps=100))
    assert pc.corrector == "none" and pc.predictor == "reverse_diffusion"
    with pytest.raises(ValueError, match="annealed Langevin"):
        posterior_sampler(AnnealedLangevinSampler(sde))
    for sampler in (pc, DPMSolverSDESampler(sde, num_steps=20)):
        samples, _ = posterior_denoise(jax.random.PRNGKey(3), sampler, data.score_fn(sde), y, 0.5)
        samples = np.asarray(samples)[:, 0]
        assert abs(samples.mean() - 0.8) < 4 * np.sqrt(0.2 / y.shape[0]) + 0.01, samples.mean()
        assert abs(samples.var() - 0.2) < 0.02, samples.var()
