"""Sampling by the probability-flow ODE (Song et al. 2021, eq. 13), solved on device with diffrax.

dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 is integrated from t_init (default T) down to eps: an
adaptive solve (Tsit5 / Dopri5 / ... with rtol and atol, a PID step-size controller) or `num_steps`
fixed steps of any listed solver. Each example is solved on its own (`samplers.common.per_example`
vmaps the solve): its error norm, step sizes and accepted steps are its own, while the score is
still called once per solver stage on the whole batch (vmap batches the while loop, which runs until
the slowest example is done; finished examples stay put). In float64 sample i is therefore the same
bit for bit in any batch. In float32 the error estimate of the first, short steps sits at rounding
level and XLA rounds a diffrax step differently for each compiled batch size, so the step sizes, and
sample i, agree across batch sizes only to within the solver tolerance.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp

try:  # jax < 0.11; later versions dropped it and keep the sharding of y(t1) without help
    from jax.experimental.shard_alike import shard_alike
except ImportError:
    shard_alike = None

from samplers import common
from samplers.common import initial_state
from samplers.registry import SAMPLERS
from sde_lib.base import SDE, Array, ScoreFn
from sde_lib.parametrization import data_from_score

SOLVERS: dict[str, tuple[type[diffrax.AbstractSolver], int, int]] = {
    # name: (diffrax solver, vector-field evaluations per step (attempted or rejected), evaluations
    # once at the start: first-same-as-last tableaux reuse a step's last stage as the next first one)
    "euler": (diffrax.Euler, 1, 0),
    "heun": (diffrax.Heun, 2, 0),
    "midpoint": (diffrax.Midpoint, 2, 0),
    "bosh3": (diffrax.Bosh3, 3, 1),
    "tsit5": (diffrax.Tsit5, 6, 1),
    "dopri5": (diffrax.Dopri5, 6, 1),
    "dopri8": (diffrax.Dopri8, 13, 1),
}
ADAPTIVE = ("heun", "midpoint", "bosh3", "tsit5", "dopri5", "dopri8")
"""Solvers with an embedded error estimate, usable with rtol / atol."""


def check_solver(solver: str, num_steps: int | None) -> None:
    """Raise a clear error for an unknown solver or an adaptive solve without an error estimate."""
    if solver not in SOLVERS:
        raise KeyError(f"unknown ODE solver {solver!r}; known: {', '.join(sorted(SOLVERS))}")
    if num_steps is None and solver not in ADAPTIVE:
        raise ValueError(f"solver {solver!r} has no error estimate: give num_steps for fixed steps")
    if num_steps is not None and num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")


def solve(fn: Callable[[Array, Array], object], y0, t0: Array, t1: Array, *, solver: str, rtol: float,
          atol: float, num_steps: int | None, max_steps: int) -> tuple[object, Array, diffrax.RESULTS]:
    """`integrate` without its failure check: returns `(y(t1), nfe, result)`, where
    `diffrax.is_okay(result)` says the solve reached t1 (not stopped by `max_steps` or a step-size
    underflow), for callers that report failed solves instead of stopping (`samplers.likelihood`)."""
    check_solver(solver, num_steps)
    cls, per_step, at_start = SOLVERS[solver]
    if num_steps is None:
        controller, dt0 = diffrax.PIDController(rtol=rtol, atol=atol), None
    else:
        controller, dt0 = diffrax.ConstantStepSize(), (t1 - t0) / num_steps
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: fn(t, y)), cls(), t0, t1, dt0, y0,
                              stepsize_controller=controller, max_steps=max_steps, throw=False)
    # diffrax writes y(t1) into a save buffer created without a sharding, and the partitioner
    # gathers it onto every device; tying y(t1) to y0 keeps a batch-sharded y0's sharding.
    y1 = jax.tree.map(lambda leaf, start: shard_alike(leaf[-1], start)[0] if shard_alike else leaf[-1], sol.ys, y0)
    nfe = at_start + per_step * sol.stats["num_steps"]
    return y1, nfe, sol.result


def integrate(fn: Callable[[Array, Array], object], y0, t0: Array, t1: Array, *, solver: str, rtol: float,
              atol: float, num_steps: int | None, max_steps: int) -> tuple[object, Array]:
    """Solve dy/dt = fn(t, y) from t0 to t1 (either direction) for a pytree y.

    Adaptive (PID controller, rtol / atol, automatic first step) when `num_steps` is None, else
    `num_steps` equal steps. Returns `(y(t1), nfe)` with nfe the exact number of `fn` calls, an
    int32 scalar (it depends on the accepted and rejected steps of an adaptive solve).
    """
    y1, nfe, result = solve(fn, y0, t0, t1, solver=solver, rtol=rtol, atol=atol, num_steps=num_steps,
                            max_steps=max_steps)
    # The failure check (max_steps reached, step size underflow) hangs on the scalar nfe: diffrax's
    # own check routes the whole solution through a host callback on one device.
    return y1, result.error_if(nfe, ~diffrax.is_okay(result))


@SAMPLERS.register("ode")
@dataclasses.dataclass(frozen=True)
class ODESampler:
    """Probability-flow ODE sampler; `solver` is a key of `SOLVERS`.

    `num_steps=None` solves adaptively with `rtol` / `atol` (an adaptive solver is needed);
    otherwise `num_steps` fixed steps. With `denoise`, a final Tweedie step E[x_0 | x_eps]
    (one more score evaluation) replaces the sample at eps. Each example is solved on its own (its
    own adaptive steps, see the module docstring); nfe is the number of batched score evaluations
    made, which is the largest per-example count (the vmapped solve evaluates the whole batch until
    its slowest example is done), a Python int (an int32 array when called under an enclosing jit).
    """

    sde: SDE
    solver: str = "tsit5"
    rtol: float = 1e-5
    atol: float = 1e-5
    num_steps: int | None = None
    eps: float = 1e-3
    denoise: bool = False
    max_steps: int = 4096

    def __post_init__(self):
        check_solver(self.solver, self.num_steps)
        if not 0 < self.eps < self.sde.T:
            raise ValueError(f"eps must lie in (0, T={self.sde.T}), got {self.eps}")

    def __call__(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None = None,
                 t_init: Array | float | None = None, *, indices: Array | None = None) -> tuple[Array, int]:
        """Samples `[*shape]` from `x_init` at `t_init` (default: the prior at T), and the nfe."""
        samples, nfe = common.run_sampler(_ode_body, self, rng, score_fn, shape, x_init, t_init, indices)
        return samples, common.python_nfe(jnp.max(nfe))


def flow_drift(sde: SDE, score_fn: ScoreFn) -> Callable[[Array, Array], Array]:
    """`drift(t, x)` of the probability-flow ODE for a scalar time t and `x: [B, ...]`."""
    rsde = sde.reverse(score_fn, probability_flow=True)

    def drift(t, x):
        return rsde.sde(x, jnp.full((x.shape[0],), t, x.dtype))[0]

    return drift


def _ode_body(static, rng, score_fn, start, _):
    sampler, example_shape, _, _ = static
    x_init, t_init = start
    x, t_start = initial_state(sampler.sde, rng, (1, *example_shape), x_init,
                               None if t_init is None else t_init[0], score_fn)
    t_end = jnp.asarray(sampler.eps, x.dtype)
    x, nfe = integrate(flow_drift(sampler.sde, score_fn), x, t_start, t_end, solver=sampler.solver,
                       rtol=sampler.rtol, atol=sampler.atol, num_steps=sampler.num_steps,
                       max_steps=sampler.max_steps)
    if sampler.denoise:
        x = data_from_score(sampler.sde, score_fn)(x, jnp.full((x.shape[0],), t_end))
        nfe = nfe + 1
    return x, nfe[None]
