"""Inpainting and colorization by replacement with exact Gaussian scores: the known region comes back
exactly, the filled region has the exact conditional (Schur complement) moments when the unknown
block is independent of the known one (where replacement is exact), for correlated blocks it lands on
the replacement method's own (biased) continuous-time limit, and the filled region is the denoised
mean, not the noisy chain."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import sde_lib
from samplers.inpainting import LUMA_WEIGHTS, colorize, decoupling_matrix, inpaint, moment_matched_score_fn
from samplers.pc import PCSampler

SDES = {"vp": sde_lib.VPSDE(), "ve": sde_lib.VESDE(sigma_max=20.0)}


def one_sde_by_default(default):
    """The SDE names, all but `default` marked slow: sampling checks alternate their default SDE."""
    return [pytest.param(n, marks=() if n == default else pytest.mark.slow) for n in SDES]
MEAN = np.array([0.5, -1.0, 2.0, 1.0, -0.5])
UNKNOWN_COV = np.array([[1.0, 0.5, -0.2], [0.5, 0.6, 0.1], [-0.2, 0.1, 0.4]])
COV = np.zeros((5, 5))
COV[:2, :2] = [[0.8, 0.3], [0.3, 0.5]]
COV[2:, 2:] = UNKNOWN_COV  # the known block {0, 1} is independent of the unknown block {2, 3, 4}
MASK = np.array([1.0, 1.0, 0.0, 0.0, 0.0])


def conditional(mean, cov, known_idx, y):
    """Exact Gaussian conditional of the other coordinates given x[known_idx] = y (Schur complement)."""
    u = np.setdiff1d(np.arange(mean.size), known_idx)
    gain = cov[np.ix_(u, known_idx)] @ np.linalg.inv(cov[np.ix_(known_idx, known_idx)])
    return mean[u] + gain @ (y - mean[known_idx]), cov[np.ix_(u, u)] - gain @ cov[np.ix_(known_idx, u)]


def assert_moments(x, mean, cov, allowance):
    n = x.shape[0]
    chol = np.linalg.cholesky(cov)
    y = np.linalg.solve(chol, (np.asarray(x, np.float64) - mean).T).T
    assert np.abs(y.mean(0)).max() < 4 / np.sqrt(n) + allowance, f"mean error {np.abs(y.mean(0)).max():.3f}"
    cov_err = np.abs(np.cov(y.T) - np.eye(mean.size)).max()
    assert cov_err < 4 * np.sqrt(2 / n) + allowance, f"covariance error {cov_err:.3f}"


@pytest.mark.parametrize("name", one_sde_by_default("vp"))
def test_inpainting_gives_the_exact_conditional_and_keeps_the_known_region(name):
    sde = SDES[name]
    data = sde_lib.gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32))
    n = 2000
    y = np.array([1.5, -2.0, 0.0, 0.0, 0.0], np.float32)  # known values off the mean; the rest unread
    known = jnp.broadcast_to(jnp.asarray(y), (n, 5))
    sampler = PCSampler(sde, "reverse_diffusion", "none", num_steps=100)
    x, nfe = inpaint(jax.random.key(0), data.score_fn(sde), known, jnp.asarray(MASK, jnp.float32), sampler)
    assert nfe == 100
    np.testing.assert_array_equal(x[:, :2], known[:, :2])
    cond_mean, cond_cov = conditional(MEAN, COV, np.array([0, 1]), y[:2].astype(np.float64))
    assert_moments(x[:, 2:], cond_mean, cond_cov, 0.05)


@pytest.mark.parametrize("name", one_sde_by_default("ve"))
def test_filled_region_is_the_tweedie_mean_of_the_chain_at_eps_not_the_noisy_chain(x64, name):
    sde = SDES[name]
    data = sde_lib.gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
    n, steps, eps = 500, 30, 1e-2
    known = jnp.broadcast_to(jnp.asarray(MEAN), (n, 5))
    mask = jnp.asarray(MASK)
    # the `none` predictor's last step is the identity: denoise=False returns the chain at eps
    run = {d: inpaint(jax.random.key(1), data.score_fn(sde), known, mask,
                      PCSampler(sde, "none", "langevin", num_steps=steps, eps=eps, denoise=d)) for d in (False, True)}
    (x_eps, nfe_raw), (clean, nfe) = run[False], run[True]
    assert (nfe_raw, nfe) == (steps, steps + 1)
    np.testing.assert_array_equal(clean[:, :2], known[:, :2])
    # The unknown block is independent of the known one, so its posterior mean given x_eps involves
    # it alone: m + alpha C (alpha^2 C + s^2 I)^{-1} (x_eps - alpha m).
    t = jnp.asarray(eps)
    alpha, s2 = float(sde.alpha(t)), float(sde.marginal_std(t)) ** 2
    gain = alpha * UNKNOWN_COV @ np.linalg.inv(alpha**2 * UNKNOWN_COV + s2 * np.eye(3))
    expected = MEAN[2:] + (np.asarray(x_eps[:, 2:]) - alpha * MEAN[2:]) @ gain.T
    assert np.abs(np.asarray(clean[:, 2:]) - np.asarray(x_eps[:, 2:])).max() > 1e-3
    np.testing.assert_allclose(clean[:, 2:], expected, rtol=1e-10, atol=1e-10)


@dataclasses.dataclass
class UnhashableScore:
    """A non-frozen dataclass with __call__: unhashable, so not a jit static argument as is."""

    score_fn: object

    def __call__(self, x, t):
        return self.score_fn(x, t)


def test_unhashable_score_callable_inpaints_like_the_plain_function():
    sde = SDES["vp"]
    score_fn = sde_lib.gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(COV, jnp.float32)).score_fn(sde)
    known = jnp.broadcast_to(jnp.asarray(MEAN, jnp.float32), (8, 5))
    sampler = PCSampler(sde, "reverse_diffusion", "langevin", num_steps=30)
    expected, _ = inpaint(jax.random.key(0), score_fn, known, jnp.asarray(MASK), sampler)
    got, nfe = inpaint(jax.random.key(0), UnhashableScore(score_fn), known, jnp.asarray(MASK), sampler)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert nfe == sampler.nfe


def test_decoupling_matrix_is_orthogonal_with_the_gray_direction_first(x64):
    M = decoupling_matrix(LUMA_WEIGHTS)
    np.testing.assert_allclose(M @ M.T, np.eye(3), atol=1e-12)
    w = np.asarray(LUMA_WEIGHTS)
    np.testing.assert_allclose(M[:, 0], w / np.linalg.norm(w), atol=1e-12)
    with pytest.raises(ValueError, match="gray weights"):
        decoupling_matrix([0.0, 0.0, 0.0])


@pytest.mark.parametrize("name", one_sde_by_default("ve"))
def test_colorization_gives_the_exact_conditional_given_the_gray_level(name):
    sde = SDES[name]
    M = decoupling_matrix(LUMA_WEIGHTS)
    w = np.asarray(LUMA_WEIGHTS)
    # colour covariance with the gray direction independent of the chroma plane, chroma anisotropic
    cov = M @ np.array([[0.6, 0.0, 0.0], [0.0, 0.5, 0.2], [0.0, 0.2, 0.3]]) @ M.T
    mean = np.array([0.3, -0.2, 0.5])
    data = sde_lib.gaussian(jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32))
    n, g = 2000, 1.0
    gray = jnp.full((n, 1), g, jnp.float32)
    sampler = PCSampler(sde, "reverse_diffusion", "none", num_steps=100)
    x, nfe = colorize(jax.random.key(2), data.score_fn(sde), gray, sampler)
    assert x.shape == (n, 3) and nfe == 100
    np.testing.assert_allclose(np.asarray(x) @ w, g, atol=1e-5)
    # x | w.x = g: mean + cov w (g - w.mean) / (w cov w), cov - cov w w cov / (w cov w); rank 2
    cw = cov @ w
    cond_mean = mean + cw * (g - w @ mean) / (w @ cw)
    cond_cov = cov - np.outer(cw, cw) / (w @ cw)
    chroma = M[:, 1:]  # compare in the 2-D chroma coordinates, where the conditional is non-degenerate
    assert_moments(np.asarray(x, np.float64) @ chroma, cond_mean @ chroma, chroma.T @ cond_cov @ chroma, 0.05)


def test_inpainting_rejects_non_pc_samplers_bad_masks_and_wrong_score_shapes():
    sde = SDES["vp"]
    known = jnp.zeros((4, 5))
    with pytest.raises(TypeError, match="PC chain"):
        inpaint(jax.random.key(0), lambda x, t: x, known, jnp.asarray(MASK), object())
    with pytest.raises(ValueError, match="does not broadcast"):
        inpaint(jax.random.key(0), lambda x, t: x, known, jnp.ones(3), PCSampler(sde, num_steps=30))
    with pytest.raises(ValueError, match=r"shaped like x, \(4, 5\), but returned shape \(4,\)"):
        inpaint(jax.random.key(0), lambda x, t: x.sum(-1), known, jnp.asarray(MASK), PCSampler(sde, num_steps=30))


CORR_MEAN = np.array([1.0, -0.5, 2.0, 0.3])
CORR_COV = np.array([[0.5, 0.2, -0.1, -0.3], [0.2, 0.9, -0.2, -0.3], [-0.1, -0.2, 0.8, 0.6], [-0.3, -0.3, 0.6, 2.0]])
CORR_Y = np.array([0.5, 0.2])


def replacement_limit_moments(sde, mean, cov, known_idx, y, eps=1e-3):
    """Mean and covariance of the unknown block that replacement converges to as the step count grows
    (VE, reverse SDE): the fresh noise of the replaced values averages out, so the unknown block
    follows the linear SDE dx_u = -g^2 s_u(x_u, y) dt + g dw with s the joint score at x_k = y."""
    u = np.setdiff1d(np.arange(mean.size), known_idx)
    log_ratio = np.log(sde.sigma_max / sde.sigma_min)

    def rhs(t, state):
        m, C = state[:u.size], state[u.size:].reshape(u.size, u.size)
        s2 = (sde.sigma_min * np.exp(t * log_ratio)) ** 2
        g2 = 2 * s2 * log_ratio
        P = np.linalg.inv(cov + s2 * np.eye(mean.size))
        score = -P[np.ix_(u, u)] @ (m - mean[u]) - P[np.ix_(u, known_idx)] @ (y - mean[known_idx])
        # dt < 0: d/dt of the reverse-time moments is minus the forward-in-tau rate
        dC = g2 * (P[np.ix_(u, u)] @ C + C @ P[np.ix_(u, u)]) - g2 * np.eye(u.size)
        return np.concatenate([-g2 * score, dC.ravel()])

    start = np.concatenate([np.zeros(u.size), (sde.sigma_max**2 * np.eye(u.size)).ravel()])
    sol = solve_ivp(rhs, (1.0, eps), start, rtol=1e-9, atol=1e-9)
    return sol.y[:u.size, -1], sol.y[u.size:, -1].reshape(u.size, u.size)


def test_replacement_with_correlated_blocks_converges_to_its_biased_limit_not_the_conditional():
    """Documents the limitation stated in the module docstring: replacement conditions on the noisy
    known values, so for correlated blocks it lands on a predictable, biased Gaussian."""
    sde = SDES["ve"]
    mean, cov, y = CORR_MEAN, CORR_COV, CORR_Y
    data = sde_lib.gaussian(jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32))
    n = 2000
    known = jnp.broadcast_to(jnp.asarray(np.concatenate([y, [0.0, 0.0]]), jnp.float32), (n, 4))
    sampler = PCSampler(sde, "euler_maruyama", "none", num_steps=200)
    x, _ = inpaint(jax.random.key(3), data.score_fn(sde), known, jnp.asarray([1.0, 1.0, 0.0, 0.0]), sampler)
    limit_mean, limit_cov = replacement_limit_moments(sde, mean, cov, np.array([0, 1]), y)
    cond_mean, _ = conditional(mean, cov, np.array([0, 1]), y)
    assert_moments(x[:, 2:], limit_mean, limit_cov, 0.05)
    # ... and that limit is off the exact conditional mean (0.095 here; correlations up to 0.5)
    assert np.abs(limit_mean - cond_mean).max() > 0.05


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_moment_matched_score_is_the_exact_conditional_score_for_gaussian_data(x64, name):
    sde = {"subvp": sde_lib.subVPSDE()}.get(name) or SDES[name]
    data = sde_lib.gaussian(jnp.asarray(CORR_MEAN), jnp.asarray(CORR_COV))
    cond_mean, cond_cov = conditional(CORR_MEAN, CORR_COV, np.array([0, 1]), CORR_Y)
    # x_0 | y is N(full_mean, full_cov), degenerate on the known block; its p_t is exact in closed form
    full_mean = np.concatenate([CORR_Y, cond_mean])
    full_cov = np.zeros((4, 4))
    full_cov[2:, 2:] = cond_cov
    posterior = sde_lib.gaussian(jnp.asarray(full_mean), jnp.asarray(full_cov))
    known = jnp.broadcast_to(jnp.asarray(np.concatenate([CORR_Y, [9.0, 9.0]])), (8, 4))  # unknown part unread
    score = moment_matched_score_fn(sde, data.score_fn(sde), known, np.array([1.0, 1.0, 0.0, 0.0]))
    x = jax.random.normal(jax.random.key(4), (8, 4), jnp.float64)
    t = jnp.linspace(0.05, 1.0, 8)
    np.testing.assert_allclose(score(x, t), posterior.score(x, t, sde), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", one_sde_by_default("vp"))
def test_sampling_with_the_moment_matched_score_gives_the_exact_conditional_for_correlated_blocks(name):
    sde = SDES[name]
    data = sde_lib.gaussian(jnp.asarray(CORR_MEAN, jnp.float32), jnp.asarray(CORR_COV, jnp.float32))
    n = 2000
    known = jnp.broadcast_to(jnp.asarray(np.concatenate([CORR_Y, [0.0, 0.0]]), jnp.float32), (n, 4))
    score = moment_matched_score_fn(sde, data.score_fn(sde), known, np.array([1.0, 1.0, 0.0, 0.0]))
    x, _ = PCSampler(sde, "euler_maruyama", "none", num_steps=500)(jax.random.key(5), score, (n, 4))
    cond_mean, cond_cov = conditional(CORR_MEAN, CORR_COV, np.array([0, 1]), CORR_Y)
    assert_moments(x[:, 2:], cond_mean, cond_cov, 0.05)
    np.testing.assert_allclose(x[:, :2], np.broadcast_to(CORR_Y, (n, 2)), atol=0.1)  # pinned up to s(eps) noise


@pytest.mark.parametrize("name", one_sde_by_default("ve"))
def test_inpaint_moment_matched_gives_the_exact_conditional_with_a_fast_deterministic_sampler(name):
    from samplers.dpm_solver import DPMSolverPPSampler

    sde = SDES[name]
    data = sde_lib.gaussian(jnp.asarray(CORR_MEAN, jnp.float32), jnp.asarray(CORR_COV, jnp.float32))
    n = 4000
    known = jnp.broadcast_to(jnp.asarray(np.concatenate([CORR_Y, [0.0, 0.0]]), jnp.float32), (n, 4))
    mask = np.array([1.0, 1.0, 0.0, 0.0])
    x, nfe = inpaint(jax.random.key(6), data.score_fn(sde), known, mask, DPMSolverPPSampler(sde, num_steps=30),
                     method="moment_matched")
    cond_mean, cond_cov = conditional(CORR_MEAN, CORR_COV, np.array([0, 1]), CORR_Y)
    assert_moments(x[:, 2:], cond_mean, cond_cov, 0.03)  # where replacement is off by 0.095 in the mean
    np.testing.assert_array_equal(np.asarray(x[:, :2]), np.broadcast_to(CORR_Y.astype(np.float32), (n, 2)))
    assert nfe == 30 * (1 + 2)
    with pytest.raises(ValueError, match="unknown inpainting method 'exact'; known: replacement, moment_matched"):
        inpaint(jax.random.key(6), data.score_fn(sde), known, mask, DPMSolverPPSampler(sde), method="exact")
