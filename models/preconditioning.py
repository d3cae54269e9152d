"""EDM preconditioning around any backbone here (Karras et al. 2022, "EDM", eq. 7 and table 1):
D(x, sigma) = c_skip x + c_out F(c_in x, c_noise), with the coefficients of `sde_lib`'s
`EDMPrecond`, `VPPrecond` or `VEPrecond`. The backbone sees c_noise as its noise label."""
from __future__ import annotations

import flax.linen as nn

import sde_lib
from models.apply import get_model_fn
from sde_lib import Array, DenoiserFn

PRECONDITIONERS = {"edm": sde_lib.EDMPrecond, "vp": sde_lib.VPPrecond, "ve": sde_lib.VEPrecond}


def build_precond(name: str, *, sigma_data: float = 0.5, beta_min: float = 0.1, beta_max: float = 20.0,
                  num_scales: int = 1000) -> sde_lib.Preconditioning | None:
    """The preconditioning named by `config.model.precond`: none | edm | vp | ve."""
    if name == "none":
        return None
    if name == "edm":
        return sde_lib.EDMPrecond(sigma_data=sigma_data)
    if name == "vp":
        return sde_lib.VPPrecond(beta_min=beta_min, beta_max=beta_max, M=num_scales)
    if name == "ve":
        return sde_lib.VEPrecond()
    raise ValueError(f"unknown preconditioning {name!r}; known: none, {', '.join(PRECONDITIONERS)}")


def get_denoiser_fn(model: nn.Module, params, precond: sde_lib.Preconditioning, *, train: bool,
                    dropout_rng: Array | None = None, labels: Array | None = None) -> DenoiserFn:
    """`D(x_hat: [B, ...], sigma: [B]) -> [B, ...]`, the preconditioned denoiser of the backbone."""
    if getattr(model, "scale_by_sigma", False):
        raise ValueError("preconditioning sets the output scale itself; build the backbone with "
                         "scale_by_sigma=False")
    return precond.denoiser(get_model_fn(model, params, train=train, dropout_rng=dropout_rng, labels=labels))

