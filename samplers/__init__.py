"""Samplers and likelihoods that take any `score_fn(x, t)`.

Contract shared by every sampler (see `samplers.registry.SAMPLERS`): a frozen dataclass holding
`sde` and its hyper-parameters, called as
`sampler(rng, score_fn, shape, x_init=None, t_init=None, *, indices=None) -> (samples, nfe)`: it
starts from `x_init` at time `t_init` (a scalar or one per example, `[B]`; needs `x_init`; default: a
prior sample at T in `common.default_float_dtype()`), runs the whole chain on device in one
`lax.scan` / `fori_loop` / diffrax solve, and returns the samples and the number of score evaluations
per example as a Python int (for an adaptive solve, the largest over the batch: the number of batched
score evaluations made).

Calling convention (`samplers.common`, shared by every sampler, the likelihood, inpainting,
colorization, guidance, denoise, edit and encode):
- Weights and conditioning are traced inputs. A score that carries arrays is a
  `jax.tree_util.Partial(f, *shared, **per_example)`: `f` is static (hashable), the positional arrays
  (network weights) are shared by the batch, the keyword arrays (class labels) carry a leading batch
  axis. `models.get_score_fn(..., labels=None)` returns one. Any other callable (an exact score, a
  closure) is static: new closures recompile, and what they close over is a compile-time constant.
- One jit: the sampler dataclass and the example shape are static; the key, the score's arrays,
  `x_init`, `t_init` and `indices` are traced. So new weights, a new EMA, new labels or a new guidance
  weight of the same shapes run the compiled program; a new sampler setting, shape or dtype compiles.
- Per-example randomness: sample i uses `fold_in(rng, indices[i])` (default `indices = arange(B)`)
  alone, so it is the same in any batch size, on any device count, padded or not. The one exception
  is the PC `langevin` corrector, whose step size is a batch average as in the reference. Adaptive
  ODE solves (`ode` without `num_steps`, the likelihood, encode) control each example's steps on its
  own, so they are no exception; in float32 they turn rounding (which XLA does per compiled batch
  size) into step-size changes, so sample i agrees to within the solver tolerance, in float64 exactly.
- Schedules (time grids, noise levels, DPM-Solver coefficients) are built on the host in float64 and
  cast once, when the start time is known on the host (always from the prior); a traced or
  per-example `t_init` builds them on device.
- Trajectories: `pc` and the sigma-space solvers (`ddim`, `edm_heun`, `dpm_solver`, `lms`, `ipndm`,
  `unipc`, `dpm_solver_sde`) take `trajectory_every=k` and then return `(samples, nfe, states)`, the state
  after every k-th step as `[K, B, ...]` (scan outputs of the jitted chain, no host callback; the
  sigma-space solvers' states are x / alpha).

The sigma-space solvers share one frame (`samplers.sigma_solver.SigmaSpaceSolver`): each states only
its per-step coefficients and its `lax.scan`; the schedule, checks and call are common.
"""
from samplers import (
    ald,
    anomaly,
    common,
    correctors,
    denoise,
    edit,
    encode,
    guidance,
    inpainting,
    likelihood,
    ode,
    pc,
    predictors,
)
from samplers.ald import AnnealedLangevinSampler
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.edm_heun import EDMHeunSampler
from samplers.ipndm import IPNDMSampler
from samplers.lms import LMSSampler
from samplers.registry import CORRECTORS, PREDICTORS, SAMPLERS
from samplers.unipc import UniPCSampler


def build_sampler(name: str, sde, **kwargs):
    """A sampler by registry name, e.g. `build_sampler("pc", sde, predictor="reverse_diffusion")`."""
    return SAMPLERS.get(name)(sde=sde, **kwargs)


__all__ = [
    "CORRECTORS", "PREDICTORS", "SAMPLERS", "AnnealedLangevinSampler", "DDIMSampler", "DPMSolverPPSampler",
    "DPMSolverSDESampler", "EDMHeunSampler", "IPNDMSampler", "LMSSampler", "UniPCSampler", "ald", "anomaly", "build_sampler",
    "common", "correctors", "denoise", "edit", "encode", "guidance", "inpainting", "likelihood", "ode", "pc",
    "predictors",
]
