"""Predictor-corrector sampling with exact scores reproduces known distributions."""
import dataclasses
import functools
import textwrap
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import samplers
import sde_lib
from samplers import common
from samplers.common import as_score_fn
from samplers.ode import ODESampler
from samplers.pc import PCSampler
from samplers.sample_distance import sliced_wasserstein

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[1.5, 0.4], [0.4, 0.3]])
GAUSS = sde_lib.gaussian(MEAN, COV)
MIXTURE = sde_lib.GaussianMixture(
    jnp.array([0.5, 0.3, 0.2]),
    jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
    jnp.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]], [[0.1, 0.0], [0.0, 0.1]]]),
)


def make_sde(name, n):
    return {"vp": sde_lib.VPSDE(N=n), "subvp": sde_lib.subVPSDE(N=n),
            "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0, N=n)}[name]


def whitened_errors(x):
    """Errors of the sample mean and covariance in units where the data are N(0, I)."""
    chol = np.linalg.cholesky(np.asarray(COV))
    y = np.linalg.solve(chol, (np.asarray(x, np.float64) - np.asarray(MEAN)).T).T
    return np.abs(y.mean(0)).max(), np.abs(np.cov(y.T) - np.eye(2)).max()


def _times(score_fn, scale, x, t):
    return scale * score_fn(x, t)


def scalable(score_fn):
    """`scaled(s)`: `score_fn` times s, with s a traced argument, so that the exact score (s = 1,
    the same samples) and a deliberately wrong one share one compiled chain."""
    times = functools.partial(_times, score_fn)  # one static callable for every s
    return lambda s: Partial(times, jnp.float32(s))


def assert_gaussian_moments(x, allowance, cov_allowance=None):
    # Monte Carlo: 4 standard errors (mean 1/sqrt(n), covariance up to sqrt(2/n) when whitened),
    # plus the sampler's own bias.
    n = x.shape[0]
    cov_allowance = allowance if cov_allowance is None else cov_allowance
    mean_err, cov_err = whitened_errors(x)
    assert mean_err < 4 / np.sqrt(n) + allowance, f"mean error {mean_err:.3f}"
    assert cov_err < 4 * np.sqrt(2 / n) + cov_allowance, f"covariance error {cov_err:.3f}"


N_GAUSS = 5000
CONFIGS = [  # (sde, predictor, corrector, samples, covariance allowance); 100 steps
    # Measured covariance errors (3 seeds), exact score vs score x 1.1: langevin at n = 20000
    # 0.03-0.045 vs 0.08-0.11 (snr = 0.16 unadjusted Langevin has a few % stationary bias); at
    # n = 10000 euler_maruyama and VP ancestral <= 0.033 vs >= 0.144, VE ancestral 0.05-0.07 vs >= 0.21.
    ("vp", "reverse_diffusion", "langevin", 20000, 0.02),
    ("subvp", "reverse_diffusion", "langevin", 20000, 0.02),
    ("ve", "reverse_diffusion", "langevin", 20000, 0.02),
    ("vp", "euler_maruyama", "none", 10000, 0.02),
    ("subvp", "euler_maruyama", "none", 10000, 0.02),
    ("ve", "euler_maruyama", "none", 10000, 0.02),
    ("vp", "ancestral_sampling", "none", 10000, 0.02),
    ("ve", "ancestral_sampling", "none", 10000, 0.04),
]
MEAN_ALLOWANCE = 0.04  # 100-step discretisation bias of the mean (up to ~0.05 measured, VP / sub-VP)


# Every SDE and every predictor once by default; all configurations with -m slow.
DEFAULT_CONFIGS = {("vp", "reverse_diffusion"), ("subvp", "euler_maruyama"), ("ve", "ancestral_sampling")}


def by_default_if(condition, *values):
    return pytest.param(*values, marks=() if condition else pytest.mark.slow)


@pytest.mark.parametrize("name,predictor,corrector,n,cov_allowance",
                         [by_default_if(c[:2] in DEFAULT_CONFIGS, *c) for c in CONFIGS])
def test_pc_reproduces_gaussian_mean_and_covariance_and_rejects_a_score_ten_percent_off(
        name, predictor, corrector, n, cov_allowance):
    sde = make_sde(name, 100)
    scaled = scalable(GAUSS.score_fn(sde))
    sampler = PCSampler(sde, predictor, corrector)
    x, nfe = sampler(jax.random.key(0), scaled(1.0), (n, 2))
    assert nfe == 100 * (2 if corrector == "langevin" else 1)
    assert_gaussian_moments(x, MEAN_ALLOWANCE, cov_allowance)
    # the tolerance has power: a score 10% too large contracts the covariance beyond it
    wrong, _ = sampler(jax.random.key(0), scaled(1.1), (n, 2))
    with pytest.raises(AssertionError, match="covariance"):
        assert_gaussian_moments(wrong, MEAN_ALLOWANCE, cov_allowance)


def test_probability_flow_predictor_is_deterministic_and_reproduces_gaussian():
    sde = make_sde("vp", 100)
    sampler = PCSampler(sde, "euler_maruyama", "none", probability_flow=True)
    x_init = sde.prior_sampling(jax.random.key(3), (N_GAUSS, 2))
    a, _ = sampler(jax.random.key(0), GAUSS.score_fn(sde), (N_GAUSS, 2), x_init=x_init)
    b, _ = sampler(jax.random.key(1), GAUSS.score_fn(sde), (N_GAUSS, 2), x_init=x_init)
    np.testing.assert_array_equal(a, b)
    assert_gaussian_moments(a, 0.04)


@pytest.mark.parametrize("name,predictor", [by_default_if(c in {("vp", "ancestral_sampling"), ("subvp", "reverse_diffusion"),
                                                               ("ve", "euler_maruyama")}, *c) for c in [
    ("vp", "euler_maruyama"), ("subvp", "euler_maruyama"), ("ve", "euler_maruyama"),
    ("vp", "reverse_diffusion"), ("subvp", "reverse_diffusion"), ("ve", "reverse_diffusion"),
    ("vp", "ancestral_sampling"), ("ve", "ancestral_sampling")]])
def test_starting_from_exact_marginal_at_t_init_reaches_data(name, predictor):
    # The discrete chains (reverse_diffusion, ancestral_sampling) must take one chain step per grid
    # interval of [eps, t_init]; with the chain of N = num_steps (step T / N, twice the grid's here)
    # they over-denoised: mean error 0.41 (VP) and 1.0 (sub-VP), covariance error 0.29 (VE ancestral).
    sde = make_sde(name, 100)
    x_init = GAUSS.sample(jax.random.key(4), N_GAUSS, t=0.5, sde=sde)
    x, nfe = PCSampler(sde, predictor, "none")(jax.random.key(0), GAUSS.score_fn(sde), (N_GAUSS, 2),
                                              x_init=x_init, t_init=0.5)
    assert nfe == 100
    assert_gaussian_moments(x, 0.04)


@pytest.mark.parametrize("predictor", ["reverse_diffusion", "ancestral_sampling"])
@pytest.mark.parametrize("t_init", [0.5, 0.37, 0.9, 0.9999, 0.25])
@pytest.mark.parametrize("steps", [pytest.param(30, marks=pytest.mark.slow), 100, pytest.param(200, marks=pytest.mark.slow)])
def test_discrete_chain_from_t_init_visits_each_step_once(predictor, t_init, steps):
    # the float32 grid the sampler runs on, mapped to the chain's step indices as the predictors do
    sampler = PCSampler(make_sde("ve", 1000), predictor, "none", num_steps=steps)
    chain = dataclasses.replace(sampler.sde, N=sampler.chain_size(t_init))
    grid = jnp.linspace(jnp.float32(t_init), jnp.float32(sampler.eps), steps)
    np.testing.assert_array_equal(chain.timestep_index(grid), np.arange(steps - 1, -1, -1))
    # its first step starts within one chain step below t_init, and its step matches the grid's
    chain_step, grid_step = sampler.sde.T / (chain.N - 1), (t_init - sampler.eps) / (steps - 1)
    assert -1e-4 * chain_step <= t_init - (steps - 1) * chain_step < chain_step
    assert abs(chain_step - grid_step) <= (grid_step + sampler.eps) / (steps - 1)


def test_t_init_equal_to_T_keeps_the_chain_of_num_steps_even_under_jit():
    # training.sampling passes t_init=sde.T (a Python float) inside its own jit
    sde = make_sde("vp", 50)
    sampler = PCSampler(sde, "reverse_diffusion", "langevin")
    x_init = sde.prior_sampling(jax.random.key(1), (16, 2))
    expected, _ = sampler(jax.random.key(0), GAUSS.score_fn(sde), (16, 2), x_init=x_init)
    got = jax.jit(lambda key, x: sampler(key, GAUSS.score_fn(sde), (16, 2), x_init=x, t_init=sde.T)[0])(
        jax.random.key(0), x_init)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert sampler.chain_size(sde.T) == sampler.chain_size(None) == 50


def test_traced_or_unusable_t_init_is_a_clear_error_for_the_discrete_chains():
    sde = make_sde("ve", 100)
    score_fn = GAUSS.score_fn(sde)
    x_init = jnp.zeros((4, 2))

    def run(sampler, t_init):
        return sampler(jax.random.key(0), score_fn, (4, 2), x_init=x_init, t_init=t_init)[0]

    for predictor in ("reverse_diffusion", "ancestral_sampling"):
        sampler = PCSampler(sde, predictor, "none")
        with pytest.raises(ValueError, match="t_init is a traced value.*euler_maruyama"):
            jax.jit(functools.partial(run, sampler))(0.5)
        with pytest.raises(ValueError, match="no discrete chain matches num_steps=100"):
            run(sampler, 0.05)  # grid step (0.05 - eps) / 99 is below eps
        with pytest.raises(ValueError, match=r"t_init must lie in \(eps, T\]"):
            run(sampler, 1.5)
    # Euler-Maruyama uses dt itself: a traced t_init is fine
    assert jax.jit(lambda t: run(PCSampler(sde, "euler_maruyama", "none"), t))(0.5).shape == (4, 2)


N_MIX = 4000
SW_BOUND = 0.15  # exact-vs-exact sliced W2 at n = 4000 is about 0.07-0.12; a 20% score error gives > 0.18


# VE at 100 steps sits at the bound (sliced W2 0.15-0.20 over keys; 0.145 at 400 steps since
# per-example noise): a known open question, kept with -m slow.
@pytest.mark.parametrize("name", [by_default_if(n == "vp", n) for n in ("vp", "subvp", "ve")])
def test_pc_mixture_samples_are_close_to_exact_samples(name):
    sde = make_sde(name, 100)
    scaled = scalable(MIXTURE.score_fn(sde))
    sampler = PCSampler(sde, "reverse_diffusion", "langevin")
    x, _ = sampler(jax.random.key(0), scaled(1.0), (N_MIX, 2))
    exact = MIXTURE.sample(jax.random.key(1), N_MIX)
    assert float(sliced_wasserstein(jax.random.key(2), x, exact)) < SW_BOUND
    if name == "vp":  # the bound has power: a score scaled by 0.8 fails it
        wrong, _ = sampler(jax.random.key(0), scaled(0.8), (N_MIX, 2))
        assert float(sliced_wasserstein(jax.random.key(2), wrong, exact)) > SW_BOUND


def _count_score_calls(sampler, shape):
    counter = np.zeros((), np.int64)
    score_fn = GAUSS.score_fn(sampler.sde)

    def counting(x, t):
        # a host callback runs once per evaluation on device (not for the abstract shape check)
        jax.debug.callback(lambda: np.add(counter, 1, out=counter))
        return score_fn(x, t)

    _, nfe = sampler(jax.random.key(0), counting, shape)
    jax.effects_barrier()
    return int(counter), nfe


NFE_CASES = [("reverse_diffusion", "langevin", 1), ("euler_maruyama", "langevin", 3), ("none", "ald", 2),
             ("ancestral_sampling", "none", 4), ("euler_maruyama", "none", 1), ("none", "none", 1)]


# Each case compiles a chain: by default every predictor and corrector once, denoising on every
# other case (with and without a predictor); every case both ways with -m slow.
@pytest.mark.parametrize("predictor,corrector,n_steps,denoise", [
    by_default_if(i % 2 == denoise, *case, denoise) for i, case in enumerate(NFE_CASES) for denoise in (False, True)])
def test_nfe_equals_counted_score_evaluations(predictor, corrector, n_steps, denoise):
    # VE: two steps are a valid chain there (on VP the discrete beta would exceed 1, see below)
    sampler = PCSampler(make_sde("ve", 1000), predictor, corrector, n_steps_each=n_steps, num_steps=2, denoise=denoise)
    counted, nfe = _count_score_calls(sampler, (3, 2))
    predictor_nfe = int(predictor != "none")
    # the Tweedie step (1 evaluation) takes the place of the last predictor step
    assert nfe == counted == 2 * (predictor_nfe + (corrector != "none") * n_steps) + denoise * (1 - predictor_nfe)


@pytest.mark.parametrize("predictor,corrector", [("reverse_diffusion", "none"), ("euler_maruyama", "langevin"),
                                                 ("ancestral_sampling", "none")])
def test_too_few_steps_for_the_discrete_vp_chain_fail_clearly_instead_of_nan(predictor, corrector):
    with pytest.raises(ValueError, match="num_steps=19 is too few.*discrete beta reaches 1.05"):
        PCSampler(make_sde("vp", 1000), predictor, corrector, num_steps=19)
    PCSampler(make_sde("vp", 1000), predictor, corrector, num_steps=21)
    PCSampler(make_sde("vp", 1000), "euler_maruyama", "none", num_steps=19)


def tweedie_posterior_mean(sde, x_t, t):
    """E[x_0 | x_t] for x_0 ~ N(MEAN, COV), x_t = alpha x_0 + s z: m + alpha C (alpha^2 C + s^2 I)^{-1} (x_t - alpha m)."""
    alpha = float(sde.alpha(jnp.asarray(t, jnp.float64)))
    s2 = float(sde.marginal_std(jnp.asarray(t, jnp.float64))) ** 2
    mean, cov = np.asarray(MEAN, np.float64), np.asarray(COV, np.float64)
    gain = alpha * cov @ np.linalg.inv(alpha**2 * cov + s2 * np.eye(2))
    return mean + (np.asarray(x_t) - alpha * mean) @ gain.T


@pytest.mark.parametrize("name", [by_default_if(n == "vp", n) for n in ("vp", "subvp", "ve")])
def test_denoise_is_the_tweedie_posterior_mean_of_the_sample_at_eps(x64, name):
    # With the `none` predictor the chain's last step (eps -> 0) is the identity, so denoise=False
    # returns x_eps itself, after Langevin steps at every grid time down to eps; denoise=True must
    # return E[x_0 | x_eps] of the same chain (same keys), one score evaluation more.
    sde = make_sde(name, 100)
    score_fn = sde_lib.gaussian(jnp.asarray(MEAN, jnp.float64), jnp.asarray(COV, jnp.float64)).score_fn(sde)
    kwargs = dict(predictor="none", corrector="langevin", n_steps_each=2, num_steps=25, eps=1e-2)
    x_eps, nfe_raw = PCSampler(sde, denoise=False, **kwargs)(jax.random.key(0), score_fn, (64, 2))
    clean, nfe = PCSampler(sde, denoise=True, **kwargs)(jax.random.key(0), score_fn, (64, 2))
    assert (nfe_raw, nfe) == (25 * 2, 25 * 2 + 1)
    assert np.abs(np.asarray(clean - x_eps)).max() > 1e-3  # the step does something at eps = 1e-2
    np.testing.assert_allclose(clean, tweedie_posterior_mean(sde, x_eps, 1e-2), rtol=1e-10, atol=1e-10)


def test_denoise_replaces_the_last_predictor_step():
    # Euler-Maruyama with denoise: the Tweedie step at eps takes the place of the step eps -> 0
    # (same nfe); the samples differ from the noisy chain by about that step's noise g(eps) sqrt(eps).
    sde = make_sde("ve", 100)
    noisy, nfe_raw = PCSampler(sde, "euler_maruyama", "none", denoise=False)(jax.random.key(0), GAUSS.score_fn(sde),
                                                                             (N_GAUSS, 2))
    clean, nfe = PCSampler(sde, "euler_maruyama", "none", denoise=True)(jax.random.key(0), GAUSS.score_fn(sde),
                                                                        (N_GAUSS, 2))
    assert nfe_raw == nfe == 100
    eps = 1e-3
    noise = float(sde.sde(jnp.zeros((1, 2)), jnp.full((1,), eps))[1][0]) * np.sqrt(eps)
    # Tweedie at eps also removes the s(eps) = sigma(eps) noise the EM step keeps: the variance of
    # the difference is g^2 eps + about s(eps)^4 / (C + s(eps)^2), s(eps) ~ 0.01 << g sqrt(eps)
    np.testing.assert_allclose(np.std(np.asarray(noisy - clean), axis=0), noise, rtol=0.06)
    assert_gaussian_moments(clean, 0.04)


def test_bad_configuration_is_rejected_with_its_name():
    with pytest.raises(KeyError, match="known: .*euler_maruyama"):
        PCSampler(make_sde("vp", 50), predictor="euler")
    with pytest.raises(ValueError, match="subVPSDE"):
        PCSampler(make_sde("subvp", 10), predictor="ancestral_sampling")
    with pytest.raises(ValueError, match="num_steps"):
        PCSampler(make_sde("vp", 50), num_steps=0)
    with pytest.raises(ValueError, match="x_init has shape"):
        PCSampler(make_sde("vp", 50))(jax.random.key(0), lambda x, t: -x, (4, 2), x_init=jnp.zeros((4, 3)))


@pytest.mark.parametrize("make_sampler", [
    lambda sde: PCSampler(sde, "euler_maruyama", "langevin", num_steps=10),
    lambda sde: ODESampler(sde, "euler", num_steps=10),  # ODE shares pc.initial_state's check
])
def test_score_of_the_wrong_shape_is_rejected_naming_both_shapes(make_sampler):
    # [B] against x: [4, 4] would broadcast silently; the check names both shapes instead
    sampler = make_sampler(make_sde("ve", 10))
    with pytest.raises(ValueError, match=r"shaped like x, \(1, 4\) .*, but returned shape \(1,\)"):
        sampler(jax.random.key(0), lambda x, t: -x.sum(-1), (4, 4))
    with pytest.raises(ValueError, match=r"shaped like x, \(1, 4\) .*, but returned a tuple"):
        sampler(jax.random.key(0), lambda x, t: (-x, t), (4, 4))


def test_pc_is_registered_and_built_by_name():
    sampler = samplers.build_sampler("pc", make_sde("vp", 50), predictor="euler_maruyama", n_steps_each=2)
    assert isinstance(sampler, PCSampler) and sampler.nfe == 50 * (1 + 2)


@dataclasses.dataclass
class UnhashableScore:
    """A score callable that cannot be a jit static argument as is: a non-frozen dataclass (eq without hash)."""

    score_fn: Callable

    def __call__(self, x, t):
        return self.score_fn(x, t)


class EqualityOnlyScore:
    """Defines __eq__ without __hash__, which makes instances unhashable."""

    def __init__(self, score_fn):
        self.score_fn = score_fn

    def __eq__(self, other):
        return isinstance(other, EqualityOnlyScore) and other.score_fn is self.score_fn

    def __call__(self, x, t):
        return self.score_fn(x, t)


def _pc_for_test(sde):
    return PCSampler(sde, "reverse_diffusion", "langevin", num_steps=30)


def _ode_for_test(sde):
    return ODESampler(sde, "euler", num_steps=10)  # ODE shares pc.static_score_fn


@pytest.mark.parametrize("make_sampler,wrapper", [
    (_pc_for_test, UnhashableScore), (_pc_for_test, EqualityOnlyScore), (_ode_for_test, UnhashableScore)])
def test_unhashable_score_callable_samples_like_the_plain_function(make_sampler, wrapper):
    sde = make_sde("vp", 30)
    score_fn = GAUSS.score_fn(sde)
    unhashable = wrapper(score_fn)
    with pytest.raises(TypeError):
        hash(unhashable)
    sampler = make_sampler(sde)
    expected, nfe = sampler(jax.random.key(0), score_fn, (16, 2))
    got, got_nfe = sampler(jax.random.key(0), unhashable, (16, 2))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert int(got_nfe) == int(nfe)


def test_unhashable_score_callable_reuses_its_compilation():
    sampler = PCSampler(make_sde("ve", 20), "euler_maruyama", "none")
    unhashable = UnhashableScore(GAUSS.score_fn(sampler.sde))
    sampler(jax.random.key(0), unhashable, (4, 2))
    compiled = common._per_example._cache_size()
    sampler(jax.random.key(1), unhashable, (4, 2))
    assert common._per_example._cache_size() == compiled  # same object: cache hit
    sampler(jax.random.key(1), UnhashableScore(unhashable.score_fn), (4, 2))
    assert common._per_example._cache_size() == compiled + 1  # another object: keyed by identity


def test_as_score_fn_keeps_hashable_callables_static_and_rejects_non_callables():
    score_fn = GAUSS.score_fn(make_sde("vp", 30))
    as_partial = as_score_fn(score_fn)
    assert as_partial.func.fn is score_fn and not jax.tree.leaves(as_partial)
    # same static function, same tree structure: the compiled sampler is reused
    assert jax.tree.structure(as_score_fn(score_fn)) == jax.tree.structure(as_partial)
    with pytest.raises(TypeError, match="score_fn must be a callable"):
        as_score_fn(jnp.zeros(3))


SHARDING_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import sde_lib
    from samplers.pc import PCSampler
    assert jax.device_count() == 4
    sde = sde_lib.VPSDE(N=30)
    score_fn = sde_lib.gaussian(jnp.array([1.0, -2.0]), jnp.eye(2)).score_fn(sde)
    sampler = PCSampler(sde, "reverse_diffusion", "langevin")
    x_init = sde.prior_sampling(jax.random.key(0), (16, 2))
    sharded = jax.device_put(x_init, NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), P("batch")))
    a, _ = sampler(jax.random.key(1), score_fn, (16, 2), x_init=x_init)
    b, _ = sampler(jax.random.key(1), score_fn, (16, 2), x_init=sharded)
    assert b.sharding.is_equivalent_to(sharded.sharding, b.ndim), b.sharding  # still split, not gathered
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    print("OK")
""")


def test_pc_accepts_batch_sharded_over_four_devices_and_matches_one_device(run_on_four_devices):
    out = run_on_four_devices(SHARDING_SCRIPT, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]
