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

from samplers import common
from samplers.dpm_solver import lambda_increments, multistep_weights
from samplers.registry import SAMPLERS
from samplers.sigma_schedule import check_schedule, check_sigma_range, host_sigmas, sigma_space_setup
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast


@SAMPLERS.register("dpm_solver_sde")
@dataclasses.dataclass(frozen=True)
class DPMSolverSDESampler:
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

    def __post_init__(self):
        check_schedule(self.schedule, self.num_steps, self.rho, self.sigma_min, self.sigma_max)
        check_sigma_range(self.sde, self.sigma_min, self.sigma_max)
        if self.order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {self.order}")
        if not self.eta >= 0 or not self.s_noise >= 0:
            raise ValueError(f"eta and s_noise must be non-negative, got eta={self.eta}, s_noise={self.s_noise}")

    @property
    def nfe(self) -> int:
        return self.num_steps

    def __call__(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None = None,
                 t_init: Array | float | None = None, *, indices: Array | None = None,
                 trajectory_every: int = 0) -> tuple[Array, int]:
        """Samples `[*shape]` (x space) and the number of score evaluations per example (and with
        `trajectory_every = k`, the states x_hat after every k-th step, `samplers.common.finish`)."""
        sigmas = common.cast(host_sigmas(self, x_init, t_init, self.num_steps, self.order), x_init)
        out = common.run_sampler(_dpm_solver_sde_body, self, rng, score_fn, shape, x_init, t_init, indices,
                                 shared=sigmas, trajectory_every=trajectory_every)
        return common.finish(out, self.nfe, trajectory_every)


def _dpm_solver_sde_body(static, rng, score_fn, start, host_levels):
    self, example_shape, _, every = static
    init_key, noise_key = jax.random.split(rng)
    x, sigmas, denoiser = sigma_space_setup(self, init_key, score_fn, example_shape, start, host_levels,
                                            self.num_steps, self.order)
    levels = sigmas[:-1]
    h, h1, h2 = lambda_increments(levels)
    order = jnp.minimum(jnp.arange(h.shape[0]) + 1, self.order)[:, None]
    weights = multistep_weights(h, h1, h2, order, c=1.0 + self.eta, taylor_second=True)
    decay = jnp.exp(-(1.0 + self.eta) * h)
    noise_std = self.s_noise * levels[1:] * jnp.sqrt(-jnp.expm1(-2.0 * self.eta * h))

    def step(carry, inputs):
        x, prev, prev2 = carry
        sigma, decay, std, w0, w1, w2, key = inputs
        denoised = denoiser(x, sigma)
        x = (batch_broadcast(decay, x) * x + batch_broadcast(w0, x) * denoised
             + batch_broadcast(w1, x) * prev + batch_broadcast(w2, x) * prev2)
        x = x + batch_broadcast(std, x) * jax.random.normal(key, x.shape, x.dtype)
        return (x, denoised, prev), x

    history = jnp.zeros_like(x)
    keys = jax.random.split(noise_key, h.shape[0])
    (x, _, _), states = jax.lax.scan(step, (x, history, history), (levels[:-1], decay, noise_std, *weights, keys))
    x = denoiser(x, levels[-1])
    if every:
        return x, common.trajectory(jnp.concatenate([states, x[None]]), every)
    return x
