"""The calling convention every sampler shares: score functions as pytrees, one jit, per-example keys.

Score functions. Anything called as `score_fn(x, t)` is accepted; inside, it becomes a
`jax.tree_util.Partial` (`as_score_fn`):
- a `Partial(f, *args, **keywords)` keeps its arrays as traced inputs of the compiled sampler (the
  function `f` is static and must be hashable): its positional `args` (network weights) are shared
  by the batch; its `keywords` are per-example conditioning (class labels, k-diffusion's
  `extra_args`), every leaf with a leading batch axis `[B, ...]` that follows its example. New
  weights or labels of the same shapes reuse the compiled sampler;
- any other callable (an exact score, a user's closure) is a compile-time constant, keyed by its
  hash (by identity when unhashable): a new closure compiles again, and arrays it closes over are
  baked into the program.

One jit (`per_example`): the sampler dataclass, the example shape and the function of the chain are
static; the key, the score's arrays, `x_init`, `t_init` and the example indices are traced.

Per-example randomness. Sample i is drawn with the key `fold_in(rng, indices[i])` (its global index;
default `indices = arange(B)`): the chain is vmapped over examples, each seeing a batch of one, so
its prior draw, every step's noise, and an adaptive solver's step sizes belong to it alone. Sample i
is therefore the same in a batch of 3 or 16, on one device or four, padded or not (Karras et al.
2022 draw each seed from its own generator for the same reason), up to float rounding, which XLA may
do differently per compiled batch size. Vmapping a network over batches of one compiles to the same
batched convolutions and matmuls. The one exception is the PC `langevin` corrector, whose
signal-to-noise step size is averaged over the batch as in the reference (a per-example ratio is
unstable in low dimensions): with it, sample i depends on its batch. An adaptive ODE solve (sampler,
likelihood, encode) is no exception, as its step control is per example, but in float32 it turns
rounding into step-size changes, so there sample i agrees only to within the solver tolerance
(bit for bit in float64; `samplers.ode`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from sde_lib.base import SDE, Array, ScoreFn

BATCH_AXIS = "examples"
"""The axis name of `per_example`'s vmap over examples."""


def default_float_dtype():
    """float64 when x64 is enabled, else float32: the dtype of a freshly sampled prior."""
    return jnp.result_type(float)


class _Static:
    """A callable held as the static part of a `Partial`: compared by its own hash and equality when
    hashable, by identity otherwise (a non-frozen dataclass, a class with `__eq__` but no `__hash__`)."""

    __slots__ = ("fn", "_by_identity", "__weakref__")

    def __init__(self, fn):
        self.fn = fn
        try:
            hash(fn)
            self._by_identity = False
        except TypeError:
            self._by_identity = True

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __hash__(self) -> int:
        return id(self.fn) if self._by_identity else hash(self.fn)

    def __eq__(self, other) -> bool:
        if not isinstance(other, _Static) or other._by_identity != self._by_identity:
            return False
        return self.fn is other.fn if self._by_identity else bool(self.fn == other.fn)


def as_score_fn(score_fn: ScoreFn) -> Partial:
    """`score_fn` as a `Partial` whose arrays are traced (see the module docstring).

    Raises TypeError for a score_fn that is not callable.
    """
    if isinstance(score_fn, Partial):
        if isinstance(score_fn.func, _Static):
            return score_fn
        return Partial(_Static(score_fn.func), *score_fn.args, **score_fn.keywords)
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a callable score_fn(x, t), got {type(score_fn).__name__}")
    # a functools.partial is kept whole: Partial would unpack its (maybe non-array) arguments as leaves
    return Partial(_Static(score_fn))


def check_score_shape(score_fn: ScoreFn, x: Array) -> None:
    """Raise a ValueError unless `score_fn(x, t)` returns an array shaped like `x: [B, ...]` (`t: [B]`).

    Checked abstractly (`jax.eval_shape`, no evaluation): the samplers' updates would otherwise
    broadcast a wrong shape (e.g. `[B]`) silently.
    """
    out = jax.eval_shape(score_fn, jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(x.shape[:1], x.dtype))
    shape = getattr(out, "shape", None)
    if shape != x.shape:
        got = f"shape {shape}" if shape is not None else f"a {type(out).__name__}"
        raise ValueError(f"score_fn(x, t) must return an array shaped like x, {x.shape} (the samplers call it on one "
                         f"example at a time, under vmap), but returned {got}")


def initial_state(sde: SDE, rng: Array, shape: tuple[int, ...], x_init: Array | None,
                  t_init: Array | float | None, score_fn: ScoreFn | None = None) -> tuple[Array, Array]:
    """The chain's start `(x [B, ...], t_start scalar)`: `x_init` at `t_init`, or a prior sample at T.

    With `score_fn`, also checks (at trace time) that it returns the shape of x.
    """
    if x_init is None:
        x = sde.prior_sampling(rng, shape, default_float_dtype())
    else:
        x = jnp.asarray(x_init)
    t_start = jnp.asarray(sde.T if t_init is None else t_init, x.dtype)
    if score_fn is not None:
        check_score_shape(score_fn, x)
    return x, t_start


def check_start(shape: tuple[int, ...], x_init: Array | None, t_init: Array | float | None) -> Array | None:
    """Validate the start of a sampler call; returns `t_init` as `[B]` (None stays None).

    `x_init` must have `shape`; `t_init` (a scalar or one time per example, `[B]`) needs `x_init`.
    """
    if x_init is not None and tuple(jnp.shape(x_init)) != tuple(shape):
        raise ValueError(f"x_init has shape {tuple(jnp.shape(x_init))} but the sampler was asked for shape "
                         f"{tuple(shape)}")
    if t_init is None:
        return None
    if x_init is None:
        raise ValueError("t_init was given without x_init; pass the state x_init at time t_init")
    t = jnp.asarray(t_init)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != shape[0]):
        raise ValueError(f"t_init must be a scalar time or one per example, [{shape[0]}], got shape {t.shape}")
    return jnp.broadcast_to(t.astype(jnp.result_type(x_init)), (shape[0],))


def concrete(value) -> np.ndarray | None:
    """The host value of `value`, or None when it is traced (then host-side work is skipped)."""
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def host_float64(fn, values) -> np.ndarray:
    """`fn` (an elementwise jnp function, e.g. `sde.sigma`) evaluated now, in float64, at `values`:
    schedules are built on the host and cast once (as Karras et al. 2022 do), also while an enclosing
    jit is tracing. One scalar at a time, so the eager float64 ops compile once per process, not once
    per schedule length."""
    values = np.asarray(values, np.float64)
    with jax.ensure_compile_time_eval(), jax.enable_x64(True):
        flat = [float(fn(np.float64(v))) for v in values.reshape(-1)]
    return np.asarray(flat, np.float64).reshape(values.shape)


def python_nfe(nfe):
    """nfe as a Python int when it is concrete (an adaptive solve's count), else as it is (traced)."""
    host = concrete(nfe)
    return nfe if host is None else int(host)


def _add_axis(tree):
    return jax.tree.map(lambda leaf: leaf[None], tree)


def example_keys(rng: Array, indices: Array) -> Array:
    """One key per example, `fold_in(rng, index)`, `[B]`."""
    return jax.vmap(jax.random.fold_in, (None, 0))(rng, indices)


def example_normal(rng: Array, indices, shape: tuple[int, ...], dtype) -> Array:
    """Standard normal draws `[*shape]` whose example i comes from `fold_in(rng, indices[i])` alone."""
    keys = example_keys(rng, example_indices(indices, shape[0]))
    return jax.vmap(lambda key: jax.random.normal(key, shape[1:], dtype))(keys)


def example_indices(indices, batch: int) -> Array:
    """`indices` (global example indices, `[B]` ints) checked, or `arange(B)`."""
    if indices is None:
        return jnp.arange(batch, dtype=jnp.uint32)
    indices = jnp.asarray(indices)
    if indices.shape != (batch,) or not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"indices must be {batch} integers (one global index per example), got "
                         f"{indices.dtype} of shape {indices.shape}")
    return indices.astype(jnp.uint32)


def map_parts(score_fn: Partial, shared, per_example) -> Partial:
    """`score_fn` with `shared` applied to its positional arrays and `per_example` to its keyword ones,
    recursing into Partials among its positional arguments (a guided score holding two scores)."""
    args = tuple(map_parts(a, shared, per_example) if isinstance(a, Partial) else jax.tree.map(shared, a)
                 for a in score_fn.args)
    return Partial(score_fn.func, *args, **jax.tree.map(per_example, score_fn.keywords))


def _check_conditioning(score_fn: Partial, batch: int) -> None:
    def check(leaf):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != batch:
            raise ValueError(f"conditioning (the score's keyword arrays) needs a leading batch axis of {batch}, "
                             f"got shape {jnp.shape(leaf)}")

    map_parts(score_fn, lambda leaf: leaf, check)


def per_example(body, static, rng: Array, score_fn: ScoreFn, batched, shared=None, *, batch: int,
                indices=None):
    """`body(static, key, score_fn, batched_i, shared)` for every example i, as one jitted vmap.

    `body` (a module-level function) and `static` (hashable: the sampler, shapes) are static; `batched`
    is a pytree of `[B, ...]` arrays (None leaves allowed) given to `body` as `[1, ...]`, `shared` a
    pytree given whole, and the score's conditioning is sliced like `batched`. `key` is
    `fold_in(rng, indices[i])`. `body` returns a pytree of `[1, ...]` arrays; the result stacks them
    to `[B, ...]`.
    """
    score_fn = as_score_fn(score_fn)
    _check_conditioning(score_fn, batch)
    return _per_example(body, static, rng, score_fn, batched, shared, example_indices(indices, batch))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _per_example(body, static, rng, score_fn, batched, shared, indices):
    def one(key, score_i, batched_i):
        score_i = map_parts(score_i, lambda leaf: leaf, lambda leaf: leaf[None])
        out = body(static, key, score_i, _add_axis(batched_i), shared)
        return jax.tree.map(lambda leaf: leaf[0], out)

    score_axes = map_parts(score_fn, lambda _: None, lambda _: 0)
    return jax.vmap(one, in_axes=(0, score_axes, 0), axis_name=BATCH_AXIS)(example_keys(rng, indices), score_fn,
                                                                         batched)


def batch_mean(v: Array) -> Array:
    """Mean of `v: [B]` over the whole batch, also inside `per_example` (across its vmap): for the
    reference's batch-averaged Langevin step size, the one coupling of examples (`samplers.correctors`)."""
    try:
        return jax.lax.pmean(jnp.mean(v), BATCH_AXIS)
    except NameError:  # not under per_example: the batch is all of v
        return jnp.mean(v)


def run_sampler(body, sampler, rng: Array, score_fn: ScoreFn, shape: tuple[int, ...], x_init: Array | None,
                t_init: Array | float | None, indices=None, shared=None, extra=None, trajectory_every: int = 0):
    """A sampler call through `per_example`: `body((sampler, example_shape, extra, trajectory_every), key,
    score_fn, (x_init_i [1, ...] | None, t_init_i [1] | None), shared)` per example.

    Checks the start (`check_start`): `t_init` may be a scalar or `[B]`, and needs `x_init`. With
    `trajectory_every = k > 0` the body returns `(samples, trajectory(states))` (`trajectory`), and so
    does this function, the states as `[K, B, ...]`.
    """
    shape = tuple(int(s) for s in shape)
    if int(trajectory_every) != trajectory_every or trajectory_every < 0:
        raise ValueError(f"trajectory_every must be a non-negative int, got {trajectory_every}")
    t_batch = check_start(shape, x_init, t_init)
    x_init = None if x_init is None else jnp.asarray(x_init)
    out = per_example(body, (sampler, shape[1:], extra, int(trajectory_every)), rng, score_fn, (x_init, t_batch),
                      shared, batch=shape[0], indices=indices)
    if trajectory_every:
        samples, states = out
        return samples, jnp.swapaxes(states, 0, 1)
    return out


def trajectory(states: Array, every: int) -> Array:
    """Every `every`-th of a chain's scan outputs `states: [steps, 1, ...]` (the state after steps k,
    2k, ...), as `[1, K, ...]` for `per_example`: kept on device as scan outputs, no host callback."""
    return jnp.swapaxes(states[every - 1::every], 0, 1)


def finish(out, nfe: int, trajectory_every: int):
    """A sampler's return value: `(samples, nfe)`, or `(samples, nfe, states [K, B, ...])` with a trajectory."""
    return (out[0], nfe, out[1]) if trajectory_every else (out, nfe)


def start_dtype(x_init: Array | None):
    """The dtype of a sampler's state: that of `x_init`, else `default_float_dtype()`."""
    return default_float_dtype() if x_init is None else jnp.result_type(x_init)


def cast(host, x_init: Array | None):
    """Host (float64) arrays, a pytree or None, cast once to the state's dtype (`start_dtype`)."""
    dtype = start_dtype(x_init)
    return jax.tree.map(lambda a: np.asarray(a, dtype), host)


def host_start_time(t_init, T: float) -> float | None:
    """The common start time of the batch as a Python float (T for None), or None when `t_init` is
    traced or differs between examples (then the schedule is built on device per example)."""
    if t_init is None:
        return float(T)
    host = concrete(t_init)
    if host is None or host.size == 0 or not np.all(host == host.reshape(-1)[0]):
        return None
    return float(host.reshape(-1)[0])
