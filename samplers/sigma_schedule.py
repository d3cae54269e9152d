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

import jax
import jax.numpy as jnp
import numpy as np

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


def default_sigma_min(sde: SDE, sigma_min: float | None, eps: float, dtype) -> Array:
    """`sigma_min`, or the SDE's noise level sigma(eps) at the usual end time eps of sampling."""
    if sigma_min is not None:
        return jnp.asarray(sigma_min, dtype)
    return sde.sigma(jnp.asarray(eps, dtype))


def enter_sigma_space(sde: SDE, rng: Array, shape: tuple[int, ...], x_init: Array | None,
                      t_init: Array | float | None, sigma_max: float | None,
                      dtype=jnp.float32) -> tuple[Array, Array]:
    """The start `(x_hat [B, ...], sigma [B])` of a sigma-space solve.

    - `x_init` at `t_init` (default T): x_hat = x_init / alpha(t_init), sigma = sigma(t_init);
      `t_init` is a scalar or `[B]`.
    - otherwise, with `sigma_max` None: a prior sample at T, rescaled by 1 / alpha(T);
    - otherwise x_hat = sigma_max * N(0, I) (Karras et al. 2022, Algorithm 1, line 1).
    """
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
