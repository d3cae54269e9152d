"""The thin layer from a config to objects; nothing below it reads a ConfigDict.

`build_sde`, `build_loss`, `build_precond`, `build_optimizer` and `build_sampler` map the
2021-reference key names (`training.sde`, `model.beta_min`, `optim.warmup`, `sampling.method`,
...) onto the explicit constructors of `sde_lib`, `models`, optax and `samplers`; a sampler's
options are the `sampling` keys named like its fields. The validator (`configs.validate`)
builds through these same functions, so a config it accepts is one they build. The network
itself is `models.build_model(config)`.
"""
from __future__ import annotations

import dataclasses
import warnings

import ml_collections
import optax

import models
import samplers
import sde_lib

Loss = sde_lib.DSMLoss | sde_lib.DDPMLoss | sde_lib.SMLDLoss | sde_lib.EDMLoss
"""`loss(fn, x: [B, ...], rng) -> [B]`, one of the objectives of `sde_lib.LOSSES`."""
OPTIMIZERS = ("Adam",)
"""The values of `optim.optimizer` that `build_optimizer` builds."""


def build_sde(config: ml_collections.ConfigDict) -> sde_lib.SDE:
    """The forward SDE of `config.training.sde` with the parameters of `config.model`."""
    name = config.training.sde.lower()
    m = config.model
    if name == "vesde":
        return sde_lib.build_sde(name, sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales)
    return sde_lib.build_sde(name, beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales)


def build_loss(config: ml_collections.ConfigDict, sde: sde_lib.SDE) -> Loss:
    """The training objective: `loss(fn, x: [B, ...], rng) -> [B]`, where `fn` is a score
    function for dsm / ddpm / smld and an EDM denoiser `D(x, sigma)` for edm."""
    t = config.training
    name = t.loss.lower()
    if name == "dsm":
        return sde_lib.DSMLoss(sde, reduce_mean=t.reduce_mean, likelihood_weighting=t.likelihood_weighting,
                               importance_sampling=t.importance_sampling, eps=t.eps)
    if name == "ddpm":
        if not isinstance(sde, sde_lib.VPSDE):
            raise ValueError(f"training.loss='ddpm' needs training.sde='vpsde', got {config.training.sde!r}")
        return sde_lib.DDPMLoss(sde, reduce_mean=t.reduce_mean)
    if name == "smld":
        if not isinstance(sde, sde_lib.VESDE):
            raise ValueError(f"training.loss='smld' needs training.sde='vesde', got {config.training.sde!r}")
        return sde_lib.SMLDLoss(sde, reduce_mean=t.reduce_mean)
    if name == "edm":
        return sde_lib.EDMLoss(sigma_data=config.model.sigma_data, reduce_mean=t.reduce_mean)
    raise ValueError(f"unknown training.loss {t.loss!r}; known: {sde_lib.LOSSES.names()}")


def build_precond(config: ml_collections.ConfigDict) -> sde_lib.Preconditioning | None:
    """The network preconditioning of `config.model.precond` (None for "none")."""
    m = config.model
    return models.build_precond(m.precond, sigma_data=m.sigma_data, beta_min=m.beta_min, beta_max=m.beta_max,
                                num_scales=m.num_scales)


def learning_rate_schedule(lr: float, warmup: int) -> optax.Schedule:
    """lr * min(step / warmup, 1), the reference's linear warm-up (lr 0 at step 0)."""
    if warmup > 0:
        return optax.linear_schedule(0.0, lr, warmup)
    return optax.constant_schedule(lr)


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam (AdamW when weight_decay > 0) after clipping by global norm, as in the 2021 code:
    g * clip / max(|g|, clip), with clipping off for `optim.grad_clip < 0`."""
    o = config.optim
    if o.optimizer not in OPTIMIZERS:
        raise ValueError(f"optim.optimizer {o.optimizer!r} is not supported; known: {list(OPTIMIZERS)}")
    schedule = learning_rate_schedule(o.lr, o.warmup)
    if o.weight_decay > 0:
        adam = optax.adamw(schedule, b1=o.beta1, eps=o.eps, weight_decay=o.weight_decay)
    else:
        adam = optax.adam(schedule, b1=o.beta1, eps=o.eps)
    if o.grad_clip >= 0:
        return optax.chain(optax.clip_by_global_norm(o.grad_clip), adam)
    return adam


# Sampling keys whose "unset" value keeps the sampler's own default (its schedule, the SDE's
# noise range, its step count, its multistep order).
_UNSET_SAMPLING = ("schedule", "sigma_min", "sigma_max", "num_steps", "order")


def sampler_options(config: ml_collections.ConfigDict, cls: type) -> dict:
    """The `sampling` keys that are fields of the sampler class `cls`, under the same names (a
    sampler's field is its config key); "" / 0 of `_UNSET_SAMPLING` keys are left out."""
    s = config.sampling
    fields = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "sde"]
    return {name: s[name] for name in fields if name in s and (s[name] or name not in _UNSET_SAMPLING)}


def build_sampler(config: ml_collections.ConfigDict, sde: sde_lib.SDE):
    """The sampler `config.sampling.method` from `samplers.SAMPLERS`, with every field it
    declares that the `sampling` section sets; its other fields keep their defaults."""
    cls = samplers.SAMPLERS.get(config.sampling.method)
    options = sampler_options(config, cls)
    if "sigma_data" in {f.name for f in dataclasses.fields(cls)}:  # the sigma-space solvers' sigma_min rule
        options["sigma_data"] = config.model.sigma_data
    sampler = samplers.build_sampler(config.sampling.method, sde, **options)
    for message in ineffective_options(sampler, config.sampling.method):
        warnings.warn(message, UserWarning, stacklevel=2)
    return sampler


# (sampler fields, when they do nothing, why): options a sampler declares but ignores in the setting
# at hand (each field is its `sampling.` config key).
_IGNORED = (
    (("rho",), lambda s: getattr(s, "schedule", "karras") != "karras",
     lambda s: f"the schedule is {s.schedule!r}; rho shapes only the 'karras' schedule"),
    (("S_min", "S_max", "S_noise"), lambda s: s.S_churn == 0,
     lambda s: "S_churn = 0 (no churn), so the churn range and noise scale are unused"),
    (("rtol", "atol"), lambda s: getattr(s, "num_steps", None) is not None,
     lambda s: f"num_steps = {s.num_steps} fixes the steps; tolerances steer only the adaptive solve"),
    (("snr", "n_steps_each"), lambda s: getattr(s, "corrector", None) == "none",
     lambda s: "the corrector is 'none'; snr and n_steps_each set the corrector's steps"),
)


def ineffective_options(sampler, method: str) -> list[str]:
    """One message per option that `sampler` (built from a config) holds at a non-default value but
    ignores in its setting (e.g. `rho` with a log-SNR schedule), naming the option and why."""
    defaults = {f.name: f.default for f in dataclasses.fields(sampler)}
    messages = []
    for names, ignored, why in _IGNORED:
        if not all(name in defaults for name in names) or not ignored(sampler):
            continue
        for name in names:
            if getattr(sampler, name) != defaults[name]:
                messages.append(f"sampling.{name} = {getattr(sampler, name)} has no effect with the {method!r} "
                                f"sampler: {why(sampler)}")
    return messages
