"""UniPC: a multistep predictor (UniP) with the UniC corrector, in data-prediction form
(Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models", Algorithms 2-3, the B(h) variants bh1 / bh2 of sec. 3.3).

On x_hat = x / alpha, lambda = -log sigma, a step of size h = lambda' - lambda from the current
denoiser output D_0 and the previous ones D_{-j} at lambda + r_j h (r_j < 0) is

    x_hat' = (sigma' / sigma) x_hat + (1 - e^{-h}) D_0 - B(h) sum_j rho_j (D_{-j} - D_0) / r_j,

with B(h) = e^{-h} - 1 (bh2) or -h (bh1) and rho the solution of sum_j rho_j r_j^(k-1) = b_k,
b_k = k! phi_{k+1}(h) / B(h) (eq. 7; phi_k the exponential integrator's phi functions in -h).
UniC re-solves the same step once the denoiser at the predicted point is known (r = 1 for it): its
output is the corrected state, and that denoiser output serves the next step unchanged, so the
corrector costs no extra evaluation and raises the order by one. The last step to sigma = 0 returns
the denoiser output; the step before it is not corrected (its denoiser output is the result).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from samplers.dpm_solver import lambda_increments
from samplers.registry import SAMPLERS
from samplers.sigma_solver import SigmaSpaceSolver
from sde_lib.base import SDE, Array, batch_broadcast

VARIANTS = ("bh1", "bh2")


def _solve(columns: list[Array], rhs: list[Array], size: Array, xp=jnp) -> list[Array]:
    """rho `[len(columns)]` of `[T, B]` arrays solving sum_j rho_j c_j^k = rhs_k (k < size) per entry,
    only the first `size` (`[T, 1]`, at least 1) columns active; inactive rho are 0."""
    m = len(columns)
    rows = []
    for k in range(m):
        row = []
        for j in range(m):
            active = (j < size) & (k < size)
            row.append(xp.where(active, columns[j] ** k, xp.where(j == k, 1.0, 0.0)))
        rows.append(xp.stack(row, axis=-1))
    matrix = xp.stack(rows, axis=-2)  # [T, B, m, m]
    vector = xp.stack([xp.where(k < size, rhs[k], 0.0) for k in range(m)], axis=-1)
    rho = xp.linalg.solve(matrix, vector[..., None])[..., 0]
    return [rho[..., j] for j in range(m)]


def unipc_weights(h: Array, h1: Array, h2: Array, order: Array, variant: str, xp=jnp):
    """Per step (`[T, B]` each): predictor weights of (D_0, D_{-1}, D_{-2}) and corrector weights of
    (D_new, D_0, D_{-1}, D_{-2}) for steps of the given `order` (`[T, 1]`, 1 to 3). `xp`: numpy for
    float64 weights on the host, jnp on device."""
    minus_h = -h
    b_h = xp.expm1(minus_h) if variant == "bh2" else minus_h
    # b_k = k! phi_{k+1}(h) / B(h), with h phi_k from h phi_1 = e^{-h} - 1 and the recursion
    # h phi_{k+1} = h phi_k / (-h) - 1 / k!  (UniPC's reference implementation, same quantities).
    h_phi = xp.expm1(minus_h) / minus_h - 1.0
    b = []
    for k in range(1, 4):
        b.append(h_phi * math.factorial(k) / b_h)
        h_phi = h_phi / minus_h - 1.0 / math.factorial(k + 1)
    r1, r2 = -h1 / h, -(h1 + h2) / h
    one = xp.ones_like(h)
    a = -xp.expm1(minus_h)
    # Predictor: order 2 takes rho = 1/2 (the paper's choice), order 3 solves the 2 x 2 system.
    p1, p2 = _solve([r1, r2], b[:2], xp.maximum(order - 1, 1), xp)
    p1 = xp.where(order == 2, 0.5, xp.where(order == 3, p1, 0.0))
    p2 = xp.where(order == 3, p2, 0.0)
    # sum_j rho_j (D_{-j} - D_0) / r_j, collected per D.
    predictor = (a + b_h * (p1 / r1 + p2 / r2), -b_h * p1 / r1, -b_h * p2 / r2)
    # Corrector: columns (1, r1, r2) for (D_new, D_{-1}, D_{-2}); order 1 is rho = 1/2 (trapezoid).
    c0, c1, c2 = _solve([one, r1, r2], b, order, xp)
    c0 = xp.where(order == 1, 0.5, c0)
    corrector = (-b_h * c0, a + b_h * (c0 + c1 / r1 + c2 / r2), -b_h * c1 / r1, -b_h * c2 / r2)
    return predictor, corrector


@SAMPLERS.register("unipc")
@dataclasses.dataclass(frozen=True)
class UniPCSampler(SigmaSpaceSolver):
    """UniPC-p (predictor of order `order`, UniC corrector: order + 1) with `num_steps` evaluations.

    Attributes:
      num_steps: number of noise levels (= score evaluations), at least 1.
      order: predictor order, 1 to 3 (the paper uses 3 for unconditional sampling, 2 with guidance).
      variant: "bh2" (B(h) = e^{-h} - 1, the paper's choice for few steps) or "bh1" (B(h) = -h).
      use_corrector: False gives UniP alone.
      schedule, rho, sigma_min, sigma_max, eps, sigma_data: as for `DPMSolverPPSampler`.
    """

    sde: SDE
    num_steps: int = 20
    order: int = 3
    variant: str = "bh2"
    use_corrector: bool = True
    schedule: str = "log_snr"
    rho: float = 7.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    eps: float = 1e-3
    sigma_data: float = 0.5

    def check(self):
        if self.order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {self.order}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; known: {', '.join(VARIANTS)}")

    @property
    def rule_order(self) -> int:
        """The order of the few-step sigma_min rule: the corrector raises the predictor's by one."""
        return self.order + int(self.use_corrector)

    def coefficients(self, sigmas: Array, xp=jnp) -> tuple[Array, ...]:
        """`(ratio, predictor weights (3), corrector weights (4))` of the steps between the positive
        levels sigmas[:-1], each `[n - 1, B]`."""
        levels = sigmas[:-1]
        h, h1, h2 = lambda_increments(levels, xp)
        order = xp.minimum(xp.arange(h.shape[0]) + 1, self.order)[:, None]
        predictor, corrector = unipc_weights(h, h1, h2, order, self.variant, xp)
        return (levels[1:] / levels[:-1], *predictor, *corrector)

    def solve(self, key, x, sigmas, coefficients, denoiser):
        levels = sigmas[:-1]
        ratio, predictor, corrector = coefficients[0], coefficients[1:4], coefficients[4:]
        steps = ratio.shape[0]
        # The step into the last level is not corrected: its denoiser output is the result.
        correct = jnp.asarray(self.use_corrector) & (jnp.arange(steps) < steps - 1)

        def combine(weights, arrays):
            return sum(batch_broadcast(w, arrays[0]) * a for w, a in zip(weights, arrays, strict=True))

        def step(carry, inputs):
            x, d0, d1, d2 = carry
            ratio, sigma_next, pw, cw, do_correct = inputs
            x_base = batch_broadcast(ratio, x) * x
            x_pred = x_base + combine(pw, (d0, d1, d2))
            d_new = denoiser(x_pred, sigma_next)
            x_corr = x_base + combine(cw, (d_new, d0, d1, d2))
            x = jnp.where(do_correct, x_corr, x_pred)
            return (x, d_new, d0, d1), x

        d0 = denoiser(x, levels[0])
        history = jnp.zeros_like(x)
        (_, d_last, _, _), states = jax.lax.scan(step, (x, d0, history, history),
                                                 (ratio, levels[1:], predictor, corrector, correct))
        return d_last, jnp.concatenate([states, d_last[None]])
