"""The lock files agree with pyproject.toml and with each other: the image installs
requirements/runtime.lock, CI installs requirements/dev.lock, so both must pin the same versions
of what the product runs, and every declared dependency must be pinned (`make lock` re-resolves)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    """Package name -> pinned version of a lock file."""
    text = (ROOT / "requirements" / lock).read_text()
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


def declared(*extras: str) -> list[Requirement]:
    """The dependencies pyproject.toml declares (the base ones plus `extras`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return [Requirement(text) for text in requirements]


def unmet(requirements: list[Requirement], locked: dict[str, str]) -> list[str]:
    """Requirements the lock does not pin, or pins outside their version range."""
    problems = []
    for requirement in requirements:
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement} is not locked")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} is locked at {version}")
    return problems


def test_the_runtime_lock_pins_every_product_dependency() -> None:
    assert unmet(declared(), pins("runtime.lock")) == []


def test_the_dev_lock_pins_every_dependency_of_every_extra() -> None:
    assert unmet(declared("dev", "local"), pins("dev.lock")) == []


def test_ci_and_the_image_run_the_same_versions() -> None:
    dev, runtime = pins("dev.lock"), pins("runtime.lock")
    differ = {name: (version, dev.get(name)) for name, version in runtime.items()}
    assert {name: pair for name, pair in differ.items() if pair[0] != pair[1]} == {}
