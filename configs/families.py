"""SDE families: the deltas from `configs.default` that every config of a family shares.

Each function edits a config in place and returns it, so dataset files read
``config = families.ve(get_default_config())`` and then change only what differs. Sampling
defaults are those of the 2021 code (Song et al. 2021, app. G): VE samples with PC
(reverse diffusion + Langevin, snr 0.16), VP and sub-VP with Euler-Maruyama and no corrector,
DDPM with ancestral sampling, SMLD/NCSN with annealed Langevin dynamics only.
"""
import ml_collections


def ve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Continuous VE SDE (SMLD's noise scales), data in [0, 1], output scaled by 1/sigma."""
    config.training.sde = "vesde"
    config.training.loss = "dsm"
    config.training.continuous = True
    config.sampling.method = "pc"
    config.sampling.predictor = "reverse_diffusion"
    config.sampling.corrector = "langevin"
    config.sampling.snr = 0.16
    config.sampling.n_steps_each = 1
    config.data.centered = False
    config.model.scale_by_sigma = True
    return config


def vp(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Continuous VP SDE (DDPM's noise scales), data centred to [-1, 1]."""
    config.training.sde = "vpsde"
    config.training.loss = "dsm"
    config.training.continuous = True
    config.sampling.method = "pc"
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.scale_by_sigma = False
    return config


def subvp(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Continuous sub-VP SDE (Song et al. 2021, eq. 29): as VP, with the sub-VP diffusion."""
    vp(config)
    config.training.sde = "subvpsde"
    return config


def ddpm(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Discrete DDPM (Ho et al. 2020): the VP chain, eps-loss, ancestral sampling."""
    vp(config)
    config.training.loss = "ddpm"
    config.training.continuous = False
    config.training.reduce_mean = True
    config.sampling.predictor = "ancestral_sampling"
    return config


def smld(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Discrete SMLD / NCSNv2 (Song & Ermon 2020): the VE chain, annealed Langevin dynamics."""
    ve(config)
    config.training.loss = "smld"
    config.training.continuous = False
    config.sampling.predictor = "none"
    config.sampling.corrector = "ald"
    config.sampling.n_steps_each = 5
    config.sampling.snr = 0.176
    return config


FAMILIES = {"ve": ve, "vp": vp, "subvp": subvp, "ddpm": ddpm, "smld": smld}
