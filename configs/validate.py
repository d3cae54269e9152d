"""Config validation: reject a config before any work, with a message naming the offending key.

`validate_config(config)` checks, in order: the key set against the schema of
`configs.default` (unknown / missing keys), each value's type, the keys with a fixed set of
values against that set (`choices()`: read from the registries `sde_lib.SDES` / `LOSSES`,
`models.MODELS`, `samplers.SAMPLERS` / `PREDICTORS` / `CORRECTORS` and the tables the
constructors check against; nothing is listed twice), ranges, the rules that tie keys together
(image size vs the U-Net's down-sampling, loss vs SDE and time, likelihood weighting, 2-D point
data), and finally builds the SDE, loss, preconditioning, optimiser and sampler through
`configs.builders`, so that a config accepted here is one the constructors accept. Whether the
batch divides over the devices is the trainer's check. Nothing here touches a device.
"""
import difflib
import math
import numbers

import ml_collections

import models
import samplers
import sde_lib
from configs import builders
from configs.default import get_default_config
from models.build import DTYPES
from models.layers import ACTIVATIONS, CONV_IMPLS
from models.ncsnpp import CHOICES as NCSNPP_CHOICES
from models.preconditioning import PRECONDITIONERS
from samplers.ode import ADAPTIVE, SOLVERS
from samplers.sigma_schedule import SCHEDULES

UNET_MODELS = ("ncsnpp", "ddpm")  # the networks that down-sample by 2 per ch_mult level
POINT_DATASETS = ("toy2d",)
# Keys renamed to the field names of the samplers they set (one name per option), and keys of
# the 2021 configs that no network here reads (each network has its one normalisation and
# attention, and 3x3 convolutions).
RENAMED = {"sampling.noise_removal": "sampling.denoise", "sampling.ode_solver": "sampling.solver"}
REMOVED = ("model.normalization", "model.attention_type", "model.conv_size")


def choices() -> dict[str, tuple]:
    """Every config key with a fixed set of values -> those values, from the registries and the
    constructors' own tables (`sampling.predictor` / `corrector` apply to `sampling.method='pc'`)."""
    return {
        "training.sde": tuple(sde_lib.SDES.names()),
        "training.loss": tuple(sde_lib.LOSSES.names()),
        "model.name": tuple(models.MODELS.names()),
        "model.precond": ("none", *PRECONDITIONERS),
        "model.compute_dtype": tuple(DTYPES),
        "model.conv_impl": ("auto", *CONV_IMPLS),  # auto: models.default_conv_impl()
        "model.nonlinearity": tuple(ACTIVATIONS),
        **{f"model.{key}": values for key, values in NCSNPP_CHOICES.items() if key != "conv_impl"},
        "optim.optimizer": builders.OPTIMIZERS,
        "sampling.method": tuple(samplers.SAMPLERS.names()),
        "sampling.predictor": tuple(samplers.PREDICTORS.names()),
        "sampling.corrector": tuple(samplers.CORRECTORS.names()),
        "sampling.solver": tuple(SOLVERS),
        "sampling.schedule": ("", *SCHEDULES),  # "": each sampler's own
        "sampling.order": (0, 1, 2, 3, 4),  # 0: the sampler's own; each sampler accepts some
        "sampling.guidance": ("classifier", "cfg", "none"),
    }
CLASS_CONDITIONAL_MODELS = ("ddpm", "mlp", "ncsnpp")  # the networks with a label embedding
CONTINUOUS_LABEL_MODELS = ("ddpm", "mlp", "ncsnpp")  # the networks that embed a real-valued noise label


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
    """"unknown config key 'a.b'", with the closest known key when one is close (or its new name)."""
    if key in RENAMED:
        return f"config key {key!r} was renamed {RENAMED[key]!r}"
    if key in REMOVED:
        return f"config key {key!r} was removed: no network here reads it (delete the line)"
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


def _check_enum(key: str, value: str, known) -> None:
    if value not in known:
        raise ConfigError(f"config key {key!r} is {value!r}; known: {', '.join(str(k) for k in sorted(known))}")


def _check(key: str, value, ok: bool, requirement: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} must be {requirement}, got {value!r}")


def _check_enums(c: ml_collections.ConfigDict) -> None:
    for key, known in choices().items():
        section, name = key.split(".")
        if key in ("sampling.predictor", "sampling.corrector") and c.sampling.method != "pc":
            continue
        _check_enum(key, c[section][name], known)
    if c.sampling.method == "ode" and not c.sampling.num_steps and c.sampling.solver not in ADAPTIVE:
        raise ConfigError(f"config key 'sampling.solver' {c.sampling.solver!r} has no error estimate for an "
                          f"adaptive solve: set sampling.num_steps > 0 or one of {', '.join(sorted(ADAPTIVE))}")


_POSITIVE = ("training.batch_size", "training.n_iters", "training.n_jitted_steps", "training.grad_accum_steps",
             "training.log_freq",
             "training.eval_freq", "training.snapshot_freq", "training.snapshot_freq_for_preemption",
             "training.keep_checkpoints", "sampling.batch_size", "sampling.n_steps_each", "sampling.snr",
             "sampling.rtol", "sampling.atol", "sampling.max_steps", "sampling.rho", "sampling.S_noise",
             "sampling.step_lr", "eval.batch_size", "eval.num_samples", "eval.num_probes",
             "data.image_size", "data.num_channels", "model.num_scales", "model.sigma_min",
             "model.beta_max", "model.sigma_data", "model.nf", "model.num_res_blocks",
             "model.fourier_scale", "optim.lr", "optim.eps", "classifier.nf", "classifier.n_iters",
             "classifier.batch_size", "classifier.lr")
_NON_NEGATIVE = ("sampling.num_steps", "sampling.eta", "sampling.sigma_min", "sampling.sigma_max",
                 "sampling.S_churn", "sampling.S_min", "eval.checkpoint", "eval.fid_num_real", "data.num_workers", "model.beta_min",
                 "model.num_classes", "classifier.num_classes", "sampling.guidance_weight",
                 "model.init_scale", "optim.weight_decay", "optim.warmup")
_UNIT_INTERVAL = ("model.ema_rate", "model.dropout", "optim.beta1", "training.label_dropout")  # [0, 1)
_OPEN_UNIT = ("training.eps", "sampling.eps")  # (0, 1): a time in (0, T]


_MAY_BE_INFINITE = ("sampling.S_max",)  # EDM's S_tmax: churn at every noise level


def _check_ranges(flat: dict) -> None:
    for key, value in flat.items():
        if isinstance(value, float) and not (math.isfinite(value) or (key in _MAY_BE_INFINITE and value > 0)):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value}")
    for key in _POSITIVE:
        _check(key, flat[key], flat[key] > 0, "> 0")
    for key in _NON_NEGATIVE:
        _check(key, flat[key], flat[key] >= 0, ">= 0")
    for key in _UNIT_INTERVAL:
        _check(key, flat[key], 0 <= flat[key] < 1, "in [0, 1)")
    for key in _OPEN_UNIT:
        _check(key, flat[key], 0 < flat[key] < 1, "in (0, 1)")
    for key in ("model.ch_mult", "model.attn_resolutions", "model.hidden_dims", "classifier.hidden_dims"):
        _check(key, tuple(flat[key]), all(v > 0 for v in flat[key]), "positive integers")
    for key in ("model.ch_mult", "classifier.hidden_dims"):
        _check(key, tuple(flat[key]), len(flat[key]) > 0, "non-empty")


def _check_relations(c: ml_collections.ConfigDict) -> None:
    m, t, d = c.model, c.training, c.data
    s = c.sampling
    if s.sigma_min > 0 and s.sigma_max > 0 and s.sigma_min >= s.sigma_max:
        raise ConfigError(f"config key 'sampling.sigma_min' ({s.sigma_min}) must be < sampling.sigma_max ({s.sigma_max})")
    if s.S_min > s.S_max:
        raise ConfigError(f"config key 'sampling.S_min' ({s.S_min}) must be <= sampling.S_max ({s.S_max})")
    if t.batch_size % t.grad_accum_steps:
        raise ConfigError(f"config key 'training.grad_accum_steps' ({t.grad_accum_steps}) must divide "
                          f"training.batch_size ({t.batch_size})")
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
    _check_noise_labels(c)
    _check_class_conditioning(c)
    if d.dataset.partition("/")[0] in POINT_DATASETS:
        _check_point_data(c)
    elif d.dataset == "digits" and d.num_channels != 1:
        raise ConfigError(f"config key 'data.num_channels' must be 1 for the grey digits, got {d.num_channels}")


def _check_noise_labels(c: ml_collections.ConfigDict) -> None:
    """Refuse the combinations whose noise labels give NaN or mean nothing to the network."""
    m = c.model
    if m.precond != "none" and m.name not in CONTINUOUS_LABEL_MODELS:
        raise ConfigError(f"config key 'model.precond' must be 'none' for model.name={m.name!r}: its noise "
                          f"labels are step indices, not the preconditioning's real-valued c_noise "
                          f"(use one of {', '.join(CONTINUOUS_LABEL_MODELS)})")
    if m.precond == "none" and m.embedding_type == "fourier" and not c.training.continuous \
            and m.name in CONTINUOUS_LABEL_MODELS:
        raise ConfigError("config key 'model.embedding_type' must be 'positional' with training.continuous=False: "
                          "Fourier features embed the log of the noise label, and the discrete label 0 has "
                          "log -inf (NaN)")


def _check_class_conditioning(c: ml_collections.ConfigDict) -> None:
    m, t, s = c.model, c.training, c.sampling
    if m.num_classes > 0 and m.name not in CLASS_CONDITIONAL_MODELS:
        raise ConfigError(f"config key 'model.num_classes' must be 0 for model.name={m.name!r}: only "
                          f"{', '.join(CLASS_CONDITIONAL_MODELS)} have a class-label embedding")
    if m.num_classes > 0 and not m.conditional:
        raise ConfigError("config key 'model.conditional' must be True with model.num_classes > 0: the class "
                          "embedding joins the noise embedding")
    if t.label_dropout > 0 and m.num_classes == 0:
        raise ConfigError(f"config key 'training.label_dropout' ({t.label_dropout}) needs a class-conditional "
                          "model (model.num_classes > 0)")
    if s.guidance == "cfg" and (m.num_classes == 0 or t.label_dropout == 0):
        raise ConfigError("config key 'sampling.guidance' 'cfg' needs a class-conditional model trained with "
                          "label dropout (model.num_classes > 0 and training.label_dropout > 0): the "
                          "unconditional score is its null class")
    if s.guidance == "classifier" and max(c.classifier.num_classes, m.num_classes) == 0:
        raise ConfigError("config key 'sampling.guidance' 'classifier' needs the number of classes: set "
                          "classifier.num_classes (or model.num_classes)")
    if s.guidance == "none" and s.guidance_weight > 0:
        raise ConfigError(f"config key 'sampling.guidance_weight' ({s.guidance_weight}) has no effect with "
                          "sampling.guidance='none'")


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


def _check_builds(c: ml_collections.ConfigDict) -> None:
    """Build the SDE, loss, preconditioning, optimiser and sampler as the run will (cheap, no
    device); a constructor's objection becomes a ConfigError naming the section."""
    def build(section: str, what: str, fn):
        try:
            return fn()
        except (ValueError, TypeError, KeyError) as error:
            reason = error.args[0] if isinstance(error, KeyError) and error.args else error
            raise ConfigError(f"config section {section!r} does not build {what}: {reason}") from None

    sde = build("training", "the SDE", lambda: builders.build_sde(c))
    build("training", "the loss", lambda: builders.build_loss(c, sde))
    build("model", "the preconditioning", lambda: builders.build_precond(c))
    build("optim", "the optimiser", lambda: builders.build_optimizer(c))
    build("sampling", f"the sampler {c.sampling.method!r}", lambda: builders.build_sampler(c, sde))


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
    _check_builds(config)
    return config
