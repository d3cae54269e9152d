"""Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, sec. 4.3 and app. D.2).

The flow dx/dt = f~(x, t) = f(x, t) - g(t)^2 score(x, t) / 2 (eq. 13) carries the density by the
instantaneous change of variables d log p_t(x_t) / dt = -div f~(x_t, t) (Chen et al. 2018, thm. 1),
so integrating forward from data at t = eps to T

    log p_eps(x) = log p_T(z) + int_eps^T div f~(x_t, t) dt,   z = x_T    (eq. 39)

with the prior p_T ~ `sde.prior_logp`. The state (x, delta_logp) is solved by adaptive diffrax
steps per example (`samplers.common.per_example`: its own steps and probes, whatever the batch; in
float32 its steps, like the ODE sampler's, agree across batch sizes only to rounding amplified up to
the solver tolerance, see `samplers.ode`).
The divergence is exact (one Jacobian-vector product per dimension, for low dimensions) or Hutchinson's estimate E_v[v^T (d f~ / dx) v] (Hutchinson 1989; Grathwohl et
al. 2018) with `num_probes` Rademacher or Gaussian probes v drawn once per solve, so the
integrand is a smooth function of t and the adaptive solver sees one ODE.

Bits per dimension of 8-bit data: the model is a density in model space, where one quantisation
bin has width `bin_width` (1/256 for data scaled to [0, 1], 2/256 for [-1, 1]). The probability of
the bin is about p(x) bin_width^D, hence bpd = -(log p(x) + D log bin_width) / (D ln 2): the
correction for the data's scaling is the log-Jacobian D log(bin_width * 256) of the map from
[0, 1] to model space (D log 2 for [-1, 1]), so both scalings give the same bpd for the same
data. With uniform dequantisation (Theis et al. 2016) this is an upper bound on the discrete
model's bits/dim.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp

from samplers import common
from samplers.ode import flow_drift, solve
from sde_lib.base import SDE, Array, ScoreFn

DIVERGENCES = ("hutchinson", "exact")
PROBES = ("rademacher", "gaussian")
SOLVERS = ("tsit5", "dopri5")


class Likelihood(NamedTuple):
    """Result of `log_likelihood` for a batch of B examples.

    logp: `[B]` log-density (nats) of x under the model at time eps.
    prior_logp: `[B]` the prior term log p_T(z).
    z: `[B, ...]` the latent at T.
    nfe: batched evaluations of the augmented vector field, i.e. the largest per-example count (each
      example has its own steps; the vmapped solve runs until the slowest is done), a Python int (an
      int32 scalar under an enclosing jit); each is one score evaluation plus `num_probes` (Hutchinson) or
      D (exact) Jacobian-vector products through it.
    solved: `[B]` bool, whether example i's solve reached T; False when it stopped at `max_steps` or
      on a step-size underflow, and then its logp is not a likelihood (callers report it).
    """

    logp: Array
    prior_logp: Array
    z: Array
    nfe: Array
    solved: Array


def _check(divergence: str, probe: str, num_probes: int, solver: str, eps: float, sde: SDE) -> None:
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; known: {', '.join(DIVERGENCES)}")
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; known: {', '.join(PROBES)}")
    if num_probes < 1:
        raise ValueError(f"num_probes must be >= 1, got {num_probes}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; known: {', '.join(SOLVERS)}")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps}")


def _directions(rng: Array, x: Array, divergence: str, probe: str, num_probes: int) -> tuple[Array, float]:
    """Tangents `[K, B, ...]` and the weight w with div ~ w sum_k v_k^T J v_k.

    Exact: the K = D basis vectors (w = 1, the trace). Hutchinson: K probes of zero mean and identity
    covariance (w = 1 / K, an unbiased estimate)."""
    if divergence == "exact":
        dims = math.prod(x.shape[1:])
        basis = jnp.reshape(jnp.eye(dims, dtype=x.dtype), (dims, 1) + x.shape[1:])
        return jnp.broadcast_to(basis, (dims,) + x.shape), 1.0
    shape = (num_probes,) + x.shape
    if probe == "rademacher":
        v = jax.random.rademacher(rng, shape, x.dtype)
    else:
        v = jax.random.normal(rng, shape, x.dtype)
    return v, 1.0 / num_probes


@dataclasses.dataclass(frozen=True)
class _Options:
    sde: SDE
    divergence: str
    probe: str
    num_probes: int
    rtol: float
    atol: float
    eps: float
    solver: str
    max_steps: int


def log_likelihood(rng: Array, sde: SDE, score_fn: ScoreFn, x: Array, *, divergence: str = "hutchinson",
                   probe: str = "rademacher", num_probes: int = 1, rtol: float = 1e-5, atol: float = 1e-5,
                   eps: float = 1e-5, solver: str = "tsit5", max_steps: int = 4096,
                   indices: Array | None = None) -> Likelihood:
    """log p_eps(x) per example of `x: [B, ...]` under the probability flow of `sde` and `score_fn`.

    `rng` draws the Hutchinson probes (unused for `divergence="exact"`, which costs D
    Jacobian-vector products per evaluation: for low dimensions), example i's from
    `fold_in(rng, indices[i])` (default `indices = arange(B)`). `solver` is "tsit5" or
    "dopri5" with a PID step-size controller at `rtol` / `atol`. Jitted once per option set
    (`samplers.common.per_example`); a `Partial` score's arrays are traced. Each example is solved on
    its own; a solve that does not reach T gives `solved[i] = False` rather than raising.
    """
    _check(divergence, probe, num_probes, solver, eps, sde)
    x = jnp.asarray(x)
    options = _Options(sde, divergence, probe, num_probes, rtol, atol, eps, solver, max_steps)
    logp, prior_logp, z, nfe, solved = common.per_example(_likelihood_body, options, rng, score_fn, x,
                                                          batch=x.shape[0], indices=indices)
    return Likelihood(logp, prior_logp, z, common.python_nfe(jnp.max(nfe)), solved)


def _likelihood_body(options: _Options, rng, score_fn, x, _):
    sde = options.sde
    common.check_score_shape(score_fn, x)
    drift = flow_drift(sde, score_fn)
    tangents, weight = _directions(rng, x, options.divergence, options.probe, options.num_probes)
    reduce_axes = tuple(range(2, x.ndim + 1))

    def vector_field(t, state):
        y, _ = state
        dy, jvp = jax.linearize(lambda u: drift(t, u), y)
        quad = jnp.sum(tangents * jax.vmap(jvp)(tangents), axis=reduce_axes)
        return dy, weight * jnp.sum(quad, axis=0)

    state0 = (x, jnp.zeros(x.shape[:1], x.dtype))
    (z, delta_logp), nfe, result = solve(vector_field, state0, jnp.asarray(options.eps, x.dtype),
                                         jnp.asarray(sde.T, x.dtype), solver=options.solver, rtol=options.rtol,
                                         atol=options.atol, num_steps=None, max_steps=options.max_steps)
    prior_logp = sde.prior_logp(z)
    return prior_logp + delta_logp, prior_logp, z, nfe[None], diffrax.is_okay(result)[None]


def bits_per_dim(logp: Array, num_dims: int, bin_width: float) -> Array:
    """Bits per dimension `[B]` of log-densities `logp: [B]` (nats, model space) of `num_dims`-dimensional
    data quantised in bins of width `bin_width` there: -(logp + D log bin_width) / (D ln 2).

    `bin_width` is 1/256 for 8-bit data scaled to [0, 1], 2/256 for [-1, 1] (see the module docstring).
    """
    if num_dims < 1:
        raise ValueError(f"num_dims must be >= 1, got {num_dims}")
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width}")
    logp = jnp.asarray(logp)
    return -(logp + num_dims * math.log(bin_width)) / (num_dims * math.log(2.0))


def dequantize(rng: Array, x: Array, bin_width: float) -> Array:
    """Uniform dequantisation x + U(0, bin_width) of data `x: [B, ...]` given at the lower bin edges
    (k * bin_width + offset); the result is spread uniformly over each bin."""
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width}")
    return x + bin_width * jax.random.uniform(rng, x.shape, x.dtype)
