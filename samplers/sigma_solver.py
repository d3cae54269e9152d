"""The frame that every sigma-space solver shares (`ddim`, `edm_heun`, `dpm_solver`, `lms`, `ipndm`,
`unipc`, `dpm_solver_sde`; the maths of sigma space is `samplers.sigma_schedule`).

A solver is a frozen dataclass deriving from `SigmaSpaceSolver`, with the fields sde, num_steps,
schedule, rho, sigma_min, sigma_max, eps and sigma_data besides its own. The base supplies the checks
(`__post_init__`, then the solver's `check`), `nfe` (one score evaluation per level) and the call
through `samplers.common.run_sampler`; the solver states only its maths:
- `rule_order`: the order of the few-step sigma_min rule (`sigma_schedule.few_step_sigma_min`);
- `coefficients(sigmas, xp)`: its per-step weights from the noise levels `sigmas: [n + 1, B]`, built
  on the host in float64 (xp = numpy) whenever the start is known there (always from the prior), and
  cast once; on device (xp = jnp) for a traced or per-example `t_init`;
- `solve(key, x, sigmas, coefficients, denoiser) -> (x, states)`: the chain from x_hat `[1, ...]` at
  sigmas[0] to the sample (sigma = 0, where x_hat = x), with `states` the state after each of the
  num_steps steps, `[num_steps, 1, ...]`, scan outputs for trajectories.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers import common
from samplers.sigma_schedule import check_schedule, check_sigma_range, host_sigmas, sigma_space_setup
from sde_lib.base import Array, ScoreFn
from sde_lib.parametrization import DenoiserFn


class SigmaSpaceSolver:
    """Base of the sigma-space solvers (module docstring); holds no fields of its own."""

    def __post_init__(self):
        check_schedule(self.schedule, self.num_steps, self.rho, self.sigma_min, self.sigma_max)
        check_sigma_range(self.sde, self.sigma_min, self.sigma_max)
        self.check()

    def check(self) -> None:
        """Raise a ValueError naming a bad field of the solver's own."""

    @property
    def nfe(self) -> int:
        """Score evaluations per example of one call."""
        return self.num_steps

    @property
    def rule_order(self) -> int:
        return 1

    def coefficients(self, sigmas: Array, xp=jnp) -> tuple:
        """Per-step weights, a tuple of `[steps, B]` arrays, from `sigmas: [n + 1, B]` (none by default)."""
        return ()

    def solve(self, key: Array, x: Array, sigmas: Array, coefficients: tuple,
              denoiser: DenoiserFn) -> tuple[Array, Array]:
        raise NotImplementedError

    def __call__(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None = None,
                 t_init: Array | float | None = None, *, indices: Array | None = None,
                 trajectory_every: int = 0) -> tuple[Array, int]:
        """Samples `[*shape]` (x space) from `x_init` at `t_init` (default: the prior at T) and the number
        of score evaluations per example; with `trajectory_every = k` also the states x_hat after every
        k-th step, `[num_steps // k, *shape]` (`samplers.common.finish`). `indices`: the examples'
        global indices (`samplers.common`)."""
        return self.run(rng, score_fn, shape, x_init, t_init, self.host_schedule(x_init, t_init), indices=indices,
                        trajectory_every=trajectory_every)

    def host_schedule(self, x_init: Array | None, t_init) -> tuple | None:
        """`(levels [num_steps + 1], coefficients)` built on the host in float64 and cast to the state's
        dtype, or None where the start is traced or per example (then the body builds them)."""
        levels = host_sigmas(self, x_init, t_init, self.num_steps, self.rule_order)
        return None if levels is None else common.cast((levels, self.coefficients(levels[:, None], np)), x_init)

    def run(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None,
            t_init: Array | float | None, schedule: tuple | None, *, indices: Array | None = None,
            trajectory_every: int = 0):
        """The call on a given `host_schedule` (traced): that of another solver of this class and step
        count that differs only in its levels (sigma_min, rho, schedule) runs this compiled program, e.g.
        a sweep over sigma_min (`scripts/benchmark_samplers.py`)."""
        out = common.run_sampler(_sigma_space_body, self, rng, score_fn, shape, x_init, t_init, indices,
                                 shared=schedule, trajectory_every=trajectory_every)
        return common.finish(out, self.nfe, trajectory_every)


def _sigma_space_body(static, rng, score_fn, start, host):
    solver, example_shape, _, every = static
    init_key, noise_key = jax.random.split(rng)
    x, sigmas, denoiser = sigma_space_setup(solver, init_key, score_fn, example_shape, start,
                                            None if host is None else host[0], solver.num_steps, solver.rule_order)
    coefficients = solver.coefficients(sigmas, jnp) if host is None else host[1]
    x, states = solver.solve(noise_key, x, sigmas, coefficients, denoiser)
    return (x, common.trajectory(states, every)) if every else x
