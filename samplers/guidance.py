"""Class-conditional sampling by guidance: every function returns a `score_fn(x, t)`, so every
sampler of the `SAMPLERS` contract runs conditionally with no change. They are `Partial`s holding the
scores, the guidance weight and the labels as arrays (`[B]` labels per example), so a new weight,
new labels or new network weights reuse the compiled sampler (`samplers.common`).

- Classifier guidance (Song et al. 2021, sec. 5 / appendix I.4, eq. 14; Dhariwal & Nichol 2021,
  sec. 4): grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x), the second term from a
  noise-conditional classifier by `jax.grad`; a `scale` s gives grad log p_t(x) + s grad log p_t(y | x),
  the score of p_t(x) p_t(y | x)^s up to normalisation.
- Classifier-free guidance (Ho & Salimans 2022, eq. 6): (1 + w) s(x, t, y) - w s(x, t, null), where the
  unconditional score is a separate function or the same conditional one with a null label. With exact
  scores it equals classifier guidance with scale 1 + w.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from samplers.common import as_score_fn, concrete
from sde_lib.base import Array, ScoreFn

ClassifierFn = Callable[[Array, Array], Array]
"""`classifier(x: [B, ...], t: [B]) -> [B, K]`: logits or log-probabilities of the K classes at time t."""

ConditionalScoreFn = Callable[[Array, Array, Array], Array]
"""`score(x: [B, ...], t: [B], labels: [B]) -> [B, ...]`, a label-conditional score model."""


def _batch_labels(labels: Array, batch: int) -> Array:
    labels = jnp.asarray(labels)
    if labels.ndim > 1 or (labels.ndim == 1 and labels.shape[0] != batch):
        raise ValueError(f"labels must be a scalar or [B] with B = {batch}, got shape {labels.shape}")
    return jnp.broadcast_to(labels, (batch,))


def classifier_log_prob_grad(classifier_logp_fn: ClassifierFn, x: Array, t: Array, labels: Array) -> Array:
    """grad_x log p_t(y | x) per example, `[B, ...]`.

    The classifier's output is normalised by `log_softmax` (identity on log-probabilities, so logits
    work too). Examples are independent, so the gradient of the batch sum is each example's gradient.
    """
    labels = _batch_labels(labels, x.shape[0])

    def total(x):
        logp = jax.nn.log_softmax(classifier_logp_fn(x, t), axis=-1)
        return jnp.sum(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1))

    return jax.grad(total)(x)


def _label_parts(labels) -> tuple[tuple, dict]:
    """`labels` as the Partial arguments: a scalar is shared by the batch, `[B]` is per example."""
    labels = jnp.asarray(labels)
    return ((None,), {"labels": labels}) if labels.ndim > 0 else ((labels,), {})


def guided_score_fn(score_fn: ScoreFn, classifier_logp_fn: ClassifierFn, labels: Array,
                    scale: float = 1.0) -> ScoreFn:
    """score(x, t) + scale * grad_x log p_t(labels | x): classifier guidance.

    `labels`: an int or `[B]` ints. Costs one score evaluation and one classifier gradient per call.
    """
    shared, per_example = _label_parts(labels)
    return Partial(_guided, as_score_fn(score_fn), as_score_fn(classifier_logp_fn), scale, *shared, **per_example)


def _guided(score_fn, classifier_logp_fn, scale, shared_labels, x, t, labels=None):
    labels = shared_labels if labels is None else labels
    grad = classifier_log_prob_grad(classifier_logp_fn, x, t, labels)
    return score_fn(x, t) + jnp.asarray(scale, x.dtype) * grad.astype(x.dtype)


def cfg_score_fn(cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn, guidance_weight: float) -> ScoreFn:
    """(1 + w) s_cond(x, t) - w s_uncond(x, t): classifier-free guidance with weight w >= 0.

    w = 0 (a concrete one) is the conditional score. Build the two scores from one conditional model
    with `with_labels(model_score, labels)` and `with_labels(model_score, null_label)`, or with
    `models.get_score_fn(..., labels=...)`.
    """
    host = concrete(guidance_weight)
    if host is not None and np.any(host < 0):
        raise ValueError(f"guidance_weight must be >= 0, got {guidance_weight}")
    if host is not None and np.all(host == 0):
        return cond_score_fn
    return Partial(_cfg, as_score_fn(cond_score_fn), as_score_fn(uncond_score_fn), guidance_weight)


def _cfg(cond_score_fn, uncond_score_fn, guidance_weight, x, t):
    w = jnp.asarray(guidance_weight, x.dtype)
    return (1.0 + w) * cond_score_fn(x, t) - w * uncond_score_fn(x, t)


def with_labels(conditional_score_fn: ConditionalScoreFn, labels: Array) -> ScoreFn:
    """The `score_fn(x, t)` of a label-conditional model at fixed `labels` (an int or `[B]`)."""
    shared, per_example = _label_parts(labels)
    return Partial(_with_labels, as_score_fn(conditional_score_fn), *shared, **per_example)


def _with_labels(conditional_score_fn, shared_labels, x, t, labels=None):
    labels = shared_labels if labels is None else labels
    return conditional_score_fn(x, t, _batch_labels(labels, x.shape[0]))
