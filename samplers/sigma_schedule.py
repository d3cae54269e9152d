"""Noise-level schedules for the sigma-space solvers, and the passage into and out of sigma space.

Every SDE here has marginals x_t = alpha(t) (x_0 + sigma(t) z) (Karras et al. 2022, eq. 10), so in
the unscaled x_hat = x / alpha, with sigma as time, its probability-flow ODE is the same for VP,
sub-VP and VE (Karras et al. 2022, eq. 4 with s = 1, sigma(t) = t):

    dx_hat / dsigma = (x_hat - D(x_hat, sigma)) / sigma,   D = E[x_0 | x_hat] (the EDM denoiser).

The solvers (`edm_heun`, `ddim`, `dpm_solver`, `lms`, `unipc`, `dpm_solver_sde`) step through noise
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

import jax
import jax.numpy as jnp
import numpy as np

from samplers.pc import check_score_shape, default_float_dtype
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
                rho: float = 7.0) -> Array:
    """Noise levels `[num_steps + 1, B]`: num_steps levels from sigma_max `[B]` down to sigma_min
    (scalar or `[B]`), then 0.

    Computed in the dtype of `sigma_max`; `sigma_max` may be traced (a per-example `t_init`).
    """
    check_schedule(schedule, num_steps, rho)
    sigma_min = jnp.broadcast_to(jnp.asarray(sigma_min, sigma_max.dtype), sigma_max.shape)
    frac = jnp.arange(num_steps, dtype=sigma_max.dtype) / max(num_steps - 1, 1)
    frac = frac[:, None]
    lo, hi = sigma_min[None], sigma_max[None]
    if schedule == "karras":
        inv = 1.0 / rho
        sigmas = (hi**inv + frac * (lo**inv - hi**inv)) ** rho
    elif schedule == "log_snr":
        sigmas = jnp.exp(jnp.log(hi) + frac * (jnp.log(lo) - jnp.log(hi)))
    else:
        t_hi, t_lo = sde.t_of_sigma(hi), sde.t_of_sigma(lo)
        sigmas = sde.sigma(t_hi + frac * (t_lo - t_hi))
    return jnp.concatenate([sigmas, jnp.zeros_like(sigmas[:1])], axis=0)


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


def enter_sigma_space(sde: SDE, rng: Array, shape: tuple[int, ...], x_init: Array | None,
                      t_init: Array | float | None, sigma_max: float | None,
                      dtype=None) -> tuple[Array, Array]:
    """The start `(x_hat [B, ...], sigma [B])` of a sigma-space solve.

    - `x_init` at `t_init` (default T): x_hat = x_init / alpha(t_init), sigma = sigma(t_init);
      `t_init` is a scalar or `[B]`.
    - otherwise, with `sigma_max` None: a prior sample at T, rescaled by 1 / alpha(T);
    - otherwise x_hat = sigma_max * N(0, I) (Karras et al. 2022, Algorithm 1, line 1).
    """
    dtype = default_float_dtype() if dtype is None else dtype
    if x_init is None:
        if t_init is not None:
            raise ValueError("t_init was given without x_init; pass the state x_init at time t_init")
        batch = jnp.ones((shape[0],), dtype)
        if sigma_max is not None:
            return sigma_max * jax.random.normal(rng, shape, dtype), sigma_max * batch
        x_init, t = sde.prior_sampling(rng, shape, dtype), sde.T * batch
    else:
        if x_init.shape != tuple(shape):
            raise ValueError(f"x_init has shape {x_init.shape}, but shape is {tuple(shape)}")
        if t_init is not None and not isinstance(t_init, jax.core.Tracer):
            values = np.asarray(t_init)
            if not np.all((values > 0) & (values <= sde.T)):  # outside (0, T] the noise level is undefined
                raise ValueError(f"t_init must lie in (0, T={sde.T}], got {t_init}")
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


def sigma_space_setup(solver, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None,
                      t_init: Array | float | None, num_levels: int, order: int
                      ) -> tuple[Array, Array, DenoiserFn]:
    """Start `x_hat [B, ...]`, noise levels `[num_levels + 1, B]` (the last 0) and the denoiser of a
    sigma-space `solver` (fields sde, schedule, rho, sigma_min, sigma_max, eps, sigma_data).

    Checks that `score_fn` returns the shape of x, and that a given sigma_min lies below a concrete
    t_init's level; the default sigma_min follows the few-step rule for `num_levels` and `order`.
    """
    sde = solver.sde
    x, sigma_start = enter_sigma_space(sde, rng, shape, x_init, t_init, solver.sigma_max)
    check_score_shape(score_fn, x)
    start = None if t_init is None else _host_sigma(sde, t_init)
    given = _concrete_or_none(solver.sigma_min)
    if given is not None and start is not None and given >= start:
        raise ValueError(f"sigma_min ({solver.sigma_min}) must be below the start noise level {start:.4g} "
                         f"(sigma of t_init)")
    sigma_min = default_sigma_min(sde, solver.sigma_min, solver.eps, x.dtype, num_levels, order,
                                  solver.sigma_data, sigma_start)
    sigmas = sigma_steps(sde, solver.schedule, num_levels, sigma_min, sigma_start, solver.rho)
    return x, sigmas, denoiser_from_score(sde, score_fn)
