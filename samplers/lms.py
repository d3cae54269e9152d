"""Linear multistep (Adams-Bashforth) on the probability-flow ODE in sigma space, as k-diffusion's
`sample_lms` (Crowson; the classical method, e.g. Hairer, Norsett & Wanner, "Solving ODEs I", III.1).

With the slope d = (x_hat - D(x_hat, sigma)) / sigma of dx_hat / dsigma (Karras et al. 2022, eq. 4),
each step integrates the Lagrange polynomial through the last `order` slopes (in sigma) exactly:

    x_hat_{i+1} = x_hat_i + sum_j d_{i-j} int_{sigma_i}^{sigma_{i+1}} l_j(s) ds,

l_j the Lagrange basis on the nodes sigma_i, sigma_{i-1}, ... (Gauss-Legendre with 3 nodes, exact
for these degrees <= 3, in place of k-diffusion's adaptive quadrature). The last step runs to sigma = 0,
where the slope is never evaluated, so every level costs one score evaluation.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from samplers.registry import SAMPLERS
from samplers.sigma_solver import SigmaSpaceSolver
from sde_lib.base import SDE, Array, batch_broadcast

_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(3)


def lms_coefficients(sigmas: Array, order: int, xp=jnp) -> Array:
    """Weights `[n, order, B]` of the slopes d_i, d_{i-1}, ... in step i from sigmas `[n + 1, B]`
    (sigma_i -> sigma_{i+1}); step i uses min(i + 1, order) slopes, the others weigh 0. `xp`: numpy
    for float64 weights on the host, jnp on device."""
    n = sigmas.shape[0] - 1
    lag = np.arange(n)[:, None] - np.arange(order)[None, :]  # node j of step i is sigma_{i-j}
    valid = (lag >= 0)[..., None, None]
    nodes = sigmas[np.clip(lag, 0, None)][..., None]  # [n, order, B, 1]
    lo, hi = sigmas[:-1, :, None], sigmas[1:, :, None]
    s = 0.5 * (lo + hi) + 0.5 * (hi - lo) * xp.asarray(_GAUSS_NODES, sigmas.dtype)[None, None]  # [n, B, 3]
    weights = xp.asarray(_GAUSS_WEIGHTS, sigmas.dtype)[None, None]
    coefficients = []
    for j in range(order):
        basis = xp.ones_like(s)
        for k in range(order):
            if k != j:
                # a missing node stands at sigma_0 (clipped), possibly on node j: divide by 1 there
                gap = xp.where(valid[:, j] & valid[:, k], nodes[:, j] - nodes[:, k], 1.0)
                factor = (s - nodes[:, k]) / gap
                basis = basis * xp.where(valid[:, k], factor, 1.0)
        integral = 0.5 * (hi[..., 0] - lo[..., 0]) * xp.sum(weights * basis, axis=-1)
        coefficients.append(xp.where(valid[:, j, ..., 0], integral, 0.0))
    return xp.stack(coefficients, axis=1)


@SAMPLERS.register("lms")
@dataclasses.dataclass(frozen=True)
class LMSSampler(SigmaSpaceSolver):
    """Linear multistep of the given `order` on `num_steps` levels and a last step to 0: `num_steps`
    score evaluations. The first steps use lower orders while the history fills.

    Attributes:
      num_steps: number of noise levels (= score evaluations), at least 1.
      order: number of slopes per step (1 is Euler; k-diffusion's default 4).
      schedule, rho, sigma_min, sigma_max, eps, sigma_data: as for `EDMHeunSampler` (default karras).
    """

    sde: SDE
    num_steps: int = 20
    order: int = 4
    schedule: str = "karras"
    rho: float = 7.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    eps: float = 1e-3
    sigma_data: float = 0.5

    def check(self):
        if self.order not in (1, 2, 3, 4):
            raise ValueError(f"order must be 1, 2, 3 or 4, got {self.order}")

    @property
    def rule_order(self) -> int:
        return self.order

    def coefficients(self, sigmas: Array, xp=jnp) -> tuple[Array]:
        return (lms_coefficients(sigmas, self.order, xp),)

    def solve(self, key, x, sigmas, coefficients, denoiser):
        return multistep(x, sigmas[:-1], *coefficients, denoiser)


def multistep(x: Array, sigmas: Array, weights: Array, denoiser) -> tuple[Array, Array]:
    """Linear multistep in sigma: from each level of `sigmas` one step x += sum_j weights[i, j]
    slope_{i-j}, with the slope (x - D(x, sigma)) / sigma of the ODE dx/dsigma and `weights:
    [n, order, B]`; one `lax.scan`, one evaluation per level. Returns (x, the states after each step)."""
    order = weights.shape[1]

    def step(carry, inputs):
        x, slopes = carry
        sigma, step_weights = inputs
        slope = (x - denoiser(x, sigma)) / batch_broadcast(sigma, x)
        slopes = jnp.concatenate([slope[None], slopes[:-1]], axis=0)
        x = x + sum(batch_broadcast(step_weights[j], x) * slopes[j] for j in range(order))
        return (x, slopes), x

    slopes = jnp.zeros((order, *x.shape), x.dtype)
    (x, _), states = jax.lax.scan(step, (x, slopes), (sigmas, weights))
    return x, states
