"""Denoising score-matching losses (Vincent 2011; Song et al. 2021, eq. 7; Ho et al. 2020).

A loss is a frozen dataclass holding its hyper-parameters; calling it with a score function,
a data batch `x: [B, ...]` and a PRNG key returns the per-example loss `[B]`. The model enters
only as `score_fn(x, t)`: bind parameters (and a dropout key) into it before the call, e.g.
`jax.grad(lambda p: loss(make_score_fn(p), x, key).mean())`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast
from sde_lib.beta_schedule import BetaScheduleSDE
from sde_lib.ve import VESDE


def reduce_per_example(values: Array, reduce_mean: bool) -> Array:
    """Mean or sum of `values: [B, ...]` over the data dimensions -> `[B]`."""
    flat = jnp.reshape(values, (values.shape[0], -1))
    return jnp.mean(flat, axis=1) if reduce_mean else jnp.sum(flat, axis=1)


def _denoising_residual(score_fn: ScoreFn, x: Array, t: Array, mean: Array, std: Array, z: Array) -> Array:
    """|std * score(x_t, t) + z|^2 per element: the DSM error with lambda(t) = std^2."""
    std_b = batch_broadcast(std, x)
    score = score_fn(mean + std_b * z, t)
    return jnp.square(std_b * score + z)


@dataclasses.dataclass(frozen=True)
class DSMLoss:
    """Continuous-time DSM: t ~ U(eps, T), lambda(t) = std(t)^2 or, with likelihood weighting,
    g(t)^2 (Song et al. 2021b, thm. 1). `importance_sampling` draws t with density proportional
    to g^2 / std^2 instead, which keeps the likelihood weighting unbiased at lower variance: the
    weight Z / (T - eps) makes it estimate the same time average as uniform t (the 2021 code's
    weight Z estimates the time integral, larger by the constant T - eps)."""

    sde: SDE
    reduce_mean: bool = False
    likelihood_weighting: bool = False
    importance_sampling: bool = False
    eps: float = 1e-5

    def __post_init__(self):
        if self.importance_sampling and not self.likelihood_weighting:
            raise ValueError("importance_sampling only applies with likelihood_weighting=True")
        if not 0 < self.eps < self.sde.T:
            raise ValueError(f"eps must lie in (0, T={self.sde.T}), got {self.eps}")

    def __call__(self, score_fn: ScoreFn, x: Array, rng: Array) -> Array:
        t_key, z_key = jax.random.split(rng)
        batch = x.shape[0]
        if self.importance_sampling:
            t, normaliser = self.sde.sample_importance_t(t_key, (batch,), self.eps)
            t = t.astype(x.dtype)
        else:
            t = jax.random.uniform(t_key, (batch,), x.dtype, self.eps, self.sde.T)
        z = jax.random.normal(z_key, x.shape, x.dtype)
        mean, std = self.sde.marginal_prob(x, t)
        losses = reduce_per_example(_denoising_residual(score_fn, x, t, mean, std, z), self.reduce_mean)
        if not self.likelihood_weighting:
            return losses
        if self.importance_sampling:
            return losses * (normaliser / (self.sde.T - self.eps)).astype(x.dtype)
        g2 = self.sde.sde(jnp.zeros_like(x), t)[1] ** 2
        return losses * g2 / std**2


@dataclasses.dataclass(frozen=True)
class DDPMLoss:
    """Discrete DDPM loss (Ho et al. 2020, eq. 14) on the VP discretisation: i ~ U{0..N-1},
    x_i = sqrt(abar_i) x + sqrt(1 - abar_i) z, and |sqrt(1 - abar_i) score + z|^2 = |eps - z|^2.
    The score function is called at t_i = i T / (N - 1)."""

    sde: BetaScheduleSDE
    reduce_mean: bool = True

    def __call__(self, score_fn: ScoreFn, x: Array, rng: Array) -> Array:
        i_key, z_key = jax.random.split(rng)
        i = jax.random.randint(i_key, (x.shape[0],), 0, self.sde.N)
        alphas_cumprod = jnp.asarray(self.sde.alphas_cumprod, x.dtype)[i]
        t = i.astype(x.dtype) * self.sde.T / (self.sde.N - 1)
        z = jax.random.normal(z_key, x.shape, x.dtype)
        mean = batch_broadcast(jnp.sqrt(alphas_cumprod), x) * x
        std = jnp.sqrt(1.0 - alphas_cumprod)
        return reduce_per_example(_denoising_residual(score_fn, x, t, mean, std, z), self.reduce_mean)


@dataclasses.dataclass(frozen=True)
class SMLDLoss:
    """Discrete SMLD / NCSN loss (Song & Ermon 2019, eq. 5): i ~ U{0..N-1}, x_i = x + sigma_i z,
    weighted by sigma_i^2. The score function is called at t_i = i T / (N - 1)."""

    sde: VESDE
    reduce_mean: bool = False

    def __call__(self, score_fn: ScoreFn, x: Array, rng: Array) -> Array:
        i_key, z_key = jax.random.split(rng)
        i = jax.random.randint(i_key, (x.shape[0],), 0, self.sde.N)
        sigma = jnp.asarray(self.sde.discrete_sigmas, x.dtype)[i]
        t = i.astype(x.dtype) * self.sde.T / (self.sde.N - 1)
        z = jax.random.normal(z_key, x.shape, x.dtype)
        return reduce_per_example(_denoising_residual(score_fn, x, t, x, sigma, z), self.reduce_mean)
