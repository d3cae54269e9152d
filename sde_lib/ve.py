"""Variance-exploding SDE, the continuous limit of SMLD / NCSN (Song et al. 2021, eq. 9)."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sde_lib.base import SDE, Array, gaussian_logp


@dataclasses.dataclass(frozen=True)
class VESDE(SDE):
    """dx = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dw, sigma(t) = sigma_min (sigma_max / sigma_min)^t.

    As in the 2021 code, the perturbation kernel has std sigma(t) (the data are taken to carry
    noise sigma_min at t = 0), and the prior is N(0, sigma_max^2 I).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
            )
        if self.N < 2:
            raise ValueError(f"N must be at least 2, got {self.N}")

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
        diffusion = self.sigma(t).astype(x.dtype) * math.sqrt(2 * self._log_ratio)
        return jnp.zeros_like(x), diffusion

    def alpha(self, t: Array) -> Array:
        return jnp.ones_like(t)

    def sigma(self, t: Array) -> Array:
        return self.sigma_min * jnp.exp(t * self._log_ratio)

    def t_of_sigma(self, sigma: Array) -> Array:
        return jnp.log(sigma / self.sigma_min) / self._log_ratio

    def prior_sampling(self, rng: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        return jax.random.normal(rng, shape, dtype) * self.sigma_max

    def prior_logp(self, z: Array) -> Array:
        return gaussian_logp(z, self.sigma_max)

    @property
    def discrete_sigmas(self) -> np.ndarray:
        """SMLD's geometric noise levels, ascending, sigma_i = sigma(t_i) (float64, host side)."""
        return np.exp(np.linspace(np.log(self.sigma_min), np.log(self.sigma_max), self.N))

    def discretize(self, x: Array, t: Array) -> tuple[Array, Array]:
        """SMLD step: x_{i+1} = x_i + sqrt(sigma_{i+1}^2 - sigma_i^2) z (sigma_{-1} = 0)."""
        i = self.timestep_index(t)
        sigmas = jnp.asarray(self.discrete_sigmas, x.dtype)
        adjacent = jnp.where(i == 0, jnp.zeros_like(sigmas[i]), sigmas[jnp.maximum(i - 1, 0)])
        return jnp.zeros_like(x), jnp.sqrt(sigmas[i] ** 2 - adjacent**2)

    def likelihood_weight_cdf(self, t: Array) -> Array:
        # g^2 / std^2 = 2 log(sigma_max / sigma_min), a constant: uniform t is already optimal
        return 2 * self._log_ratio * t

    def likelihood_weight_cdf_inverse(self, F: Array) -> Array:
        return F / (2 * self._log_ratio)
