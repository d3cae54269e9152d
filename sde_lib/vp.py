"""Variance-preserving SDE, the continuous limit of DDPM (Song et al. 2021, eq. 11)."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from sde_lib.base import Array, batch_broadcast
from sde_lib.beta_schedule import BetaScheduleSDE


@dataclasses.dataclass(frozen=True)
class VPSDE(BetaScheduleSDE):
    """dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw; marginal std sqrt(1 - exp(-B(t))); prior N(0, I)."""

    def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
        beta = self.beta(t).astype(x.dtype)
        return -0.5 * batch_broadcast(beta, x) * x, jnp.sqrt(beta)

    def sigma(self, t: Array) -> Array:
        # alpha sigma = sqrt(1 - e^{-B})  =>  sigma = sqrt(e^B - 1)
        return jnp.sqrt(jnp.expm1(self.integrated_beta(t)))

    def t_of_sigma(self, sigma: Array) -> Array:
        return self.t_of_integrated_beta(jnp.log1p(sigma**2))

    def marginal_std(self, t: Array) -> Array:
        # Direct form: exact as t -> 0, where alpha * sigma would lose digits.
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def discretize(self, x: Array, t: Array) -> tuple[Array, Array]:
        """DDPM ancestral step: x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z."""
        if self.beta_max / self.N > 1.0:  # host-side: sqrt(1 - beta_i) would be NaN, silently
            raise ValueError(f"VPSDE(N={self.N}, beta_max={self.beta_max}) has no DDPM discretisation: the last "
                             f"discrete beta, beta_max / N = {self.beta_max / self.N:.3g}, must be <= 1; use N >= beta_max")
        beta = self.discrete_beta(t).astype(x.dtype)
        f = batch_broadcast(jnp.sqrt(1.0 - beta), x) * x - x
        return f, jnp.sqrt(beta)

    def likelihood_weight_cdf(self, t: Array) -> Array:
        # g^2 / std^2 = beta / (1 - e^{-B}) = d/dt log(e^B - 1)
        return jnp.log(jnp.expm1(self.integrated_beta(t)))

    def likelihood_weight_cdf_inverse(self, F: Array) -> Array:
        return self.t_of_integrated_beta(jnp.logaddexp(0.0, F))
