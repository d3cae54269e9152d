"""Noise-level schedules for the sigma-space solvers, and the passage into and out of sigma space.

Every SDE here has marginals x_t = alpha(t) (x_0 + sigma(t) z) (Karras et al. 2022, eq. 10), so in
the unscaled x_hat = x / alpha, with sigma as time, its probability-flow ODE is the same for VP,
sub-VP and VE (Karras et al. 2022, eq. 4 with s = 1, sigma(t) = t):

    dx_hat / dsigma = (x_hat - D(x_hat, sigma)) / sigma,   D = E[x_0 | x_hat] (the EDM denoiser).

The solvers (`edm_heun`, `ddim`, `dpm_solver`, `lms`, `ipndm`, `unipc`, `dpm_solver_sde`) step through noise
levels sigma_0 = sigma_max > ... > sigma_{n-1} = sigma_min and a last step to sigma_n = 0, where
x_hat is the data and alpha(t(0)) = 1 for every SDE here, so no rescaling is needed at the end.

The default sigma_min (`few_step_sigma_min`) depends on the number of levels and the solver's order.
With a last step that returns the denoiser D(x, sigma_min), the output misses the data's fine scale
by about sigma_min^2 / (2 s) (for N(0, s^2) data the std of D is s^2 / sqrt(s^2 + sigma_min^2)),
while an order-k solver on m intervals of log-sigma length L / m errs by about C s (L / m)^k.
Minimising their sum over sigma_min gives sigma_min = s sqrt(2 C k L^(k-1)) m^(-k/2): few steps
want a high last level, many steps the SDE's own sigma(eps). We take s = `sigma_data` (EDM's 0.5
by default, Karras et al. 2022) and fold sqrt(2 C k L^(k-1)) into one constant per order, measured
on the 2-D mixture of `scripts/benchmark_samplers.py` (the best sigma_min of a sweep, README).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from samplers.common import check_score_shape, concrete, default_float_dtype, host_float64, host_start_time
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast
from sde_lib.parametrization import DenoiserFn, denoiser_from_score

SCHEDULES = ("karras", "log_snr", "uniform_t")
"""`karras`: rho-spaced (Karras et al. 2022, eq. 5); `log_snr`: uniform in lambda = -log sigma
(Lu et al. 2022); `uniform_t`: uniform in the SDE's time t (DDIM and the 2021 samplers)."""


def check_schedule(name: str, num_steps: int, rho: float, sigma_min: float | None = None,
                   sigma_max: float | None = None) -> None:
    """Raise a ValueError naming the bad argument of a sigma-space solver.

    A traced sigma_min / sigma_max / rho (a sweep under `jax.jit`) is not checked."""
    sigma_min, sigma_max = _concrete_or_none(sigma_min), _concrete_or_none(sigma_max)
    for key, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if value is not None and not value > 0:
            raise ValueError(f"{key} must be positive, got {value}")
    if sigma_min is not None and sigma_max is not None and sigma_min >= sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    rho = _concrete_or_none(rho)
    if rho is not None and not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")


def _concrete_or_none(value):
    return None if isinstance(value, jax.core.Tracer) else value


def sigma_steps(sde: SDE, schedule: str, num_steps: int, sigma_min: Array, sigma_max: Array,
                rho: float = 7.0, xp=jnp, sde_fn=None) -> Array:
    """Noise levels `[num_steps + 1, B]`: num_steps levels from sigma_max `[B]` down to sigma_min
    (scalar or `[B]`), then 0.

    Computed in the dtype of `sigma_max` with the array namespace `xp` (numpy on the host, in float64,
    by `host_sigmas`; jnp on device when `sigma_max` is traced, e.g. a per-example `t_init`);
    `sde_fn(f, v)` evaluates the SDE's function f at v (default `f(v)`).
    """
    sde_fn = sde_fn or (lambda f, v: f(v))
    check_schedule(schedule, num_steps, rho)
    sigma_min = xp.broadcast_to(xp.asarray(sigma_min, sigma_max.dtype), sigma_max.shape)
    frac = xp.arange(num_steps, dtype=sigma_max.dtype) / max(num_steps - 1, 1)
    frac = frac[:, None]
    lo, hi = sigma_min[None], sigma_max[None]
    if schedule == "karras":
        inv = 1.0 / rho
        sigmas = (hi**inv + frac * (lo**inv - hi**inv)) ** rho
    elif schedule == "log_snr":
        sigmas = xp.exp(xp.log(hi) + frac * (xp.log(lo) - xp.log(hi)))
    else:
        t_hi, t_lo = sde_fn(sde.t_of_sigma, hi), sde_fn(sde.t_of_sigma, lo)
        sigmas = sde_fn(sde.sigma, t_hi + frac * (t_lo - t_hi))
    return xp.concatenate([sigmas, xp.zeros_like(sigmas[:1])], axis=0)


FEW_STEP_CONSTANT = {1: 1.2, 2: 3.0, 3: 6.5, 4: 24.0}
"""sqrt(2 C k L^(k-1)) of the sigma_min rule per solver order k (module docstring): the best sigma_min
of DPM-Solver++ 2M / 3M and UniPC at 10 evaluations on the benchmark's VE mixture was 0.1 - 0.25 for
each (log-SNR steps, sigma_data 0.5), 0.25 - 0.4 for 2M at 5; order 1 from the theory's m^(-1/2)."""


def few_step_sigma_min(num_levels: int, order: int, sigma_data: float) -> float:
    """The error-balancing last noise level sigma_data * c_k * m^(-k/2) for m = num_levels - 1
    intervals of an order-k solver (module docstring), at most sigma_data; callers floor it at
    sigma(eps)."""
    rule = FEW_STEP_CONSTANT[min(order, 4)] * max(num_levels - 1, 1) ** (-order / 2)
    return sigma_data * min(rule, 1.0)


def default_sigma_min(sde: SDE, sigma_min: float | None, eps: float, dtype, num_levels: int, order: int,
                      sigma_data: float, sigma_start: Array) -> Array:
    """`sigma_min` as given, else the larger of sigma(eps) and the few-step rule (`few_step_sigma_min`),
    the rule kept a decade below the start level `sigma_start: [B]` (a start near the data, as in
    posterior sampling from a small noise level, then keeps its steps). Returns `[B]`."""
    if sigma_min is not None:
        return jnp.broadcast_to(jnp.asarray(sigma_min, dtype), sigma_start.shape)
    rule = jnp.minimum(few_step_sigma_min(num_levels, order, sigma_data), 0.1 * sigma_start)
    return jnp.maximum(sde.sigma(jnp.asarray(eps, dtype)), rule).astype(dtype)


def check_start_time(sde: SDE, t_init) -> None:
    """Raise a ValueError for a concrete `t_init` outside (0, T], where the noise level is undefined."""
    host = None if t_init is None else concrete(t_init)
    if host is not None and not np.all((host > 0) & (host <= sde.T)):
        raise ValueError(f"t_init must lie in (0, T={sde.T}], got {t_init}")


def host_sigmas(sampler, x_init: Array | None, t_init, num_levels: int, order: int) -> np.ndarray | None:
    """The noise levels `[num_levels + 1]` of a sigma-space `sampler` (fields sde, schedule, rho,
    sigma_min, sigma_max, eps, sigma_data) for the whole batch, built on the host in float64
    (`sigma_steps`, the default sigma_min by `default_sigma_min` for `num_levels` and `order`); None
    when the start is traced or differs between examples (then `body_sigmas` builds them on device).

    Raises ValueError for a concrete t_init outside (0, T], or below a given sigma_min.
    """
    check_start_time(sampler.sde, t_init)
    if x_init is None and sampler.sigma_max is not None:
        return _host_levels(sampler, None, num_levels, order)
    start = None if t_init is None else concrete(t_init)
    given = concrete(sampler.sigma_min) if sampler.sigma_min is not None else None
    if start is not None and given is not None:
        lowest = float(np.min(host_float64(sampler.sde.sigma, start)))
        if given >= lowest:
            raise ValueError(f"sigma_min ({sampler.sigma_min}) must be below the start noise level {lowest:.4g} "
                             f"(sigma of t_init)")
    t_start = host_start_time(t_init, sampler.sde.T)
    return None if t_start is None else _host_levels(sampler, t_start, num_levels, order)


@functools.lru_cache(maxsize=256)
def _host_levels(sampler, t_start: float | None, num_levels: int, order: int) -> np.ndarray:
    sde = sampler.sde
    start = sampler.sigma_max if t_start is None else float(host_float64(sde.sigma, t_start))
    if sampler.sigma_min is not None:
        sigma_min = float(sampler.sigma_min)
    else:  # default_sigma_min, in float64
        rule = min(few_step_sigma_min(num_levels, order, sampler.sigma_data), 0.1 * start)
        sigma_min = max(float(host_float64(sde.sigma, sampler.eps)), rule)
    levels = sigma_steps(sde, sampler.schedule, num_levels, np.float64(sigma_min),
                         np.asarray([start], np.float64), sampler.rho, xp=np, sde_fn=host_float64)
    levels = levels[:, 0]
    levels.flags.writeable = False
    return levels


def body_sigmas(sampler, sigma_start: Array, host: Array | None, num_levels: int, order: int) -> Array:
    """The noise levels `[num_levels + 1, B]` inside a sampler's body: `host` ones when given, else
    built on device from the examples' `sigma_start: [B]`."""
    if host is not None:
        return jnp.broadcast_to(host[:, None], (host.shape[0],) + sigma_start.shape).astype(sigma_start.dtype)
    sigma_min = default_sigma_min(sampler.sde, sampler.sigma_min, sampler.eps, sigma_start.dtype, num_levels,
                                  order, sampler.sigma_data, sigma_start)
    return sigma_steps(sampler.sde, sampler.schedule, num_levels, sigma_min, sigma_start, sampler.rho)


def enter_sigma_space(sde: SDE, rng: Array, shape: tuple[int, ...], x_init: Array | None,
                      t_init: Array | float | None, sigma_max: float | None) -> tuple[Array, Array]:
    """The start `(x_hat [B, ...], sigma [B])` of a sigma-space solve.

    - `x_init` at `t_init` (default T): x_hat = x_init / alpha(t_init), sigma = sigma(t_init);
      `t_init` is a scalar or `[B]`.
    - otherwise, with `sigma_max` None: a prior sample at T, rescaled by 1 / alpha(T);
    - otherwise x_hat = sigma_max * N(0, I) (Karras et al. 2022, Algorithm 1, line 1).
    The prior's dtype is `default_float_dtype()`. `samplers.common.check_start` validates the start.
    """
    if x_init is None:
        dtype = default_float_dtype()
        batch = jnp.ones((shape[0],), dtype)
        if sigma_max is not None:
            return sigma_max * jax.random.normal(rng, shape, dtype), sigma_max * batch
        x_init, t = sde.prior_sampling(rng, shape, dtype), sde.T * batch
    else:
        t = jnp.broadcast_to(jnp.asarray(sde.T if t_init is None else t_init, x_init.dtype), (shape[0],))
    alpha = sde.alpha(t).astype(x_init.dtype)
    return x_init / batch_broadcast(alpha, x_init), sde.sigma(t).astype(x_init.dtype)


def check_sigma_range(sde: SDE, sigma_min: float | None, sigma_max: float | None) -> None:
    """Raise a ValueError when a given sigma_min is not below the start level (sigma_max, else sigma(T)):
    the schedule would run upwards (samples with the wrong scale, or NaN)."""
    sigma_min, sigma_max = _concrete_or_none(sigma_min), _concrete_or_none(sigma_max)
    if sigma_min is None:
        return
    top = sigma_max if sigma_max is not None else _host_sigma(sde, sde.T)
    if sigma_min >= top:
        raise ValueError(f"sigma_min ({sigma_min}) must be below the start level {top:.4g} "
                         f"(sigma_max, else sigma(T) of {type(sde).__name__})")


def _host_sigma(sde: SDE, t) -> float | None:
    """The smallest sigma(t) over a concrete `t` (scalar or `[B]`), None for a traced one."""
    if isinstance(t, jax.core.Tracer):
        return None
    with jax.ensure_compile_time_eval():
        return float(np.min(np.asarray(sde.sigma(jnp.asarray(t)))))


def sigma_space_setup(solver, rng: Array, score_fn: ScoreFn, example_shape: tuple[int, ...], start,
                      host_levels: Array | None, num_levels: int, order: int) -> tuple[Array, Array, DenoiserFn]:
    """Inside a sampler's body (`samplers.common.run_sampler`, one example): start `x_hat [1, ...]`,
    noise levels `[num_levels + 1, 1]` (the last 0; `body_sigmas`) and the denoiser of a sigma-space
    `solver` (fields sde, schedule, rho, sigma_min, sigma_max, eps, sigma_data), from the example's
    `start = (x_init | None, t_init | None)` and the levels `host_sigmas` built.

    Checks (at trace time) that `score_fn` returns the shape of x.
    """
    x_init, t_init = start
    sde = solver.sde
    x, sigma_start = enter_sigma_space(sde, rng, (1, *example_shape), x_init, t_init, solver.sigma_max)
    check_score_shape(score_fn, x)
    sigmas = body_sigmas(solver, sigma_start, host_levels, num_levels, order)
    return x, sigmas, denoiser_from_score(sde, score_fn)
