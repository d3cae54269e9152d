"""The linear beta schedule shared by the VP and sub-VP SDEs (Song et al. 2021, eqs. 11, 29)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sde_lib.base import SDE, Array, gaussian_logp


@dataclasses.dataclass(frozen=True)
class BetaScheduleSDE(SDE):
    """An SDE whose drift is -beta(t) x / 2 with beta(t) = beta_min + t (beta_max - beta_min)."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        if not 0 <= self.beta_min <= self.beta_max:
            raise ValueError(
                f"need 0 <= beta_min <= beta_max, got beta_min={self.beta_min}, beta_max={self.beta_max}"
            )
        if self.N < 2:
            raise ValueError(f"N must be at least 2, got {self.N}")

    def beta(self, t: Array) -> Array:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t: Array) -> Array:
        """B(t) = int_0^t beta(s) ds; the marginal scale is exp(-B(t) / 2)."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def t_of_integrated_beta(self, B: Array) -> Array:
        """Inverse of `integrated_beta`, written so that beta_max == beta_min is no special case."""
        delta = self.beta_max - self.beta_min
        return 2 * B / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2 * delta * B))

    def alpha(self, t: Array) -> Array:
        return jnp.exp(-0.5 * self.integrated_beta(t))

    @property
    def discrete_betas(self) -> np.ndarray:
        """The DDPM betas beta_i = beta(t_i) / N, i = 0..N-1 (float64, host side)."""
        return np.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """DDPM's alpha-bar_i = prod_{j<=i} (1 - beta_j) (float64, host side)."""
        return np.cumprod(1.0 - self.discrete_betas)

    def discrete_beta(self, t: Array) -> Array:
        """beta_i of the step containing t, `[B]`."""
        return jnp.asarray(self.discrete_betas, t.dtype)[self.timestep_index(t)]

    def discrete_alpha(self, t: Array) -> Array:
        return 1.0 - self.discrete_beta(t)

    def prior_sampling(self, rng: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        return jax.random.normal(rng, shape, dtype)

    def prior_logp(self, z: Array) -> Array:
        return gaussian_logp(z, 1.0)
