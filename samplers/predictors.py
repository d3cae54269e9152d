"""Predictors of predictor-corrector sampling (Song et al. 2021, sec. 4.2 and appendix G).

A predictor takes one step of a numerical solver of the reverse-time SDE (eq. 6), or of the
probability-flow ODE (eq. 13) with `probability_flow=True`, from time `t` to `t + dt` (dt < 0).
Built as `cls(sde, score_fn, probability_flow=False)`; `update(rng, x, t, dt) -> (x, x_mean)`
with `x: [B, ...]`, `t: [B]` and `dt` a scalar. `x_mean` is the step without its injected noise
(the PC sampler's `denoise` is a Tweedie step instead, see `samplers.pc`). `nfe` is the number of
score evaluations per `update`. Register new predictors in `samplers.PREDICTORS`.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from samplers.registry import PREDICTORS
from sde_lib.base import SDE, Array, ReverseSDE, ScoreFn, batch_broadcast
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE


@dataclasses.dataclass(frozen=True)
class Predictor(abc.ABC):
    """One reverse-time step of a solver; see the module docstring for the contract."""

    sde: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    nfe: ClassVar[int] = 1
    """Score evaluations per `update`."""

    @property
    def rsde(self) -> ReverseSDE:
        return self.sde.reverse(self.score_fn, self.probability_flow)

    @abc.abstractmethod
    def update(self, rng: Array, x: Array, t: Array, dt: Array | float) -> tuple[Array, Array]:
        """Step `x: [B, ...]` from `t: [B]` to `t + dt`; returns `(x, x_mean)`, both `[B, ...]`."""


@PREDICTORS.register("euler_maruyama")
@dataclasses.dataclass(frozen=True)
class EulerMaruyamaPredictor(Predictor):
    """x <- x + f_rev(x, t) dt + g(t) sqrt(-dt) z, the Euler-Maruyama step of eq. 6 (eq. 13 for the
    probability flow, where g_rev = 0 makes it Euler's method)."""

    def update(self, rng, x, t, dt):
        drift, diffusion = self.rsde.sde(x, t)
        x_mean = x + drift * dt
        noise = jax.random.normal(rng, x.shape, x.dtype)
        scale = diffusion.astype(x.dtype) * jnp.sqrt(-jnp.asarray(dt, x.dtype))
        return x_mean + batch_broadcast(scale, x) * noise, x_mean


@PREDICTORS.register("reverse_diffusion")
@dataclasses.dataclass(frozen=True)
class ReverseDiffusionPredictor(Predictor):
    """The reverse of the forward discretisation x_{i+1} = x_i + f_i + G_i z (Song et al. 2021,
    eq. 46): x_i = x_{i+1} - f_{i+1} + G_{i+1}^2 score + G_{i+1} z. It uses the SDE's own step
    size T / N, not `dt`; the PC sampler sets N so that the two agree (`PCSampler.chain_size`)."""

    def update(self, rng, x, t, dt):
        f, G = self.rsde.discretize(x, t)
        x_mean = x - f
        noise = jax.random.normal(rng, x.shape, x.dtype)
        return x_mean + batch_broadcast(G.astype(x.dtype), x) * noise, x_mean


@PREDICTORS.register("ancestral_sampling")
@dataclasses.dataclass(frozen=True)
class AncestralSamplingPredictor(Predictor):
    """Ancestral sampling of the discrete chains: DDPM for VP (Ho et al. 2020, eq. 11 / Alg. 2) and
    SMLD for VE (Song et al. 2021, eq. 47). Like `reverse_diffusion` it works on the SDE's grid of
    N steps. Sub-VP has no discrete ancestral chain, and the step is stochastic by construction."""

    def __post_init__(self):
        if not isinstance(self.sde, VPSDE | VESDE):
            raise ValueError(
                f"ancestral_sampling supports VPSDE (DDPM) and VESDE (SMLD) only, not "
                f"{type(self.sde).__name__}; use reverse_diffusion or euler_maruyama instead"
            )
        if self.probability_flow:
            raise ValueError("ancestral_sampling has no probability-flow version; use reverse_diffusion")

    def update(self, rng, x, t, dt):
        i = self.sde.timestep_index(t)
        score = self.score_fn(x, t)
        noise = jax.random.normal(rng, x.shape, x.dtype)
        if isinstance(self.sde, VPSDE):
            beta = jnp.asarray(self.sde.discrete_betas, x.dtype)[i]
            # x_{i-1} = (x_i + beta_i score) / sqrt(1 - beta_i) + sqrt(beta_i) z
            x_mean = (x + batch_broadcast(beta, x) * score) / batch_broadcast(jnp.sqrt(1.0 - beta), x)
            std = jnp.sqrt(beta)
        else:
            sigmas = jnp.asarray(self.sde.discrete_sigmas, x.dtype)
            sigma = sigmas[i]
            prev = jnp.where(i == 0, jnp.zeros_like(sigma), sigmas[jnp.maximum(i - 1, 0)])
            var_step = sigma**2 - prev**2
            # posterior of the SMLD chain: mean x + (s_i^2 - s_{i-1}^2) score,
            # variance s_{i-1}^2 (s_i^2 - s_{i-1}^2) / s_i^2
            x_mean = x + batch_broadcast(var_step, x) * score
            std = jnp.sqrt(prev**2 * var_step / sigma**2)
        return x_mean + batch_broadcast(std, x) * noise, x_mean


@PREDICTORS.register("none")
@dataclasses.dataclass(frozen=True)
class NonePredictor(Predictor):
    """No prediction: corrector-only sampling. Costs no score evaluation."""

    nfe: ClassVar[int] = 0

    def update(self, rng, x, t, dt):
        return x, x
