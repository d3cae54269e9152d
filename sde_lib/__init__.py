"""Forward SDEs, the score-function API and score-matching losses.

Public API:
- SDEs: `SDE`, `VPSDE`, `subVPSDE`, `VESDE`, `ReverseSDE`, and the registry `SDES`
  (`build_sde("vpsde", beta_min=..., ...)`).
- The currency `ScoreFn = score_fn(x: [B, ...], t: [B])`, helpers `batch_broadcast`, `gaussian_logp`.
- Converters: `score_from_eps`, `eps_from_score`, `score_from_data`, `data_from_score`,
  `score_from_denoiser`, `denoiser_from_score`, `score_from_sigma_scaled`.
- Preconditioning: `EDMPrecond`, `VPPrecond`, `VEPrecond`.
- Losses: `DSMLoss`, `DDPMLoss`, `SMLDLoss`, `EDMLoss`, by name in `LOSSES`.
- Closed forms for testing and toy data: `GaussianMixture`, `gaussian` (exact p_t, score, samples).
"""
import dataclasses

from sde_lib.base import SDE, Array, ReverseSDE, ScoreFn, batch_broadcast, gaussian_logp
from sde_lib.beta_schedule import BetaScheduleSDE
from sde_lib.closed_form import GaussianMixture, gaussian
from sde_lib.edm_loss import EDMLoss
from sde_lib.losses import DDPMLoss, DSMLoss, SMLDLoss, reduce_per_example
from sde_lib.parametrization import (
    DenoiserFn,
    data_from_score,
    denoiser_from_score,
    eps_from_score,
    score_from_data,
    score_from_denoiser,
    score_from_eps,
    score_from_sigma_scaled,
)
from sde_lib.preconditioning import EDMPrecond, Preconditioning, VEPrecond, VPPrecond
from sde_lib.registry import Registry
from sde_lib.subvp import subVPSDE
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE

SDES: Registry[type[SDE]] = Registry("SDE")
SDES.register("vpsde")(VPSDE)
SDES.register("subvpsde")(subVPSDE)
SDES.register("vesde")(VESDE)

LOSSES: Registry[type] = Registry("loss")
"""The training objectives by the name `training.loss` gives them."""
LOSSES.register("dsm")(DSMLoss)
LOSSES.register("ddpm")(DDPMLoss)
LOSSES.register("smld")(SMLDLoss)
LOSSES.register("edm")(EDMLoss)


def build_sde(name: str, **kwargs) -> SDE:
    """An SDE by registry name, e.g. `build_sde("vesde", sigma_max=378.0, N=2000)`."""
    cls = SDES.get(name.lower())
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no parameter(s) {unknown}; it takes {sorted(fields)}")
    return cls(**kwargs)


__all__ = [
    "SDE", "SDES", "Array", "BetaScheduleSDE", "DDPMLoss", "DSMLoss", "DenoiserFn", "EDMLoss",
    "EDMPrecond", "GaussianMixture", "LOSSES", "Preconditioning", "Registry", "ReverseSDE", "SMLDLoss", "ScoreFn", "VEPrecond",
    "VESDE", "VPPrecond", "VPSDE", "batch_broadcast", "build_sde", "data_from_score",
    "denoiser_from_score", "eps_from_score", "gaussian", "gaussian_logp", "reduce_per_example",
    "score_from_data", "score_from_denoiser", "score_from_eps", "score_from_sigma_scaled",
    "subVPSDE",
]
