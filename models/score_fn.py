"""From a network's raw output to the framework's `score_fn(x, t)`, with the noise-conditioning
conventions of the 2021 score-SDE code (Song et al. 2021, appendix C and H):

| SDE          | continuous              | discrete                                   |
|--------------|-------------------------|--------------------------------------------|
| VP, sub-VP   | label 999 t, eps output | label = t (N - 1) / T, fractional (VP); std of the step it lies in |
| VE           | label sigma(t)          | label = round((T - t)(N - 1)), the index of sigma in the descending SMLD list |

VP / sub-VP networks predict eps, so score = -out / std. VE networks predict the score; with
`scale_by_sigma` they predict std * score and are divided by the noise level here.

Networks embed the label they are given. The 2021 networks with Fourier features embed the log of
the label above (log sigma for NCSN++), so for them `network_noise_labels` takes that log here;
preconditioned networks get the preconditioning's c_noise instead (`models.preconditioning`).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import sde_lib
from models.apply import get_model_fn
from models.preconditioning import get_denoiser_fn
from sde_lib import SDE, Array, ScoreFn, batch_broadcast


def noise_labels(sde: SDE, t: Array, continuous: bool) -> Array:
    """The label the network is conditioned on at time `t: [B]` (see the module table)."""
    if isinstance(sde, sde_lib.subVPSDE) or (isinstance(sde, sde_lib.VPSDE) and continuous):
        return 999.0 * t
    if isinstance(sde, sde_lib.VPSDE):
        # fractional, as in the 2021 code: a sampler between grid times feeds t (N - 1), not its step
        return (t * (sde.N - 1) / sde.T).astype(jnp.float32)
    if isinstance(sde, sde_lib.VESDE):
        if continuous:
            return sde.marginal_std(t)
        return jnp.round((sde.T - t) * (sde.N - 1)).astype(jnp.int32)
    raise TypeError(f"no noise-label convention for {type(sde).__name__}")


def network_noise_labels(model: nn.Module, labels: Array) -> Array:
    """What `model` embeds for the table's `labels`: their log for Fourier-feature networks (the
    2021 NCSN++ embeds log sigma; the labels are positive for continuous time, which the config
    validator requires of Fourier embeddings), the labels themselves otherwise."""
    if getattr(model, "embedding_type", None) == "fourier":
        return jnp.log(labels.astype(jnp.float32))
    return labels


def _divide_by_std(out: Array, std: Array) -> Array:
    return out / batch_broadcast(std.astype(out.dtype), out)


@dataclasses.dataclass(frozen=True)
class NetworkScore:
    """The static part of a network's score: `(params, dropout_rng, shared_labels, x, t, labels=None)
    -> score [B, ...]`, hashable (the network, SDE and conventions), so that a
    `Partial(NetworkScore(...), params, ...)` keeps the weights and labels traced (`samplers.common`)."""

    sde: SDE
    model: nn.Module
    train: bool
    continuous: bool
    precond: sde_lib.Preconditioning | None = None

    def __call__(self, params, dropout_rng, shared_labels, x: Array, t: Array, labels: Array | None = None) -> Array:
        labels = shared_labels if labels is None else labels
        return _closure_score_fn(self.sde, self.model, params, train=self.train, continuous=self.continuous,
                                 dropout_rng=dropout_rng, precond=self.precond, labels=labels)(x, t)


def get_score_fn(sde: SDE, model: nn.Module, params, *, train: bool, continuous: bool,
                 dropout_rng: Array | None = None, precond: sde_lib.Preconditioning | None = None,
                 labels: Array | None = None) -> Partial:
    """`score_fn(x: [B, ...], t: [B]) -> [B, ...]` of a network under the reference conventions.

    With `precond` (EDM-style preconditioning) the network is a raw backbone of a denoiser and
    the score comes from `sde_lib.score_from_denoiser`, for any SDE. `labels` (class labels of a
    class-conditional network: `[B]`, one per example, or a scalar for the batch) condition it;
None gives its null class (unconditional).

    Returns a `jax.tree_util.Partial` of `NetworkScore`: the parameters (and a scalar label) are its
    positional arrays, shared by the batch, `[B]` labels its per-example keyword; every sampler takes
    them as traced inputs, so new weights of the same shapes do not recompile (`samplers.common`).
    """
    # built once now (no network call) so that a bad convention fails here, not inside a sampler's trace
    _closure_score_fn(sde, model, params, train=train, continuous=continuous, dropout_rng=dropout_rng,
                      precond=precond, labels=labels)
    static = NetworkScore(sde, model, train, continuous, precond)
    if labels is not None and jnp.ndim(labels) > 0:
        return Partial(static, params, dropout_rng, None, labels=labels)
    return Partial(static, params, dropout_rng, labels)


def _closure_score_fn(sde: SDE, model: nn.Module, params, *, train: bool, continuous: bool,
                      dropout_rng: Array | None = None, precond: sde_lib.Preconditioning | None = None,
                      labels: Array | None = None) -> ScoreFn:
    """`get_score_fn` as a closure over `params` (built inside the traced `NetworkScore`)."""
    if precond is not None:
        denoiser = get_denoiser_fn(model, params, precond, train=train, dropout_rng=dropout_rng, labels=labels)
        return sde_lib.score_from_denoiser(sde, denoiser)

    net_fn = get_model_fn(model, params, train=train, dropout_rng=dropout_rng, labels=labels)

    def model_fn(x: Array, table_labels: Array) -> Array:
        return net_fn(x, network_noise_labels(model, table_labels))

    scale_here = bool(getattr(model, "scale_by_sigma", False))

    if isinstance(sde, sde_lib.BetaScheduleSDE):
        if scale_here:
            raise ValueError("scale_by_sigma is for VE score networks; VP / sub-VP networks predict eps "
                             "(set config.model.scale_by_sigma=False)")
        if continuous or isinstance(sde, sde_lib.subVPSDE):
            def eps_fn(x, t):
                return model_fn(x, noise_labels(sde, t, continuous=True))

            return sde_lib.score_from_eps(sde, eps_fn)

        def score_fn(x, t):
            # the 2021 code: fractional label, the std of the floored step (get_score_fn of both ports)
            # 1 - alpha_bar in float64 on the host: in float32 it cancels to 1e-4 relative at step 0
            stds = jnp.asarray(np.sqrt(1.0 - np.asarray(sde.alphas_cumprod, np.float64)), jnp.float32)
            std = stds[sde.timestep_index(t)]
            return -_divide_by_std(model_fn(x, noise_labels(sde, t, continuous=False)), std)

        return score_fn

    if isinstance(sde, sde_lib.VESDE):
        if continuous:
            def out_fn(x, t):
                return model_fn(x, noise_labels(sde, t, continuous=True))

            return sde_lib.score_from_sigma_scaled(sde, out_fn) if scale_here else out_fn

        def score_fn(x, t):
            index = noise_labels(sde, t, continuous=False)
            out = model_fn(x, index)
            if scale_here:
                sigmas_descending = jnp.asarray(sde.discrete_sigmas[::-1], jnp.float32)
                out = _divide_by_std(out, sigmas_descending[index])
            return out

        return score_fn
    raise TypeError(f"no score convention for {type(sde).__name__}")

