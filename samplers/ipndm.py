"""iPNDM: Adams-Bashforth on the probability-flow ODE in sigma space, warm-started by its own lower
orders (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator" (DEIS),
sec. 5 and app.: the "improved pseudo numerical method", PNDM of Liu et al. 2022 without its
Runge-Kutta start), as k-diffusion's `sample_ipndm` / `sample_ipndm_v` run it on EDM's ODE.

With the slope d = (x_hat - D(x_hat, sigma)) / sigma of dx_hat / dsigma (Karras et al. 2022, eq. 4),
a step from sigma_i to sigma_{i+1} (h = sigma_{i+1} - sigma_i) is x_hat + h sum_j b_j d_{i-j} over the
last min(i + 1, order) slopes, and the last evaluation, at sigma_min, returns the denoiser output
(the step to sigma = 0; LMS instead extrapolates its slopes to 0). Two weightings:
- `variable_step=False` (default; the DEIS paper's iPNDM, k-diffusion's `sample_ipndm`): the fixed
  equal-step weights (3, -1) / 2, (23, -16, 5) / 12, (55, -59, 37, -9) / 24 times this step's h, of
  order `order` on equal steps but 2 on a smoothly graded schedule such as Karras' (the weights miss
  the steps' ratio at the second order of h). On the benchmark's VE mixture (README) it has about
  half the error of its variable-step form at 5-10 evaluations.
- `variable_step=True` (k-diffusion's `sample_ipndm_v`): the exact integral of the polynomial through
  the slopes at their own levels, i.e. variable-step Adams-Bashforth, order `order` on any schedule.
  The weights are those of `samplers.lms.lms_coefficients`. (The reference writes the third-order
  term as (1 - h^2 / (3 h_1 (h_1 + h_2))) / 2 where the exact weight is h (2 h + 3 h_1) /
  (6 h_1 (h_1 + h_2)): both give 5/12 on equal steps, but on unequal ones the reference is only of
  order 2.) Apart from its last step this is `lms` of the same order.

Convergence (tests/samplers/test_sigma_space_order.py): per halving of the step, the error against
the exact Gaussian flow map falls 11-14x (16 to 128 levels, VP and VE) for the variable-step form of
order 4 and 4.2-4.9x for the fixed form on Karras steps; with the weight of d_{i-3} scaled by 1.1
(variable) or 55/24 -> 56/24 (fixed) neither converges (ratios below 1).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from samplers.lms import lms_coefficients, multistep
from samplers.registry import SAMPLERS
from samplers.sigma_solver import SigmaSpaceSolver
from sde_lib.base import SDE, Array

ADAMS_BASHFORTH = np.array([  # row k - 1: the k-th order equal-step weights of d_i, d_{i-1}, ...
    [1.0, 0.0, 0.0, 0.0],
    [3.0, -1.0, 0.0, 0.0],
    [23.0, -16.0, 5.0, 0.0],
    [55.0, -59.0, 37.0, -9.0],
]) / np.array([1.0, 2.0, 12.0, 24.0])[:, None]


def fixed_step_coefficients(levels: Array, order: int, xp=jnp) -> Array:
    """Weights `[n - 1, order, B]` of the slopes d_i, d_{i-1}, ... in the step levels[i] -> levels[i + 1]
    from the positive levels `[n, B]`: the equal-step Adams-Bashforth weights of order min(i + 1, order)
    times that step's h. `xp`: numpy on the host (float64), jnp on device."""
    steps = levels.shape[0] - 1
    table = ADAMS_BASHFORTH[np.minimum(np.arange(steps), order - 1)][:, :order]  # [n - 1, order]
    h = levels[1:] - levels[:-1]
    return xp.asarray(table, levels.dtype)[..., None] * h[:, None]


@SAMPLERS.register("ipndm")
@dataclasses.dataclass(frozen=True)
class IPNDMSampler(SigmaSpaceSolver):
    """iPNDM of the given `order` on `num_steps` levels (module docstring): `num_steps` score
    evaluations, the last one's denoiser output is the sample.

    Attributes:
      num_steps: number of noise levels (= score evaluations), at least 1.
      order: most slopes per step, 1 (Euler) to 4 (the reference's default).
      variable_step: False (default): the fixed equal-step weights of the DEIS paper's iPNDM
        (`sample_ipndm`), the better at 5-20 evaluations on the benchmark; True: Adams-Bashforth
        weights for the actual steps (`sample_ipndm_v`).
      schedule, rho, sigma_min, sigma_max, eps, sigma_data: as for `EDMHeunSampler` (default karras).
    """

    sde: SDE
    num_steps: int = 20
    order: int = 4
    variable_step: bool = False
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
        return self.order if self.variable_step else min(self.order, 2)

    def coefficients(self, sigmas: Array, xp=jnp) -> tuple[Array]:
        """The slopes' weights `[n - 1, order, B]` of the steps between the positive levels sigmas[:-1]."""
        levels = sigmas[:-1]
        if self.variable_step:
            return (lms_coefficients(levels, self.order, xp),)
        return (fixed_step_coefficients(levels, self.order, xp),)

    def solve(self, key, x, sigmas, coefficients, denoiser):
        levels = sigmas[:-1]
        x, states = multistep(x, levels[:-1], *coefficients, denoiser)
        x = denoiser(x, levels[-1])
        return x, jnp.concatenate([states, x[None]])
