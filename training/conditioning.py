"""Class-conditional sampling of a trained model: which score the sampler sees for given labels.

`sampling.guidance`:
- none: the conditional network's score at the labels (EDM's class-conditional models);
- cfg: classifier-free guidance (Ho & Salimans 2022, eq. 6), (1 + w) s(x, t, y) - w s(x, t, null),
  the null class trained by `training.label_dropout`;
- classifier: s(x, t[, y]) + w grad_x log p_t(y | x_t) with the noise-conditional classifier of
  `training.guidance_classifier` (Song et al. 2021, eq. 14; Dhariwal & Nichol 2021).
The maths is `samplers.guidance`; this module only binds networks and parameters to it.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import models
import sde_lib
from samplers import guidance as guidance_lib
from sde_lib import Array
from training.errors import UsageError

GUIDANCE = ("none", "cfg", "classifier")


@dataclasses.dataclass(frozen=True)
class Guidance:
    """How labels steer sampling; `classifier` is the classifier network for kind 'classifier'."""

    kind: str = "none"
    weight: float = 0.0
    classifier: nn.Module | None = None

    def __post_init__(self):
        if self.kind not in GUIDANCE:
            raise ValueError(f"unknown guidance {self.kind!r}; known: {', '.join(GUIDANCE)}")
        if self.weight < 0:
            raise ValueError(f"the guidance weight must be >= 0, got {self.weight}")
        if (self.kind == "classifier") != (self.classifier is not None):
            raise ValueError("classifier guidance needs a classifier, and only it takes one")


def guided_score_fn(sde: sde_lib.SDE, model: nn.Module, params, labels: Array | None, guidance: Guidance, *,
                    continuous: bool, precond: sde_lib.Preconditioning | None,
                    classifier_params=None) -> sde_lib.ScoreFn:
    """The evaluation-mode `score_fn(x, t)` that samples class `labels` (`[B]` ints or a scalar) under
    `guidance`; with `labels=None` the model's unconditional score (its null class if conditional)."""
    conditional = models.num_label_classes(model) > 0

    def score_at(y):
        return models.get_score_fn(sde, model, params, train=False, continuous=continuous, precond=precond,
                                   labels=y)

    if labels is None or guidance.kind == "none":
        if labels is not None and not conditional:
            raise ValueError("labels need a class-conditional model (model.num_classes > 0) or guidance "
                             "'classifier'")
        return score_at(labels)
    if guidance.kind == "cfg":
        if not conditional:
            raise ValueError("classifier-free guidance needs a class-conditional model (model.num_classes > 0)")
        return guidance_lib.cfg_score_fn(score_at(labels), score_at(None), guidance.weight)
    # the classifier's weights are an argument of a Partial, traced by the samplers like the network's
    logits = Partial(_ClassifierLogits(guidance.classifier), classifier_params)
    base = score_at(labels if conditional else None)
    return guidance_lib.guided_score_fn(base, logits, labels, guidance.weight)


@dataclasses.dataclass(frozen=True)
class _ClassifierLogits:
    """`(params, x: [B, ...], t: [B]) -> logits [B, K]` of a noise-conditional classifier network."""

    classifier: nn.Module

    def __call__(self, params, x: Array, t: Array) -> Array:
        return self.classifier.apply({"params": params}, x, t)


class LabelError(UsageError):
    """Class labels that the model or its guidance cannot take; the message names them."""


def check_labels(labels, num_classes: int) -> jax.Array:
    """Labels as int32, refusing any outside [0, num_classes) (the null class is not a label)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise LabelError(f"class labels must lie in [0, {num_classes}), got {sorted(set(labels.tolist()))}")
    return jnp.asarray(labels, jnp.int32)


def label_count(config) -> int:
    """The number of classes that sampling labels may name under the config (0: none)."""
    if config.sampling.guidance == "classifier":
        return config.classifier.num_classes or config.model.num_classes
    return config.model.num_classes


def parse_labels(spec: str, num_classes: int, num_samples: int) -> np.ndarray:
    """A labels spec ('3,7' or 'all') as `[num_samples]` ints cycling over the named classes."""
    return np.resize(label_classes(spec, num_classes), num_samples)


def label_classes(spec: str, num_classes: int) -> np.ndarray:
    """The classes a labels spec ('3,7' or 'all') names, in order; sample k takes the (k mod n)-th."""
    if num_classes == 0:
        raise LabelError("labels need a class-conditional model (model.num_classes > 0) or "
                         "sampling.guidance='classifier'")
    if spec.strip() == "all":
        classes = list(range(num_classes))
    else:
        try:
            classes = [int(part) for part in spec.split(",")]
        except ValueError:
            raise LabelError(f"labels must be 'all' or comma-separated class numbers, got {spec!r}") from None
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise LabelError(f"labels {bad} outside the model's classes 0..{num_classes - 1}")
    return np.asarray(classes, np.int32)
