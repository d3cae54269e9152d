"""DPM-Solver++ 2M SDE / 3M SDE: multistep exponential integrators of the reverse SDE in data-prediction
form (Lu et al. 2022, "DPM-Solver++", sec. 5 / appendix, SDE-DPM-Solver++; the 2M / 3M SDE multistep
samplers of k-diffusion).

On x_hat = x / alpha with lambda = -log sigma, the SDEs with the marginals of the data's noising,
    dx_hat = c (D - x_hat) dlambda + sqrt(2 eta) sigma dW,   c = 1 + eta,
have the exact solution over a step h = lambda' - lambda
    x_hat' = e^{-c h} x_hat + int_0^h c e^{-c (h - u)} D(lambda + u) du + sigma' sqrt(1 - e^{-2 eta h}) z.
eta = 1 is the reverse-time SDE (its first-order step is DDPM's posterior q(x_s | x_t, x_0 = D)), eta = 0
the probability-flow ODE. D is replaced by the polynomial through the last `order` denoiser outputs,
integrated exactly (`dpm_solver.multistep_weights` with c = 1 + eta).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from samplers.dpm_solver import lambda_increments, multistep_weights
from samplers.registry import SAMPLERS
from samplers.sigma_solver import SigmaSpaceSolver
from sde_lib.base import SDE, Array, batch_broadcast


@SAMPLERS.register("dpm_solver_sde")
@dataclasses.dataclass(frozen=True)
class DPMSolverSDESampler(SigmaSpaceSolver):
    """DPM-Solver++(2M / 3M) SDE: `num_steps` score evaluations, fresh noise on every step but the last.

    The first steps use lower orders while the history fills; the last step, to sigma = 0, returns
    the denoiser output (no noise). Its mean follows the deterministic multistep scheme, so the
    sampler converges weakly at `order` to the reverse SDE, which from (x_init, t_init) samples
    p(x_0 | x_{t_init} = x_init) (posterior-correct, unlike a Langevin corrector).

    Attributes:
      num_steps: number of steps (= score evaluations), at least 1.
      order: 2 (2M SDE) or 3 (3M SDE); 1 is DDIM with eta.
      eta: stochasticity; 1 the reverse SDE, 0 the probability-flow ODE.
      s_noise: scale of the injected noise (1 exact; k-diffusion's s_noise).
      schedule, rho, sigma_min, sigma_max, eps, sigma_data: as for `DPMSolverPPSampler`.
    """

    sde: SDE
    num_steps: int = 20
    order: int = 2
    eta: float = 1.0
    s_noise: float = 1.0
    schedule: str = "log_snr"
    rho: float = 7.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    eps: float = 1e-3
    sigma_data: float = 0.5

    def check(self):
        if self.order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {self.order}")
        if not self.eta >= 0 or not self.s_noise >= 0:
            raise ValueError(f"eta and s_noise must be non-negative, got eta={self.eta}, s_noise={self.s_noise}")

    @property
    def rule_order(self) -> int:
        return self.order

    def coefficients(self, sigmas: Array, xp=jnp) -> tuple[Array, ...]:
        """`(decay, noise std, w0, w1, w2)` of the steps between the positive levels sigmas[:-1], each
        `[n - 1, B]`: x' = decay x + sum_j w_j D_{i-j} + std z."""
        levels = sigmas[:-1]
        h, h1, h2 = lambda_increments(levels, xp)
        order = xp.minimum(xp.arange(h.shape[0]) + 1, self.order)[:, None]
        weights = multistep_weights(h, h1, h2, order, c=1.0 + self.eta, taylor_second=True, xp=xp)
        decay = xp.exp(-(1.0 + self.eta) * h)
        noise_std = self.s_noise * levels[1:] * xp.sqrt(-xp.expm1(-2.0 * self.eta * h))
        return (decay, noise_std, *weights)

    def solve(self, key, x, sigmas, coefficients, denoiser):
        levels = sigmas[:-1]

        def step(carry, inputs):
            x, prev, prev2 = carry
            sigma, decay, std, w0, w1, w2, key = inputs
            denoised = denoiser(x, sigma)
            x = (batch_broadcast(decay, x) * x + batch_broadcast(w0, x) * denoised
                 + batch_broadcast(w1, x) * prev + batch_broadcast(w2, x) * prev2)
            x = x + batch_broadcast(std, x) * jax.random.normal(key, x.shape, x.dtype)
            return (x, denoised, prev), x

        history = jnp.zeros_like(x)
        keys = jax.random.split(key, levels.shape[0] - 1)
        (x, _, _), states = jax.lax.scan(step, (x, history, history), (levels[:-1], *coefficients, keys))
        x = denoiser(x, levels[-1])
        return x, jnp.concatenate([states, x[None]])
