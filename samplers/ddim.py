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

from samplers import common
from samplers.registry import SAMPLERS
from samplers.sigma_schedule import check_schedule, check_sigma_range, host_sigmas, sigma_space_setup
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast


@SAMPLERS.register("ddim")
@dataclasses.dataclass(frozen=True)
class DDIMSampler:
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

    def __post_init__(self):
        check_schedule(self.schedule, self.num_steps, self.rho, self.sigma_min, self.sigma_max)
        check_sigma_range(self.sde, self.sigma_min, self.sigma_max)
        if not self.eta >= 0:
            raise ValueError(f"eta must be non-negative, got {self.eta}")

    @property
    def nfe(self) -> int:
        return self.num_steps

    def __call__(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None = None,
                 t_init: Array | float | None = None, *, indices: Array | None = None,
                 trajectory_every: int = 0) -> tuple[Array, int]:
        """Samples `[*shape]` (x space) and the number of score evaluations per example (and with
        `trajectory_every = k`, the states x_hat after every k-th step, `samplers.common.finish`)."""
        sigmas = common.cast(host_sigmas(self, x_init, t_init, self.num_steps, 1), x_init)
        out = common.run_sampler(_ddim_body, self, rng, score_fn, shape, x_init, t_init, indices, shared=sigmas,
                                 trajectory_every=trajectory_every)
        return common.finish(out, self.nfe, trajectory_every)


def _ddim_body(static, rng, score_fn, start, host_levels):
    self, example_shape, _, every = static
    init_key, noise_key = jax.random.split(rng)
    x, sigmas, denoiser = sigma_space_setup(self, init_key, score_fn, example_shape, start, host_levels,
                                            self.num_steps, 1)

    def step(x, inputs):
        sigma, sigma_next, key = inputs
        denoised = denoiser(x, sigma)
        c = self.eta * sigma_next * jnp.sqrt(1.0 - (sigma_next / sigma) ** 2)
        sigma_down = jnp.sqrt(sigma_next**2 - c**2)
        x = denoised + batch_broadcast(sigma_down / sigma, x) * (x - denoised)
        if self.eta > 0:
            x = x + batch_broadcast(c, x) * jax.random.normal(key, x.shape, x.dtype)
        return x, x

    keys = jax.random.split(noise_key, self.num_steps)
    x, states = jax.lax.scan(step, x, (sigmas[:-1], sigmas[1:], keys))
    return (x, common.trajectory(states, every)) if every else x
