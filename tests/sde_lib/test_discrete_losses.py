"""The discrete DDPM and SMLD losses and the EDM loss on Gaussian data, where every exact optimum
is known: each loss, evaluated with the exact score (or denoiser) of the discrete marginals, equals
its analytic minimum, and a score off by a factor (1 + delta) raises it by the exact excess."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib

MEAN = np.array([0.8, -1.5, 0.3, 2.0])
VAR = np.array([0.25, 1.0, 2.5, 0.6])
N = 1 << 15
Z_MAX = 5.0
DELTA = 0.3


def _data(key):
    return MEAN[None] + np.sqrt(VAR)[None] * jax.random.normal(key, (N, MEAN.size), jnp.float64)


def _index(sde, t):
    """The discrete step the losses call the score at: t_i = i T / (N - 1)."""
    return jnp.round(t * (sde.N - 1) / sde.T).astype(jnp.int32)


def _ddpm_score(sde, scale):
    def score_fn(x, t):
        abar = jnp.asarray(sde.alphas_cumprod)[_index(sde, t)][:, None]
        return -scale * (x - jnp.sqrt(abar) * MEAN[None]) / (abar * VAR[None] + 1.0 - abar)

    return score_fn


def _smld_score(sde, scale):
    def score_fn(x, t):
        sigma = jnp.asarray(sde.discrete_sigmas)[_index(sde, t)][:, None]
        return -scale * (x - MEAN[None]) / (VAR[None] + sigma**2)

    return score_fn


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _per_example(loss, make_score, x, scale, rng):
    return loss(make_score(loss.sde, scale), x, rng)


def _check(loss, make_score, noise_var, x, rng):
    """`noise_var = (signal, noise)`, both `[steps]`: step i sees sqrt(signal_i) x + sqrt(noise_i) z,
    so the error per dimension at the exact score is 1 - noise_i / (signal_i VAR + noise_i)."""
    signal_var, noise = noise_var
    ratio = noise[:, None] / (signal_var[:, None] * VAR[None] + noise[:, None])  # [steps, d]
    minimum = float(np.mean(np.sum(1.0 - ratio, axis=1)))
    excess = float(np.mean(np.sum(ratio, axis=1)))
    base = np.asarray(_per_example(loss, make_score, x, 1.0, rng))
    se = base.std() / np.sqrt(N)
    assert abs(base.mean() - minimum) < Z_MAX * se, (base.mean(), minimum, se)
    assert Z_MAX * se < 0.05 * minimum
    for delta in (-DELTA, DELTA):
        diff = np.asarray(_per_example(loss, make_score, x, 1.0 + delta, rng)) - base
        se_diff = diff.std() / np.sqrt(N)
        assert diff.mean() > Z_MAX * se_diff
        assert abs(diff.mean() - delta**2 * excess) < Z_MAX * se_diff, (delta, diff.mean(), delta**2 * excess)


def test_ddpm_loss_is_minimised_by_the_exact_discrete_score(x64):
    sde = sde_lib.VPSDE()
    data_key, loss_key = jax.random.split(jax.random.key(0))
    abar = np.asarray(sde.alphas_cumprod)
    # x_i = sqrt(abar) x + sqrt(1 - abar) z: error per dim 1 - (1 - abar) / (abar VAR + 1 - abar)
    _check(sde_lib.DDPMLoss(sde, reduce_mean=False), _ddpm_score, (abar, 1.0 - abar), _data(data_key), loss_key)


def test_smld_loss_is_minimised_by_the_exact_discrete_score(x64):
    sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0)
    data_key, loss_key = jax.random.split(jax.random.key(1))
    sigmas = np.asarray(sde.discrete_sigmas)
    _check(sde_lib.SMLDLoss(sde, reduce_mean=False), _smld_score, (np.ones_like(sigmas), sigmas**2), _data(data_key), loss_key)


def test_edm_loss_is_minimised_by_the_wiener_denoiser(x64):
    """lambda(sigma) E|D - x|^2 at the exact denoiser is lambda(sigma) sum_d VAR sigma^2 / (VAR + sigma^2),
    averaged over ln sigma ~ N(P_mean, P_std^2) (Gauss-Hermite)."""
    loss = sde_lib.EDMLoss()
    data_key, loss_key = jax.random.split(jax.random.key(2))
    x = _data(data_key)

    def denoiser(scale):
        def fn(x_hat, sigma):
            gain = VAR[None] / (VAR[None] + sigma[:, None] ** 2)
            return MEAN[None] + scale * gain * (x_hat - MEAN[None])
        return fn

    run = jax.jit(lambda scale: loss(denoiser(scale), x, loss_key))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    sigma = np.exp(loss.P_mean + loss.P_std * nodes)
    per_sigma = np.asarray(loss.weight(jnp.asarray(sigma)))[:, None] * VAR[None] * sigma[:, None] ** 2 / (
        VAR[None] + sigma[:, None] ** 2)
    minimum = float(np.sum(weights * per_sigma.sum(axis=1)) / np.sqrt(2 * np.pi))
    base = np.asarray(run(1.0))
    se = base.std() / np.sqrt(N)
    assert abs(base.mean() - minimum) < Z_MAX * se, (base.mean(), minimum, se)
    assert Z_MAX * se < 0.05 * minimum
    for delta in (-DELTA, DELTA):
        diff = np.asarray(run(1.0 + delta)) - base
        assert diff.mean() > Z_MAX * diff.std() / np.sqrt(N), delta


@pytest.mark.parametrize("bad", ["vp_for_smld", "ve_for_ddpm"])
def test_discrete_losses_need_their_chain(bad):
    with pytest.raises((TypeError, AttributeError, ValueError)):
        if bad == "vp_for_smld":
            sde_lib.SMLDLoss(sde_lib.VPSDE())(lambda x, t: x, jnp.ones((2, 2)), jax.random.key(0))
        else:
            sde_lib.DDPMLoss(sde_lib.VESDE())(lambda x, t: x, jnp.ones((2, 2)), jax.random.key(0))
