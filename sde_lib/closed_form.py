"""Data distributions whose perturbed marginals p_t are known exactly under every SDE here.

If x_0 ~ N(mu, S) then x_t = alpha(t) x_0 + std(t) z ~ N(alpha mu, alpha^2 S + std^2 I), and a
mixture of Gaussians stays a mixture with the same weights. They give exact scores, exact
log-densities and exact samples, for testing samplers, likelihoods and losses, and as toy data.
Data of any shape `[B, *event_shape]` are flattened to `d = prod(event_shape)` dimensions.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

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

    def _components(self, sde: SDE | None, t: Array, dtype) -> tuple[Array, Array]:
        """Per-example component means `[B, K, d]` and covariances `[B, K, d, d]` at time t."""
        if sde is None:
            alpha, std = jnp.ones_like(t), jnp.zeros_like(t)
        else:
            alpha, std = sde.alpha(t), sde.marginal_std(t)
        alpha = alpha.astype(dtype)[:, None, None]
        std = std.astype(dtype)[:, None, None, None]
        means = alpha * self.means.astype(dtype)[None]
        eye = jnp.eye(self.dim, dtype=dtype)[None, None]
        covs = alpha[..., None] ** 2 * self.covs.astype(dtype)[None] + std**2 * eye
        return means, covs

    def log_prob(self, x: Array, t: Array | None = None, sde: SDE | None = None) -> Array:
        """log p_t(x) per example `[B]`; with `sde=None`, the data density itself."""
        t = jnp.zeros(x.shape[0], x.dtype) if t is None else t
        means, covs = self._components(sde, t, x.dtype)
        return jax.nn.logsumexp(self._joint_logits(_flat(x), means, covs), axis=-1)

    def _joint_logits(self, flat: Array, means: Array, covs: Array) -> Array:
        """log(w_k N(x; mean_k, cov_k)) per example and component, `[B, K]`."""
        diff = flat[:, None, :] - means
        chol = jnp.linalg.cholesky(covs)
        solved = jax.scipy.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
        logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        comp = -0.5 * (jnp.sum(solved**2, -1) + logdet + self.dim * math.log(2 * math.pi))
        return comp + jnp.log(self.weights.astype(flat.dtype))[None]

    def score(self, x: Array, t: Array, sde: SDE) -> Array:
        """grad_x log p_t(x), `[B, *event_shape]`, from responsibilities and component scores."""
        flat = _flat(x)
        means, covs = self._components(sde, t, x.dtype)
        diff = flat[:, None, :] - means
        comp_scores = -jnp.linalg.solve(covs, diff[..., None])[..., 0]
        resp = jax.nn.softmax(self._joint_logits(flat, means, covs), axis=-1)
        return jnp.reshape(jnp.sum(resp[..., None] * comp_scores, axis=1), x.shape)

    def score_fn(self, sde: SDE) -> ScoreFn:
        """The exact `score_fn(x, t)` of p_t under `sde`."""
        return lambda x, t: self.score(x, t, sde)

    def sample(self, rng: Array, n: int, t: float | Array | None = None, sde: SDE | None = None,
               dtype=jnp.float32) -> Array:
        """n exact samples of p_t (of the data when `sde` is None), `[n, *event_shape]`."""
        k_key, z_key = jax.random.split(rng)
        ts = jnp.zeros((n,), dtype) if t is None else jnp.broadcast_to(jnp.asarray(t, dtype), (n,))
        means, covs = self._components(sde, ts, dtype)
        k = jax.random.choice(k_key, self.weights.shape[0], (n,), p=self.weights)
        rows = jnp.arange(n)
        chol = jnp.linalg.cholesky(covs[rows, k] + 1e-12 * jnp.eye(self.dim, dtype=dtype)[None])
        z = jax.random.normal(z_key, (n, self.dim), dtype)
        flat = means[rows, k] + jnp.einsum("nij,nj->ni", chol, z)
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
