"""Latent codes through the probability-flow ODE: encode x -> z at T, decode z -> x, and
spherical interpolation between codes (Song et al. 2021, sec. 4.3 and eq. 13; slerp as in
Song, Meng & Ermon 2021, "DDIM", sec. 5.3).

The flow dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 is a deterministic bijection between data at
t = eps and latents at t = T, so decode(encode(x)) = x up to the solver tolerance. Both directions
are adaptive diffrax solves of the same ODE, jitted, one per example (`samplers.common.per_example`:
each example has its own steps, so its code does not depend on the rest of the batch: bit for bit
in float64, to within the solver tolerance in float32, see `samplers.ode`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from samplers import common
from samplers.ode import ADAPTIVE, flow_drift, integrate
from sde_lib.base import SDE, Array, ScoreFn


@dataclasses.dataclass(frozen=True)
class FlowCodec:
    """Encoder/decoder of the probability-flow ODE of `sde` between t = eps and t = T.

    Attributes:
      eps: data-side time (the samplers' end time).
      rtol, atol: tolerances of the adaptive step control (PID controller).
      solver: an adaptive solver of `samplers.ode.SOLVERS` (tsit5, dopri5, dopri8, ...).
      max_steps: cap on solver steps; a solve that hits it raises under `diffrax`'s checks.
    """

    sde: SDE
    eps: float = 1e-3
    rtol: float = 1e-5
    atol: float = 1e-5
    solver: str = "tsit5"
    max_steps: int = 4096

    def __post_init__(self):
        if self.solver not in ADAPTIVE:
            raise ValueError(f"unknown adaptive solver {self.solver!r}; known: {', '.join(ADAPTIVE)}")
        if not 0 < self.eps < self.sde.T:
            raise ValueError(f"eps must lie in (0, T={self.sde.T}), got {self.eps}")

    def _solve(self, score_fn: ScoreFn, x: Array, to_data: bool) -> tuple[Array, int]:
        x = jnp.asarray(x)
        out, nfe = common.per_example(_solve_body, (self, to_data), jax.random.key(0), score_fn, x,
                                      batch=x.shape[0])
        return out, common.python_nfe(jnp.max(nfe))

    def encode(self, score_fn: ScoreFn, x: Array) -> tuple[Array, int]:
        """Latents `z: [B, ...]` at T of data `x: [B, ...]` at eps, and the score evaluations (the
        largest over the batch)."""
        return self._solve(score_fn, x, to_data=False)

    def decode(self, score_fn: ScoreFn, z: Array) -> tuple[Array, int]:
        """Data `[B, ...]` at eps of latents `z: [B, ...]` at T, and the score evaluations."""
        return self._solve(score_fn, z, to_data=True)


def _solve_body(static, _, score_fn, x, __):
    codec, to_data = static
    common.check_score_shape(score_fn, x)
    t_data, t_noise = jnp.asarray(codec.eps, x.dtype), jnp.asarray(codec.sde.T, x.dtype)
    t0, t1 = (t_noise, t_data) if to_data else (t_data, t_noise)
    x, nfe = integrate(flow_drift(codec.sde, score_fn), x, t0, t1, solver=codec.solver, rtol=codec.rtol,
                       atol=codec.atol, num_steps=None, max_steps=codec.max_steps)
    return x, nfe[None]


def slerp(z0: Array, z1: Array, weight: Array | float) -> Array:
    """Spherical interpolation per example between `z0, z1: [B, ...]` at `weight` in [0, 1]:
    sin((1 - w) theta) / sin(theta) z0 + sin(w theta) / sin(theta) z1, theta the angle between
    them; linear where they are (nearly) parallel. Keeps the norm of Gaussian latents typical,
    which a straight line between two latents does not."""
    flat0 = jnp.reshape(z0, (z0.shape[0], -1))
    flat1 = jnp.reshape(z1, (z1.shape[0], -1))
    cos = jnp.sum(flat0 * flat1, 1) / (jnp.linalg.norm(flat0, axis=1) * jnp.linalg.norm(flat1, axis=1))
    theta = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    w = jnp.asarray(weight, z0.dtype)
    parallel = theta < 1e-4
    safe = jnp.where(parallel, 1.0, jnp.sin(theta))
    c0 = jnp.where(parallel, 1.0 - w, jnp.sin((1.0 - w) * theta) / safe)
    c1 = jnp.where(parallel, w, jnp.sin(w * theta) / safe)
    return jnp.reshape(c0[:, None] * flat0 + c1[:, None] * flat1, z0.shape)


def interpolate(codec: FlowCodec, score_fn: ScoreFn, x0: Array, x1: Array, weights: Array) -> Array:
    """Decoded slerps between the codes of `x0` and `x1` (`[B, ...]` each) at `weights: [K]`,
    returned as `[K, B, ...]`; weights 0 and 1 give back x0 and x1 up to the solver tolerance."""
    weights = jnp.asarray(weights, x0.dtype)
    if weights.ndim != 1:
        raise ValueError(f"weights must be [K], got shape {weights.shape}")
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {x0.shape} and {x1.shape}")
    batch = x0.shape[0]
    z, _ = codec.encode(score_fn, jnp.concatenate([x0, x1]))
    mixed = jax.vmap(lambda w: slerp(z[:batch], z[batch:], w))(weights)
    decoded, _ = codec.decode(score_fn, jnp.reshape(mixed, (-1,) + x0.shape[1:]))
    return jnp.reshape(decoded, (weights.shape[0],) + x0.shape)
