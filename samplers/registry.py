"""Registries of predictors, correctors and whole samplers (filled by `samplers/__init__.py`)."""
from sde_lib.registry import Registry

PREDICTORS: Registry = Registry("predictor")
"""name -> Predictor class, constructed as `cls(sde, score_fn, probability_flow=False)`."""

CORRECTORS: Registry = Registry("corrector")
"""name -> Corrector class, constructed as `cls(sde, score_fn, snr, n_steps)`."""

SAMPLERS: Registry = Registry("sampler")
"""name -> sampler class: a frozen dataclass with field `sde` and its hyper-parameters, called as
`sampler(rng, score_fn, shape, x_init=None, t_init=None) -> (samples, nfe)`."""
