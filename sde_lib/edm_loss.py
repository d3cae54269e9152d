"""The EDM training loss (Karras et al. 2022, sec. 5 and table 1)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sde_lib.base import Array, batch_broadcast
from sde_lib.losses import reduce_per_example
from sde_lib.parametrization import DenoiserFn


@dataclasses.dataclass(frozen=True)
class EDMLoss:
    """ln sigma ~ N(P_mean, P_std^2); loss lambda(sigma) |D(x + sigma n, sigma) - x|^2 with
    lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2. Takes the denoiser D(x, sigma),
    e.g. `EDMPrecond(...).denoiser(net)` or `denoiser_from_score(sde, score_fn)`."""

    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float = 0.5
    reduce_mean: bool = False

    def sample_sigma(self, rng: Array, batch: int, dtype=jnp.float32) -> Array:
        return jnp.exp(self.P_mean + self.P_std * jax.random.normal(rng, (batch,), dtype))

    def weight(self, sigma: Array) -> Array:
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def __call__(self, denoiser: DenoiserFn, x: Array, rng: Array) -> Array:
        sigma_key, n_key = jax.random.split(rng)
        sigma = self.sample_sigma(sigma_key, x.shape[0], x.dtype)
        noisy = x + batch_broadcast(sigma, x) * jax.random.normal(n_key, x.shape, x.dtype)
        error = reduce_per_example(jnp.square(denoiser(noisy, sigma) - x), self.reduce_mean)
        return self.weight(sigma) * error
