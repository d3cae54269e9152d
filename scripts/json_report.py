"""The output of the benchmark scripts: one JSON object on stdout, and the same text in a file
where `--output` names one (so a long run's result survives a lost terminal)."""
from __future__ import annotations

import json
import pathlib


def write(result: dict, output: str | None) -> None:
    """Write `result` as indented JSON to `output` (nothing if None): also for partial results,
    written after each case of a long run so that a killed run keeps what it measured."""
    if output:
        pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")


def emit(result: dict, output: str | None = None) -> None:
    """Print `result` as indented JSON and, if `output` is given, write the same text there."""
    print(json.dumps(result, indent=2))
    write(result, output)
