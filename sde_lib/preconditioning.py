"""Network preconditioning in sigma space (Karras et al. 2022, "EDM", table 1 and eq. 7).

D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)) for a raw network
F. `EDMPrecond` is EDM's own choice; `VPPrecond` and `VEPrecond` reproduce the eps-prediction
and sigma-scaled parametrisations of DDPM++ / NCSN++ in the same form.
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from sde_lib.base import Array, batch_broadcast
from sde_lib.parametrization import DenoiserFn
from sde_lib.vp import VPSDE

RawNetFn = Callable[[Array, Array], Array]
"""`F(x_in: [B, ...], c_noise: [B]) -> [B, ...]`, a backbone before preconditioning."""


@dataclasses.dataclass(frozen=True)
class Preconditioning(abc.ABC):
    """Base: subclasses give the four coefficients as functions of sigma `[B] -> [B]`."""

    @abc.abstractmethod
    def c_skip(self, sigma: Array) -> Array: ...

    @abc.abstractmethod
    def c_out(self, sigma: Array) -> Array: ...

    @abc.abstractmethod
    def c_in(self, sigma: Array) -> Array: ...

    @abc.abstractmethod
    def c_noise(self, sigma: Array) -> Array: ...

    def denoiser(self, raw_fn: RawNetFn) -> DenoiserFn:
        def denoiser(x: Array, sigma: Array) -> Array:
            sigma = sigma.astype(x.dtype)
            c_in = batch_broadcast(self.c_in(sigma), x)
            out = raw_fn(c_in * x, self.c_noise(sigma))
            return batch_broadcast(self.c_skip(sigma), x) * x + batch_broadcast(self.c_out(sigma), x) * out

        return denoiser


@dataclasses.dataclass(frozen=True)
class EDMPrecond(Preconditioning):
    """EDM: unit-variance input and target for data of standard deviation sigma_data."""

    sigma_data: float = 0.5

    def c_skip(self, sigma):
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma):
        return sigma * self.sigma_data / jnp.sqrt(sigma**2 + self.sigma_data**2)

    def c_in(self, sigma):
        return 1.0 / jnp.sqrt(sigma**2 + self.sigma_data**2)

    def c_noise(self, sigma):
        return 0.25 * jnp.log(sigma)


@dataclasses.dataclass(frozen=True)
class VPPrecond(Preconditioning):
    """DDPM++'s eps prediction in sigma space; c_noise is the reference's 999 t(sigma)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    M: int = 1000

    def c_skip(self, sigma):
        return jnp.ones_like(sigma)

    def c_out(self, sigma):
        return -sigma

    def c_in(self, sigma):
        return 1.0 / jnp.sqrt(sigma**2 + 1)

    def c_noise(self, sigma):
        sde = VPSDE(beta_min=self.beta_min, beta_max=self.beta_max, N=self.M)
        return (self.M - 1) * sde.t_of_sigma(sigma)


@dataclasses.dataclass(frozen=True)
class VEPrecond(Preconditioning):
    """NCSN++'s sigma-scaled output in sigma space; c_noise = log(sigma / 2) as in EDM."""

    def c_skip(self, sigma):
        return jnp.ones_like(sigma)

    def c_out(self, sigma):
        return sigma

    def c_in(self, sigma):
        return jnp.ones_like(sigma)

    def c_noise(self, sigma):
        return jnp.log(0.5 * sigma)
