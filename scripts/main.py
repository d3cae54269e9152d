"""`score-sde <mode> --config=configs/digits.py --workdir=workdir/run [--config.training.batch_size=64]`.

Modes: train, sample, likelihood, evaluate, train_classifier, demo (and whatever the mode
modules imported below add). `--config` is a config file (ml_collections `get_config()`); its
keys can be overridden with `--config.<section>.<key>=value` and the result is validated before
any work.
"""
from __future__ import annotations

import logging as python_logging
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from configs import ConfigError, validate_config
from configs.load import apply_override, load_config_file
from scripts import train_modes  # noqa: F401  (registers train, sample, likelihood, evaluate, demo)

# ---- Further mode modules: one import line each, e.g. `from scripts import application_modes`. ----
from scripts import application_modes  # noqa: F401  # isort: skip  (denoise, edit, encode, decode, interpolate, anomaly)

from scripts.modes import MODES  # noqa: E402  (filled by the imports above)
from training.checkpoint import CheckpointMismatchError, CheckpointSaveError
from training.sharding import maybe_initialize_distributed
from training.train_loop import ResumeConfigError

config_flags.DEFINE_config_file("config", None, "Path to a config file (Python, defines get_config()).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, samples and evaluations.")

FLAGS = flags.FLAGS


class _QuietCheckpointing:
    """Drops orbax's per-save INFO chatter from the console; its warnings and errors stay."""

    def filter(self, record) -> bool:
        return record.levelno > python_logging.INFO or "orbax" not in record.pathname


def _usage() -> str:
    return f"usage: score-sde <mode> --config=<file> --workdir=<dir>; modes: {', '.join(sorted(MODES))}"


def _config_arguments(argv: list[str]) -> tuple[str | None, list[str]]:
    """The `--config` file and the `--config.<key>=value` overrides of a command line
    (both `--flag=value` and `--flag value` spellings)."""
    path, overrides = None, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, sep, value = arg.partition("=")
        if name in ("--config", "-config") or name.startswith(("--config.", "-config.")):
            if not sep and i + 1 < len(argv):
                i += 1
                value = argv[i]
            if name.lstrip("-") == "config":
                path = value
            else:
                overrides.append(f"{name.lstrip('-')}={value}")
        i += 1
    return path, overrides


def _check_config_arguments(argv: list[str]) -> None:
    """Exit with a message naming the key when an override names no config key or has the wrong
    type (ml_collections' own parser would fail later with a traceback)."""
    path, overrides = _config_arguments(argv[1:])
    if path is None or not overrides:
        return
    mode = f" {argv[1]}" if len(argv) > 1 and not argv[1].startswith("-") else ""
    try:
        config = load_config_file(path)
        for override in overrides:
            apply_override(config, override)
    except (ConfigError, FileNotFoundError) as error:
        sys.exit(f"score-sde{mode}: invalid config: {error}")


def run(argv: list[str]) -> int:
    """Dispatch `argv[1]` (the mode) after absl has parsed the flags."""
    if len(argv) != 2:
        raise app.UsageError(_usage() + (f"; unexpected arguments {argv[2:]}" if len(argv) > 2 else ""))
    mode = argv[1]
    if mode not in MODES:
        raise app.UsageError(f"unknown mode {mode!r}; " + _usage())
    config = FLAGS.config
    if config is not None:
        try:
            validate_config(config)
        except ConfigError as error:
            sys.exit(f"score-sde {mode}: invalid config: {error}")
    if FLAGS.workdir is None:
        raise app.UsageError(f"--workdir is required for mode {mode!r}")
    logging.get_absl_handler().python_handler.addFilter(_QuietCheckpointing())
    logging.info("score-sde %s, workdir %s", mode, FLAGS.workdir)

    maybe_initialize_distributed()  # every mode runs on all hosts of a cluster (JAX_* / SCORE_SDE_DISTRIBUTED)

    try:
        return MODES[mode](config, pathlib.Path(FLAGS.workdir)) or 0
    except (ResumeConfigError, CheckpointMismatchError, CheckpointSaveError) as error:
        # The user's workdir and config disagree: say so plainly, no traceback (nothing was changed).
        sys.exit(f"score-sde {mode}: {error}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`score-sde`); `argv` defaults to `sys.argv`."""
    argv = sys.argv if argv is None else argv
    _check_config_arguments(argv)
    app.run(run, argv=argv)


if __name__ == "__main__":
    main()
