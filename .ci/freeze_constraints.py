"""Print constraints.txt: the installed versions of the project's dependencies and of everything they
pull in, for the current environment (run it in a venv where the full suite passed).

    python .ci/freeze_constraints.py > constraints.txt
    python .ci/freeze_constraints.py --minimum     # setup.cfg's lower bounds as pins (.ci/minimum_versions)

Unlike `pip freeze`, packages the project does not need (tools installed beside it) are left out.
Needs only `packaging` (installed with the test extra).
"""
import configparser
import importlib.metadata
import pathlib
import re
import sys

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = """\
# Tested versions: the project's dependencies (setup.cfg install_requires and the test extra, with
# everything they pull in) as installed in the environment the full suite last passed in (Python {python}).
# Used as pip constraints: `pip install -c constraints.txt -e ".[test]"`. Refresh after a green run with
# `python .ci/freeze_constraints.py > constraints.txt`."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["test"].splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def closure(requirements: list[Requirement]) -> dict[str, importlib.metadata.Distribution]:
    """Installed distributions reachable from `requirements` (markers evaluated here, with extras)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    stack = [(r.name, set(r.extras)) for r in requirements]
    while stack:
        name, extras = stack.pop()
        key = _canonical(name)
        if key in found and extras <= extras_seen[key]:
            continue
        dist = importlib.metadata.distribution(name)
        found[key] = dist
        extras_seen[key] = extras_seen.get(key, set()) | extras
        for line in dist.requires or []:
            req = Requirement(line)
            active = req.marker is None or any(
                req.marker.evaluate({**default_environment(), "extra": extra}) for extra in extras_seen[key] | {""})
            if active:
                stack.append((req.name, set(req.extras)))
    return found


def minimum_pins(requirements: list[Requirement]) -> list[str]:
    """`name==v` for each `name>=v` (the declared minimum of every direct dependency)."""
    pins = []
    for req in requirements:
        lower = [spec.version for spec in req.specifier if spec.operator == ">="]
        if len(lower) != 1:
            raise ValueError(f"{req} must declare exactly one lower bound (>=)")
        pins.append(f"{req.name}=={lower[0]}")
    return pins


def main() -> None:
    if sys.argv[1:] == ["--minimum"]:
        print("\n".join(minimum_pins(direct_requirements())))
        return
    dists = closure(direct_requirements())
    print(HEADER.format(python=".".join(map(str, sys.version_info[:2]))))
    for dist in sorted(dists.values(), key=lambda d: _canonical(d.metadata["Name"])):
        print(f"{dist.metadata['Name']}=={dist.version}")


if __name__ == "__main__":
    main()
