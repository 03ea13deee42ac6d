"""The distribution as a user gets it: the sdist and the wheel built from this checkout, unpacked.

Both are built once with ``python -m build --no-isolation`` (hatchling and its readme plugin come with the
``test`` dependency group), then checked file by file against the checkout, and their metadata read.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import c2casgiutils

ROOT = Path(__file__).resolve().parent.parent
VERSION = c2casgiutils.__version__
# Top-level folders the sdist ships whole, and files it ships; hatchling adds PKG-INFO, pyproject.toml and
# .gitignore (building the wheel from the sdist reads it).
SDIST_FOLDERS = {"c2casgiutils", "docs", "examples", "scaffold"}
SDIST_FILES = {"README.md", "CHANGELOG.md", "LICENSE", "PKG-INFO", "pyproject.toml", ".gitignore"}
# Test-only packages: in the `test` dependency group, never in the published metadata.
TEST_ONLY = {"pytest", "pytest-asyncio", "playwright", "django", "responder", "flask", "hypothesis", "cookiecutter"}


def source_files(folder: Path) -> set[str]:
    """Files of a folder of the checkout as a distribution holds them (no bytecode caches)."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@dataclass
class Dist:
    sdist: Path
    wheel: Path
    sdist_root: Path  # the sdist unpacked
    sdist_names: set[str]  # paths inside the sdist, without its top folder
    wheel_names: set[str]

    def metadata(self) -> Message:
        with zipfile.ZipFile(self.wheel) as wheel:
            text = wheel.read(f"c2casgiutils-{VERSION}.dist-info/METADATA").decode()
        return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sdist = out / f"c2casgiutils-{VERSION}.tar.gz"
    wheel = out / f"c2casgiutils-{VERSION}-py3-none-any.whl"
    unpacked = out / "unpacked"
    with tarfile.open(sdist) as archive:
        top = f"c2casgiutils-{VERSION}/"
        names = set()
        for member in archive.getmembers():
            assert member.name.startswith(top), member.name
            if member.isfile():
                names.add(member.name.removeprefix(top))
        archive.extractall(unpacked, filter="data")
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = set(archive.namelist())
    return Dist(sdist, wheel, unpacked / top.rstrip("/"), names, wheel_names)


def test_sdist_holds_exactly_the_shipped_folders_and_files(dist: Dist) -> None:
    top_level = {name.split("/", 1)[0] for name in dist.sdist_names}
    assert top_level == SDIST_FOLDERS | SDIST_FILES
    for folder in SDIST_FOLDERS:
        shipped = {name for name in dist.sdist_names if name.startswith(folder + "/")}
        assert shipped == source_files(ROOT / folder), f"{folder}/ is not shipped complete"
    # A README.md only at the top or inside its own shipped folder (no stray copy without its folder).
    for name in dist.sdist_names:
        if name.endswith("README.md"):
            assert name == "README.md" or name.split("/", 1)[0] in SDIST_FOLDERS, name


def test_license_is_in_the_repository_the_sdist_and_the_wheel(dist: Dist) -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 2-Clause License")
    assert "Redistributions in binary form must reproduce" in text
    assert (dist.sdist_root / "LICENSE").read_text(encoding="utf-8") == text
    with zipfile.ZipFile(dist.wheel) as wheel:
        assert wheel.read(f"c2casgiutils-{VERSION}.dist-info/licenses/LICENSE").decode() == text
    metadata = dist.metadata()
    assert metadata["License-Expression"] == "BSD-2-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]


def test_wheel_holds_the_package_with_its_assets(dist: Dist) -> None:
    package = {name for name in dist.wheel_names if not name.startswith(f"c2casgiutils-{VERSION}.dist-info/")}
    assert package == source_files(ROOT / "c2casgiutils")
    for name in ["c2casgiutils/py.typed", "c2casgiutils/static/c2c.js", "c2casgiutils/templates/index.html"]:
        assert name in package


def test_metadata_has_no_test_dependency_and_no_foreign_repository(dist: Dist) -> None:
    metadata = dist.metadata()
    required = {
        re.split(r"[\s\[<>=~!;]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.get_all("Requires-Dist") or []
    }
    assert not required & TEST_ONLY
    assert "test" not in (metadata.get_all("Provides-Extra") or [])
    assert not metadata.get_all("Project-URL")
    assert not metadata.get("Home-page")
    # The test tools are a PEP 735 group that scripts/test installs.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    group = {
        re.split(r"[\s\[<>=~!;]", item, maxsplit=1)[0].lower()
        for item in pyproject["dependency-groups"]["test"]
        if isinstance(item, str)
    }
    assert group >= TEST_ONLY
    assert "--group test" in (ROOT / "scripts" / "test").read_text(encoding="utf-8")


def test_classifiers_match_the_python_versions_the_tests_run_on(dist: Dist) -> None:
    classified = {
        value.rsplit(" :: ", 1)[1]
        for value in dist.metadata().get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", value)
    }
    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    assert "find_python 3.11" in script  # the main run
    tested = {"3.11", *re.findall(r"\.venv-(3\.\d+)", script)}
    assert classified == tested == {"3.11", "3.12", "3.13"}


def test_index_page_is_the_readme_for_a_reader_of_the_index(dist: Dist) -> None:
    metadata = dist.metadata()
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # The checkout reader's two commands open README.md; the index page opens with what the package is.
    assert readme.startswith("# c2casgiutils\n\n```bash\n./scripts/demo")
    assert description.startswith("# c2casgiutils\n\n**c2casgiutils** is")
    assert "./scripts/" not in description.split("## Install")[0]
    for section in ["## Install", "## Use", "pip install", "c2casgiutils.startup(main_app)"]:
        assert section in description
    # Every link resolves on the index page: absolute, or none at all.
    links = re.findall(r"\]\(([^)]*)\)", description)
    assert all(link.startswith(("https://", "http://")) for link in links), links
    assert "github.com/camptocamp" not in description


def test_twine_check_strict_passes(dist: Dist) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist.sdist), str(dist.wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scaffold_of_the_unpacked_sdist_generates_a_project(dist: Dist, tmp_path: Path) -> None:
    """The sdist's scaffold/ is complete: cookiecutter generates from it as from a checkout."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            str(tmp_path),
            str(dist.sdist_root / "scaffold"),
            "project_slug=from_sdist",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    project = tmp_path / "from_sdist"
    for name in ["pyproject.toml", "README.md", "Dockerfile", "from_sdist/main.py", "alembic.ini"]:
        assert (project / name).is_file(), name
