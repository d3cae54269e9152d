"""Annealed Langevin dynamics, the NCSN sampler (Song & Ermon 2019, "Generative Modeling by Estimating
Gradients of the Data Distribution", Algorithm 1), for every SDE here.

The chain runs in the sigma-space view x_t = alpha(t) (x_0 + sigma(t) z) (Karras et al. 2022, eq. 10):
on x_hat = x / alpha, whose law at level sigma is the data plus N(0, sigma^2 I) for every SDE, with
score alpha(t) score(alpha(t) x_hat, t). The `num_scales` levels are geometric between sigma(t_init)
and sigma(eps), NCSN's sequence (for VE they are SMLD's sigmas at uniform times). At each level,
`n_steps_each` Langevin steps x_hat <- x_hat + (a_i / 2) score_hat + sqrt(a_i) z with
a_i = step_lr * sigma_i^2 / sigma_L^2. The steps are those of `samplers.correctors.Corrector` (whose eps
is a_i / 2); unlike the PC `ald` corrector, the step size is NCSN's, with no DDPM factor alpha_i.
Running in x-space instead would make the chain track the moving mean alpha(t) E[x_0], which the
vanishing small-level steps cannot follow (sub-VP, where 1 - alpha ~ sigma, is visibly biased).
The samples are returned in x-space at t_L = eps, x = alpha(eps) x_hat. With `denoise`, a final Tweedie
step E[x_0 | x_{t_L}] = (x + s_L^2 score) / alpha(t_L) removes the last level's noise
(Jolicoeur-Martineau et al. 2021; NCSNv2's `denoise`).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from samplers import common
from samplers.common import initial_state
from samplers.correctors import Corrector
from samplers.registry import SAMPLERS
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast
from sde_lib.parametrization import data_from_score


@dataclasses.dataclass(frozen=True)
class NCSNLangevin(Corrector):
    """Langevin steps in sigma space with NCSN's step size: `snr` holds step_lr, and the corrector's
    eps = a_i / 2 with a_i = step_lr (sigma(t_i) / sigma_last)^2.

    Not registered as a corrector: the PC `ald` corrector is its SNR-parametrised counterpart.
    """

    sigma_last: float = 1.0

    def step_size(self, t, score, noise):
        sigma = self.sde.sigma(t).astype(score.dtype)
        return 0.5 * self.snr * (sigma / self.sigma_last) ** 2


@SAMPLERS.register("ald")
@dataclasses.dataclass(frozen=True)
class AnnealedLangevinSampler:
    """NCSN's annealed Langevin dynamics; see the module docstring.

    Attributes:
      num_scales: number L of noise levels (default `sde.N`).
      n_steps_each: Langevin steps per level (NCSN's T).
      step_lr: NCSN's epsilon: the step at the last level; a_i = step_lr sigma_i^2 / sigma_L^2.
      denoise: end with one Tweedie step (one more score evaluation).
      eps: time of the last level.
    Score evaluations per example: num_scales * n_steps_each + denoise.
    """

    sde: SDE
    num_scales: int | None = None
    n_steps_each: int = 5
    step_lr: float = 6.2e-6
    denoise: bool = True
    eps: float = 1e-3

    def __post_init__(self):
        if self.num_scales is not None and self.num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {self.num_scales}")
        if self.n_steps_each < 1:
            raise ValueError(f"n_steps_each must be >= 1, got {self.n_steps_each}")
        if not self.step_lr > 0:
            raise ValueError(f"step_lr must be positive, got {self.step_lr}")
        if not 0 < self.eps < self.sde.T:
            raise ValueError(f"eps must lie in (0, T={self.sde.T}), got {self.eps}")

    @property
    def scales(self) -> int:
        return self.sde.N if self.num_scales is None else self.num_scales

    @property
    def nfe(self) -> int:
        """Exact score evaluations per example of one call."""
        return self.scales * self.n_steps_each + int(self.denoise)

    def __call__(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None = None,
                 t_init: Array | float | None = None, *, indices: Array | None = None) -> tuple[Array, int]:
        """Samples `[*shape]` from `x_init` at `t_init` (default: the prior at T), and the nfe."""
        t_start = common.host_start_time(t_init, self.sde.T)
        times = None if t_start is None else common.cast(self._host_times(t_start), x_init)
        return common.run_sampler(_ald_body, self, rng, score_fn, shape, x_init, t_init, indices,
                                  shared=times), self.nfe

    def _times(self, t_start, xp=jnp, sde_fn=lambda f, v: f(v)):
        """The levels' times `[num_scales]`: geometric noise levels from sigma(t_start) to sigma(eps)."""
        sde = self.sde
        t_start = xp.asarray(t_start)
        t_last = xp.asarray(self.eps, t_start.dtype)
        sigmas = xp.geomspace(sde_fn(sde.sigma, t_start), sde_fn(sde.sigma, t_last), self.scales)
        ts = xp.clip(sde_fn(sde.t_of_sigma, sigmas), 0.0, sde.T).astype(t_start.dtype)
        return xp.concatenate([t_start[None], ts[1:-1], t_last[None]])[-self.scales:]

    @functools.lru_cache(maxsize=64)  # noqa: B019  (frozen, hashable dataclass: the cache is per setting)
    def _host_times(self, t_start: float) -> np.ndarray:
        times = self._times(np.float64(t_start), np, common.host_float64)
        times.flags.writeable = False
        return times


def _ald_body(static, rng, score_fn, start, times):
    sampler, example_shape, _, _ = static
    sde = sampler.sde
    x_init, t_init = start
    prior_key, chain_key = jax.random.split(rng)
    x, t_start = initial_state(sde, prior_key, (1, *example_shape), x_init,
                               None if t_init is None else t_init[0], score_fn)
    ts = sampler._times(t_start, jnp) if times is None else times
    t_last = jnp.asarray(sampler.eps, x.dtype)
    sigma_last = sde.sigma(t_last)

    def sigma_space_score(x_hat, t):
        alpha = batch_broadcast(sde.alpha(t).astype(x_hat.dtype), x_hat)
        return alpha * score_fn(alpha * x_hat, t)

    langevin = NCSNLangevin(sde, sigma_space_score, sampler.step_lr, sampler.n_steps_each, sigma_last)

    def level(x_hat, inputs):
        t, key = inputs
        x_hat, _ = langevin.update(key, x_hat, jnp.full((x_hat.shape[0],), t, x_hat.dtype))
        return x_hat, None

    x_hat = x / sde.alpha(t_start).astype(x.dtype)
    x_hat, _ = jax.lax.scan(level, x_hat, (ts, jax.random.split(chain_key, sampler.scales)))
    x = sde.alpha(t_last).astype(x.dtype) * x_hat
    if sampler.denoise:
        x = data_from_score(sde, score_fn)(x, jnp.full((x.shape[0],), t_last, x.dtype))
    return x
