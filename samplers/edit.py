"""Image-to-image editing by SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing
with Stochastic Differential Equations", Algorithm 1), with an optional mask.

The input (a guide: a stroke painting, a corrupted or out-of-domain image) is perturbed to time
t0 = strength * T by the forward marginal, x_{t0} = alpha(t0) x + s(t0) z, and any sampler of the
`SAMPLERS` contract runs the reverse process back from t0. Small strength keeps the input
(faithful), strength 1 forgets it (realistic samples of the model).

With a mask (1 = keep the input there), the known coordinates follow the reverse process of the
point mass at the input, whose score is (alpha(t) x_in - x) / s(t)^2: its marginals at every t are
exactly the forward perturbation of the input, which is what inpainting by replacement
(Song et al. 2021, appendix I.2; SDEdit's masked Algorithm 2) feeds the model at each step. Doing it
through the score lets every sampler (PC, ODE, DDIM, DPM-Solver, ...) blend at every step with no
change to the sampler; the output then takes the input exactly on the known region.

The reverse process from x_{t0} samples p(x_0 | x_{t0}); a Langevin corrector or EDM churn would
target the marginal p_t and forget the input, so such samplers are refused
(`samplers.denoise.check_posterior_sampler`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from samplers.common import as_score_fn, example_normal
from samplers.denoise import Sampler, check_posterior_sampler
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast


def masked_score_fn(sde: SDE, score_fn: ScoreFn, x_known: Array, mask: Array) -> ScoreFn:
    """`score_fn` on the unknown region, the score of the point mass at `x_known` on the known one.

    `x_known: [B, ...]`, `mask` broadcastable to it (1 = known). The known part is
    grad log N(x; alpha(t) x_known, s(t)^2 I) = (alpha(t) x_known - x) / s(t)^2. A `Partial` with
    `x_known` and the mask as per-example arrays (`samplers.common`).
    """
    x_known = jnp.asarray(x_known)
    mask = jnp.broadcast_to(jnp.asarray(mask, x_known.dtype), x_known.shape)
    return Partial(_MaskedScore(sde), as_score_fn(score_fn), x_known=x_known, mask=mask)


@dataclasses.dataclass(frozen=True)
class _MaskedScore:
    sde: SDE

    def __call__(self, score_fn, x: Array, t: Array, x_known: Array, mask: Array) -> Array:
        alpha = batch_broadcast(self.sde.alpha(t).astype(x.dtype), x)
        std = batch_broadcast(self.sde.marginal_std(t).astype(x.dtype), x)
        pinned = (alpha * x_known - x) / std**2
        return jnp.where(mask > 0.5, pinned, score_fn(x, t))


def edit_time(sde: SDE, strength: float, eps: float) -> float:
    """t0 = strength * T, floored at `eps` (the sampler's end time), for strength in [0, 1]."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    return max(strength * sde.T, eps)


def sdedit(rng: Array, sampler: Sampler, score_fn: ScoreFn, x: Array, strength: float,
           mask: Array | None = None, eps: float | None = None, *, indices: Array | None = None
           ) -> tuple[Array, int]:
    """Edit `x: [B, ...]`: perturb to t0 = max(strength T, eps), then run `sampler` back from t0.

    `mask` (optional) broadcastable to `x`, 1 where the input is kept. `eps` defaults to the
    sampler's own end time (`sampler.eps`, else 1e-3). Returns `(edited [B, ...], nfe)`; edit i uses
    only the keys of `indices[i]` (default i; `samplers.common`).
    Raises ValueError for a sampler with a Langevin corrector or churn.
    """
    check_posterior_sampler(sampler, "SDEdit")
    sde = sampler.sde
    eps = getattr(sampler, "eps", 1e-3) if eps is None else eps
    t0 = edit_time(sde, float(strength), eps)
    noise_key, sample_key = jax.random.split(rng)
    t = jnp.full((x.shape[0],), t0, x.dtype)
    mean, std = sde.marginal_prob(x, t)
    x_init = mean + batch_broadcast(std, x) * example_normal(noise_key, indices, x.shape, x.dtype)
    if mask is None:
        return sampler(sample_key, score_fn, x.shape, x_init=x_init, t_init=t0, indices=indices)
    mask = jnp.broadcast_to(jnp.asarray(mask, x.dtype), x.shape)
    guided = masked_score_fn(sde, score_fn, x, mask)
    samples, nfe = sampler(sample_key, guided, x.shape, x_init=x_init, t_init=t0, indices=indices)
    return jnp.where(mask > 0.5, x, samples), nfe
