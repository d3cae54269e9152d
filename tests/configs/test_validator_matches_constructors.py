"""One source of truth for the config's choices: for every registry entry and every option value,
the validator accepts the config exactly when the constructors build it; every config file both
validates and builds; every key of the schema is read by some consumer."""
import ast
import dataclasses
import pathlib

import pytest

import models
import samplers
import sde_lib
from configs import ConfigError, builders, get_default_config, load_config, validate_config
from configs.validate import choices, flatten_keys
from models.layers import conv_function, get_activation
from training.conditioning import GUIDANCE

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted(p for p in (ROOT / "configs").rglob("*.py") if "def get_config(" in p.read_text())
# Settings a value needs to be valid at all (the rules that tie keys together).
COMPANIONS = {
    ("training.loss", "ddpm"): {"training.continuous": False},
    ("training.loss", "smld"): {"training.sde": "vesde", "training.continuous": False},
    ("training.loss", "edm"): {"model.precond": "edm"},
    ("model.name", "mlp"): {},
    ("sampling.guidance", "cfg"): {"model.num_classes": 10, "training.label_dropout": 0.1},
    ("sampling.guidance", "classifier"): {"classifier.num_classes": 10},
}


def _config(changes: dict):
    config = get_default_config()
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def _build(key: str, config) -> None:
    """What the run builds from `key`: raises what the constructor raises for a bad value."""
    section = key.split(".")[0]
    sde = builders.build_sde(config)
    if key == "training.loss":
        builders.build_loss(config, sde)
    elif key == "model.precond":
        builders.build_precond(config)
    elif key == "model.nonlinearity":
        get_activation(config.model.nonlinearity)
    elif key == "model.conv_impl" and config.model.conv_impl != "auto":
        conv_function(config.model.conv_impl)
    elif section == "model":
        models.build_model(config)  # the module's own field checks (nothing is initialised)
    elif section == "optim":
        builders.build_optimizer(config)
    elif key == "sampling.guidance":
        if config.sampling.guidance not in GUIDANCE:  # the kinds `Guidance` accepts
            raise ValueError(config.sampling.guidance)
    elif section == "sampling":
        builders.build_sampler(config, sde)


def _cases():
    """(key, value, settings) for every choice of every key, with the settings it needs."""
    for key, values in choices().items():
        for value in values:
            settings = {key: value, **COMPANIONS.get((key, value), {})}
            if key.startswith("model.") and key not in ("model.name", "model.precond"):
                settings["model.name"] = "ncsnpp"  # the network that has every model option
            if key == "sampling.solver":
                settings.update({"sampling.method": "ode", "sampling.num_steps": 4})
            if key == "sampling.schedule":
                settings["sampling.method"] = "dpm_solver"
            if key == "sampling.order":
                settings["sampling.method"] = "ipndm"  # takes every order 1 - 4 (0: its own)
            yield key, value, settings


@pytest.mark.parametrize("key, value, settings", list(_cases()), ids=lambda v: str(v) if not isinstance(v, dict) else "")
def test_every_choice_validates_and_builds(key, value, settings):
    config = _config(settings)
    validate_config(config)
    _build(key, config)


@pytest.mark.parametrize("key", sorted(choices()))
def test_a_value_outside_the_choices_is_refused_by_both(key):
    bad = 7 if key == "sampling.order" else "bogus"
    settings = {key: bad}
    if key.startswith("model.") and key not in ("model.name", "model.precond"):
        settings["model.name"] = "ncsnpp"
    if key in ("sampling.predictor", "sampling.corrector"):
        settings["sampling.method"] = "pc"
    if key == "sampling.schedule":
        settings["sampling.method"] = "dpm_solver"
    if key == "sampling.order":
        settings["sampling.method"] = "ipndm"
    if key == "sampling.solver":
        settings.update({"sampling.method": "ode", "sampling.num_steps": 4})
    config = _config(settings)
    with pytest.raises(ConfigError, match=f"^config key '{key}' is "):
        validate_config(config)
    with pytest.raises((ValueError, KeyError, TypeError)):
        _build(key, config)


@pytest.mark.parametrize("registry, key", [
    (sde_lib.SDES, "training.sde"), (sde_lib.LOSSES, "training.loss"), (models.MODELS, "model.name"),
    (samplers.SAMPLERS, "sampling.method"), (samplers.PREDICTORS, "sampling.predictor"),
    (samplers.CORRECTORS, "sampling.corrector"),
])
def test_the_choices_are_the_registries(registry, key):
    assert tuple(choices()[key]) == tuple(registry.names())


def test_every_sampler_builds_on_every_sde_the_validator_accepts():
    for sde in sde_lib.SDES.names():
        for method in samplers.SAMPLERS.names():
            config = _config({"training.sde": sde, "sampling.method": method})
            validate_config(config)
            assert type(builders.build_sampler(config, builders.build_sde(config))) is samplers.SAMPLERS.get(method)
        for predictor in samplers.PREDICTORS.names():
            config = _config({"training.sde": sde, "sampling.predictor": predictor})
            try:
                builders.build_sampler(config, builders.build_sde(config))
                builds = True
            except ValueError:
                builds = False
            try:
                validate_config(config)
                valid = True
            except ConfigError:
                valid = False
            assert valid == builds, (sde, predictor)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_config_file_validates_and_builds(path):
    config = load_config(path, [])
    sde = builders.build_sde(config)
    builders.build_loss(config, sde)
    builders.build_precond(config)
    builders.build_optimizer(config)
    builders.build_sampler(config, sde)
    models.build_model(config)


def _names_read() -> set[str]:
    """Attribute and string-key names read by the code that consumes configs, plus the fields of
    the networks and samplers (filled from same-named keys by `models.build_model` and
    `configs.builders.sampler_options`)."""
    names = set()
    for path in [*(ROOT / "training").rglob("*.py"), *(ROOT / "scripts").rglob("*.py"),
                 ROOT / "configs" / "builders.py", ROOT / "models" / "build.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    for registry in (models.MODELS, samplers.SAMPLERS):
        for name in registry.names():
            names |= {f.name for f in dataclasses.fields(registry.get(name))}
    return names


def test_every_schema_key_is_read():
    read = _names_read()
    unread = [key for key in flatten_keys(get_default_config()) if key.rpartition(".")[2] not in read]
    assert not unread, unread
