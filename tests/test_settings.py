"""Every setting is read from its C2C__ variable; invalid values stop start-up with a clear message."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from c2casgiutils import config
from c2casgiutils.config import GitHubAccessType, SettingsError, load_settings

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


SPEC_DEFAULTS = [
    ("redis.url", None),
    ("redis.options", {}),
    ("redis.sentinels", None),
    ("redis.servicename", None),
    ("redis.db", 0),
    ("redis.broadcast_prefix", "broadcast_api_"),
    ("prometheus.prefix", "c2casgiutils_"),
    ("prometheus.port", 9000),
    ("sentry.dsn", None),
    ("sentry.debug", False),
    ("sentry.release", None),
    ("sentry.environment", "production"),
    ("sentry.dist", None),
    ("sentry.sample_rate", 1.0),
    ("sentry.ignore_errors", []),
    ("sentry.max_breadcrumbs", 100),
    ("sentry.attach_stacktrace", False),
    ("sentry.send_default_pii", None),
    ("sentry.event_scrubber", None),
    ("sentry.include_source_context", True),
    ("sentry.include_local_variables", True),
    ("sentry.add_full_stack", False),
    ("sentry.max_stack_frames", 100),
    ("sentry.server_name", None),
    ("sentry.in_app_include", []),
    ("sentry.in_app_exclude", []),
    ("sentry.max_request_body_size", "medium"),
    ("sentry.max_value_length", 1024),
    ("sentry.ca_certs", None),
    ("sentry.send_client_reports", True),
    ("sentry.tags", {}),
    ("auth.jwt.secret", None),
    ("auth.jwt.algorithm", "HS256"),
    ("auth.jwt.cookie.name", "c2c-jwt-auth"),
    ("auth.jwt.cookie.age", timedelta(days=7)),
    ("auth.jwt.cookie.same_site", "lax"),
    ("auth.jwt.cookie.secure", True),
    ("auth.jwt.cookie.path", None),
    ("auth.secret", None),
    ("auth.github.repository", None),
    ("auth.github.access_type", GitHubAccessType.PULL),
    ("auth.github.authorize_url", "https://github.com/login/oauth/authorize"),
    ("auth.github.token_url", "https://github.com/login/oauth/access_token"),
    ("auth.github.user_url", "https://api.github.com/user"),
    ("auth.github.repo_url", "https://api.github.com/repos"),
    ("auth.github.client_id", None),
    ("auth.github.client_secret", None),
    ("auth.github.scope", "repo"),
    ("auth.github.proxy_url", None),
    ("auth.github.state_cookie", "c2c-state"),
    ("auth.github.state_cookie_age", timedelta(minutes=10)),
    ("auth.test.username", None),
    ("tools.logging.redis_prefix", "c2c_logging_level_"),
    ("tools.logging.application_module", "c2casgiutils"),
    ("proxy_headers.type", "none"),
    ("proxy_headers.trusted_hosts", ["127.0.0.1"]),
    ("http", False),
    ("route_prefix", "/"),
]


@pytest.mark.parametrize(("path", "expected"), SPEC_DEFAULTS)
def test_defaults_are_the_specified_ones(path: str, expected: Any) -> None:
    assert _get(load_settings(), path) == expected


def test_sentry_project_root_defaults_to_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().sentry.project_root == str(tmp_path)


FROM_ENVIRONMENT = [
    ("C2C__REDIS__URL", "redis://:pw@127.0.0.1:6379/1", "redis.url", "redis://:pw@127.0.0.1:6379/1"),
    ("C2C__REDIS__OPTIONS", "socket_timeout=5,ssl=True,name=x", "redis.options",
     {"socket_timeout": 5, "ssl": True, "name": "x"}),
    ("C2C__REDIS__OPTIONS", '{"retry_on_timeout": true}', "redis.options", {"retry_on_timeout": True}),
    ("C2C__REDIS__SENTINELS", "10.0.0.1:26379,sentinel-2:26379", "redis.sentinels", "10.0.0.1:26379,sentinel-2:26379"),
    ("C2C__REDIS__DB", "3", "redis.db", 3),
    ("C2C__REDIS__BROADCAST_PREFIX", "bc_", "redis.broadcast_prefix", "bc_"),
    ("C2C__PROMETHEUS__PREFIX", "svc_", "prometheus.prefix", "svc_"),
    ("C2C__PROMETHEUS__PORT", "9100", "prometheus.port", 9100),
    ("C2C__PROMETHEUS__PORT", "", "prometheus.port", None),
    ("C2C__SENTRY__DSN", "https://key@sentry.example/1", "sentry.dsn", "https://key@sentry.example/1"),
    ("C2C__SENTRY__DEBUG", "true", "sentry.debug", True),
    ("C2C__SENTRY__RELEASE", "1.2.3", "sentry.release", "1.2.3"),
    ("C2C__SENTRY__ENVIRONMENT", "staging", "sentry.environment", "staging"),
    ("C2C__SENTRY__DIST", "x86", "sentry.dist", "x86"),
    ("C2C__SENTRY__SAMPLE_RATE", "0.25", "sentry.sample_rate", 0.25),
    ("C2C__SENTRY__IGNORE_ERRORS", "KeyError, ValueError", "sentry.ignore_errors", ["KeyError", "ValueError"]),
    ("C2C__SENTRY__IGNORE_ERRORS", '["KeyError"]', "sentry.ignore_errors", ["KeyError"]),
    ("C2C__SENTRY__MAX_BREADCRUMBS", "10", "sentry.max_breadcrumbs", 10),
    ("C2C__SENTRY__ATTACH_STACKTRACE", "1", "sentry.attach_stacktrace", True),
    ("C2C__SENTRY__SEND_DEFAULT_PII", "false", "sentry.send_default_pii", False),
    ("C2C__SENTRY__EVENT_SCRUBBER", "x-token", "sentry.event_scrubber", "x-token"),
    ("C2C__SENTRY__INCLUDE_SOURCE_CONTEXT", "false", "sentry.include_source_context", False),
    ("C2C__SENTRY__INCLUDE_LOCAL_VARIABLES", "false", "sentry.include_local_variables", False),
    ("C2C__SENTRY__ADD_FULL_STACK", "true", "sentry.add_full_stack", True),
    ("C2C__SENTRY__MAX_STACK_FRAMES", "50", "sentry.max_stack_frames", 50),
    ("C2C__SENTRY__SERVER_NAME", "node-1", "sentry.server_name", "node-1"),
    ("C2C__SENTRY__PROJECT_ROOT", "/app", "sentry.project_root", "/app"),
    ("C2C__SENTRY__IN_APP_INCLUDE", "myapp,lib", "sentry.in_app_include", ["myapp", "lib"]),
    ("C2C__SENTRY__IN_APP_EXCLUDE", "vendor", "sentry.in_app_exclude", ["vendor"]),
    ("C2C__SENTRY__MAX_REQUEST_BODY_SIZE", "always", "sentry.max_request_body_size", "always"),
    ("C2C__SENTRY__MAX_VALUE_LENGTH", "2048", "sentry.max_value_length", 2048),
    ("C2C__SENTRY__CA_CERTS", "/etc/ca.pem", "sentry.ca_certs", "/etc/ca.pem"),
    ("C2C__SENTRY__SEND_CLIENT_REPORTS", "false", "sentry.send_client_reports", False),
    ("C2C__SENTRY__TAG_SERVICE", "my-service", "sentry.tags", {"service": "my-service"}),
    ("C2C__AUTH__SECRET", "s3cret", "auth.secret", "s3cret"),
    ("C2C__AUTH__JWT__SECRET", "x" * 40, "auth.jwt.secret", "x" * 40),
    ("C2C__AUTH__JWT__ALGORITHM", "HS512", "auth.jwt.algorithm", "HS512"),
    ("C2C__AUTH__JWT__COOKIE__NAME", "admin", "auth.jwt.cookie.name", "admin"),
    ("C2C__AUTH__JWT__COOKIE__AGE", "3600", "auth.jwt.cookie.age", timedelta(hours=1)),
    ("C2C__AUTH__JWT__COOKIE__AGE", "PT10M", "auth.jwt.cookie.age", timedelta(minutes=10)),
    ("C2C__AUTH__JWT__COOKIE__AGE", "P7D", "auth.jwt.cookie.age", timedelta(days=7)),
    ("C2C__AUTH__JWT__COOKIE__AGE", "P1DT2H30M", "auth.jwt.cookie.age", timedelta(days=1, hours=2, minutes=30)),
    ("C2C__AUTH__JWT__COOKIE__SAME_SITE", "strict", "auth.jwt.cookie.same_site", "strict"),
    ("C2C__AUTH__JWT__COOKIE__SECURE", "false", "auth.jwt.cookie.secure", False),
    ("C2C__AUTH__JWT__COOKIE__PATH", "/c2c/", "auth.jwt.cookie.path", "/c2c/"),
    ("C2C__AUTH__GITHUB__REPOSITORY", "camptocamp/c2casgiutils", "auth.github.repository", "camptocamp/c2casgiutils"),
    ("C2C__AUTH__GITHUB__ACCESS_TYPE", "admin", "auth.github.access_type", GitHubAccessType.ADMIN),
    ("C2C__AUTH__GITHUB__AUTHORIZE_URL", "http://127.0.0.1:1/a", "auth.github.authorize_url", "http://127.0.0.1:1/a"),
    ("C2C__AUTH__GITHUB__TOKEN_URL", "http://127.0.0.1:1/t", "auth.github.token_url", "http://127.0.0.1:1/t"),
    ("C2C__AUTH__GITHUB__USER_URL", "http://127.0.0.1:1/u", "auth.github.user_url", "http://127.0.0.1:1/u"),
    ("C2C__AUTH__GITHUB__REPO_URL", "http://127.0.0.1:1/r", "auth.github.repo_url", "http://127.0.0.1:1/r"),
    ("C2C__AUTH__GITHUB__CLIENT_ID", "cid", "auth.github.client_id", "cid"),
    ("C2C__AUTH__GITHUB__CLIENT_SECRET", "csecret", "auth.github.client_secret", "csecret"),
    ("C2C__AUTH__GITHUB__SCOPE", "read:org", "auth.github.scope", "read:org"),
    ("C2C__AUTH__GITHUB__PROXY_URL", "https://proxy/", "auth.github.proxy_url", "https://proxy/"),
    ("C2C__AUTH__GITHUB__STATE_COOKIE", "st", "auth.github.state_cookie", "st"),
    ("C2C__AUTH__GITHUB__STATE_COOKIE_AGE", "PT5M", "auth.github.state_cookie_age", timedelta(minutes=5)),
    ("C2C__AUTH__TEST__USERNAME", "tester", "auth.test.username", "tester"),
    ("C2C__TOOLS__LOGGING__REDIS_PREFIX", "lvl_", "tools.logging.redis_prefix", "lvl_"),
    ("C2C__TOOLS__LOGGING__APPLICATION_MODULE", "myapp", "tools.logging.application_module", "myapp"),
    ("C2C__PROXY_HEADERS__TYPE", "forwarded", "proxy_headers.type", "forwarded"),
    ("C2C__PROXY_HEADERS__TYPE", "x-forwarded", "proxy_headers.type", "x-forwarded"),
    ("C2C__PROXY_HEADERS__TRUSTED_HOSTS", "127.0.0.1,10.0.0.0/8", "proxy_headers.trusted_hosts",
     ["127.0.0.1", "10.0.0.0/8"]),
    ("C2C__PROXY_HEADERS__TRUSTED_HOSTS", '["*"]', "proxy_headers.trusted_hosts", ["*"]),
    ("C2C__PROXY_HEADERS__TRUSTED_HOSTS", "*", "proxy_headers.trusted_hosts", ["*"]),
    ("C2C__HTTP", "true", "http", True),
    ("C2C__ROUTE_PREFIX", "/tools/", "route_prefix", "/tools/"),
    ("C2C__ROUTE_PREFIX", "tools", "route_prefix", "/tools/"),
    ("c2c__redis__db", "2", "redis.db", 2),
]


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
    assert current == expected, "docs/settings.md is stale: run `python -m c2casgiutils.settings_doc > docs/settings.md`"


def test_settings_doc_lists_every_variable() -> None:
    from c2casgiutils import settings_doc

    text = settings_doc.render()
    for variable, *_ in FROM_ENVIRONMENT:
        if "TAG_" in variable:
            continue
        assert f"`{variable.upper()}`" in text
