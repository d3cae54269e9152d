"""Data distributions whose perturbed marginals p_t are known exactly under every SDE here.

If x_0 ~ N(mu, S) then x_t = alpha(t) x_0 + std(t) z ~ N(alpha mu, alpha^2 S + std^2 I), and a
mixture of Gaussians stays a mixture with the same weights. They give exact scores, exact
log-densities and exact samples, for testing samplers, likelihoods and losses, and as toy data.
Data of any shape `[B, *event_shape]` are flattened to `d = prod(event_shape)` dimensions.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from sde_lib.base import SDE, Array, ScoreFn


def _flat(x: Array) -> Array:
    return jnp.reshape(x, (x.shape[0], -1))


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
    """sum_k weights_k N(means_k, covs_k); `means: [K, d]`, `covs: [K, d, d]`, `weights: [K]`.

    `event_shape` reshapes samples and scores, e.g. `(8, 8, 1)` for image-shaped data.
    """

    weights: Array
    means: Array
    covs: Array
    event_shape: tuple[int, ...] | None = None

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.event_shape or (self.dim,)

    @functools.cached_property
    def _eigen(self) -> tuple[Array, Array]:
        """Eigenvalues `[K, d]` (clipped at 0) and eigenvectors `[K, d, d]` of the covariances.

        p_t's covariance alpha^2 S + std^2 I has S's eigenvectors, so its inverse, log-determinant
        and square root at every t are elementwise in the eigenvalues: one decomposition here (on the
        host when the covariances are concrete) instead of a batched factorisation per example and
        call (jaxlib's batched LAPACK was slow to compile and has deadlocked on a loaded CPU)."""
        if isinstance(self.covs, jax.core.Tracer):
            values, vectors = jnp.linalg.eigh(self.covs)
            return jnp.maximum(values, 0.0), vectors
        values, vectors = np.linalg.eigh(np.asarray(self.covs, np.float64))
        return np.maximum(values, 0.0), vectors

    def _components(self, sde: SDE | None, t: Array, dtype) -> tuple[Array, Array, Array]:
        """Per-example component means `[B, K, d]`, covariance eigenvalues `[B, K, d]` at time t
        and the shared eigenvectors `[K, d, d]`."""
        if sde is None:
            alpha, std = jnp.ones_like(t), jnp.zeros_like(t)
        else:
            alpha, std = sde.alpha(t), sde.marginal_std(t)
        alpha = alpha.astype(dtype)[:, None, None]
        std = std.astype(dtype)[:, None, None]
        values, vectors = (jnp.asarray(a, dtype) for a in self._eigen)
        means = alpha * self.means.astype(dtype)[None]
        return means, alpha**2 * values[None] + std**2, vectors

    def log_prob(self, x: Array, t: Array | None = None, sde: SDE | None = None) -> Array:
        """log p_t(x) per example `[B]`; with `sde=None`, the data density itself."""
        return jax.nn.logsumexp(self.component_log_joint(x, t, sde), axis=-1)

    def component_log_joint(self, x: Array, t: Array | None = None, sde: SDE | None = None) -> Array:
        """log(w_k N(x; mean_k(t), cov_k(t))) per example and component, `[B, K]`: its softmax is
        the exact noise-conditional classifier p_t(k | x)."""
        t = jnp.zeros(x.shape[0], x.dtype) if t is None else t
        return self._joint_logits(_flat(x), *self._components(sde, t, x.dtype))

    def _joint_logits(self, flat: Array, means: Array, variances: Array, vectors: Array) -> Array:
        whitened = jnp.einsum("bkd,kde->bke", flat[:, None, :] - means, vectors) / jnp.sqrt(variances)
        logdet = jnp.sum(jnp.log(variances), axis=-1)
        comp = -0.5 * (jnp.sum(whitened**2, -1) + logdet + self.dim * math.log(2 * math.pi))
        return comp + jnp.log(self.weights.astype(flat.dtype))[None]

    def score(self, x: Array, t: Array, sde: SDE) -> Array:
        """grad_x log p_t(x), `[B, *event_shape]`, from responsibilities and component scores."""
        flat = _flat(x)
        means, variances, vectors = self._components(sde, t, x.dtype)
        projected = jnp.einsum("bkd,kde->bke", flat[:, None, :] - means, vectors)
        comp_scores = -jnp.einsum("kde,bke->bkd", vectors, projected / variances)
        resp = jax.nn.softmax(self._joint_logits(flat, means, variances, vectors), axis=-1)
        return jnp.reshape(jnp.sum(resp[..., None] * comp_scores, axis=1), x.shape)

    def score_fn(self, sde: SDE) -> ScoreFn:
        """The exact `score_fn(x, t)` of p_t under `sde`."""
        return lambda x, t: self.score(x, t, sde)

    def sample(self, rng: Array, n: int, t: float | Array | None = None, sde: SDE | None = None,
               dtype=jnp.float32) -> Array:
        """n exact samples of p_t (of the data when `sde` is None), `[n, *event_shape]`."""
        k_key, z_key = jax.random.split(rng)
        ts = jnp.zeros((n,), dtype) if t is None else jnp.broadcast_to(jnp.asarray(t, dtype), (n,))
        means, variances, vectors = self._components(sde, ts, dtype)
        k = jax.random.choice(k_key, self.weights.shape[0], (n,), p=self.weights)
        rows = jnp.arange(n)
        z = jax.random.normal(z_key, (n, self.dim), dtype) * jnp.sqrt(variances[rows, k])
        flat = means[rows, k] + jnp.einsum("nde,ne->nd", vectors[k], z)
        return jnp.reshape(flat, (n,) + self.shape)

    def moments(self) -> tuple[Array, Array]:
        """Mean `[d]` and covariance `[d, d]` of the data."""
        mean = jnp.sum(self.weights[:, None] * self.means, axis=0)
        centred = self.means - mean[None]
        cov = jnp.sum(self.weights[:, None, None] * (self.covs + centred[:, :, None] * centred[:, None, :]), 0)
        return mean, cov


def gaussian(mean: Array, cov: Array, event_shape: tuple[int, ...] | None = None) -> GaussianMixture:
    """A single Gaussian N(mean, cov) as a one-component mixture."""
    mean = jnp.asarray(mean)
    return GaussianMixture(jnp.ones((1,), mean.dtype), mean[None], jnp.asarray(cov)[None], event_shape)
