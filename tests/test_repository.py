"""The repository's promises to a new user: README's two commands with the tested versions, CI running the
second, constraints within the declared bounds, the declared minimum versions (slow), LICENSE and NOTICE."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_gives_exactly_two_commands_near_the_top():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "score-sde demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def _freeze_script():
    """`.ci/freeze_constraints.py` as a module (it is a CI tool, not part of a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("freeze_constraints", ROOT / ".ci" / "freeze_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_readme_commands_install_the_tested_versions():
    for command in _readme_commands():
        assert "pip install -q -c constraints.txt -e " in command, command


def test_constraints_pin_every_dependency_within_its_declared_bounds():
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[_freeze_script()._canonical(requirement.name)] = spec.version
    for requirement in _freeze_script().direct_requirements():
        version = pins.get(_freeze_script()._canonical(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(version), f"{requirement.name}=={version} violates {requirement}"


def test_minimum_pins_are_the_declared_lower_bounds():
    pins = _freeze_script().minimum_pins(_freeze_script().direct_requirements())
    assert "jax==0.4.35" in pins and "numpy==1.26" in pins
    assert len(pins) == len(_freeze_script().direct_requirements())


def test_license_is_apache_2_with_a_notice_crediting_score_sde():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    assert "license = Apache-2.0" in (ROOT / "setup.cfg").read_text()
    notice = (ROOT / "NOTICE").read_text()
    assert "https://github.com/yang-song/score_sde" in notice and "Yang Song" in notice


@pytest.mark.slow
def test_declared_minimum_versions_install_and_pass_a_smoke_test(tmp_path):
    """`.ci/minimum_versions`: a fresh venv with setup.cfg's minimum versions (downloads from PyPI)."""
    import subprocess

    result = subprocess.run([str(ROOT / ".ci" / "minimum_versions"), str(tmp_path / "venv")], cwd=ROOT,
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
