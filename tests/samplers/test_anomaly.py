"""Anomaly scores: exact AUROC, ranking, the denoising-error score against its Gaussian closed form,
and the NLL score ordering points exactly as the true log-density."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.anomaly import auroc, denoising_error, nll_bits_per_dim, rank_anomalies
from sde_lib import VESDE, VPSDE, gaussian

MEAN = np.array([0.5, -1.0, 2.0])
COV = np.array([[1.0, 0.4, 0.0], [0.4, 0.5, 0.1], [0.0, 0.1, 0.3]])


def _brute_force_auroc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_pair_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    scores = rng.integers(0, 6, n).astype(np.float32)  # few values: many ties
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    assert auroc(scores, labels) == pytest.approx(_brute_force_auroc(scores, labels), abs=1e-12)


def test_auroc_extremes_and_bad_input():
    scores = np.arange(10.0)
    labels = (scores >= 6).astype(int)
    assert auroc(scores, labels) == 1.0
    assert auroc(-scores, labels) == 0.0
    assert auroc(np.zeros(10), labels) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        auroc(scores, np.ones(10))
    with pytest.raises(ValueError, match=r"must both be \[n\]"):
        auroc(scores, labels[:5])


def test_rank_anomalies_orders_highest_first_and_keeps_ties_stable():
    order = rank_anomalies(jnp.array([0.1, 3.0, 0.5, 3.0, -1.0]))
    np.testing.assert_array_equal(order, [1, 3, 2, 0, 4])


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_max=10.0)], ids=["vp", "ve"])
def test_denoising_error_matches_gaussian_closed_form(x64, sde):
    """E_z |s score(alpha x + s z) + z|^2 / d = [s^2 alpha^2 |C^-1 (x - mu)|^2 + tr((I - s^2 C^-1)^2)] / d,
    with C = alpha^2 Sigma + s^2 I, for the exact score of N(mu, Sigma)."""
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    x = jnp.asarray([MEAN, MEAN + 2.0, MEAN - np.array([0.0, 1.0, 3.0])])
    times = (0.05, 0.3)
    got = denoising_error(jax.random.PRNGKey(0), sde, data.score_fn(sde), x, times=times, num_draws=20000)
    expected = np.zeros(3)
    for t in times:
        alpha = float(sde.alpha(jnp.asarray(t)))
        s = float(sde.marginal_std(jnp.asarray(t)))
        c_inv = np.linalg.inv(alpha**2 * COV + s**2 * np.eye(3))
        m = np.eye(3) - s**2 * c_inv
        quad = s**2 * alpha**2 * np.sum(((np.asarray(x) - MEAN) @ c_inv) ** 2, axis=1)
        expected += (quad + np.trace(m @ m)) / 3 / len(times)
    np.testing.assert_allclose(got, expected, rtol=0.03)


@pytest.mark.slow
def test_denoising_error_is_independent_of_batch_and_separates_outliers():
    sde = VPSDE()
    data = gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    inliers = data.sample(jax.random.PRNGKey(1), 64)
    outliers = MEAN + 3.0 * (data.sample(jax.random.PRNGKey(2), 64) - MEAN)
    x = jnp.concatenate([inliers, outliers])
    key = jax.random.PRNGKey(3)
    scores = denoising_error(key, sde, data.score_fn(sde), x)
    np.testing.assert_allclose(denoising_error(key, sde, data.score_fn(sde), x[60:70]), scores[60:70], rtol=1e-5)
    labels = np.r_[np.zeros(64), np.ones(64)]
    assert auroc(scores, labels) > 0.9


def test_denoising_error_rejects_times_outside_the_process():
    with pytest.raises(ValueError, match="times must lie"):
        denoising_error(jax.random.PRNGKey(0), VPSDE(), lambda x, t: x, jnp.zeros((2, 3)), times=(0.0, 0.5))


@pytest.mark.parametrize("sde", [pytest.param(VPSDE(), marks=pytest.mark.slow), VESDE(sigma_max=50.0)], ids=["vp", "ve"])
def test_nll_orders_points_exactly_as_the_true_log_density(x64, sde):
    """Points at Mahalanobis radii 0.2 ... 3.5 in random directions: ranking by the flow's NLL (exact
    divergence) is the ranking by the closed-form log p_eps, and the NLL is -log2 p / D."""
    data = gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(16, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = rng.permutation(np.linspace(0.2, 3.5, 16))
    x = jnp.asarray(MEAN + (radii[:, None] * directions) @ np.linalg.cholesky(COV).T)
    eps = 1e-5
    nll = nll_bits_per_dim(jax.random.PRNGKey(0), sde, data.score_fn(sde), x, divergence="exact", eps=eps,
                           rtol=1e-6, atol=1e-6)
    true_logp = data.log_prob(x, jnp.full((16,), eps), sde)
    np.testing.assert_array_equal(rank_anomalies(nll), rank_anomalies(-true_logp))
    # equal up to the prior's mismatch with p_T (< 0.1 bits/dim here); a wrong ln 2 or D would be ~1
    np.testing.assert_allclose(nll, -true_logp / (3 * np.log(2)), atol=0.1)
    discrete = nll_bits_per_dim(jax.random.PRNGKey(0), sde, data.score_fn(sde), x, bin_width=2 / 256,
                                divergence="exact", eps=eps, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(discrete - nll, 7.0, atol=1e-9)
