"""The table of CLI modes: `MODES[name](config, workdir)`.

A mode module registers its functions with `@register_mode("name")`; `scripts/main.py` imports
each mode module once, which is what fills the table.
"""
from __future__ import annotations

import pathlib
from collections.abc import Callable

import ml_collections

Mode = Callable[[ml_collections.ConfigDict | None, pathlib.Path], int | None]
"""`mode(config, workdir) -> exit status (None for 0)`; config is None when --config was not given."""

MODES: dict[str, Mode] = {}


def register_mode(name: str) -> Callable[[Mode], Mode]:
    def register(fn: Mode) -> Mode:
        if name in MODES:
            raise ValueError(f"CLI mode {name!r} is registered twice ({MODES[name].__module__} and {fn.__module__})")
        MODES[name] = fn
        return fn

    return register
