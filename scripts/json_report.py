"""The output of the benchmark scripts: one JSON object on stdout, and the same text in a file
where `--output` names one (so a long run's result survives a lost terminal)."""
from __future__ import annotations

import json
import pathlib


def emit(result: dict, output: str | None = None) -> None:
    """Print `result` as indented JSON and, if `output` is given, write the same text there."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        pathlib.Path(output).write_text(text + "\n")
