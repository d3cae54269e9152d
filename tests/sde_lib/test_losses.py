"""Continuous denoising score matching (`DSMLoss`) on Gaussian data, where the exact score is
known under every SDE.

For x_0 ~ N(mu, S) and x_t = alpha x_0 + std z, C_t = alpha^2 S + std^2 I, the exact score
s = -C_t^{-1} (x_t - alpha mu) gives E|std s + z|^2 = d - std^2 tr(C_t^{-1}), the minimum over
all score functions; scaling s by (1 + delta) adds exactly delta^2 std^2 tr(C_t^{-1}). With
likelihood weighting both are multiplied by g^2 / std^2, and t ~ U(eps, T) averages them.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib

MEAN = np.array([0.8, -1.5, 0.3, 2.0])
VAR = np.array([0.25, 1.0, 2.5, 0.6])
EVENT_SHAPE = (2, 2)
D = MEAN.size
N = 1 << 15
Z_MAX = 5.0
DELTA = 0.25

SDES = [sde_lib.VPSDE(), sde_lib.subVPSDE(), sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0)]


def _data():
    return sde_lib.gaussian(jnp.asarray(MEAN), jnp.diag(jnp.asarray(VAR)), event_shape=EVENT_SHAPE)


def _time_average(fn, eps, T, nodes=400):
    """(1 / (T - eps)) int_eps^T fn(t) dt by Gauss-Legendre in log t (smooth even for 1/t)."""
    u, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = np.log(eps), np.log(T)
    log_t = 0.5 * (hi - lo) * u + 0.5 * (hi + lo)
    t = np.exp(log_t)
    return float(np.sum(0.5 * (hi - lo) * w * t * fn(t))) / (T - eps)


def _analytic(sde, eps, likelihood_weighting):
    """Expected loss at the exact score and the extra expected loss per delta^2."""

    @jax.jit
    def per_t(t):
        alpha, std = sde.alpha(t), sde.marginal_std(t)
        trace = jnp.sum(1.0 / (alpha[:, None] ** 2 * VAR[None] + std[:, None] ** 2), axis=1)
        weight = sde.sde(jnp.zeros((t.size, 1), t.dtype), t)[1] ** 2 / std**2 if likelihood_weighting else 1.0
        return weight * (D - std**2 * trace), weight * std**2 * trace

    minimum = _time_average(lambda t: np.asarray(per_t(jnp.asarray(t))[0]), eps, sde.T)
    excess = _time_average(lambda t: np.asarray(per_t(jnp.asarray(t))[1]), eps, sde.T)
    return minimum, excess


def _exact_score(sde, y, t):
    """-(y - alpha mu) / (alpha^2 VAR + std^2): the score of the diagonal Gaussian at time t.

    Written elementwise rather than through `closed_form` (batched LAPACK solves), whose 32k-example
    float64 programs were seen to deadlock XLA's CPU runtime."""
    alpha, std = sde.alpha(t)[:, None, None], sde.marginal_std(t)[:, None, None]
    mean, var = MEAN.reshape((1,) + EVENT_SHAPE), VAR.reshape((1,) + EVENT_SHAPE)
    return -(y - alpha * mean) / (alpha**2 * var + std**2)


@functools.partial(jax.jit, static_argnums=(0,))
def _per_example(loss, x, rng, scale):
    return loss(lambda y, t: scale * _exact_score(loss.sde, y, t), x, rng)


def _check_minimum_and_curvature(loss, minimum, excess, x, rng):
    base = np.asarray(_per_example(loss, x, rng, 1.0))
    se = base.std() / np.sqrt(N)
    assert abs(base.mean() - minimum) < Z_MAX * se, (base.mean(), minimum, se)
    # The estimate is sharp enough that a 10% error in the expected loss would be seen (uniform-t
    # likelihood weighting, the noisiest case, resolves about 6.5%; importance sampling about 1%).
    assert Z_MAX * se < 0.1 * minimum
    for delta in (-DELTA, DELTA):
        # Common random numbers: same data, t and noise, so the difference is sharp.
        diff = np.asarray(_per_example(loss, x, rng, 1.0 + delta)) - base
        se_diff = diff.std() / np.sqrt(N)
        assert diff.mean() > Z_MAX * se_diff, (delta, diff.mean(), se_diff)
        assert abs(diff.mean() - delta**2 * excess) < Z_MAX * se_diff, (delta, diff.mean(), delta**2 * excess)
    return base


WEIGHTINGS = {"unweighted": (False, False, 1e-5), "unweighted-eps0.1": (False, False, 0.1),
              "likelihood": (True, False, 0.05), "likelihood-importance": (True, True, 0.05)}
# Each case compiles its own loss (about 4 s). By default importance sampling on every SDE (each has
# its own closed-form density of t) and each other weighting on one SDE; all twelve with -m slow.
DEFAULT_LOSS_CASES = {("unweighted", "VPSDE"), ("unweighted-eps0.1", "VESDE"), ("likelihood", "subVPSDE")}


@pytest.mark.parametrize(("sde", "likelihood_weighting", "importance_sampling", "eps"), [
    pytest.param(sde, *weighting, id=f"{name}-{sde!r}",
                 marks=() if name == "likelihood-importance" or (name, type(sde).__name__) in DEFAULT_LOSS_CASES
                 else pytest.mark.slow)
    for name, weighting in WEIGHTINGS.items() for sde in SDES])
def test_dsm_loss_is_minimised_by_the_exact_score(x64, sde, likelihood_weighting, importance_sampling, eps):
    data_key, loss_key = jax.random.split(jax.random.key(0))
    x = _data().sample(data_key, N, dtype=jnp.float64)
    minimum, excess = _analytic(sde, eps, likelihood_weighting)
    summed = sde_lib.DSMLoss(sde, reduce_mean=False, likelihood_weighting=likelihood_weighting,
                             importance_sampling=importance_sampling, eps=eps)
    base = _check_minimum_and_curvature(summed, minimum, excess, x, loss_key)
    averaged = sde_lib.DSMLoss(sde, reduce_mean=True, likelihood_weighting=likelihood_weighting,
                               importance_sampling=importance_sampling, eps=eps)
    np.testing.assert_allclose(np.asarray(_per_example(averaged, x, loss_key, 1.0)) * D, base, rtol=1e-12)
    _check_minimum_and_curvature(averaged, minimum / D, excess / D, x, loss_key)


def test_dsm_loss_rejects_importance_sampling_without_likelihood_weighting():
    with pytest.raises(ValueError, match="importance_sampling"):
        sde_lib.DSMLoss(sde_lib.VPSDE(), importance_sampling=True)
    with pytest.raises(ValueError, match="eps"):
        sde_lib.DSMLoss(sde_lib.VPSDE(), eps=0.0)


def test_dsm_loss_gradient_flows_to_score_parameters():
    """The loss is differentiable in the model: d/dc of loss(c * exact score) vanishes at c = 1."""
    sde = sde_lib.VPSDE()
    data = _data()
    x = data.sample(jax.random.key(3), 4096)
    loss = sde_lib.DSMLoss(sde)

    def mean_loss(c):
        return jnp.mean(loss(lambda y, t: c * data.score(y, t, sde), x, jax.random.key(4)))

    grads = jax.jit(jax.vmap(jax.grad(mean_loss)))(jnp.array([0.5, 1.0, 1.5]))
    assert grads.dtype == jnp.float32
    assert grads[0] < 0 < grads[2]
    assert abs(grads[1]) < 0.1 * min(-grads[0], grads[2])
