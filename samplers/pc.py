"""Predictor-corrector sampling (Song et al. 2021, sec. 4.2, Algorithm 1).

At each of `num_steps` times t_0 = t_init > ... > t_{n-1} = eps (uniform), the corrector runs
`n_steps_each` Langevin steps at t_i, then the predictor steps to t_{i+1} (t_n = 0). The whole chain
is one jitted `lax.scan`. With `denoise`, the last predictor step (eps -> 0) is replaced by one
Tweedie step, E[x_0 | x_eps] = (x + s(eps)^2 score(x, eps)) / alpha(eps) (Efron 2011; the
`noise_removal` of Song et al. 2021), the posterior mean of the data given the chain's sample at eps.
For the DDPM / SMLD chains this is (to O(eps)) the noise-free last step of the reference code.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers import common
from samplers.common import initial_state
from samplers.registry import CORRECTORS, PREDICTORS, SAMPLERS
from sde_lib.base import SDE, Array, ScoreFn
from sde_lib.parametrization import data_from_score

DISCRETE_CHAIN_PREDICTORS = ("reverse_diffusion", "ancestral_sampling")
"""Predictors that step the SDE's own discretisation (its N steps) instead of dt."""


@SAMPLERS.register("pc")
@dataclasses.dataclass(frozen=True)
class PCSampler:
    """Predictor-corrector sampler; `predictor` / `corrector` are names in `PREDICTORS` / `CORRECTORS`.

    `num_steps` (default `sde.N`) sets the time grid. The discrete-chain predictors
    (`reverse_diffusion`, `ancestral_sampling`) step the SDE's own discretisation on the grid
    t_i = i T / (N - 1) and ignore dt, so the chain must have one step per grid interval: from T
    that is N = num_steps; from a concrete t_init < T it is the N that puts t_init on step
    num_steps - 1 and visits steps num_steps - 1, ..., 0 once each (`chain_size`), so the chain
    does not over-denoise. A traced t_init (not T) cannot be matched and is an error for these two
    predictors. The Langevin alpha_i use the same chain. Score evaluations per example:
    num_steps * (predictor.nfe + corrector.nfe), i.e. 1 per predictor step (0 for `none`) plus
    `n_steps_each` per corrector call (0 for `none`); with `denoise` the Tweedie step (1) takes the place
    of the last predictor step (predictor.nfe).
    """

    sde: SDE
    predictor: str = "reverse_diffusion"
    corrector: str = "langevin"
    snr: float = 0.16
    n_steps_each: int = 1
    probability_flow: bool = False
    denoise: bool = True
    eps: float = 1e-3
    num_steps: int | None = None

    def __post_init__(self):
        PREDICTORS.get(self.predictor)
        CORRECTORS.get(self.corrector)
        if not 0 < self.eps < self.sde.T:
            raise ValueError(f"eps must lie in (0, T={self.sde.T}), got {self.eps}")
        if self.num_steps is not None and self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        # builds the parts once so that bad combinations (ancestral on sub-VP, bad snr) fail here
        self._parts(lambda x, t: x)
        uses_discrete_chain = (self.predictor in DISCRETE_CHAIN_PREDICTORS
                               or self.corrector in ("langevin", "ald"))
        betas = getattr(self._grid_sde, "discrete_betas", None)
        if uses_discrete_chain and betas is not None and float(np.max(betas)) >= 1.0:
            # beta_i = beta(t_i) / N: at or above 1 the chain's sqrt(1 - beta_i) is NaN
            raise ValueError(f"num_steps={self.steps} is too few for {self.predictor!r} / {self.corrector!r} on "
                             f"{type(self.sde).__name__}: the discrete beta reaches {float(np.max(betas)):.3g} "
                             f">= 1; use more steps than beta_max or the euler_maruyama predictor")

    @property
    def steps(self) -> int:
        return self.sde.N if self.num_steps is None else self.num_steps

    @property
    def _grid_sde(self) -> SDE:
        """The SDE with N = num_steps, whose discrete chain matches the time grid from T."""
        return self._chain_sde(self.steps)

    def _chain_sde(self, chain_size: int) -> SDE:
        return self.sde if chain_size == self.sde.N else dataclasses.replace(self.sde, N=chain_size)

    def chain_size(self, t_init: Array | float | None) -> int:
        """N of the discrete chain (the predictors' and Langevin alpha_i's) for a start at `t_init`.

        num_steps from T. From a concrete t_init < T with a discrete-chain predictor: the N whose step
        indices floor(t_k (N - 1) / T) on the grid t_k = linspace(t_init, eps, num_steps) are
        num_steps - 1, ..., 0, each once, and whose first step's time (num_steps - 1) T / (N - 1) is
        closest to t_init: the chain's step T / (N - 1) then matches the grid spacing
        (t_init - eps) / (num_steps - 1) to within one part in N - 1 (plus eps / (num_steps - 1),
        as from T). Raises ValueError for a traced t_init, or when no such N exists (t_init too close
        to eps for num_steps).
        """
        if t_init is None or self.predictor not in DISCRETE_CHAIN_PREDICTORS:
            return self.steps
        try:
            host = np.asarray(t_init, np.float64)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            raise ValueError(
                f"t_init is a traced value, but the {self.predictor!r} predictor steps a discrete chain whose "
                f"step must match the grid spacing (t_init - eps) / (num_steps - 1), which needs t_init as a "
                f"number: pass t_init as a Python float or a concrete array (not an argument of the enclosing "
                f"jit), leave it None to start at T, or use the euler_maruyama predictor") from None
        if host.ndim == 1 and host.size and np.all(host == host[0]):  # one start time given per example
            host = host[0]
        if host.shape != ():
            raise ValueError(f"t_init must be one time for the batch for {self.predictor!r}, got shape {host.shape}")
        t, T, n = float(host), self.sde.T, self.steps
        if abs(t - T) <= 1e-6 * T:
            return n
        if not self.eps < t < T:
            raise ValueError(f"t_init must lie in (eps, T] = ({self.eps}, {T}] for {self.predictor!r}, got {t}")
        grid = np.linspace(t, self.eps, n)
        want = np.arange(n - 1, -1, -1)
        best, best_offset = None, np.inf
        guess = math.ceil((n - 1) * T / t)
        for intervals in (guess - 1, guess, guess + 1):  # N - 1
            if intervals < 1 or not np.array_equal(np.floor(grid * intervals / T + 1e-4), want):  # timestep_index
                continue
            # the chain's time of its first step, (num_steps - 1) T / (N - 1), as close to t_init as possible
            offset = abs(t - (n - 1) * T / intervals)
            if offset < best_offset:
                best, best_offset = intervals + 1, offset
        if best is None:
            raise ValueError(
                f"no discrete chain matches num_steps={n} from t_init={t} to eps={self.eps} for {self.predictor!r}: "
                f"the grid step {(t - self.eps) / max(n - 1, 1):.3g} is not above eps; use fewer steps or the "
                f"euler_maruyama predictor")
        return best

    def _parts(self, score_fn: ScoreFn, chain_size: int | None = None):
        sde = self._chain_sde(self.steps if chain_size is None else chain_size)
        predictor = PREDICTORS.get(self.predictor)(sde, score_fn, self.probability_flow)
        corrector = CORRECTORS.get(self.corrector)(sde, score_fn, self.snr, self.n_steps_each)
        return predictor, corrector

    @property
    def nfe(self) -> int:
        """Exact score evaluations per example of one call."""
        predictor, corrector = self._parts(lambda x, t: x)
        return self.steps * (predictor.nfe + corrector.nfe) + int(self.denoise) * (1 - predictor.nfe)

    def __call__(self, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None = None,
                 t_init: Array | float | None = None, *, indices: Array | None = None,
                 trajectory_every: int = 0) -> tuple[Array, int]:
        """Samples `[*shape]` from `x_init` at `t_init` (default: the prior at T), and the nfe.

        `indices`: the examples' global indices (default `arange(B)`); see `samplers.common`. With
        `trajectory_every = k`, also the states after every k-th step, `[num_steps // k, *shape]`.
        """
        chain_size = self.chain_size(t_init)
        t_start = common.host_start_time(t_init, self.sde.T)
        times = None if t_start is None else common.cast(np.linspace(t_start, self.eps, self.steps), x_init)
        out = common.run_sampler(_pc_body, self, rng, score_fn, shape, x_init, t_init, indices,
                                 shared=times, extra=chain_size, trajectory_every=trajectory_every)
        return common.finish(out, self.nfe, trajectory_every)


def run_chain(sampler: PCSampler, score_fn: ScoreFn, key: Array, x: Array, t_start: Array,
              project: Callable[[Array, Array, Array], Array] | None = None, chain_size: int | None = None,
              times: Array | None = None, trajectory_every: int = 0) -> Array:
    """The predictor-corrector chain from `x: [B, ...]` at `t_start` down to eps; returns the sample.

    `chain_size` is `sampler.chain_size(t_init)` (default: num_steps, right for t_start = T). `times`:
    the grid `[num_steps]` from t_start to eps when built on the host (float64, cast), else built here.

    Without `sampler.denoise` the sample is the last predictor step's (eps -> 0); with it, the
    Tweedie step E[x_0 | x_eps] replaces that step. `project(key, x, t) -> x`, when given, follows
    every corrector and predictor update (the replacement step of inpainting); without it the
    chain is plain PC sampling. With `trajectory_every = k`, returns `(x, every k-th state)`
    (`common.trajectory`).
    """
    predictor, corrector = sampler._parts(score_fn, chain_size)
    ts = jnp.linspace(t_start, jnp.asarray(sampler.eps, x.dtype), sampler.steps) if times is None else times
    t_next = jnp.concatenate([ts[1:], jnp.zeros((1,), x.dtype)])
    last = sampler.steps - 1
    tweedie = data_from_score(sampler.sde, score_fn)

    def step(carry, inputs):
        key, x = carry
        k, t, t_n = inputs
        vec_t = jnp.full((x.shape[0],), t, x.dtype)
        if project is None:
            key, corrector_key, predictor_key = jax.random.split(key, 3)
            x, _ = corrector.update(corrector_key, x, vec_t)

            def predict(x):
                return predictor.update(predictor_key, x, vec_t, t_n - t)[0]
        else:
            key, corrector_key, corrector_project, predictor_key, predictor_project = jax.random.split(key, 5)
            x = project(corrector_project, corrector.update(corrector_key, x, vec_t)[0], t)

            def predict(x):
                return project(predictor_project, predictor.update(predictor_key, x, vec_t, t_n - t)[0], t_n)

        if sampler.denoise:  # only the branch taken is evaluated, so nfe stays exact
            x = jax.lax.cond(k == last, lambda x: tweedie(x, vec_t), predict, x)
        else:
            x = predict(x)
        return (key, x), x

    (_, x), states = jax.lax.scan(step, (key, x), (jnp.arange(sampler.steps), ts, t_next))
    return (x, common.trajectory(states, trajectory_every)) if trajectory_every else x


def _pc_body(static, rng, score_fn, start, times):
    sampler, example_shape, chain_size, every = static
    x_init, t_init = start
    prior_key, chain_key = jax.random.split(rng)
    x, t_start = initial_state(sampler.sde, prior_key, (1, *example_shape), x_init,
                               None if t_init is None else t_init[0], score_fn)
    return run_chain(sampler, score_fn, chain_key, x, t_start, chain_size=chain_size, times=times,
                     trajectory_every=every)
