"""Config validation: reject a config before any work, with a message naming the offending key.

`validate_config(config)` checks, in order: the key set against the schema of
`configs.default` (unknown / missing keys), each value's type, names against the registries
(`sde_lib.SDES`, `models.MODELS`, `samplers.SAMPLERS/PREDICTORS/CORRECTORS`, a fixed list where
a package cannot be imported), ranges, and the rules that tie keys together (image size vs the
U-Net's down-sampling, loss vs SDE and time, likelihood weighting, 2-D point data). Whether the
batch divides over the devices is the trainer's check.
"""
import difflib
import numbers

import ml_collections

from configs.default import get_default_config
from sde_lib import SDES

LOSSES = ("dsm", "ddpm", "smld", "edm")
PRECONDS = ("none", "edm", "vp", "ve")
UNET_MODELS = ("ncsnpp", "ddpm")  # the networks that down-sample by 2 per ch_mult level
POINT_DATASETS = ("toy2d",)
# Used only where the package cannot be imported (e.g. a trimmed install).
_FALLBACK_MODELS = ("ddpm", "mlp", "ncsn", "ncsnpp", "ncsnv2_128", "ncsnv2_256", "ncsnv2_64")
_FALLBACK_SAMPLERS = ("ddim", "dpm_solver", "edm_heun", "ode", "pc")
_FALLBACK_PREDICTORS = ("ancestral_sampling", "euler_maruyama", "none", "reverse_diffusion")
_FALLBACK_CORRECTORS = ("ald", "langevin", "none")
_FIXED_ENUMS = {
    "training.loss": LOSSES,
    "model.precond": PRECONDS,
    "model.compute_dtype": ("bfloat16", "float32"),
    "model.conv_impl": ("auto", "im2col", "xla"),
    "model.resblock_type": ("biggan", "ddpm"),
    "model.progressive": ("none", "output_skip", "residual"),
    "model.progressive_input": ("input_skip", "none", "residual"),
    "model.progressive_combine": ("cat", "sum"),
    "model.embedding_type": ("fourier", "positional"),
    "optim.optimizer": ("Adam",),
    "model.nonlinearity": ("elu", "lrelu", "relu", "silu", "swish"),
    # The networks implement one normalisation each (GroupNorm: NCSN++ / DDPM++ / DDPM;
    # InstanceNorm++: NCSN / NCSNv2) and DDPM attention; the keys are kept for the 2021 configs.
    "model.normalization": ("GroupNorm", "InstanceNorm++"),
    "model.attention_type": ("ddpm",),
    "sampling.ode_solver": ("bosh3", "dopri5", "dopri8", "euler", "heun", "midpoint", "tsit5"),
    "sampling.schedule": ("", "karras", "log_snr", "uniform_t"),
}
_ADAPTIVE_ODE_SOLVERS = ("bosh3", "dopri5", "dopri8", "heun", "midpoint", "tsit5")


class ConfigError(ValueError):
    """A config that cannot run; the message names the key."""


def flatten_keys(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict:
    """`{"section.key": value}` of a config, or of its JSON form as nested dicts (config.json)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict | dict):
            flat.update(flatten_keys(value, name + "."))
        else:
            flat[name] = value
    return flat


def unknown_key_message(key: str, known: list[str]) -> str:
    """"unknown config key 'a.b'", with the closest known key when one is close."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key {key!r}{hint}"


def _type_name(expected) -> str:
    if isinstance(expected, tuple):
        return "tuple"
    if isinstance(expected, bool):
        return "bool"
    return type(expected).__name__


def _has_type(value, expected) -> bool:
    if isinstance(expected, bool):
        return isinstance(value, bool)
    if isinstance(expected, int):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(expected, tuple):
        if not isinstance(value, tuple | list):
            return False
        element = expected[0] if expected else None
        return element is None or all(_has_type(v, element) for v in value)
    return isinstance(value, type(expected))


def check_type(key: str, value, expected) -> None:
    """Raise ConfigError unless `value` has the schema type of `expected` (ints pass as floats)."""
    if not _has_type(value, expected):
        what = _type_name(expected)
        if isinstance(expected, tuple) and expected:
            what += f" of {_type_name(expected[0])}"
        raise ConfigError(f"config key {key!r} must be {what}, got {type(value).__name__} {value!r}")


def _registry_names(module: str, attr: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
    try:
        registry = getattr(__import__(module), attr)
    except ImportError:
        return fallback
    return tuple(registry.names()) or fallback


def _check_enum(key: str, value: str, known) -> None:
    if value not in known:
        raise ConfigError(f"config key {key!r} is {value!r}; known: {', '.join(sorted(known))}")


def _check(key: str, value, ok: bool, requirement: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} must be {requirement}, got {value!r}")


def _check_enums(c: ml_collections.ConfigDict) -> None:
    _check_enum("training.sde", c.training.sde, SDES.names())
    for key, known in _FIXED_ENUMS.items():
        section, name = key.split(".")
        _check_enum(key, c[section][name], known)
    _check_enum("model.name", c.model.name, _registry_names("models", "MODELS", _FALLBACK_MODELS))
    _check_enum("sampling.method", c.sampling.method,
                _registry_names("samplers", "SAMPLERS", _FALLBACK_SAMPLERS))
    if c.sampling.method == "ode" and not c.sampling.num_steps and c.sampling.ode_solver not in _ADAPTIVE_ODE_SOLVERS:
        raise ConfigError(f"config key 'sampling.ode_solver' {c.sampling.ode_solver!r} has no error estimate for an "
                          f"adaptive solve: set sampling.num_steps > 0 or one of {', '.join(_ADAPTIVE_ODE_SOLVERS)}")
    if c.sampling.order not in (1, 2, 3):
        raise ConfigError(f"config key 'sampling.order' must be 1, 2 or 3, got {c.sampling.order!r}")
    if c.sampling.method == "pc":
        _check_enum("sampling.predictor", c.sampling.predictor,
                    _registry_names("samplers", "PREDICTORS", _FALLBACK_PREDICTORS))
        _check_enum("sampling.corrector", c.sampling.corrector,
                    _registry_names("samplers", "CORRECTORS", _FALLBACK_CORRECTORS))


_POSITIVE = ("training.batch_size", "training.n_iters", "training.n_jitted_steps", "training.log_freq",
             "training.eval_freq", "training.snapshot_freq", "training.snapshot_freq_for_preemption",
             "training.keep_checkpoints", "sampling.batch_size", "sampling.n_steps_each", "sampling.snr",
             "sampling.rtol", "sampling.atol", "sampling.max_steps", "sampling.rho", "sampling.S_noise",
             "sampling.step_lr", "eval.batch_size", "eval.num_samples", "eval.num_probes",
             "data.image_size", "data.num_channels", "model.num_scales", "model.sigma_min",
             "model.beta_max", "model.sigma_data", "model.nf", "model.num_res_blocks",
             "model.fourier_scale", "optim.lr", "optim.eps")
_NON_NEGATIVE = ("sampling.num_steps", "sampling.eta", "sampling.sigma_min", "sampling.sigma_max",
                 "sampling.S_churn", "sampling.S_min", "eval.checkpoint", "eval.fid_num_real", "data.num_workers", "model.beta_min",
                 "model.init_scale", "optim.weight_decay", "optim.warmup")
_UNIT_INTERVAL = ("model.ema_rate", "model.dropout", "optim.beta1")  # [0, 1)
_OPEN_UNIT = ("training.eps", "sampling.eps")  # (0, 1): a time in (0, T]


def _check_ranges(flat: dict) -> None:
    for key in _POSITIVE:
        _check(key, flat[key], flat[key] > 0, "> 0")
    for key in _NON_NEGATIVE:
        _check(key, flat[key], flat[key] >= 0, ">= 0")
    for key in _UNIT_INTERVAL:
        _check(key, flat[key], 0 <= flat[key] < 1, "in [0, 1)")
    for key in _OPEN_UNIT:
        _check(key, flat[key], 0 < flat[key] < 1, "in (0, 1)")
    for key in ("model.ch_mult", "model.attn_resolutions", "model.hidden_dims"):
        _check(key, tuple(flat[key]), all(v > 0 for v in flat[key]), "positive integers")
    _check("model.ch_mult", tuple(flat["model.ch_mult"]), len(flat["model.ch_mult"]) > 0, "non-empty")


def _check_relations(c: ml_collections.ConfigDict) -> None:
    m, t, d = c.model, c.training, c.data
    s = c.sampling
    if s.sigma_min > 0 and s.sigma_max > 0 and s.sigma_min >= s.sigma_max:
        raise ConfigError(f"config key 'sampling.sigma_min' ({s.sigma_min}) must be < sampling.sigma_max ({s.sigma_max})")
    if s.S_min > s.S_max:
        raise ConfigError(f"config key 'sampling.S_min' ({s.S_min}) must be <= sampling.S_max ({s.S_max})")
    if m.sigma_min >= m.sigma_max:
        raise ConfigError(f"config key 'model.sigma_min' ({m.sigma_min}) must be < model.sigma_max ({m.sigma_max})")
    if m.beta_min > m.beta_max:
        raise ConfigError(f"config key 'model.beta_min' ({m.beta_min}) must be <= model.beta_max ({m.beta_max})")
    if m.name in UNET_MODELS:
        factor = 2 ** (len(m.ch_mult) - 1)
        if d.image_size % factor:
            raise ConfigError(
                f"config key 'data.image_size' ({d.image_size}) must be divisible by "
                f"2**(len(model.ch_mult) - 1) = {factor}, the down-sampling of model.ch_mult {tuple(m.ch_mult)}")
    continuous = {"dsm": True, "ddpm": False, "smld": False}
    if t.loss in continuous and t.continuous != continuous[t.loss]:
        raise ConfigError(f"config key 'training.continuous' must be {continuous[t.loss]} "
                          f"with training.loss={t.loss!r}")
    needs_sde = {"ddpm": "vpsde", "smld": "vesde"}
    if t.loss in needs_sde and t.sde != needs_sde[t.loss]:
        raise ConfigError(f"config key 'training.sde' must be {needs_sde[t.loss]!r} with "
                          f"training.loss={t.loss!r}, got {t.sde!r}")
    if t.loss == "edm" and m.precond == "none":
        raise ConfigError("config key 'model.precond' must name a preconditioning (edm | vp | ve) "
                          "with training.loss='edm'")
    if m.precond != "none" and m.scale_by_sigma:
        raise ConfigError(f"config key 'model.scale_by_sigma' must be False with model.precond="
                          f"{m.precond!r}: the preconditioning sets the output scale")
    if (t.likelihood_weighting or t.importance_sampling) and t.loss != "dsm":
        raise ConfigError(f"config key 'training.likelihood_weighting' / 'training.importance_sampling' "
                          f"only apply to training.loss='dsm', got {t.loss!r}")
    if t.importance_sampling and not t.likelihood_weighting:
        raise ConfigError("config key 'training.importance_sampling' needs training.likelihood_weighting=True")
    if d.dataset.partition("/")[0] in POINT_DATASETS:
        _check_point_data(c)
    elif d.dataset == "digits" and d.num_channels != 1:
        raise ConfigError(f"config key 'data.num_channels' must be 1 for the grey digits, got {d.num_channels}")


def _check_point_data(c: ml_collections.ConfigDict) -> None:
    d = c.data
    if not d.centered:
        raise ConfigError(f"config key 'data.centered' must be True for 2-D point data "
                          f"{d.dataset!r}: the points are real-valued, not images in [0, 1]")
    for key in ("random_flip", "uniform_dequantization"):
        if d[key]:
            raise ConfigError(f"config key 'data.{key}' must be False for 2-D point data {d.dataset!r}")
    if c.model.name != "mlp":
        raise ConfigError(f"config key 'model.name' must be 'mlp' for 2-D point data {d.dataset!r}, "
                          f"got {c.model.name!r}")


def validate_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Return `config` unchanged if it can run; raise ConfigError naming the first bad key."""
    schema = flatten_keys(get_default_config())
    flat = flatten_keys(config)
    for key in flat:
        if key not in schema:
            raise ConfigError(unknown_key_message(key, list(schema)))
    for key, expected in schema.items():
        if key not in flat:
            raise ConfigError(f"config key {key!r} is missing")
        check_type(key, flat[key], expected)
    _check_enums(config)
    _check_ranges(flat)
    _check_relations(config)
    return config
