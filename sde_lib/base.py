"""The SDE interface of Song et al., "Score-Based Generative Modeling through SDEs" (ICLR 2021).

Shapes: `x` is `[B, ...]` (any number of data dimensions) and `t` is `[B]`. Per-example
coefficients (diffusion, std, alpha, sigma) come back as `[B]`; `batch_broadcast` lifts them
to the rank of `x`. Every function is pure, so it works under `jit`, `vmap` and `grad`, and
returns results in the dtype of `x`.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
ScoreFn = Callable[[Array, Array], Array]
"""The framework's currency: `score_fn(x: [B, ...], t: [B]) -> [B, ...]`, the score of p_t."""


def batch_broadcast(v: Array, x: Array) -> Array:
    """Reshape a per-example `v: [B]` to `[B, 1, ..., 1]` so it multiplies `x: [B, ...]`."""
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def gaussian_logp(z: Array, std: Array | float) -> Array:
    """Log-density of N(0, std^2 I) at `z: [B, ...]`, summed over data dimensions -> `[B]`."""
    dims = math.prod(z.shape[1:])
    sq = jnp.sum(jnp.reshape(z, (z.shape[0], -1)) ** 2, axis=1)
    std = jnp.asarray(std, z.dtype)
    return -0.5 * dims * jnp.log(2 * jnp.pi * std**2) - 0.5 * sq / std**2


@dataclasses.dataclass(frozen=True)
class SDE(abc.ABC):
    """A forward SDE dx = f(x, t) dt + g(t) dw on [0, T] with Gaussian perturbation kernels.

    Every SDE here has marginals x_t = alpha(t) * (x_0 + sigma(t) * z): `alpha` is the scale and
    `sigma` the noise level of the "sigma-space" view (Karras et al. 2022, eq. 10), so
    `marginal_prob(x, t)` is `(alpha(t) x, alpha(t) sigma(t))`. Frozen, hence hashable: pass an
    SDE as a static argument to `jax.jit`.
    """

    N: int = 1000
    """Number of steps of the discretisation (`discretize`, discrete losses, default samplers)."""

    @property
    def T(self) -> float:
        """End time of the forward process."""
        return 1.0

    # --- Continuous-time definition -------------------------------------------------------
    @abc.abstractmethod
    def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
        """Drift `[B, ...]` and diffusion g(t) `[B]` of the forward SDE."""

    @abc.abstractmethod
    def alpha(self, t: Array) -> Array:
        """Scale of the marginal: x_t = alpha(t) (x_0 + sigma(t) z). `[B] -> [B]`."""

    @abc.abstractmethod
    def sigma(self, t: Array) -> Array:
        """Noise level in sigma space (EDM's sigma). `[B] -> [B]`."""

    @abc.abstractmethod
    def t_of_sigma(self, sigma: Array) -> Array:
        """Inverse of `sigma(t)`: the time at which the noise level is `sigma`."""

    def marginal_std(self, t: Array) -> Array:
        """Standard deviation of p_0t(x_t | x_0), `[B]`."""
        return self.alpha(t) * self.sigma(t)

    def marginal_prob(self, x: Array, t: Array) -> tuple[Array, Array]:
        """Mean `[B, ...]` and std `[B]` of the perturbation kernel p_0t(x_t | x_0 = x)."""
        alpha = self.alpha(t).astype(x.dtype)
        return batch_broadcast(alpha, x) * x, self.marginal_std(t).astype(x.dtype)

    @abc.abstractmethod
    def prior_sampling(self, rng: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        """A sample of the prior p_T."""

    @abc.abstractmethod
    def prior_logp(self, z: Array) -> Array:
        """Log-density of the prior p_T at `z: [B, ...]`, per example -> `[B]`."""

    # --- Discrete view ----------------------------------------------------------------------
    def discretize(self, x: Array, t: Array) -> tuple[Array, Array]:
        """One step of the discretised SDE, x_{i+1} = x_i + f_i + G_i z_i: returns (f `[B,...]`, G `[B]`).

        The default is Euler-Maruyama with dt = T / N; VP and VE override it with the DDPM and
        SMLD discretisations (Song et al. 2021, appendix D).
        """
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * jnp.sqrt(jnp.asarray(dt, x.dtype))

    def timestep_index(self, t: Array) -> Array:
        """Index i of the discretisation step that contains t, on the grid t_i = i T / (N - 1).

        Floors like the 2021 code (a sampler at t = T - k (T - eps) / (N - 1) uses step N-1-k);
        the small slack keeps grid times that float rounding puts just below t_i on step i.
        """
        return jnp.floor(t * (self.N - 1) / self.T + 1e-4).astype(jnp.int32)

    def discrete_alpha(self, t: Array) -> Array:
        """Per-step signal retention alpha_i = 1 - beta_i of the discretisation, `[B]`.

        The Langevin corrector scales its step by it. It is 1 for processes without drift (VE);
        beta-schedule SDEs (VP and sub-VP alike) return 1 - beta_i of their DDPM schedule.
        """
        return jnp.ones_like(t)

    # --- Time reversal ----------------------------------------------------------------------
    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (Song et al. 2021, eq. 6) or its probability-flow ODE (eq. 13)."""
        return ReverseSDE(self, score_fn, probability_flow)

    # --- Importance sampling of t for likelihood weighting ----------------------------------
    def likelihood_weight_cdf(self, t: Array) -> Array:
        """An antiderivative F(t) of g(t)^2 / std(t)^2, the density of t that makes the
        likelihood-weighted DSM loss have constant weight (Song et al. 2021b, sec. 5)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form importance sampling of t"
        )

    def likelihood_weight_cdf_inverse(self, F: Array) -> Array:
        """Inverse of `likelihood_weight_cdf`."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form importance sampling of t"
        )

    def sample_importance_t(self, rng: Array, shape: tuple[int, ...], eps: float) -> tuple[Array, Array]:
        """t on [eps, T] with density proportional to g^2 / std^2, and its normaliser Z.

        Returns `(t, Z)`; E_t[Z * w(t)] over this density equals the integral of
        (g^2/std^2) w(t) dt, so multiplying a likelihood-weighted loss's |std score + z|^2 by Z
        keeps it unbiased.
        """
        lo = self.likelihood_weight_cdf(jnp.asarray(eps))
        hi = self.likelihood_weight_cdf(jnp.asarray(self.T))
        u = jax.random.uniform(rng, shape, dtype=lo.dtype)
        t = self.likelihood_weight_cdf_inverse(lo + u * (hi - lo))
        return jnp.clip(t, eps, self.T), hi - lo


@dataclasses.dataclass(frozen=True)
class ReverseSDE:
    """Reverse-time SDE dx = [f - g^2 score] dt + g dw_bar, or with `probability_flow` the ODE
    dx = [f - g^2 score / 2] dt (Song et al. 2021, eqs. 6 and 13). Time runs from T to 0."""

    forward: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    @property
    def N(self) -> int:
        return self.forward.N

    @property
    def T(self) -> float:
        return self.forward.T

    def _coefficient(self) -> float:
        return 0.5 if self.probability_flow else 1.0

    def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
        """Drift `[B, ...]` and diffusion `[B]` (zero for the probability flow)."""
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        drift = drift - batch_broadcast(diffusion**2, x) * score * self._coefficient()
        diffusion = jnp.zeros_like(diffusion) if self.probability_flow else diffusion
        return drift, diffusion

    def discretize(self, x: Array, t: Array) -> tuple[Array, Array]:
        """Reverse step of the forward discretisation: f - G^2 score (/2 for the flow), and G."""
        f, G = self.forward.discretize(x, t)
        rev_f = f - batch_broadcast(G**2, x) * self.score_fn(x, t) * self._coefficient()
        rev_G = jnp.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G
