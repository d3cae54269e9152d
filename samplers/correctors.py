"""Correctors of predictor-corrector sampling (Song et al. 2021, sec. 4.2, Algorithms 4 and 5).

A corrector runs `n_steps` of Langevin MCMC targeting p_t at a fixed time t, so the sample
stays on the marginal the predictor aims for. Built as `cls(sde, score_fn, snr, n_steps)`;
`update(rng, x, t) -> (x, x_mean)` with `x: [B, ...]` and `t: [B]`; `x_mean` is the last step
without its noise. `nfe` is the number of score evaluations per `update` (= n_steps). The
steps run in one `lax.fori_loop`. Register new correctors in `samplers.CORRECTORS`.
"""
from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp

from samplers.common import batch_mean
from samplers.registry import CORRECTORS
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast


def _norms(v: Array) -> Array:
    """Euclidean norm of each example, `[B, ...] -> [B]`."""
    return jnp.linalg.norm(jnp.reshape(v, (v.shape[0], -1)), axis=-1)


@dataclasses.dataclass(frozen=True)
class Corrector(abc.ABC):
    """Langevin-type MCMC at fixed t with step size `step_size(x, t, score, noise) -> [B]`:
    x <- x + eps score + sqrt(2 eps) z."""

    sde: SDE
    score_fn: ScoreFn
    snr: float
    n_steps: int

    def __post_init__(self):
        if self.n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {self.n_steps}")
        if not self.snr > 0:
            raise ValueError(f"snr must be positive, got {self.snr}")

    @property
    def nfe(self) -> int:
        """Score evaluations per `update`."""
        return self.n_steps

    @abc.abstractmethod
    def step_size(self, t: Array, score: Array, noise: Array) -> Array:
        """Langevin step size eps `[B]` at `t: [B]` for the current score and noise `[B, ...]`."""

    def update(self, rng: Array, x: Array, t: Array) -> tuple[Array, Array]:
        """`n_steps` Langevin steps at `t: [B]` from `x: [B, ...]`; returns `(x, x_mean)`."""

        def body(_, state):
            key, x, _ = state
            key, sub = jax.random.split(key)
            score = self.score_fn(x, t)
            noise = jax.random.normal(sub, x.shape, x.dtype)
            eps = self.step_size(t, score, noise).astype(x.dtype)
            x_mean = x + batch_broadcast(eps, x) * score
            return key, x_mean + batch_broadcast(jnp.sqrt(2.0 * eps), x) * noise, x_mean

        _, x, x_mean = jax.lax.fori_loop(0, self.n_steps, body, (rng, x, x))
        return x, x_mean


@CORRECTORS.register("langevin")
@dataclasses.dataclass(frozen=True)
class LangevinCorrector(Corrector):
    """Langevin corrector with a signal-to-noise step size (Song et al. 2021, Algorithm 5):
    eps = 2 alpha_i (snr ||z|| / ||score||)^2, alpha_i = 1 - beta_i for the beta-schedule SDEs
    (VP and sub-VP) and 1 for VE, via `sde.discrete_alpha`.

    As in the reference, the norms are averaged over the batch, so one step size serves the
    whole batch (a per-example ratio would correlate each step with its own noise in low
    dimensions). The mean is a cross-device reduction when the batch is sharded; with it, a sample
    depends on the rest of its batch (`samplers.common`).
    """

    def step_size(self, t, score, noise):
        ratio = batch_mean(_norms(noise)) / batch_mean(_norms(score))
        alpha = self.sde.discrete_alpha(t).astype(score.dtype)
        return 2.0 * alpha * (self.snr * ratio) ** 2


@CORRECTORS.register("ald")
@dataclasses.dataclass(frozen=True)
class AnnealedLangevinCorrector(Corrector):
    """Annealed Langevin dynamics as a corrector (Song & Ermon 2019, Algorithm 1; Song et al.
    2021, Algorithm 4 form): eps_i = 2 alpha_i (snr s_i)^2 with s_i the marginal std at t_i.

    eps_i is proportional to s_i^2, i.e. NCSN's eps (sigma_i / sigma_L)^2 with snr playing the
    role of sqrt(eps / 2) / sigma_L; alpha_i as in `LangevinCorrector` (VP, sub-VP and VE).
    """

    def step_size(self, t, score, noise):
        std = self.sde.marginal_std(t).astype(score.dtype)
        alpha = self.sde.discrete_alpha(t).astype(score.dtype)
        return 2.0 * alpha * (self.snr * std) ** 2


@CORRECTORS.register("none")
@dataclasses.dataclass(frozen=True)
class NoneCorrector(Corrector):
    """No correction. Costs no score evaluation whatever `n_steps` says."""

    @property
    def nfe(self) -> int:
        return 0

    def step_size(self, t, score, noise):
        return jnp.zeros_like(t)

    def update(self, rng, x, t):
        return x, x
