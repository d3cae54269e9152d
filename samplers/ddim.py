"""DDIM in sigma space (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12).

On x_hat = x / alpha the DDIM step from sigma to sigma' < sigma is

    x_hat' = D + sqrt(sigma'^2 - c^2) (x_hat - D) / sigma + c z,
    c = eta sigma' sqrt(1 - sigma'^2 / sigma^2),

with D the EDM denoiser. With eta = 0 it is Euler's method on the probability-flow ODE
dx_hat/dsigma = (x_hat - D) / sigma (Karras et al. 2022, sec. 3); eta = 1 is ancestral (DDPM)
sampling. The same step serves VP, sub-VP and VE through their sigma-space views.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from samplers.registry import SAMPLERS
from samplers.sigma_solver import SigmaSpaceSolver
from sde_lib.base import SDE, batch_broadcast


@SAMPLERS.register("ddim")
@dataclasses.dataclass(frozen=True)
class DDIMSampler(SigmaSpaceSolver):
    """DDIM with `num_steps` score evaluations; the last step goes to sigma = 0 (output = D).

    Attributes:
      num_steps: number of steps (= score evaluations).
      eta: 0 for the deterministic sampler, 1 for ancestral sampling, in between interpolates.
      schedule: "uniform_t" (DDIM's evenly spaced times), "karras" or "log_snr".
      rho, sigma_min, sigma_max, eps: as for `EDMHeunSampler`.
    """

    sde: SDE
    num_steps: int = 50
    eta: float = 0.0
    schedule: str = "uniform_t"
    rho: float = 7.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    eps: float = 1e-3
    sigma_data: float = 0.5

    def check(self):
        if not self.eta >= 0:
            raise ValueError(f"eta must be non-negative, got {self.eta}")

    def solve(self, key, x, sigmas, coefficients, denoiser):
        def step(x, inputs):
            sigma, sigma_next, key = inputs
            denoised = denoiser(x, sigma)
            c = self.eta * sigma_next * jnp.sqrt(1.0 - (sigma_next / sigma) ** 2)
            sigma_down = jnp.sqrt(sigma_next**2 - c**2)
            x = denoised + batch_broadcast(sigma_down / sigma, x) * (x - denoised)
            if self.eta > 0:
                x = x + batch_broadcast(c, x) * jax.random.normal(key, x.shape, x.dtype)
            return x, x

        keys = jax.random.split(key, self.num_steps)
        return jax.lax.scan(step, x, (sigmas[:-1], sigmas[1:], keys))
