"""Probability-flow likelihoods on exact Gaussian scores: the exact-divergence log-density equals the
closed-form log p_eps, Hutchinson's estimate is unbiased, nfe counts the real evaluations, and
bits/dim with dequantisation is right and the same for data scaled to [0, 1] or [-1, 1]."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import likelihood
from sde_lib import VESDE, VPSDE, gaussian, subVPSDE

MEAN = np.array([0.5, -1.0, 2.0])
COV = np.array([[1.0, 0.4, 0.0], [0.4, 0.5, 0.1], [0.0, 0.1, 0.3]])
SDES = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE(sigma_max=50.0)}
EPS = 1e-5


@functools.cache
def _jitted(**kwargs):
    return jax.jit(functools.partial(likelihood.log_likelihood, **kwargs), static_argnums=(1, 2))


def _solve(x, sde, score_fn, rng=None, **kwargs):
    rng = jax.random.PRNGKey(0) if rng is None else rng
    return _jitted(**kwargs)(rng, sde, score_fn, x)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "vp" else pytest.mark.slow) for n in SDES])
def test_exact_divergence_logp_matches_closed_form_log_p_eps(x64, name):
    """log p_eps(x) = log p_T(z) + int div: with the exact p_T in place of the prior, the flow's
    log-density equals the Gaussian's log p_eps(x) within 1e-3 nats/dim (in fact ~1e-6)."""
    sde = SDES[name]
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    x = data.sample(jax.random.PRNGKey(1), 8, dtype=jnp.float64)
    x = x.at[0].set(jnp.asarray(MEAN) + 3.0)  # a point in the tail
    score_fn = data.score_fn(sde)
    out = _solve(x, sde, score_fn, divergence="exact", rtol=1e-8, atol=1e-8, eps=EPS)
    exact_eps = data.log_prob(x, jnp.full((8,), EPS), sde)
    exact_T = data.log_prob(out.z, jnp.full((8,), sde.T), sde)
    delta = out.logp - out.prior_logp
    np.testing.assert_allclose((exact_T + delta - exact_eps) / 3, 0.0, atol=1e-3)
    np.testing.assert_allclose(exact_T + delta, exact_eps, atol=1e-5)
    np.testing.assert_allclose(out.prior_logp, sde.prior_logp(out.z), rtol=1e-12)
    # The model's own log-density differs from the truth only by the prior's mismatch at T.
    np.testing.assert_allclose(out.logp - exact_eps, out.prior_logp - exact_T, atol=1e-5)
    # Each example's solve has its own steps: new batch-mates (tail points in place of examples 3..7,
    # which take other steps) leave the bits/dim of examples 0..2 as they were (the compiled program is reused).
    mates = _solve(x.at[3:].set(3.0 * x[3:]), sde, score_fn, divergence="exact", rtol=1e-8, atol=1e-8, eps=EPS)
    assert np.all(np.abs(np.asarray(mates.logp - out.logp)[3:]) > 1.0)
    np.testing.assert_allclose(likelihood.bits_per_dim(mates.logp[:3], 3, 1 / 256),
                               likelihood.bits_per_dim(out.logp[:3], 3, 1 / 256), rtol=0, atol=1e-12)


@pytest.mark.slow  # the exact-divergence and bits/dim checks run by default
@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_its_standard_error(x64, probe):
    """Copies of two points, each copy with its own probe: the mean Hutchinson logp is the exact
    one within 4 standard errors, and K probes divide the variance by K."""
    sde = SDES["vp"]
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    points = jnp.asarray([MEAN + np.array([0.5, 0.0, -0.3]), MEAN - 1.0])
    copies = 400
    x = jnp.repeat(points, copies, axis=0)
    score_fn = data.score_fn(sde)
    exact = _solve(points, sde, score_fn, divergence="exact", rtol=1e-6, atol=1e-6).logp
    stds, rel_errors = [], []
    for num_probes in (1, 4):
        est = _solve(x, sde, score_fn, jax.random.PRNGKey(num_probes), divergence="hutchinson", probe=probe,
                     num_probes=num_probes, rtol=1e-6, atol=1e-6).logp.reshape(2, copies)
        std = np.std(np.asarray(est), axis=1, ddof=1)
        assert np.all(std > 1e-3)  # the estimate is random: the test has power
        np.testing.assert_array_less(np.abs(np.mean(est, axis=1) - exact), 4 * std / math.sqrt(copies))
        stds.append(std)
        # relative standard error of a sample std, sqrt((kurtosis - 1) / 4n): v^T A v is chi-square-like for
        # Gaussian probes (kurtosis up to 15), so at n = 400 it is ~9%, and a fixed 20% would be ~2 of them
        centred = np.asarray(est) - np.mean(est, axis=1, keepdims=True)
        kurtosis = np.mean(centred**4, axis=1) / np.mean(centred**2, axis=1) ** 2
        rel_errors.append(np.sqrt((kurtosis - 1) / (4 * copies)))
    # K probes divide the variance by K; a missing 1 / K (ratio 2) or shared probes (ratio 1) are far outside
    ratio_error = np.sqrt(rel_errors[0] ** 2 + rel_errors[1] ** 2)
    np.testing.assert_array_less(np.abs(stds[1] / stds[0] / 0.5 - 1), 4 * ratio_error)
    assert np.all(4 * ratio_error < 0.5)  # tight enough to tell 0.5 from 1


def test_nfe_counts_every_vector_field_evaluation():
    """nfe equals the number of score calls the solve really makes (counted on the host)."""
    sde = VPSDE()
    data = gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    calls = []

    def counting_score(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return data.score(x, t, sde)

    x = data.sample(jax.random.PRNGKey(3), 4)
    for solver in likelihood.SOLVERS:
        calls.clear()
        out = likelihood.log_likelihood(jax.random.PRNGKey(0), sde, counting_score, x, solver=solver, rtol=1e-4,
                                        atol=1e-4, num_probes=3)
        jax.block_until_ready(out.logp)
        assert int(out.nfe) == len(calls) > 10
        assert out.z.shape == x.shape and out.logp.shape == out.prior_logp.shape == (4,)


@pytest.mark.slow  # the default run changes the batch-mates at a fixed batch size (above)
def test_bits_per_dim_of_example_i_is_the_same_in_batches_of_3_and_8(x64):
    """Each example has its own adaptive solve and Hutchinson probe (`fold_in(rng, i)`), so its bits/dim
    does not depend on its batch: bit for bit in float64. (In float32 the step sizes follow rounding
    that XLA compiles per batch shape, so it agrees only to within the solver tolerance.)"""
    sde = SDES["vp"]
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    x = data.sample(jax.random.PRNGKey(2), 8, dtype=jnp.float64)
    small, large = (likelihood.bits_per_dim(likelihood.log_likelihood(jax.random.PRNGKey(0), sde, data.score_fn(sde),
                                                                      batch, rtol=1e-4, atol=1e-4).logp, 3, 1 / 256)
                    for batch in (x[:3], x))
    np.testing.assert_allclose(small, large[:3], rtol=0, atol=1e-10)
    assert np.all(np.abs(np.diff(np.asarray(large))) > 1e-3)  # different examples differ


def test_bits_per_dim_formula():
    logp = jnp.asarray([-3.0, 1.5])
    np.testing.assert_allclose(likelihood.bits_per_dim(logp, 3, 1 / 256), -logp / (3 * math.log(2)) + 8, rtol=1e-6)
    np.testing.assert_allclose(likelihood.bits_per_dim(logp, 3, 2 / 256), -logp / (3 * math.log(2)) + 7, rtol=1e-6)


def test_bits_per_dim_of_a_known_gaussian_with_dequantisation_and_either_scaling(x64):
    """8-bit data quantised from a Gaussian q (std ~ 25 bins) and dequantised: the flow's bpd
    equals the closed form -(log q + D log w) / (D ln 2) at each point, its mean is the differential
    entropy in bits/dim + 8 within Monte Carlo error, and modelling the same data scaled to
    [-1, 1] (q pushed forward by y = 2x - 1, bin width 2/256) gives the same bpd. beta_max = 40
    makes the prior N(0, I) equal p_T to ~1e-5 (alpha(T) = e^-10), so no prior mismatch blurs it."""
    sde = VPSDE(beta_max=40.0)
    mean01, cov01 = np.array([0.45, 0.6]), np.array([[0.012, 0.004], [0.004, 0.008]])
    data01 = gaussian(jnp.asarray(mean01), jnp.asarray(cov01))
    data11 = gaussian(jnp.asarray(2 * mean01 - 1), jnp.asarray(4 * cov01))
    n = 256
    k = np.clip(np.floor(np.asarray(data01.sample(jax.random.PRNGKey(4), n, dtype=jnp.float64)) * 256), 0, 255)
    noise_key = jax.random.PRNGKey(5)
    x01 = likelihood.dequantize(noise_key, jnp.asarray(k / 256), 1 / 256)
    x11 = likelihood.dequantize(noise_key, jnp.asarray(2 * k / 256 - 1), 2 / 256)
    np.testing.assert_allclose(x11, 2 * x01 - 1, atol=1e-12)
    assert np.all((x01 >= k / 256) & (x01 < (k + 1) / 256))

    kwargs = dict(divergence="exact", rtol=1e-7, atol=1e-7, eps=EPS)
    bpd01 = likelihood.bits_per_dim(_solve(x01, sde, data01.score_fn(sde), **kwargs).logp, 2, 1 / 256)
    bpd11 = likelihood.bits_per_dim(_solve(x11, sde, data11.score_fn(sde), **kwargs).logp, 2, 2 / 256)
    np.testing.assert_allclose(bpd01, likelihood.bits_per_dim(data01.log_prob(x01), 2, 1 / 256), atol=1e-3)
    np.testing.assert_allclose(bpd11, bpd01, atol=1e-3)
    entropy_bits = 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * cov01)) / (2 * np.log(2))
    stderr = np.std(bpd01) / math.sqrt(n)
    assert abs(np.mean(bpd01) - (entropy_bits + 8)) < 4 * stderr
    assert entropy_bits + 8 == pytest.approx(6.64, abs=0.01)  # the setting is what the docstring says


def test_dequantize_stays_in_each_bin():
    x = jnp.asarray(np.arange(256.0)[:, None] / 256, jnp.float32)
    out = likelihood.dequantize(jax.random.PRNGKey(0), x, 1 / 256)
    assert out.dtype == x.dtype
    assert np.all((out >= x) & (out <= x + 1 / 256)) and np.std(np.asarray(out - x)) * 256 == pytest.approx(
        1 / math.sqrt(12), rel=0.2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"divergence": "trace"}, "unknown divergence 'trace'"),
    ({"probe": "sphere"}, "unknown probe 'sphere'"),
    ({"num_probes": 0}, "num_probes must be >= 1"),
    ({"solver": "euler"}, "unknown solver 'euler'"),
    ({"eps": 0.0}, r"eps must lie in \(0, T=1.0\)"),
])
def test_log_likelihood_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        likelihood.log_likelihood(jax.random.PRNGKey(0), VPSDE(), lambda x, t: -x, jnp.zeros((2, 3)), **kwargs)


def test_bits_per_dim_and_dequantize_reject_bad_arguments():
    with pytest.raises(ValueError, match="num_dims must be >= 1"):
        likelihood.bits_per_dim(jnp.zeros(2), 0, 1 / 256)
    with pytest.raises(ValueError, match="bin_width must be positive"):
        likelihood.bits_per_dim(jnp.zeros(2), 3, 0.0)
    with pytest.raises(ValueError, match="bin_width must be positive"):
        likelihood.dequantize(jax.random.PRNGKey(0), jnp.zeros(2), -1.0)


def test_a_solve_that_hits_max_steps_is_reported_not_raised():
    data = gaussian(jnp.zeros(2), jnp.eye(2) * 0.01)
    x = jnp.ones((3, 2)) * 0.1
    run = functools.partial(likelihood.log_likelihood, jax.random.PRNGKey(0), VPSDE(), data.score_fn(VPSDE()), x,
                            divergence="exact", rtol=1e-6, atol=1e-6)
    assert not np.asarray(run(max_steps=3).solved).any()
    full = run(max_steps=4096)
    assert np.asarray(full.solved).all() and np.isfinite(np.asarray(full.logp)).all()
