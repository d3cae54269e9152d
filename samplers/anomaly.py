"""Anomaly scores from a score model, ranking, and AUROC.

Two scores, higher = more anomalous, per example `[B]`:
- `nll_bits_per_dim`: the negative log-likelihood of the probability-flow ODE (Song et al. 2021,
  eq. 39) in bits per dimension, from `samplers.likelihood`;
- `denoising_error`: the denoising score-matching error |s(t) score(x_t, t) + z|^2 (Vincent
  2011; Song et al. 2021, eq. 7 with lambda = s^2) averaged over a few noise levels and noise
  draws, a cheap proxy in the spirit of Graham et al. 2023 ("Denoising diffusion models for
  out-of-distribution detection"). Every example sees the same noise draws (common random
  numbers), so a score is a deterministic function of x and the key, whatever the batch.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from samplers import likelihood
from sde_lib.base import SDE, Array, ScoreFn, batch_broadcast


def nll_bits_per_dim(rng: Array, sde: SDE, score_fn: ScoreFn, x: Array, *, bin_width: float | None = None,
                     **likelihood_kwargs) -> Array:
    """Negative log-likelihood of `x: [B, ...]` under the probability flow, in bits per dimension `[B]`.

    With `bin_width` (the 8-bit bin in model space, e.g. 2/256 for data in [-1, 1]) it is the
    discrete bits/dim of `likelihood.bits_per_dim`; without, the continuous -log2 p(x) / D. The
    two differ by the constant -log2(bin_width), so the ranking is the same. `rng` draws the
    Hutchinson probes; `likelihood_kwargs` go to `likelihood.log_likelihood` (divergence, probe,
    num_probes, rtol, atol, eps, solver).
    """
    logp = likelihood.log_likelihood(rng, sde, score_fn, x, **likelihood_kwargs).logp
    dims = math.prod(x.shape[1:])
    if bin_width is None:
        return -logp / (dims * math.log(2.0))
    return likelihood.bits_per_dim(logp, dims, bin_width)


def denoising_error(rng: Array, sde: SDE, score_fn: ScoreFn, x: Array,
                    times: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4), num_draws: int = 4) -> Array:
    """Mean over `times` and `num_draws` noise draws of the per-dimension DSM error, `x: [B, ...] -> [B]`.

    For each level t: x_t = alpha(t) x + s(t) z and error = mean_d (s(t) score(x_t, t) + z)^2, which
    is 1 - (small) on average for data the model fits and grows for points it does not. All
    K * num_draws * B evaluations go through `score_fn` as one batch.
    """
    if not times or num_draws < 1:
        raise ValueError(f"need at least one time and one draw, got times={times}, num_draws={num_draws}")
    if any(not 0 < t <= sde.T for t in times):
        raise ValueError(f"times must lie in (0, T={sde.T}], got {times}")
    batch, levels = x.shape[0], len(times) * num_draws
    t = jnp.repeat(jnp.asarray(times, x.dtype), num_draws)
    z = jax.random.normal(rng, (levels, 1) + x.shape[1:], x.dtype)
    z = jnp.broadcast_to(z, (levels, batch) + x.shape[1:]).reshape((levels * batch,) + x.shape[1:])
    t_all = jnp.repeat(t, batch)
    x_all = jnp.tile(x, (levels,) + (1,) * (x.ndim - 1))
    mean, std = sde.marginal_prob(x_all, t_all)
    std_b = batch_broadcast(std, x_all)
    residual = std_b * score_fn(mean + std_b * z, t_all) + z
    per_level = jnp.mean(jnp.reshape(residual**2, (levels, batch, -1)), axis=2)
    return jnp.mean(per_level, axis=0)


def rank_anomalies(scores: Array) -> Array:
    """Indices `[B]` ordering the batch from most to least anomalous (highest score first; ties
    keep batch order)."""
    scores = jnp.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be [B], got shape {scores.shape}")
    return jnp.argsort(-scores, stable=True)


def auroc(scores: Array, labels: Array) -> float:
    """Area under the ROC curve of `scores: [n]` for `labels: [n]` (1/True = anomaly), exactly.

    Mann-Whitney form: P(score of an anomaly > score of a normal point) + P(tie) / 2, from the
    rank sum of the anomalies with tied scores given their average rank (Hanley & McNeil 1982).
    A reporting function: it runs on the host in integer arithmetic (twice the ranks are integers).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must both be [n], got {scores.shape} and {labels.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("auroc needs finite scores")
    positive = labels.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auroc needs both classes, got {n_pos} anomalies and {n_neg} normal points")
    ordered = np.sort(scores)
    twice_ranks = (np.searchsorted(ordered, scores, side="left")
                   + np.searchsorted(ordered, scores, side="right") + 1)
    twice_u = int(twice_ranks[positive].sum()) - n_pos * (n_pos + 1)
    return twice_u / (2 * n_pos * n_neg)
