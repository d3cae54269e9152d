"""Experiment configs (ml_collections): the schema `default.get_default_config()`, SDE-family
deltas (`families`), one file per data set and model, and their checks.

Public API: `get_default_config()`, `load_config(path, overrides)`, `validate_config(config)`,
`ConfigError`, `families.{ve, vp, subvp, ddpm, smld}`.
"""
from configs.default import get_default_config
from configs.load import apply_override, load_config, load_config_file
from configs.validate import ConfigError, validate_config

__all__ = ["ConfigError", "apply_override", "get_default_config", "load_config", "load_config_file",
           "validate_config"]
