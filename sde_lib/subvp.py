"""Sub-VP SDE, whose variance stays below the VP one (Song et al. 2021, eq. 29)."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from sde_lib.base import Array, batch_broadcast
from sde_lib.beta_schedule import BetaScheduleSDE


@dataclasses.dataclass(frozen=True)
class subVPSDE(BetaScheduleSDE):
    """dx = -beta(t) x / 2 dt + sqrt(beta(t) (1 - e^{-2 B(t)})) dw; marginal std 1 - e^{-B(t)}.

    Its discretisation is Euler-Maruyama (as in the 2021 code); its Langevin step still uses the
    DDPM alpha_i of the shared beta schedule, which the 2021 code looked up on VP alone.
    """

    def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
        beta = self.beta(t).astype(x.dtype)
        B = self.integrated_beta(t)
        # 1 - e^{-2B} as 2 e^{-B} sinh(B): exact for small B, and XLA's CPU expm1 gave NaN in large
        # jitted batches here
        discount = (2.0 * jnp.exp(-B) * jnp.sinh(B)).astype(x.dtype)
        return -0.5 * batch_broadcast(beta, x) * x, jnp.sqrt(beta * discount)

    def sigma(self, t: Array) -> Array:
        # alpha sigma = 1 - e^{-B}  =>  sigma = e^{B/2} - e^{-B/2}
        return 2.0 * jnp.sinh(0.5 * self.integrated_beta(t))

    def t_of_sigma(self, sigma: Array) -> Array:
        return self.t_of_integrated_beta(2.0 * jnp.arcsinh(0.5 * sigma))

    def marginal_std(self, t: Array) -> Array:
        return -jnp.expm1(-self.integrated_beta(t))

    def likelihood_weight_cdf(self, t: Array) -> Array:
        # g^2 / std^2 = beta (1 + e^{-B}) / (1 - e^{-B}) = d/dt [2 log(e^B - 1) - B]
        B = self.integrated_beta(t)
        return 2.0 * jnp.log(jnp.expm1(B)) - B

    def likelihood_weight_cdf_inverse(self, F: Array) -> Array:
        # e^F = 4 sinh^2(B / 2)
        return self.t_of_integrated_beta(2.0 * jnp.arcsinh(0.5 * jnp.exp(0.5 * F)))
