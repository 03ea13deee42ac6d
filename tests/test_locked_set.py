"""The locked set of the gate (uv.lock): what scripts/test installs is the lock, while users keep ranges."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def locked_versions() -> dict[str, set[str]]:
    """Name -> the versions the lock holds for it (several when the resolution forks by Python version)."""
    versions: dict[str, set[str]] = {}
    for package in LOCK["package"]:
        if "registry" in package.get("source", {}):
            versions.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    return versions


def test_the_published_requirements_keep_ranges() -> None:
    """Pinning is the gate's business: the package's own requirements never pin a version."""
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    for text in requirements:
        assert not any(spec.operator in ("==", "===") for spec in Requirement(text).specifier), text


def test_the_lock_holds_every_requirement_with_hashes() -> None:
    """Every dependency, extra and test tool is in the lock, each from the index with a hash."""
    locked = locked_versions()
    project = PYPROJECT["project"]
    requirements = [*project["dependencies"], *PYPROJECT["dependency-groups"]["test"]]
    for extra in project["optional-dependencies"].values():
        requirements += extra
    for text in requirements:
        requirement = Requirement(text)
        assert canonicalize_name(requirement.name) in locked, text
        assert any(requirement.specifier.contains(version, prereleases=True)
                   for version in locked[canonicalize_name(requirement.name)]), text
    for package in LOCK["package"]:
        if "registry" in package.get("source", {}):
            files = [package.get("sdist", {}), *package.get("wheels", [])]
            assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", file["hash"]) for file in files if file), package["name"]


def test_the_gate_installs_the_lock() -> None:
    """scripts/test syncs main, 3.12 and 3.13 from the lock, and refuses a lock out of step with pyproject.toml."""
    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    assert re.search(r"uv\"? sync .*--locked", script)
    assert 'sync_locked .venv "$main_python"' in script
    assert 'sync_locked ".venv-$run"' in script
    assert os.access(ROOT / "scripts" / "refresh-lock", os.X_OK)


@pytest.mark.skipif(
    os.environ.get("C2C_TEST_LOCKED_SET") != "1", reason="runs in the locked runs of scripts/test (main, 3.12, 3.13)"
)
def test_this_environment_is_the_locked_set() -> None:
    """Every installed distribution that the lock knows is at a locked version: nothing resolved on the day."""
    locked = locked_versions()
    seen = 0
    for distribution in metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        if name in locked:
            seen += 1
            assert distribution.version in locked[name], f"{name} {distribution.version} is not the locked one"
    assert seen >= 60  # the package's dependencies, its extras and the test tools
