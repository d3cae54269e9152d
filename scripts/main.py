"""`score-sde <mode> --config=configs/digits.py --workdir=workdir/run [--config.training.batch_size=64]`.

`score-sde --help` lists the modes, `score-sde MODE --help` that mode's flags. `--config` is a
config file (ml_collections `get_config()`); its keys can be overridden with
`--config.<section>.<key>=value` and the result is validated before any work.

Errors (the design, one place): a bad command line, config, input or output path is found
before any model is built; every failure the user can fix (`training.errors.UserError`,
`configs.ConfigError`, flag parsing errors, OS errors such as a full disk) ends with one line on
stderr, `score-sde MODE: <what and how to fix it>`, and exit status 2 (usage) or 1 (run state),
with no traceback; `SCORE_SDE_DEBUG=1` or `--traceback` shows it. Anything else is a bug and is
reported as one too.
"""
from __future__ import annotations

import contextlib
import difflib
import errno
import logging as python_logging
import os
import pathlib
import sys
import threading

from absl import flags, logging

from scripts import train_modes  # noqa: F401  (registers train, sample, likelihood, evaluate, demo)

# ---- Further mode modules: one import line each, e.g. `from scripts import application_modes`. ----
from scripts import application_modes  # noqa: F401  # isort: skip  (denoise, edit, encode, decode, interpolate, anomaly)

from configs import ConfigError, load_config  # noqa: E402
from scripts.modes import MODES, ModeSpec  # noqa: E402  (filled by the imports above)
from training.checkpoint import require_checkpoints  # noqa: E402
from training.errors import UsageError, UserError  # noqa: E402
from training.sharding import maybe_initialize_distributed  # noqa: E402

flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, samples and evaluations.")

FLAGS = flags.FLAGS
COMMON_FLAGS = ("workdir",)
"""absl flags every mode takes (besides --config, --config.KEY=VALUE and --traceback)."""
HELP_ARGUMENTS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "help")
DEBUG_ENV = "SCORE_SDE_DEBUG"


class _QuietCheckpointing:
    """Drops orbax's per-save INFO chatter from the console, and the errors (with tracebacks) its
    background threads log when a save fails: `Checkpointer.check` reports that failure as one
    line. With `debug` only the INFO chatter is dropped."""

    debug = False

    def filter(self, record) -> bool:
        if "orbax" not in record.pathname:
            return True
        return record.levelno == python_logging.WARNING or (self.debug and record.levelno > python_logging.INFO)


_QUIET = _QuietCheckpointing()


def overview() -> str:
    """`score-sde --help`: the modes, one line each."""
    width = max(map(len, MODES))
    lines = ["usage: score-sde MODE --config=FILE --workdir=DIR [--config.SECTION.KEY=VALUE ...] [mode flags]",
             "", "Score-based generative modelling through SDEs. Modes:"]
    lines += [f"  {name:<{width}}  {spec.summary}" for name, spec in sorted(MODES.items())]
    lines += ["", "`score-sde MODE --help` lists a mode's flags. Errors are one line on stderr (exit 2: bad "
              f"usage, 1: run stopped); {DEBUG_ENV}=1 or --traceback shows the traceback."]
    return "\n".join(lines)


def _describe_flag(name: str) -> tuple[str, str]:
    flag = FLAGS[name]
    kind = flag.flag_type()
    value = f"--{name}" if kind == "bool" else f"--{name}={kind.upper()}"
    default = "" if flag.default in (None, "") else f" (default: {flag.default_as_str or flag.default})"
    return value, f"{flag.help}{default}"


def mode_help(mode: str) -> str:
    """`score-sde MODE --help`: the mode's summary and exactly the flags it takes."""
    spec = MODES[mode]
    config = "--config=FILE" if spec.needs_config else "[--config=FILE]"
    rows = [("--config=FILE", "Config file (Python, defines get_config())" +
             ("" if spec.needs_config else "; optional, a built-in default otherwise")),
            ("--config.SECTION.KEY=VALUE", "Override one config key (checked against its type and range)")]
    rows += [_describe_flag(name) for name in COMMON_FLAGS + spec.flags]
    rows += [("--traceback", f"On an error, show the Python traceback (or set {DEBUG_ENV}=1)")]
    width = max(len(flag) for flag, _ in rows)
    return "\n".join([f"usage: score-sde {mode} {config} --workdir=DIR [flags]", "", spec.summary, "", "flags:"]
                     + [f"  {flag:<{width}}  {text}" for flag, text in rows])


def _config_arguments(argv: list[str]) -> tuple[str | None, list[str], list[str]]:
    """The `--config` file, the `--config.<key>=value` overrides, and the other arguments of a
    command line (both `--flag=value` and `--flag value` spellings)."""
    path, overrides, rest = None, [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, sep, value = arg.partition("=")
        if name in ("--config", "-config") or name.startswith(("--config.", "-config.")):
            if not sep:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value ({name}=...)")
                i += 1
                value = argv[i]
            if name.lstrip("-") == "config":
                if path is not None:
                    raise UsageError(f"--config is given twice ({path!r} and {value!r})")
                path = value
            else:
                overrides.append(f"{name.lstrip('-')}={value}")
        else:
            rest.append(arg)
        i += 1
    return path, overrides, rest


def _mode_of(argv: list[str]) -> str:
    if len(argv) < 2 or argv[1].startswith("-"):
        raise UsageError(f"no mode given; modes: {', '.join(sorted(MODES))} (`score-sde --help` describes them)")
    mode = argv[1]
    if mode not in MODES:
        close = difflib.get_close_matches(mode, MODES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown mode {mode!r}{hint} Modes: {', '.join(sorted(MODES))}")
    return mode


def _parse_flags(mode: str, spec: ModeSpec, argv: list[str]) -> None:
    """Parse the absl flags of `argv` (fresh values each call) and refuse flags the mode does not take."""
    FLAGS.unparse_flags()
    try:
        positional = FLAGS(["score-sde", *argv])
    except flags.Error as error:
        raise UsageError(str(error).replace("\n", " ")) from None
    if len(positional) > 1:
        raise UsageError(f"unexpected arguments {positional[1:]} (flags are spelled --name=value)")
    mode_flags = {name for other in MODES.values() for name in other.flags}
    allowed = set(spec.flags) | set(COMMON_FLAGS)
    for name in sorted(mode_flags - allowed):
        if FLAGS[name].present:
            raise UsageError(f"--{name} is not a flag of mode {mode!r} (its flags: "
                             f"{', '.join('--' + f for f in COMMON_FLAGS + spec.flags)}; see `score-sde {mode} --help`)")


def _load_config(mode: str, spec: ModeSpec, path: str | None, overrides: list[str]):
    if path is None:
        if overrides:
            raise UsageError(f"--config.{overrides[0]} overrides a config, but no --config=FILE is given")
        if spec.needs_config:
            raise UsageError(f"mode {mode!r} needs --config=<config file>, e.g. --config=configs/digits.py")
        return None
    try:
        return load_config(path, overrides)
    except FileNotFoundError as error:
        raise UsageError(f"--config: {error}") from None


def _check_workdir(mode: str, spec: ModeSpec) -> pathlib.Path:
    if not FLAGS.workdir:
        raise UsageError(f"mode {mode!r} needs --workdir=<dir>")
    workdir = pathlib.Path(FLAGS.workdir)
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"--workdir={workdir} is a file, not a folder")
    if spec.reads_checkpoint:
        require_checkpoints(workdir)
    return workdir


def run(argv: list[str]) -> int:
    """Dispatch one command line (`argv[0]` is the program name); returns the exit status."""
    if len(argv) < 2 or argv[1] in HELP_ARGUMENTS:
        print(overview())
        return 0 if len(argv) >= 2 else 2
    mode = _mode_of(argv)
    spec = MODES[mode]
    if any(arg in HELP_ARGUMENTS for arg in argv[2:]):
        print(mode_help(mode))
        return 0
    path, overrides, rest = _config_arguments(argv[2:])
    _parse_flags(mode, spec, rest)
    config = _load_config(mode, spec, path, overrides)
    workdir = _check_workdir(mode, spec)
    logging.use_absl_handler()
    if FLAGS["verbosity"].using_default_value:  # as absl's app.run: INFO unless told otherwise
        FLAGS.verbosity = 0
    handler = logging.get_absl_handler().python_handler
    if _QUIET not in handler.filters:
        handler.addFilter(_QUIET)
    logging.info("score-sde %s, workdir %s", mode, workdir)
    maybe_initialize_distributed()  # every mode runs on all hosts of a cluster (JAX_* / SCORE_SDE_DISTRIBUTED)
    return spec.run(config, workdir) or 0


def _one_line(error: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message of an error ending a command."""
    text = " ".join(str(error).split())
    if isinstance(error, UserError):
        return error.exit_code, text
    if isinstance(error, ConfigError):
        return 2, f"invalid config: {text}"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return 1, f"{text} (the disk is full or a size limit is reached: free some space, then run again)"
    if isinstance(error, OSError):
        return 1, text
    return 1, (f"internal error {type(error).__name__}: {text} (a bug: rerun with {DEBUG_ENV}=1 or --traceback "
               "and report the traceback)")


@contextlib.contextmanager
def _quiet_background_errors(debug: bool):
    """Without `debug`, exceptions that background threads (orbax's savers, tensorstore's
    callbacks) would print as tracebacks are dropped: a failure that matters reaches the main
    thread and ends the command with its one line."""
    if debug:
        yield
        return
    hooks = sys.excepthook, threading.excepthook, sys.unraisablehook
    sys.excepthook = lambda *args: None
    threading.excepthook = sys.unraisablehook = lambda args: None
    yield
    # Kept quiet after an error: the process is ending, and threads of a failed save still run.
    sys.excepthook, threading.excepthook, sys.unraisablehook = hooks


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`score-sde`); `argv` defaults to `sys.argv`. Always ends in SystemExit."""
    argv = list(sys.argv if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--traceback" in argv
    _QUIET.debug = debug
    argv = [arg for arg in argv if arg != "--traceback"]
    prefix = f"score-sde {argv[1]}" if len(argv) > 1 and argv[1] in MODES else "score-sde"
    try:
        with _quiet_background_errors(debug):
            status = run(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prefix}: interrupted (Ctrl-C); checkpoints saved before are intact", file=sys.stderr)
        status = 130
    except Exception as error:  # noqa: BLE001 - the one place where errors become a line and a status
        if debug:
            raise
        status, message = _one_line(error)
        print(f"{prefix}: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
