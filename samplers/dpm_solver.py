"""DPM-Solver++ multistep in data-prediction form (Lu et al. 2022, "DPM-Solver++: Fast Solver for
Guided Sampling of Diffusion Probabilistic Models", Algorithm 2 for 2M; 3M by the same
exponential-integrator construction).

On x_hat = x / alpha with lambda = -log sigma, the probability-flow ODE is solved exactly in its
linear part (Lu et al. 2022, eq. 9):

    x_hat(lambda') = (sigma' / sigma) x_hat(lambda) + sigma' int_lambda^lambda' e^u D(u) du,

and D is replaced by its Taylor polynomial in lambda around the current step, whose derivatives come
from the previous steps' denoiser outputs (multistep). With h = lambda' - lambda, u = lambda - lambda_i:
    sigma' e^lambda_i int_0^h u^k e^u du / k! = 1 - e^-h (k=0), h - 1 + e^-h (k=1), (h^2 - 2h + 2 - 2e^-h)/2 (k=2).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from samplers.registry import SAMPLERS
from samplers.sigma_solver import SigmaSpaceSolver
from sde_lib.base import SDE, Array, batch_broadcast

ORDERS = (1, 2, 3)
"""The multistep orders implemented (`multistep_weights`)."""


def multistep_weights(h: Array, h1: Array, h2: Array, order: Array, c: float = 1.0, taylor_second: bool = False,
                      xp=jnp) -> tuple[Array, Array, Array]:
    """Weights (w0, w1, w2) of D_i, D_{i-1}, D_{i-2} in one exponential-integrator step, each `[B]`.

    `h` is this step's lambda increment, `h1` and `h2` the previous two; `order` (per step, 1, 2 or
    3) is the order of the step; `c` the rate of the kernel c e^{-c (h - u)} that weights D over the
    step (1 for the ODE, 1 + eta for the SDE solvers of `dpm_solver_sde`). The update is
    x' = e^{-c h} (...) x + w0 D_i + w1 D_{i-1} + w2 D_{i-2}.
    Order 2 is Lu et al. (2022), Algorithm 2 (D_i + (D_i - D_{i-1}) h / (2 h1) times 1 - e^-h), or
    with `taylor_second` the exact integral of the line through (lambda_{i-1}, lambda_i).
    Order 3 integrates the quadratic through (lambda_{i-2}, lambda_{i-1}, lambda_i) exactly.
    `xp`: numpy for float64 coefficients on the host, jnp on device.
    """
    a = -xp.expm1(-c * h)  # int_0^h c e^{-c (h - u)} du
    zero = xp.zeros_like(h)
    # Newton form D(u) = D_i + f1 u + f3 u (u + h1), u = lambda - lambda_i (so u_{i-1} = -h1).
    b_coef = h - a / c  # int of the kernel times u
    c_coef = h**2 - 2.0 * h / c + 2.0 * a / c**2  # int of the kernel times u^2
    f1 = (1.0 / h1, -1.0 / h1, zero)
    f3 = (1.0 / (h1 * (h1 + h2)), -(1.0 / h1 + 1.0 / h2) / (h1 + h2), 1.0 / (h2 * (h1 + h2)))
    if taylor_second:
        w2nd = (a + b_coef * f1[0], b_coef * f1[1], zero)
    else:
        half_r = 0.5 * h / h1
        w2nd = (a * (1.0 + half_r), -a * half_r, zero)
    quad = b_coef * h1 + c_coef
    w3rd = (a + b_coef * f1[0] + quad * f3[0], b_coef * f1[1] + quad * f3[1], quad * f3[2])
    first = (a, zero, zero)
    return tuple(
        xp.where(order == 1, w1st, xp.where(order == 2, w2, w3))
        for w1st, w2, w3 in zip(first, w2nd, w3rd, strict=True)
    )


def lambda_increments(levels: Array, xp=jnp) -> tuple[Array, Array, Array]:
    """For positive levels `[n, B]`: each step's h = lambda' - lambda and the previous two (1 where
    there is none yet), each `[n - 1, B]`, with lambda = -log sigma. `xp`: numpy on the host, jnp on device."""
    h = xp.log(levels[:-1]) - xp.log(levels[1:])
    pad = xp.ones_like(h[:2])
    return h, xp.concatenate([pad[:1], h[:-1]], axis=0), xp.concatenate([pad, h[:-2]], axis=0)


@SAMPLERS.register("dpm_solver")
@dataclasses.dataclass(frozen=True)
class DPMSolverPPSampler(SigmaSpaceSolver):
    """DPM-Solver++(1/2/3M): `num_steps` score evaluations, multistep of the given `order`.

    The first steps use lower orders while the history fills; the last step, to sigma = 0
    (lambda = inf), is first order and returns the denoiser output. Order 1 is DDIM (eta = 0).

    Attributes:
      num_steps: number of steps (= score evaluations), at least 1.
      order: 1, 2 (DPM-Solver++(2M), the paper's recommendation) or 3.
      schedule: "log_snr" (uniform in lambda, the paper's choice), "karras" or "uniform_t".
      rho, sigma_min, sigma_max, eps: as for `EDMHeunSampler`.
    """

    sde: SDE
    num_steps: int = 20
    order: int = 2
    schedule: str = "log_snr"
    rho: float = 7.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    eps: float = 1e-3
    sigma_data: float = 0.5

    def check(self):
        if self.order not in ORDERS:
            raise ValueError(f"order must be 1, 2 or 3, got {self.order}")

    @property
    def rule_order(self) -> int:
        return self.order

    def coefficients(self, sigmas: Array, xp=jnp) -> tuple[Array, ...]:
        """`(ratio, w0, w1, w2)` of the steps 0..n-2 between the positive levels sigmas[:-1], each
        `[n - 1, B]`, from the noise levels `sigmas: [n + 1, B]`."""
        levels = sigmas[:-1]
        h, h1, h2 = lambda_increments(levels, xp)
        order = xp.minimum(xp.arange(h.shape[0]) + 1, self.order)[:, None]
        return (levels[1:] / levels[:-1], *multistep_weights(h, h1, h2, order, xp=xp))

    def solve(self, key, x, sigmas, coefficients, denoiser):
        levels = sigmas[:-1]

        def step(carry, inputs):
            x, prev, prev2 = carry
            sigma, ratio, w0, w1, w2 = inputs
            denoised = denoiser(x, sigma)
            x = (batch_broadcast(ratio, x) * x + batch_broadcast(w0, x) * denoised
                 + batch_broadcast(w1, x) * prev + batch_broadcast(w2, x) * prev2)
            return (x, denoised, prev), x

        history = jnp.zeros_like(x)
        (x, _, _), states = jax.lax.scan(step, (x, history, history), (levels[:-1], *coefficients))
        x = denoiser(x, levels[-1])
        return x, jnp.concatenate([states, x[None]])
