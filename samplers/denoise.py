"""Denoising y = x + sigma n with a score model: Tweedie's posterior mean and posterior sampling.

Every SDE here has marginals x_t = alpha(t) (x_0 + sigma(t) z) (Karras et al. 2022, eq. 10),
so an observation y = x + sigma n, n ~ N(0, I), scaled by alpha(t*) is exactly a draw of x_{t*}
given x_0 = x at the time t* = t(sigma) whose noise level is sigma. Hence
- the posterior mean is Tweedie's formula (Efron 2011, eq. 2.8) at t*:
  E[x | y] = E[x_0 | x_{t*} = alpha(t*) y] = (alpha y + s(t*)^2 score(alpha y, t*)) / alpha;
- posterior samples of p(x | y) come from the reverse-time SDE started at x_{t*} = alpha(t*) y
  at time t* (Song et al. 2021, eq. 6; the "denoise by partial reverse diffusion" of
  Kawar et al. 2021): any sampler of the `SAMPLERS` contract, via `x_init` and `t_init`.

Only samplers of the reverse process are posterior samplers here. A Langevin corrector (PC's
`langevin` / `ald`, the annealed Langevin sampler) or EDM churn targets the marginal p_t, not
p(x_t | y) = p_t(x_t) p(y | x_t) / p(y): the chain forgets y (for N(0, 1) data, y = 1, sigma = 0.5 a
Langevin PC chain returns the prior N(0, 1), not the posterior N(0.8, 0.2)). `check_posterior_sampler`
refuses them; `posterior_sampler` drops them from a default configuration, with a warning.

For VE the perturbation kernel has std sigma(t) >= sigma_min, so noise levels below
sigma_min (t* < 0) cannot be represented and are rejected; for every SDE, sigma must not exceed
sigma(T).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from samplers.common import check_score_shape, per_example
from samplers.registry import SAMPLERS
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast
from sde_lib.parametrization import data_from_score

_MAD_TO_STD = 1.0 / 0.6744897501960817
"""1 / Phi^{-1}(3/4): the median absolute deviation of N(0, s^2) is s / 1.4826."""


class Sampler(Protocol):
    """The sampler contract of `samplers.registry.SAMPLERS`."""

    sde: SDE

    def __call__(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None = None,
                 t_init: Array | float | None = None, *, indices: Array | None = None) -> tuple[Array, int]: ...


def resolve_sampler(sampler: Sampler | str, sde: SDE | None = None, **kwargs) -> Sampler:
    """A sampler object as given, or built by registry name for `sde` (e.g. `"pc"`, `"ode"`)."""
    if isinstance(sampler, str):
        if sde is None:
            raise ValueError(f"building sampler {sampler!r} by name needs the sde")
        return SAMPLERS.get(sampler)(sde=sde, **kwargs)
    if kwargs:
        raise ValueError(f"sampler hyper-parameters {sorted(kwargs)} only apply when the sampler is given by name")
    if not callable(sampler) or not hasattr(sampler, "sde"):
        raise TypeError(f"expected a sampler name or a sampler object with an `sde` field, got {sampler!r}")
    return sampler


def marginal_parts(sampler: Sampler) -> str | None:
    """Why `sampler` targets the marginal p_t rather than the conditional of its start, or None."""
    corrector = getattr(sampler, "corrector", "none")
    if isinstance(corrector, str) and corrector != "none":  # UniPC's boolean corrector is an ODE step
        return f"its {corrector!r} corrector (Langevin dynamics on the marginal p_t)"
    if getattr(sampler, "S_churn", 0.0) > 0:
        return f"its churn S_churn={sampler.S_churn} (noise raised along the marginal p_t)"
    if type(sampler).__name__ == "AnnealedLangevinSampler":
        return "annealed Langevin dynamics (on the marginals p_t)"
    return None


def check_posterior_sampler(sampler: Sampler, task: str = "posterior sampling") -> None:
    """Raise a ValueError when `sampler` cannot sample p(x_0 | x_{t_init}) (module docstring)."""
    reason = marginal_parts(sampler)
    if reason is not None:
        raise ValueError(
            f"{task} cannot use {type(sampler).__name__} with {reason}: it targets p_t, not p(x_t | y), so "
            f"the chain forgets y; use a reverse-process sampler (e.g. PC with corrector='none', edm_heun "
            f"with S_churn=0, dpm_solver_sde, ddim with eta=1)")


def posterior_sampler(sampler: Sampler, task: str = "posterior sampling") -> Sampler:
    """`sampler` without its marginal-targeting corrector / churn (a warning names what was dropped);
    for defaults such as the VE family's Langevin corrector. Raises for annealed Langevin."""
    reason = marginal_parts(sampler)
    if reason is None:
        return sampler
    if isinstance(getattr(sampler, "corrector", None), str) and getattr(sampler, "predictor", "none") != "none":
        changed = dataclasses.replace(sampler, corrector="none")
    elif getattr(sampler, "S_churn", 0.0) > 0:
        changed = dataclasses.replace(sampler, S_churn=0.0)
    else:  # nothing of the reverse process would be left (annealed Langevin, PC with no predictor)
        check_posterior_sampler(sampler, task)
        return sampler
    logging.warning("%s: dropped %s from %s, which would make the chain forget its start", task, reason,
                    type(sampler).__name__)
    return changed


def _concrete(v) -> np.ndarray | None:
    """The host value of `v`, or None under tracing (then range checks are skipped)."""
    try:
        return np.asarray(v)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def noise_time(sde: SDE, sigma: Array | float) -> Array:
    """The time t* with sigma(t*) = sigma (the sigma-space noise level), same shape as `sigma`.

    Raises ValueError, when `sigma` is concrete, if it is not positive, exceeds sigma(T), or lies
    below sigma(0) (VE: sigma_min).
    """
    host = _concrete(sigma)
    if host is not None:
        lo = float(np.asarray(sde.sigma(jnp.zeros(()))))
        hi = float(np.asarray(sde.sigma(jnp.asarray(sde.T))))
        if np.any(host <= 0) or np.any(host < lo * (1 - 1e-6)) or np.any(host > hi * (1 + 1e-6)):
            raise ValueError(
                f"noise level sigma={host} outside the range this {type(sde).__name__} represents: "
                f"({max(lo, 0.0):.4g}, {hi:.4g}]"
            )
    return jnp.clip(sde.t_of_sigma(jnp.asarray(sigma)), 0.0, sde.T)


def estimate_noise_level(y: Array, axis: int = 1) -> Array:
    """Robust per-example estimate of sigma in y = x + sigma n, `y: [B, ...] -> [B]`.

    Median absolute deviation of the first differences along `axis` (rows of `[B, H, W, C]`
    images, coordinates of `[B, d]` vectors): for a signal that varies slowly along that axis,
    y_{i+1} - y_i ~ N(0, 2 sigma^2), whose MAD is sqrt(2) sigma / 1.4826 (Donoho & Johnstone 1994
    use the same MAD rule on finest-scale Haar wavelet coefficients, which are these differences
    up to 1/sqrt(2)). Signal edges inflate it; it is an estimate for smooth data, not a guarantee.
    """
    if axis == 0 or y.ndim < 2 or y.shape[axis] < 2:
        raise ValueError(f"need y: [B, ...] with at least 2 entries along axis {axis}, got shape {y.shape}")
    diffs = jnp.reshape(jnp.diff(y, axis=axis), (y.shape[0], -1))
    mad = jnp.median(jnp.abs(diffs - jnp.median(diffs, axis=1, keepdims=True)), axis=1)
    return mad * _MAD_TO_STD / math.sqrt(2.0)


def tweedie_denoise(sde: SDE, score_fn: ScoreFn, y: Array, sigma: Array | float) -> Array:
    """Posterior mean E[x | y] of y = x + sigma n in one score evaluation (Tweedie's formula).

    `y: [B, ...]`; `sigma` a scalar or `[B]` (per-example noise levels). Returns `[B, ...]`. Jitted
    through `samplers.common.per_example` (a `Partial` score's arrays are traced).
    """
    y = jnp.asarray(y)
    sigma = jnp.broadcast_to(jnp.asarray(sigma, y.dtype), (y.shape[0],))
    t = noise_time(sde, sigma).astype(y.dtype)
    return per_example(_tweedie_body, sde, jax.random.key(0), score_fn, (y, t), batch=y.shape[0])


def _tweedie_body(sde: SDE, _, score_fn, batched, __):
    y, t = batched
    check_score_shape(score_fn, y)
    x_t = batch_broadcast(sde.alpha(t).astype(y.dtype), y) * y
    return data_from_score(sde, score_fn)(x_t, t)


def posterior_denoise(rng: Array, sampler: Sampler, score_fn: ScoreFn, y: Array,
                      sigma: Array | float, *, indices: Array | None = None) -> tuple[Array, int]:
    """A sample of p(x | y) per example: the reverse process from x_{t*} = alpha(t*) y at t* = t(sigma).

    `y: [B, ...]`, `sigma` a scalar (one start time for the batch). Returns the sampler's
    `(samples [B, ...], nfe)`; samples are at the sampler's final time (e.g. its eps), as usual.
    Raises ValueError for a sampler with a Langevin corrector or churn (`check_posterior_sampler`).
    """
    check_posterior_sampler(sampler)
    sigma = jnp.asarray(sigma, y.dtype)
    if sigma.ndim != 0:
        raise ValueError(f"posterior_denoise needs one noise level for the batch, got sigma of shape {sigma.shape}")
    sde = sampler.sde
    t = noise_time(sde, sigma).astype(y.dtype)
    x_init = sde.alpha(t).astype(y.dtype) * y
    return sampler(rng, score_fn, y.shape, x_init=x_init, t_init=t, indices=indices)
