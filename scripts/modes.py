"""The table of CLI modes: what each mode runs, says of itself, and which flags it takes.

A mode module registers its functions with
`@register_mode("name", summary="one line for --help", flags=("flag_a", "flag_b"))`, naming
the absl flags the mode reads (defined in that module); `scripts/main.py` imports each mode
module once, which fills the table. A flag given to a mode that does not list it is a usage
error, and `score-sde MODE --help` lists exactly these flags, so adding a flag to a mode is
one name in its `flags` tuple.
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import ml_collections

Mode = Callable[[ml_collections.ConfigDict | None, pathlib.Path], int | None]
"""`mode(config, workdir) -> exit status (None for 0)`; config is None when --config was not given."""


@dataclasses.dataclass(frozen=True)
class ModeSpec:
    """A CLI mode: `run(config, workdir)`, its one-line `summary`, the absl `flags` it reads,
    whether it needs `--config`, and whether it reads a trained checkpoint of the workdir
    (checked before any work, so a typo'd workdir fails at once and nothing is created)."""

    run: Mode
    summary: str
    flags: tuple[str, ...] = ()
    needs_config: bool = True
    reads_checkpoint: bool = False


MODES: dict[str, ModeSpec] = {}


def register_mode(name: str, *, summary: str, flags: tuple[str, ...] = (), needs_config: bool = True,
                  reads_checkpoint: bool = False) -> Callable[[Mode], Mode]:
    def register(fn: Mode) -> Mode:
        if name in MODES:
            raise ValueError(f"CLI mode {name!r} is registered twice ({MODES[name].run.__module__} and {fn.__module__})")
        MODES[name] = ModeSpec(fn, summary, tuple(flags), needs_config, reads_checkpoint)
        return fn

    return register
