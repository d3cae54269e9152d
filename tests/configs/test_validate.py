"""validate_config rejects bad configs before any work, with exact messages naming the key."""
import re

import ml_collections
import pytest

from configs import ConfigError, get_default_config, validate_config


def _config(**changes) -> ml_collections.ConfigDict:
    """The default config with `section__key=value` changes, type checks off (to build bad ones)."""
    config = ml_collections.ConfigDict(get_default_config().to_dict(), type_safe=False)
    for name, value in changes.items():
        section, key = name.split("__")
        config[section][key] = value
    return config


def _rejects(config, message: str):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        validate_config(config)


def test_unknown_key_is_named_with_suggestion():
    config = _config()
    config.training.batch_sz = 64
    _rejects(config, "unknown config key 'training.batch_sz' (did you mean 'training.batch_size'?)")


def test_unknown_section_is_named():
    config = _config()
    config.extra = ml_collections.ConfigDict({"note": "x"})
    _rejects(config, "unknown config key 'extra.note'")


def test_missing_key_is_named():
    config = _config()
    del config.sampling["snr"]
    _rejects(config, "config key 'sampling.snr' is missing")


@pytest.mark.parametrize("change, message", [
    ({"training__batch_size": "64"}, "config key 'training.batch_size' must be int, got str '64'"),
    ({"training__batch_size": 64.0}, "config key 'training.batch_size' must be int, got float 64.0"),
    ({"training__continuous": 1}, "config key 'training.continuous' must be bool, got int 1"),
    ({"optim__lr": "2e-4"}, "config key 'optim.lr' must be float, got str '2e-4'"),
    ({"model__ch_mult": (1, 2.5)}, "config key 'model.ch_mult' must be tuple of int, got tuple (1, 2.5)"),
    ({"model__ch_mult": 2}, "config key 'model.ch_mult' must be tuple of int, got int 2"),
])
def test_wrong_type_is_named(change, message):
    _rejects(_config(**change), message)


def test_int_is_accepted_for_a_float_key():
    validate_config(_config(optim__lr=1))


def test_bad_sde_lists_the_registry():
    _rejects(_config(training__sde="vpsdee"), "config key 'training.sde' is 'vpsdee'; known: subvpsde, vesde, vpsde")


def test_bad_loss_is_named():
    _rejects(_config(training__loss="l2"), "config key 'training.loss' is 'l2'; known: ddpm, dsm, edm, smld")


def test_bad_model_name_lists_the_models_registry():
    models = pytest.importorskip("models")
    _rejects(_config(model__name="unet"),
             f"config key 'model.name' is 'unet'; known: {', '.join(models.MODELS.names())}")


def test_bad_predictor_lists_the_predictor_registry():
    samplers = pytest.importorskip("samplers")
    _rejects(_config(sampling__predictor="euler"),
             f"config key 'sampling.predictor' is 'euler'; known: {', '.join(samplers.PREDICTORS.names())}")


def test_bad_sampling_method_lists_the_sampler_registry():
    samplers = pytest.importorskip("samplers")
    _rejects(_config(sampling__method="magic"),
             f"config key 'sampling.method' is 'magic'; known: {', '.join(samplers.SAMPLERS.names())}")


def test_image_size_not_divisible_by_unet_downsampling():
    _rejects(_config(data__image_size=12, data__num_channels=3),
             "config key 'data.image_size' (12) must be divisible by 2**(len(model.ch_mult) - 1) = 8, "
             "the down-sampling of model.ch_mult (1, 2, 2, 2)")


def test_image_size_rule_applies_only_to_unets():
    validate_config(_config(data__image_size=12, model__name="ncsnv2_64"))


@pytest.mark.parametrize("change, message", [
    ({"optim__lr": 0.0}, "config key 'optim.lr' must be > 0, got 0.0"),
    ({"training__n_iters": 0}, "config key 'training.n_iters' must be > 0, got 0"),
    ({"training__batch_size": -8}, "config key 'training.batch_size' must be > 0, got -8"),
    ({"model__ema_rate": 1.0}, "config key 'model.ema_rate' must be in [0, 1), got 1.0"),
    ({"model__ema_rate": -0.1}, "config key 'model.ema_rate' must be in [0, 1), got -0.1"),
    ({"training__eps": 0.0}, "config key 'training.eps' must be in (0, 1), got 0.0"),
    ({"sampling__num_steps": -1}, "config key 'sampling.num_steps' must be >= 0, got -1"),
    ({"model__ch_mult": ()}, "config key 'model.ch_mult' must be non-empty, got ()"),
])
def test_impossible_value_is_named(change, message):
    _rejects(_config(**change), message)


def test_sigma_min_must_be_below_sigma_max():
    _rejects(_config(model__sigma_min=50.0, model__sigma_max=50.0),
             "config key 'model.sigma_min' (50.0) must be < model.sigma_max (50.0)")


def test_beta_min_must_not_exceed_beta_max():
    _rejects(_config(model__beta_min=21.0), "config key 'model.beta_min' (21.0) must be <= model.beta_max (20.0)")


def test_importance_sampling_needs_likelihood_weighting():
    _rejects(_config(training__importance_sampling=True),
             "config key 'training.importance_sampling' needs training.likelihood_weighting=True")


def test_likelihood_weighting_only_for_the_continuous_loss():
    _rejects(_config(training__likelihood_weighting=True, training__loss="ddpm", training__continuous=False),
             "config key 'training.likelihood_weighting' / 'training.importance_sampling' only apply to "
             "training.loss='dsm', got 'ddpm'")


def test_discrete_loss_needs_discrete_time():
    _rejects(_config(training__loss="ddpm"), "config key 'training.continuous' must be False with training.loss='ddpm'")


def test_ddpm_loss_needs_the_vp_sde():
    _rejects(_config(training__loss="ddpm", training__continuous=False, training__sde="vesde"),
             "config key 'training.sde' must be 'vpsde' with training.loss='ddpm', got 'vesde'")


def test_edm_loss_needs_a_preconditioning():
    _rejects(_config(training__loss="edm"),
             "config key 'model.precond' must name a preconditioning (edm | vp | ve) with training.loss='edm'")


def test_point_data_must_not_flip():
    _rejects(_config(data__dataset="toy2d", data__centered=True, data__random_flip=True, model__name="mlp"),
             "config key 'data.random_flip' must be False for 2-D point data 'toy2d'")


def test_point_data_is_centered():
    _rejects(_config(data__dataset="toy2d/moons", model__name="mlp"),
             "config key 'data.centered' must be True for 2-D point data 'toy2d/moons': the points are "
             "real-valued, not images in [0, 1]")


def test_point_data_needs_the_mlp():
    _rejects(_config(data__dataset="toy2d", data__centered=True),
             "config key 'model.name' must be 'mlp' for 2-D point data 'toy2d', got 'ncsnpp'")


def test_digits_are_grey():
    _rejects(_config(data__num_channels=3), "config key 'data.num_channels' must be 1 for the grey digits, got 3")


@pytest.mark.parametrize("change, message", [
    ({"model__nonlinearity": "swsh"}, "config key 'model.nonlinearity' is 'swsh'; known: elu, lrelu, relu, silu, swish"),
    ({"sampling__schedule": "cosine"}, "config key 'sampling.schedule' is 'cosine'; known: , karras, log_snr, uniform_t"),
    ({"sampling__solver": "rk45"},
     "config key 'sampling.solver' is 'rk45'; known: bosh3, dopri5, dopri8, euler, heun, midpoint, tsit5"),
    ({"sampling__method": "ode", "sampling__solver": "euler"},
     "config key 'sampling.solver' 'euler' has no error estimate for an adaptive solve: set sampling.num_steps "
     "> 0 or one of bosh3, dopri5, dopri8, heun, midpoint, tsit5"),
    ({"sampling__order": 5}, "config key 'sampling.order' is 5; known: 0, 1, 2, 3, 4"),
    ({"sampling__eta": -0.5}, "config key 'sampling.eta' must be >= 0, got -0.5"),
    ({"sampling__rho": 0.0}, "config key 'sampling.rho' must be > 0, got 0.0"),
    ({"sampling__sigma_min": 5.0, "sampling__sigma_max": 1.0},
     "config key 'sampling.sigma_min' (5.0) must be < sampling.sigma_max (1.0)"),
    ({"sampling__S_min": 2.0, "sampling__S_max": 1.0}, "config key 'sampling.S_min' (2.0) must be <= sampling.S_max (1.0)"),
])
def test_bad_sampler_and_network_options_are_named(change, message):
    _rejects(_config(**change), message)


@pytest.mark.parametrize("key, message", [
    ("sampling__noise_removal", "config key 'sampling.noise_removal' was renamed 'sampling.denoise'"),
    ("sampling__ode_solver", "config key 'sampling.ode_solver' was renamed 'sampling.solver'"),
    ("model__normalization", "config key 'model.normalization' was removed: no network here reads it (delete the line)"),
])
def test_renamed_and_removed_keys_say_so(key, message):
    _rejects(_config(**{key: "x"}), message)


def test_a_combination_only_the_constructor_knows_is_named_by_section():
    _rejects(_config(training__sde="subvpsde", sampling__predictor="ancestral_sampling"),
             "config section 'sampling' does not build the sampler 'pc': ancestral_sampling supports VPSDE (DDPM) "
             "and VESDE (SMLD) only, not subVPSDE; use reverse_diffusion or euler_maruyama instead")


@pytest.mark.parametrize("method, options, expected", [
    ("ddim", {"eta": 0.5, "num_steps": 7, "schedule": "karras", "rho": 5.0},
     {"eta": 0.5, "num_steps": 7, "schedule": "karras", "rho": 5.0}),
    ("dpm_solver", {"order": 3, "sigma_min": 0.02, "sigma_max": 20.0},
     {"order": 3, "sigma_min": 0.02, "sigma_max": 20.0, "schedule": "log_snr"}),
    ("edm_heun", {"S_churn": 10.0, "S_min": 0.05, "S_max": 50.0, "S_noise": 1.003},
     {"S_churn": 10.0, "S_min": 0.05, "S_max": 50.0, "S_noise": 1.003, "sigma_min": None}),
    ("ode", {"solver": "heun", "num_steps": 12, "max_steps": 100},
     {"solver": "heun", "num_steps": 12, "max_steps": 100}),
    ("ald", {"step_lr": 1e-5, "n_steps_each": 3}, {"step_lr": 1e-5, "n_steps_each": 3}),
])
def test_sampler_options_reach_the_sampler(method, options, expected):
    from configs.builders import build_sampler, build_sde

    config = get_default_config()
    config.sampling.method = method
    for key, value in options.items():
        config.sampling[key] = value
    validate_config(config)
    sampler = build_sampler(config, build_sde(config))
    assert {key: getattr(sampler, key) for key in expected} == expected


@pytest.mark.parametrize("changes, fragment", [
    ({"model__name": "ncsn", "model__num_classes": 10}, "'model.num_classes' must be 0 for model.name='ncsn'"),
    ({"model__num_classes": 10, "model__conditional": False}, "'model.conditional' must be True"),
    ({"training__label_dropout": 0.1}, "'training.label_dropout' (0.1) needs a class-conditional model"),
    ({"model__num_classes": 10, "sampling__guidance": "cfg"}, "'sampling.guidance' 'cfg' needs"),
    ({"sampling__guidance": "classifier"}, "'sampling.guidance' 'classifier' needs the number of classes"),
    ({"sampling__guidance_weight": 2.0}, "'sampling.guidance_weight' (2.0) has no effect"),
    ({"training__label_dropout": 1.0, "model__num_classes": 10}, "'training.label_dropout' must be in [0, 1)"),
    ({"sampling__guidance": "cgf"}, "'sampling.guidance' is 'cgf'"),
    # The NaN-prone noise labels: Fourier features of log(0) for a discrete index, c_noise given
    # to networks whose labels are step indices.
    ({"model__embedding_type": "fourier", "training__continuous": False, "training__loss": "ddpm"},
     "'model.embedding_type' must be 'positional' with training.continuous=False"),
    ({"model__name": "ncsnv2_64", "model__precond": "edm", "training__loss": "edm"},
     "'model.precond' must be 'none' for model.name='ncsnv2_64'"),
])
def test_class_conditioning_guidance_and_noise_label_rules(changes, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        validate_config(_config(**changes))


def test_conditional_cfg_config_validates():
    validate_config(_config(model__num_classes=10, training__label_dropout=0.1, sampling__guidance="cfg",
                            sampling__guidance_weight=2.0))
