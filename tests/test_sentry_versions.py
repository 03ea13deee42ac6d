"""The supported sentry-sdk releases: a release outside them is refused with a clear error, never left unscrubbed."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from c2casgiutils import sentry as c2c_sentry
from tests.fake_sentry import ROOT, FakeSentry, run_script

# The first release of the 3.x series, whose data_collection replaced the EventScrubber.
SENTRY_3 = "sentry-sdk==3.0.0"

SCRIPT = """
import sentry_sdk
from c2casgiutils import sentry
print("sentry-sdk", sentry_sdk.VERSION)
try:
    sentry.init()
except sentry.UnsupportedSentryError as error:
    print("REFUSED:", error)
else:
    print("ACCEPTED")
"""


def test_the_declared_range_is_the_one_the_code_checks() -> None:
    """pyproject's sentry extra (and ``all``) and the error message name the same range."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for extra in ("sentry", "all"):
        (requirement,) = [Requirement(text) for text in extras[extra] if text.startswith("sentry-sdk")]
        assert str(requirement.specifier) == str(Requirement(f"sentry-sdk{c2c_sentry.SUPPORTED_VERSIONS}").specifier)
        assert "3.0.0" not in requirement.specifier
        assert "2.20" in requirement.specifier


@pytest.mark.slow
def test_sentry_sdk_3_is_refused_with_the_supported_range(tmp_path: Path, fake_sentry: FakeSentry) -> None:
    """A real sentry-sdk 3 (installed from the package index beside the test's environment) stops ``init()``.

    Its first import would otherwise fail deep inside the scrubber module, or, worse, a release that kept the name
    with another meaning would send events unscrubbed.
    """
    # The test environment (uv sync) has no pip: a throwaway venv's own pip fetches the release into a folder.
    installer = tmp_path / "installer"
    subprocess.run([sys.executable, "-m", "venv", str(installer)], check=True, timeout=120)
    target = tmp_path / "sentry3"
    install = subprocess.run(
        [str(installer / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", "--target", str(target), SENTRY_3],
        capture_output=True, text=True, timeout=300, check=False,
        env={key: value for key, value in os.environ.items() if key not in ("PIP_CONSTRAINT", "PIP_REQUIRE_HASHES")},
    )
    assert install.returncode == 0, install.stderr
    result = run_script(SCRIPT, {"C2C__SENTRY__DSN": fake_sentry.dsn()}, path=[target])
    assert result.returncode == 0, result.stderr
    assert "sentry-sdk 3.0.0" in result.stdout
    assert "REFUSED: Sentry: sentry-sdk 3.0.0 is installed; c2casgiutils supports sentry-sdk>=2.20,<3" in result.stdout
    assert "C2C__SENTRY__DSN" in result.stdout
    assert fake_sentry.events == []


def test_the_installed_sentry_sdk_is_accepted(fake_sentry: FakeSentry) -> None:
    """The same script with the environment's own sentry-sdk (2.x, from the lock or the floors) initialises."""
    result = run_script(SCRIPT, {"C2C__SENTRY__DSN": fake_sentry.dsn()})
    assert result.returncode == 0, result.stderr
    assert "ACCEPTED" in result.stdout
