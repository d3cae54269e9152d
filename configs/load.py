"""Load a config file and apply ``a.b.c=value`` overrides, each checked against the key's type.

Usable from any CLI: ``load_config("configs/digits.py", ["training.batch_size=64"])``; the
``--config.training.batch_size=64`` spelling of ml_collections' config_flags is accepted too.
"""
import ast
import importlib.util
import pathlib
import sys
import traceback

import ml_collections

from configs.validate import ConfigError, check_type, unknown_key_message, validate_config

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def load_config_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """`get_config()` of the Python config file at `path`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    if path.suffix != ".py":
        raise ConfigError(f"config file {str(path)!r} must be a Python file (.py) defining get_config()")
    name = f"_score_sde_config_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"config file {str(path)!r} defines no get_config()")
        config = module.get_config()
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's file: any failure is a bad config file
        raise ConfigError(f"config file {str(path)!r} failed to load: {_where(error, path)}"
                          f"{type(error).__name__}: {' '.join(str(error).split())}") from error
    finally:
        del sys.modules[name]
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"config file {str(path)!r}: get_config() returned {type(config).__name__}, "
                          "not an ml_collections.ConfigDict")
    return config


def _where(error: BaseException, path: pathlib.Path) -> str:
    """`line N: ` of the config file where `error` arose, if it did there."""
    if isinstance(error, SyntaxError) and error.lineno:
        return f"line {error.lineno}: "
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if pathlib.Path(frame.filename).resolve() == path.resolve()]
    return f"line {lines[-1]}: " if lines else ""


def parse_value(key: str, text: str, current):
    """`text` as a value of the type of `current` (the key's present value)."""
    text = text.strip()
    if isinstance(current, bool):
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ConfigError(f"config key {key!r} must be bool (true/false), got {text!r}")
    if isinstance(current, str):
        quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
        return text[1:-1] if quoted else text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"config key {key!r} must be {type(current).__name__}, got {text!r}") from None
    if isinstance(current, tuple) and not isinstance(value, tuple | list):
        value = (value,)
    if isinstance(current, tuple | list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    check_type(key, value, current)
    return value


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
    """Set the key of `override` ("a.b.c=value") in `config`, in place."""
    key, sep, text = override.partition("=")
    if not sep:
        raise ConfigError(f"override {override!r} must look like key=value, e.g. training.batch_size=64")
    key = key.strip().removeprefix("--").removeprefix("config.")
    *sections, leaf = key.split(".")
    node = config
    for section in sections:
        if section not in node or not isinstance(node[section], ml_collections.ConfigDict):
            raise ConfigError(unknown_key_message(key, _keys(config)))
        node = node[section]
    if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
        raise ConfigError(unknown_key_message(key, _keys(config)))
    node[leaf] = parse_value(key, text, node[leaf])


def _keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += _keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def load_config(path: str | pathlib.Path, overrides: list[str] = (), *,
                validate: bool = True) -> ml_collections.ConfigDict:
    """The config of file `path` with `overrides` applied in order, validated unless told not to."""
    config = load_config_file(path)
    for override in overrides:
        apply_override(config, override)
    return validate_config(config) if validate else config
