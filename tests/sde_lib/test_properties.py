"""Property tests (hypothesis) over SDE parameters, t in [eps, 1], data shapes and dtypes:
the sigma-space view (alpha sigma = marginal std, t_of_sigma inverts sigma), consistency of
`sde` with the marginals (moment ODEs through autodiff), and dtype / jit / vmap / grad safety.

Each example runs its maths in one `jax.jit` (the SDE is a static argument), which is both the
property under test and what keeps hypothesis cheap: one compilation per example.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sde_lib

# 6 examples a run (each one compilation, ~1 s): every CI run draws new ones, so coverage still grows run by run.
SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def sdes(draw):
    kind = draw(st.sampled_from(["vp", "subvp", "ve"]))
    n = draw(st.integers(2, 2000))
    if kind == "ve":
        sigma_min = draw(st.floats(1e-3, 0.5))
        sigma_max = draw(st.floats(sigma_min * 2, 400.0))
        return sde_lib.VESDE(sigma_min=sigma_min, sigma_max=sigma_max, N=n)
    beta_min = draw(st.floats(0.01, 2.0))
    beta_max = draw(st.floats(beta_min, 40.0))
    cls = sde_lib.VPSDE if kind == "vp" else sde_lib.subVPSDE
    return cls(beta_min=beta_min, beta_max=beta_max, N=n)


times = st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=4)
event_shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)


@SETTINGS
@given(sde=sdes(), t=times)
def test_sigma_space_is_consistent_with_marginals(x64, sde, t):
    t = jnp.asarray(t)
    x = jnp.outer(jnp.arange(1.0, t.size + 1), jnp.array([1.0, -2.0]))

    @jax.jit
    def compute(x, t):
        sigma = sde.sigma(t)
        return sde.alpha(t), sigma, sde.marginal_std(t), sde.t_of_sigma(sigma), sde.marginal_prob(x, t)

    alpha, sigma, std, t_back, (mean, kernel_std) = compute(x, t)
    np.testing.assert_allclose(alpha * sigma, std, rtol=1e-10)
    np.testing.assert_allclose(t_back, t, rtol=1e-8)
    np.testing.assert_allclose(mean, alpha[:, None] * x, rtol=1e-12)
    np.testing.assert_allclose(kernel_std, alpha * sigma, rtol=1e-10)


@SETTINGS
@given(sde=sdes(), t=times)
def test_marginals_solve_the_moment_odes_of_the_sde(x64, sde, t):
    """For dx = a(t) x dt + g(t) dw: d log alpha / dt = a and d std^2 / dt = 2 a std^2 + g^2.

    Autodiff of alpha and marginal_std against `sde`: a wrong drift or diffusion coefficient, or
    a marginal that does not belong to the SDE, breaks one of the two identities."""

    @jax.jit
    def compute(t):
        drift, diffusion = sde.sde(jnp.ones((t.size, 1)), t)
        dlog_alpha = jax.vmap(jax.grad(lambda s: jnp.log(sde.alpha(s[None]))[0]))(t)
        dvar = jax.vmap(jax.grad(lambda s: sde.marginal_std(s[None])[0] ** 2))(t)
        return drift[:, 0], diffusion, dlog_alpha, dvar, sde.marginal_std(t) ** 2

    a, diffusion, dlog_alpha, dvar, var = compute(jnp.asarray(t))
    np.testing.assert_allclose(dlog_alpha, a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dvar, 2 * a * var + diffusion**2, rtol=1e-8, atol=1e-12)


@SETTINGS
@given(sde=sdes(), t=times, shape=event_shapes, use_f64=st.booleans())
def test_outputs_keep_input_dtype_and_shape_under_jit(x64, sde, t, shape, use_f64):
    dtype = jnp.float64 if use_f64 else jnp.float32
    t = jnp.asarray(t, dtype)
    b = t.size
    x = jnp.reshape(jnp.linspace(-1.0, 1.0, b * int(np.prod(shape)), dtype=dtype), (b,) + shape)

    # The DDPM chain of a VP SDE exists only for beta_max / N <= 1 (asserted to raise below).
    has_discretisation = not (isinstance(sde, sde_lib.VPSDE) and sde.beta_max / sde.N > 1)

    @jax.jit
    def compute(x, t):
        drift, diffusion = sde.sde(x, t)
        mean, std = sde.marginal_prob(x, t)
        rev_drift, rev_diffusion = sde.reverse(lambda y, s: -y, probability_flow=True).sde(x, t)
        outputs = [(drift, x.shape), (mean, x.shape), (rev_drift, x.shape),
                   (diffusion, (b,)), (std, (b,)), (rev_diffusion, (b,)),
                   (sde.prior_logp(x), (b,)), (sde.alpha(t), (b,)), (sde.sigma(t), (b,)),
                   (sde.t_of_sigma(sde.sigma(t)), (b,)),
                   (sde.prior_sampling(jax.random.key(0), x.shape, dtype), x.shape)]
        if has_discretisation:
            f, G = sde.discretize(x, t)
            outputs += [(f, x.shape), (G, (b,)), (sde.discrete_alpha(t), (b,))]
        return outputs

    if not has_discretisation:
        with pytest.raises(ValueError, match=r"has no DDPM discretisation: .* must be <= 1; use N >= beta_max"):
            sde.discretize(x, t)

    for out, out_shape in compute(x, t):
        assert out.dtype == dtype and out.shape == tuple(out_shape)
        assert np.all(np.isfinite(np.asarray(out)))


@SETTINGS
@given(sde=sdes(), t=times, shape=event_shapes)
def test_vmap_over_examples_agrees_with_batched_call(x64, sde, t, shape):
    t = jnp.asarray(t)
    b = t.size
    x = jnp.reshape(jnp.cos(jnp.arange(b * int(np.prod(shape)), dtype=t.dtype)), (b,) + shape)

    # The DDPM chain of a VP SDE exists only for beta_max / N <= 1 (its error is tested above).
    has_discretisation = not (isinstance(sde, sde_lib.VPSDE) and sde.beta_max / sde.N > 1)

    def everything(x, t):
        return (sde.sde(x, t), sde.marginal_prob(x, t), sde.discretize(x, t) if has_discretisation else (),
                sde.prior_logp(x), sde.t_of_sigma(sde.sigma(t)))

    @jax.jit
    def both(x, t):
        return everything(x, t), jax.vmap(lambda xi, ti: everything(xi[None], ti[None]))(x, t)

    batched, per_example = both(x, t)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a.reshape(e.shape), e, rtol=1e-12), per_example, batched)


@SETTINGS
@given(sde=sdes(), t=times)
def test_gradients_of_sigma_and_its_inverse_are_reciprocal(x64, sde, t):
    t = jnp.asarray(t)

    @jax.jit
    def compute(t):
        dsigma = jax.vmap(jax.grad(lambda s: sde.sigma(s[None])[0]))(t)
        dt = jax.vmap(jax.grad(lambda s: sde.t_of_sigma(s[None])[0]))(sde.sigma(t))
        grad_x = jax.grad(lambda y: jnp.sum(sde.marginal_prob(y, t)[0] ** 2))(jnp.ones((t.size, 2)))
        return dsigma, dt, grad_x, sde.alpha(t)

    dsigma, dt, grad_x, alpha = compute(t)
    assert np.all(dsigma > 0)
    np.testing.assert_allclose(dsigma * dt, np.ones(t.size), rtol=1e-7)
    np.testing.assert_allclose(grad_x, 2 * alpha[:, None] ** 2 * np.ones((t.size, 2)), rtol=1e-12)


def test_eager_and_jit_agree_for_every_sde(x64):
    x = jnp.reshape(jnp.sin(jnp.arange(12.0)), (3, 2, 2))
    t = jnp.array([0.01, 0.4, 1.0])
    for sde in [sde_lib.VPSDE(), sde_lib.subVPSDE(), sde_lib.VESDE()]:
        def everything(x, t, sde=sde):
            return (sde.sde(x, t), sde.marginal_prob(x, t), sde.discretize(x, t), sde.prior_logp(x),
                    sde.t_of_sigma(sde.sigma(t)))

        jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-12),
                     jax.jit(everything)(x, t), everything(x, t))


def test_vp_sde_without_a_ddpm_chain_names_the_problem_instead_of_returning_nan():
    # Found by hypothesis: N=2, beta_max=3 gives discrete betas (0.5, 1.5) and sqrt(1 - 1.5).
    sde = sde_lib.VPSDE(beta_min=1.0, beta_max=3.0, N=2)
    with pytest.raises(ValueError, match=r"VPSDE\(N=2, beta_max=3.0\) has no DDPM discretisation: the last "
                                         r"discrete beta, beta_max / N = 1.5, must be <= 1"):
        jax.jit(sde.discretize)(jnp.ones((1, 1)), jnp.ones((1,)))
    f, G = sde_lib.VPSDE(beta_min=1.0, beta_max=3.0, N=4).discretize(jnp.ones((1, 1)), jnp.ones((1,)))
    assert np.isfinite(np.asarray(f)).all() and np.isfinite(np.asarray(G)).all()
