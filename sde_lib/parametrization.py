"""Converters between network parametrisations and the framework's `score_fn(x, t)`.

Notation (see `SDE`): x_t = alpha(t) (x_0 + sigma(t) z), marginal std s(t) = alpha(t) sigma(t).
- eps prediction (DDPM): eps(x, t) ~ E[z | x_t]; score = -eps / s(t).
- data prediction: x0(x, t) ~ E[x_0 | x_t]; score = (alpha x0 - x) / s^2.
- denoiser (EDM): D(x_hat, sigma) ~ E[x_0 | x_hat] on the unscaled x_hat = x / alpha.
- sigma-scaled output (NCSN++ `scale_by_sigma`): score = out / s(t).
All functions return new callables; none stores state, so they can be built inside `jit`.
"""
from __future__ import annotations

from collections.abc import Callable

from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast

EpsFn = Callable[[Array, Array], Array]
DataFn = Callable[[Array, Array], Array]
DenoiserFn = Callable[[Array, Array], Array]
"""`D(x_hat: [B, ...], sigma: [B]) -> [B, ...]`, the EDM denoiser in sigma space."""


def score_from_eps(sde: SDE, eps_fn: EpsFn) -> ScoreFn:
    def score_fn(x: Array, t: Array) -> Array:
        return -eps_fn(x, t) / batch_broadcast(sde.marginal_std(t).astype(x.dtype), x)

    return score_fn


def eps_from_score(sde: SDE, score_fn: ScoreFn) -> EpsFn:
    def eps_fn(x: Array, t: Array) -> Array:
        return -score_fn(x, t) * batch_broadcast(sde.marginal_std(t).astype(x.dtype), x)

    return eps_fn


def score_from_data(sde: SDE, data_fn: DataFn) -> ScoreFn:
    def score_fn(x: Array, t: Array) -> Array:
        alpha = batch_broadcast(sde.alpha(t).astype(x.dtype), x)
        std = batch_broadcast(sde.marginal_std(t).astype(x.dtype), x)
        return (alpha * data_fn(x, t) - x) / std**2

    return score_fn


def data_from_score(sde: SDE, score_fn: ScoreFn) -> DataFn:
    """Tweedie's formula: E[x_0 | x_t] = (x_t + s^2 score) / alpha."""

    def data_fn(x: Array, t: Array) -> Array:
        alpha = batch_broadcast(sde.alpha(t).astype(x.dtype), x)
        std = batch_broadcast(sde.marginal_std(t).astype(x.dtype), x)
        return (x + std**2 * score_fn(x, t)) / alpha

    return data_fn


def score_from_denoiser(sde: SDE, denoiser: DenoiserFn) -> ScoreFn:
    """score(x, t) = (alpha D(x / alpha, sigma(t)) - x) / (alpha sigma)^2 (Karras et al. 2022, eq. 3)."""

    def data_fn(x: Array, t: Array) -> Array:
        alpha = batch_broadcast(sde.alpha(t).astype(x.dtype), x)
        return denoiser(x / alpha, sde.sigma(t).astype(x.dtype))

    return score_from_data(sde, data_fn)


def denoiser_from_score(sde: SDE, score_fn: ScoreFn) -> DenoiserFn:
    """The EDM denoiser of a score model: evaluate at t(sigma) on the rescaled input."""
    data_fn = data_from_score(sde, score_fn)

    def denoiser(x_hat: Array, sigma: Array) -> Array:
        t = sde.t_of_sigma(sigma)
        alpha = batch_broadcast(sde.alpha(t).astype(x_hat.dtype), x_hat)
        return data_fn(alpha * x_hat, t)

    return denoiser


def score_from_sigma_scaled(sde: SDE, output_fn: Callable[[Array, Array], Array]) -> ScoreFn:
    """NCSN++'s `scale_by_sigma`: the network predicts std * score, so divide by std."""

    def score_fn(x: Array, t: Array) -> Array:
        return output_fn(x, t) / batch_broadcast(sde.marginal_std(t).astype(x.dtype), x)

    return score_fn
