"""Every setting is read from its C2C__ variable; invalid values stop start-up with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from c2casgiutils import config
from c2casgiutils.config import SettingsError, load_settings
from tests.settings_tables import FROM_ENVIRONMENT, SPEC_DEFAULTS

ROOT = Path(__file__).parent.parent


def _get(settings: config.Settings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("C2C__") or name == "SENTRY_DSN":
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("path", "expected"), SPEC_DEFAULTS)
def test_defaults_are_the_specified_ones(path: str, expected: Any) -> None:
    assert _get(load_settings(), path) == expected


def test_sentry_project_root_defaults_to_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().sentry.project_root == str(tmp_path)


@pytest.mark.parametrize(("variable", "value", "path", "expected"), FROM_ENVIRONMENT)
def test_setting_read_from_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, path: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, value)
    if variable == "C2C__REDIS__SENTINELS":
        monkeypatch.setenv("C2C__REDIS__SERVICENAME", "mymaster")
    assert _get(load_settings(), path) == expected


def test_several_sentry_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2C__SENTRY__TAG_SERVICE", "api")
    monkeypatch.setenv("C2C__SENTRY__TAG_Team", "geo")
    assert load_settings().sentry.tags == {"service": "api", "team": "geo"}


INVALID = [
    ("C2C__REDIS__DB", "abc", "valid integer"),
    ("C2C__REDIS__DB", "-1", "greater than or equal to 0"),
    ("C2C__REDIS__OPTIONS", "socket_timeout", "key=value"),
    ("C2C__REDIS__SENTINELS", "host-without-port", "host:port"),
    ("C2C__PROMETHEUS__PORT", "70000", "less than or equal to 65535"),
    ("C2C__SENTRY__SAMPLE_RATE", "2", "less than or equal to 1"),
    ("C2C__SENTRY__DEBUG", "maybe", "valid boolean"),
    ("C2C__SENTRY__MAX_REQUEST_BODY_SIZE", "huge", "'never', 'small', 'medium' or 'always'"),
    ("C2C__AUTH__JWT__ALGORITHM", "none", "'HS256', 'HS384' or 'HS512'"),
    ("C2C__AUTH__JWT__COOKIE__AGE", "forever", "ISO-8601"),
    ("C2C__AUTH__JWT__COOKIE__AGE", "10 minutes", "ISO-8601"),
    ("C2C__AUTH__JWT__COOKIE__AGE", "P", "ISO-8601"),
    ("C2C__AUTH__JWT__COOKIE__AGE", "PT", "ISO-8601"),
    ("C2C__AUTH__JWT__COOKIE__AGE", "-5", "ISO-8601"),
    ("C2C__AUTH__JWT__COOKIE__AGE", "", "ISO-8601"),
    ("C2C__AUTH__JWT__COOKIE__SAME_SITE", "sometimes", "'lax', 'strict' or 'none'"),
    ("C2C__AUTH__GITHUB__STATE_COOKIE_AGE", "ten", "ISO-8601"),
    ("C2C__AUTH__GITHUB__ACCESS_TYPE", "write", "'pull', 'push' or 'admin'"),
    ("C2C__AUTH__GITHUB__REPOSITORY", "not a repo", "owner/name"),
    ("C2C__PROXY_HEADERS__TYPE", "x-real-ip", "'none', 'x-forwarded' or 'forwarded'"),
    ("C2C__PROXY_HEADERS__TRUSTED_HOSTS", "[not json", "JSON"),
    ("C2C__HTTP", "perhaps", "valid boolean"),
    ("C2C__ROUTE_PREFIX", "/a b/", "path"),
    ("C2C__BROADCAST__SECRET", "", "at least 1 character"),
    ("C2C__SHUTDOWN__DRAIN_DELAY", "soon", "ISO-8601"),
    ("C2C__SHUTDOWN__DRAIN_DELAY", "-1", "ISO-8601"),
    ("C2C__SHUTDOWN__DRAIN_DELAY", "PT11M", "at most 600 seconds"),
]


@pytest.mark.parametrize(("variable", "value", "accepted"), INVALID)
def test_invalid_value_names_the_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert variable in message
    assert accepted in message


def test_sentinels_without_servicename_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2C__REDIS__SENTINELS", "127.0.0.1:26379")
    with pytest.raises(SettingsError, match="C2C__REDIS__SERVICENAME"):
        load_settings()


def test_url_and_sentinels_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Sentinel would win and the URL (and its password) would be silently ignored.
    monkeypatch.setenv("C2C__REDIS__URL", "redis://:s3cret-pw@127.0.0.1:6379/0")
    monkeypatch.setenv("C2C__REDIS__SENTINELS", "127.0.0.1:26379")
    monkeypatch.setenv("C2C__REDIS__SERVICENAME", "mymaster")
    with pytest.raises(SettingsError, match="C2C__REDIS__URL and C2C__REDIS__SENTINELS are both set") as raised:
        load_settings()
    assert "s3cret-pw" not in str(raised.value)
    monkeypatch.delenv("C2C__REDIS__URL")
    assert load_settings().redis.sentinels == "127.0.0.1:26379"


def test_several_errors_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2C__REDIS__DB", "x")
    monkeypatch.setenv("C2C__HTTP", "x")
    message = str(pytest.raises(SettingsError, load_settings).value)
    assert "C2C__REDIS__DB" in message
    assert "C2C__HTTP" in message


def test_invalid_value_stops_the_import_of_the_package() -> None:
    """Start-up (the first import) fails with the message, not a traceback deep in pydantic."""
    result = subprocess.run(
        [sys.executable, "-c", "import c2casgiutils"],
        env={"PATH": "/usr/bin:/bin", "C2C__AUTH__JWT__COOKIE__AGE": "sometime"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "C2C__AUTH__JWT__COOKIE__AGE" in result.stderr
    assert "ISO-8601" in result.stderr


def test_durations_serialize_as_seconds() -> None:
    dumped = load_settings().model_dump(mode="json")
    assert dumped["auth"]["jwt"]["cookie"]["age"] == 7 * 24 * 3600


def test_settings_doc_is_up_to_date() -> None:
    """docs/settings.md is generated from the model: regenerate it when the model changes."""
    from c2casgiutils import settings_doc

    expected = settings_doc.render()
    current = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    regenerate = "python -m c2casgiutils.settings_doc > docs/settings.md"
    assert current == expected, f"docs/settings.md is stale: run `{regenerate}`"


def test_settings_doc_lists_every_variable() -> None:
    from c2casgiutils import settings_doc

    text = settings_doc.render()
    for variable, *_ in FROM_ENVIRONMENT:
        if "TAG_" in variable:
            continue
        assert f"`{variable.upper()}`" in text


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("10", 10.0), ("PT15S", 15.0), ("2.5", 2.5)])
def test_drain_delay_is_a_duration(monkeypatch: pytest.MonkeyPatch, value: str, seconds: float) -> None:
    monkeypatch.setenv("C2C__SHUTDOWN__DRAIN_DELAY", value)
    assert load_settings().shutdown.drain_delay.total_seconds() == seconds
