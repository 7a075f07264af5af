"""The locks that make installs reproducible: each one pins every package exactly, and still satisfies the
ranges it was generated from (a range changed without `make lock` fails here, not on someone's machine)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.infrastructure

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        assert match, f"{path.name}: {line!r} is not an exact pin"
        name = canonicalize_name(match[1])
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = match[2]
    return pins


def _unsatisfied(requirements: list[str], pins: dict[str, str]) -> list[str]:
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
    return problems


def test_python_lock_pins_every_project_requirement_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / "requirements.lock")
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    assert _unsatisfied(wanted, pins) == []
    # What `make install` builds the editable project with (--no-build-isolation).
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert _unsatisfied(build, pins) == []
    assert "pip" in pins


def test_bundle_lock_pins_every_lambda_requirement_within_its_range():
    source = ROOT / "lambda_src" / "requirements.txt"
    wanted = [line.strip() for line in source.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert _unsatisfied(wanted, _pins(ROOT / "lambda_src" / "requirements.lock")) == []


def test_npm_tools_are_exact_versions_and_locked():
    package = json.loads((ROOT / ".tools" / "package.json").read_text())
    lock = json.loads((ROOT / ".tools" / "package-lock.json").read_text())
    wanted = package["devDependencies"]
    assert {"aws-cdk", "@anthropic-ai/claude-code"} <= set(wanted)
    for name, version in wanted.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: {version!r} is not an exact version"
        entry = lock["packages"][f"node_modules/{name}"]
        assert entry["version"] == version and entry["integrity"].startswith("sha512-")
    assert lock["packages"][""]["devDependencies"] == wanted


def test_makefile_reinstalls_when_a_lock_changes():
    makefile = (ROOT / "Makefile").read_text()
    venv_rule = re.search(r"^\$\(BIN\)/\.installed:(.*)$", makefile, re.M)
    tools_rule = re.search(r"^\$\(TOOLS_STAMP\):(.*)$", makefile, re.M)
    assert venv_rule and "requirements.lock" in venv_rule[1].split()
    assert tools_rule and ".tools/package-lock.json" in tools_rule[1].split()
    assert "npm ci" in makefile and "--no-deps -r requirements.lock" in makefile
