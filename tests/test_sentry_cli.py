"""Sentry init from settings against a fake Sentry ingest server on 127.0.0.1, and the CLI helpers."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

from c2casgiutils import cli, config
from c2casgiutils import sentry as c2c_sentry
from tests.fake_sentry import FakeSentry, run_script

ROOT = Path(__file__).parent.parent


SCRIPT = """
import sentry_sdk
from c2casgiutils import sentry
assert sentry.init() is True
sentry_sdk.capture_message("hello from the test")
sentry_sdk.flush(timeout=10)
"""


def _run(env: dict[str, str], script: str = SCRIPT) -> subprocess.CompletedProcess[str]:
    return run_script(script, env)


def test_sentry_init_sends_events_with_settings_and_tags(fake_sentry: FakeSentry) -> None:
    result = _run({
        "C2C__SENTRY__DSN": fake_sentry.dsn(),
        "C2C__SENTRY__ENVIRONMENT": "integration",
        "C2C__SENTRY__RELEASE": "9.9.9",
        "C2C__SENTRY__TAG_SERVICE": "demo-service",
    })
    assert result.returncode == 0, result.stderr
    events = fake_sentry.wait_events(1)
    assert len(events) == 1
    event = events[0]
    message = event.get("message") or event.get("logentry", {}).get("message")
    assert message == "hello from the test"
    assert event["environment"] == "integration"
    assert event["release"] == "9.9.9"
    assert event["tags"]["service"] == "demo-service"


def test_sentry_dsn_from_sentry_dsn_variable(fake_sentry: FakeSentry) -> None:
    result = _run({"SENTRY_DSN": fake_sentry.dsn(7)})
    assert result.returncode == 0, result.stderr
    assert len(fake_sentry.wait_events(1)) == 1


def test_sentry_not_configured(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    settings.sentry.dsn = None
    assert c2c_sentry.init_options() is None
    assert c2c_sentry.init() is False


# Every option of config.Sentry but the DSN and the tags, set to a value other than its default.
EVERY_OPTION = {
    "C2C__SENTRY__DEBUG": "true",
    "C2C__SENTRY__RELEASE": "9.9.9",
    "C2C__SENTRY__ENVIRONMENT": "integration",
    "C2C__SENTRY__DIST": "dist-7",
    "C2C__SENTRY__SAMPLE_RATE": "0.9999999",
    "C2C__SENTRY__IGNORE_ERRORS": "KeyError,ZeroDivisionError",
    "C2C__SENTRY__MAX_BREADCRUMBS": "10",
    "C2C__SENTRY__ATTACH_STACKTRACE": "true",
    "C2C__SENTRY__SEND_DEFAULT_PII": "false",
    "C2C__SENTRY__EVENT_SCRUBBER": "x-custom-token",
    "C2C__SENTRY__INCLUDE_SOURCE_CONTEXT": "false",
    "C2C__SENTRY__INCLUDE_LOCAL_VARIABLES": "false",
    "C2C__SENTRY__ADD_FULL_STACK": "true",
    "C2C__SENTRY__MAX_STACK_FRAMES": "50",
    "C2C__SENTRY__SERVER_NAME": "node-1",
    "C2C__SENTRY__PROJECT_ROOT": str(ROOT),
    "C2C__SENTRY__IN_APP_INCLUDE": "c2casgiutils",
    "C2C__SENTRY__IN_APP_EXCLUDE": "tests",
    "C2C__SENTRY__MAX_REQUEST_BODY_SIZE": "small",
    "C2C__SENTRY__MAX_VALUE_LENGTH": "2048",
    "C2C__SENTRY__CA_CERTS": certifi.where(),
    "C2C__SENTRY__SEND_CLIENT_REPORTS": "false",
}


def test_every_sentry_option_is_accepted_by_sentry_sdk(fake_sentry: FakeSentry) -> None:
    """sentry_sdk.init refuses an unknown keyword: with every option set, init and an event still go through."""
    options = {name for name, field in config.Sentry.model_fields.items() if not field.exclude} - {"dsn"}
    assert {f"C2C__SENTRY__{name.upper()}" for name in options} == set(EVERY_OPTION)  # a new option is listed
    result = _run({**EVERY_OPTION, "C2C__SENTRY__DSN": fake_sentry.dsn()})
    assert result.returncode == 0, result.stderr
    (event,) = fake_sentry.wait_events(1)
    assert (event["environment"], event["release"], event["dist"], event["server_name"]) == (
        "integration", "9.9.9", "dist-7", "node-1",
    )


# A FastAPI route that fails with a secret in a request header, in the extra data and in a dict nested there,
# each under several spellings of the configured key C2C__SENTRY__EVENT_SCRUBBER=x-custom-token, and of a key
# of Sentry's own denylist (x_api_key, password), beside values that must stay.
SCRUBBED_SCRIPT = textwrap.dedent(
    """
    import os

    import sentry_sdk
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from c2casgiutils import sentry

    # The secrets are made at run time: Python 3.13 shows the source of a -c script in the event's frames.
    SECRET = os.environ["SECRET_PREFIX"]
    assert sentry.init() is True
    app = FastAPI()


    @app.get("/fail")
    def fail() -> None:
        sentry_sdk.set_extra("X-Custom-Token", SECRET + "extra-1")
        sentry_sdk.set_extra("x_CUSTOM_token", SECRET + "extra-2")
        sentry_sdk.set_extra("PassWord", SECRET + "extra-default")
        sentry_sdk.set_extra("kept", "visible-extra")
        sentry_sdk.set_extra(
            "configuration",
            {
                "X_CUSTOM-TOKEN": SECRET + "nested-1",
                "inner": {"x-custom_TOKEN": SECRET + "nested-2", "Api-Key": SECRET + "nested-default"},
                "kept": "visible-nested",
            },
        )
        raise RuntimeError("the route failed")


    with TestClient(app, raise_server_exceptions=False) as client:
        headers = {
            "X-Custom-Token": SECRET + "header-1",
            "x_custom_token": SECRET + "header-2",
            "X_CUSTOM-TOKEN": SECRET + "header-3",
            "X-Api-Key": SECRET + "header-default",
            "Authorization": "Bearer " + SECRET + "header-authorization",
            "X-Kept": "visible-header",
        }
        assert client.get("/fail", headers=headers).status_code == 500
    sentry_sdk.flush(timeout=10)
    """
)

FILTERED = "[Filtered]"


@pytest.mark.parametrize("keys", ["x-custom-token", "X_Custom_Token", "other, x-CUSTOM_token", None])
def test_scrubbed_keys_arrive_filtered_in_any_case_and_spelling(fake_sentry: FakeSentry, keys: str | None) -> None:
    env = {"C2C__SENTRY__DSN": fake_sentry.dsn(), "SECRET_PREFIX": "secret-"}
    if keys is not None:
        env["C2C__SENTRY__EVENT_SCRUBBER"] = keys
    result = _run(env, script=SCRUBBED_SCRIPT)
    assert result.returncode == 0, result.stderr
    (event,) = fake_sentry.wait_events(1)
    assert event["exception"]["values"][-1]["value"] == "the route failed"
    headers, extra = event["request"]["headers"], event["extra"]
    nested = extra["configuration"]
    # Sentry's own denylist, whatever the setting.
    assert (headers["x-api-key"], extra["PassWord"], nested["inner"]["Api-Key"]) == (FILTERED,) * 3
    assert "secret-header-authorization" not in json.dumps(event)  # the ASGI scope in the frames' variables too
    assert (headers["x-kept"], extra["kept"], nested["kept"]) == ("visible-header", "visible-extra", "visible-nested")
    if keys is None:  # only what the setting names is added
        assert (headers["x-custom-token"], extra["X-Custom-Token"]) == ("secret-header-1", "secret-extra-1")
        return
    assert "secret-" not in json.dumps(event)
    for name in ("x-custom-token", "x_custom_token", "x_custom-token"):
        assert headers[name] == FILTERED, name
    assert (extra["X-Custom-Token"], extra["x_CUSTOM_token"]) == (FILTERED, FILTERED)
    assert (nested["X_CUSTOM-TOKEN"], nested["inner"]["x-custom_TOKEN"]) == (FILTERED, FILTERED)


# ---------------------------------------------------------------------------------------------- CLI


def _parse(*argv: str, default: str | None = "logging.yaml") -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    if default == "logging.yaml":
        cli.add_arguments(parser)  # the default argument, as a script would call it
    else:
        cli.add_arguments(parser, default_logging_config=default)
    return parser.parse_args(list(argv))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("c2c.cli.test").setLevel(logging.NOTSET)


async def test_cli_init_applies_yaml_logging_config(tmp_path: Path, restore_logging: None) -> None:
    config_file = tmp_path / "logging.yaml"
    config_file.write_text(
        "version: 1\ndisable_existing_loggers: false\n"
        "loggers:\n  c2c.cli.test:\n    level: ERROR\n",
        encoding="utf-8",
    )
    args = _parse("--logging-config", str(config_file))
    await cli.init(args)
    assert logging.getLogger("c2c.cli.test").level == logging.ERROR


async def test_cli_missing_explicit_file_is_a_clear_error(tmp_path: Path) -> None:
    args = _parse("--logging-config", str(tmp_path / "nope.yaml"))
    with pytest.raises(cli.LoggingConfigError, match="not found: .*nope.yaml"):
        await cli.init(args)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("version: 1\nloggers: [unclosed\n", "Cannot read"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("version: 1\nhandlers:\n  h:\n    class: no.such.Handler\n", "Invalid logging configuration"),
    ],
)
async def test_cli_broken_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    config_file = tmp_path / "broken.yaml"
    config_file.write_text(content, encoding="utf-8")
    with pytest.raises(cli.LoggingConfigError, match=message):
        await cli.init(_parse("--logging-config", str(config_file)))


async def test_cli_absent_default_file_falls_back_to_basic_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.chdir(tmp_path)
    logger = logging.getLogger("c2c.cli.test")
    await cli.init(_parse())  # logging.yaml does not exist here: not an error
    assert logger.level == logging.NOTSET
    # ... and once it exists, the default file is the one applied
    (tmp_path / "logging.yaml").write_text(
        "version: 1\ndisable_existing_loggers: false\nloggers:\n  c2c.cli.test:\n    level: WARNING\n",
        encoding="utf-8",
    )
    await cli.init(_parse())
    assert logger.level == logging.WARNING


def test_cli_error_exits_the_script_with_the_message(tmp_path: Path) -> None:
    script = (
        "import argparse, asyncio\nfrom c2casgiutils import cli\n"
        "p = argparse.ArgumentParser(); cli.add_arguments(p)\n"
        "asyncio.run(cli.init(p.parse_args()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "--logging-config", str(tmp_path / "missing.yaml")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert "Logging configuration file not found" in result.stderr
    assert "Traceback" not in result.stderr
