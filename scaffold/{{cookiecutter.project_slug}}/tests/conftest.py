"""Test set-up: the app runs on embedded defaults{% if cookiecutter.database %} with a fresh SQLite database{% endif %}, no external service.

The environment is set before the application is imported, since the settings are read at import.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
{%- if cookiecutter.database %}
from alembic import command
from alembic.config import Config
{%- endif %}
from fastapi.testclient import TestClient

PROJECT_DIR = Path(__file__).resolve().parent.parent
_TEMP_DIR = tempfile.TemporaryDirectory(prefix="{{ cookiecutter.project_slug }}-tests-")

# No metrics server (the port may be taken), no Redis, no Sentry: the tests need nothing running.
os.environ["C2C__PROMETHEUS__PORT"] = ""
for _name in ("C2C__REDIS__URL", "C2C__REDIS__SENTINELS", "C2C__SENTRY__DSN", "SENTRY_DSN"):
    os.environ.pop(_name, None)
{%- if cookiecutter.database %}
os.environ["{{ cookiecutter.project_slug | upper }}__DATABASE__URL"] = f"sqlite+aiosqlite:///{_TEMP_DIR.name}/test.db"
os.environ["{{ cookiecutter.project_slug | upper }}__DATABASE__ALEMBIC_CONFIG"] = str(PROJECT_DIR / "alembic.ini")


@pytest.fixture(scope="session", autouse=True)
def _migrated_database() -> None:
    """Create the schema with the project's own migrations, as in production."""
    alembic_config = Config(str(PROJECT_DIR / "alembic.ini"))
    alembic_config.attributes["configure_logger"] = False
    command.upgrade(alembic_config, "head")
{%- endif %}


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client of the application, with its lifespan (startup and shutdown) run."""
    # Imported here, after the environment above is set: the settings are read at import.
    from {{ cookiecutter.project_slug }}.main import app  # noqa: PLC0415

    with TestClient(app) as test_client:
        yield test_client


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _TEMP_DIR.cleanup()
