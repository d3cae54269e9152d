"""Samplers and likelihoods that take any `score_fn(x, t)`.

Contract shared by every sampler (see `samplers.registry.SAMPLERS`): a frozen dataclass holding
`sde` and its hyper-parameters, called as
`sampler(rng, score_fn, shape, x_init=None, t_init=None) -> (samples, nfe)`: it starts from
`x_init` at time `t_init` (default: a prior sample at T), runs the whole chain on device in one
`lax.scan` / `fori_loop` / diffrax solve, and returns the samples and the exact number of score
evaluations per example.
"""
from samplers import (
    ald,
    anomaly,
    correctors,
    denoise,
    edit,
    encode,
    guidance,
    inpainting,
    likelihood,
    ode,
    pc,
    predictors,
)
from samplers.ald import AnnealedLangevinSampler
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.edm_heun import EDMHeunSampler
from samplers.lms import LMSSampler
from samplers.registry import CORRECTORS, PREDICTORS, SAMPLERS
from samplers.unipc import UniPCSampler


def build_sampler(name: str, sde, **kwargs):
    """A sampler by registry name, e.g. `build_sampler("pc", sde, predictor="reverse_diffusion")`."""
    return SAMPLERS.get(name)(sde=sde, **kwargs)


__all__ = [
    "CORRECTORS", "PREDICTORS", "SAMPLERS", "AnnealedLangevinSampler", "DDIMSampler", "DPMSolverPPSampler",
    "DPMSolverSDESampler", "EDMHeunSampler", "LMSSampler", "UniPCSampler", "ald", "anomaly", "build_sampler", "correctors", "denoise", "edit", "encode", "guidance",
    "inpainting", "likelihood", "ode", "pc", "predictors",
]
