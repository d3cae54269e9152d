"""Noise-level schedules for the sigma-space solvers, and the passage into and out of sigma space.

Every SDE here has marginals x_t = alpha(t) (x_0 + sigma(t) z) (Karras et al. 2022, eq. 10), so in
the unscaled x_hat = x / alpha, with sigma as time, its probability-flow ODE is the same for VP,
sub-VP and VE (Karras et al. 2022, eq. 4 with s = 1, sigma(t) = t):

    dx_hat / dsigma = (x_hat - D(x_hat, sigma)) / sigma,   D = E[x_0 | x_hat] (the EDM denoiser).

The solvers (`edm_heun`, `ddim`, `dpm_solver`) step through noise levels
sigma_0 = sigma_max > ... > sigma_{n-1} = sigma_min and a last step to sigma_n = 0, where
x_hat is the data and alpha(t(0)) = 1 for every SDE here, so no rescaling is needed at the end.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from samplers.common import concrete, default_float_dtype, host_float64, host_start_time
from sde_lib.base import SDE, Array, batch_broadcast

SCHEDULES = ("karras", "log_snr", "uniform_t")
"""`karras`: rho-spaced (Karras et al. 2022, eq. 5); `log_snr`: uniform in lambda = -log sigma
(Lu et al. 2022); `uniform_t`: uniform in the SDE's time t (DDIM and the 2021 samplers)."""


def check_schedule(name: str, num_steps: int, rho: float, sigma_min: float | None = None,
                   sigma_max: float | None = None) -> None:
    """Raise a ValueError naming the bad argument of a sigma-space solver."""
    for key, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if value is not None and not value > 0:
            raise ValueError(f"{key} must be positive, got {value}")
    if sigma_min is not None and sigma_max is not None and sigma_min >= sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")


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


def default_sigma_min(sde: SDE, sigma_min: float | None, eps: float, dtype) -> Array:
    """`sigma_min`, or the SDE's noise level sigma(eps) at the usual end time eps of sampling."""
    if sigma_min is not None:
        return jnp.asarray(sigma_min, dtype)
    return sde.sigma(jnp.asarray(eps, dtype))


def check_start_time(sde: SDE, t_init) -> None:
    """Raise a ValueError for a concrete `t_init` outside (0, T], where the noise level is undefined."""
    host = None if t_init is None else concrete(t_init)
    if host is not None and not np.all((host > 0) & (host <= sde.T)):
        raise ValueError(f"t_init must lie in (0, T={sde.T}], got {t_init}")


def host_sigmas(sampler, x_init: Array | None, t_init) -> np.ndarray | None:
    """The noise levels `[num_steps + 1]` of a sigma-space `sampler` (fields sde, schedule, num_steps,
    rho, sigma_min, sigma_max, eps) for the whole batch, built on the host in float64 (`sigma_steps`);
    None when the start is traced or differs between examples (then `body_sigmas` builds them on device).
    """
    check_start_time(sampler.sde, t_init)
    if x_init is None and sampler.sigma_max is not None:
        return _host_levels(sampler, None)
    t_start = host_start_time(t_init, sampler.sde.T)
    return None if t_start is None else _host_levels(sampler, t_start)


@functools.lru_cache(maxsize=256)
def _host_levels(sampler, t_start: float | None) -> np.ndarray:
    sde = sampler.sde
    start = sampler.sigma_max if t_start is None else host_float64(sde.sigma, t_start)
    sigma_min = sampler.sigma_min if sampler.sigma_min is not None else host_float64(sde.sigma, sampler.eps)
    levels = sigma_steps(sde, sampler.schedule, sampler.num_steps, np.float64(sigma_min),
                         np.asarray([start], np.float64), sampler.rho, xp=np, sde_fn=host_float64)
    levels = levels[:, 0]
    levels.flags.writeable = False
    return levels


def body_sigmas(sampler, sigma_start: Array, host: Array | None) -> Array:
    """The noise levels `[num_steps + 1, B]` inside a sampler's body: `host` ones when given, else
    built on device from the examples' `sigma_start: [B]`."""
    if host is not None:
        return jnp.broadcast_to(host[:, None], (host.shape[0],) + sigma_start.shape).astype(sigma_start.dtype)
    sigma_min = default_sigma_min(sampler.sde, sampler.sigma_min, sampler.eps, sigma_start.dtype)
    return sigma_steps(sampler.sde, sampler.schedule, sampler.num_steps, sigma_min, sigma_start, sampler.rho)


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
