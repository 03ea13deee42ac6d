"""Sentry init from settings against a fake Sentry ingest server on 127.0.0.1, and the CLI helpers."""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from c2casgiutils import cli
from c2casgiutils import sentry as c2c_sentry

ROOT = Path(__file__).parent.parent


class _FakeSentry(BaseHTTPRequestHandler):
    """Accepts envelopes as Sentry's ingest does (POST /api/<project>/envelope/)."""

    events: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        lines = body.split(b"\n")
        # envelope: header line, then (item header, item payload) pairs
        for index in range(1, len(lines) - 1, 2):
            item_header = json.loads(lines[index])
            if item_header.get("type") == "event":
                self.server.events.append(json.loads(lines[index + 1]))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_sentry() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSentry)
    server.events = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


SCRIPT = """
import sentry_sdk
from c2casgiutils import sentry
assert sentry.init() is True
sentry_sdk.capture_message("hello from the test")
sentry_sdk.flush(timeout=10)
"""


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("C2C__") and key != "SENTRY_DSN"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**base, **env}, cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )


def test_sentry_init_sends_events_with_settings_and_tags(fake_sentry: ThreadingHTTPServer) -> None:
    port = fake_sentry.server_address[1]
    result = _run({
        "C2C__SENTRY__DSN": f"http://publickey@127.0.0.1:{port}/42",
        "C2C__SENTRY__ENVIRONMENT": "integration",
        "C2C__SENTRY__RELEASE": "9.9.9",
        "C2C__SENTRY__TAG_SERVICE": "demo-service",
    })
    assert result.returncode == 0, result.stderr
    events = fake_sentry.events  # type: ignore[attr-defined]
    assert len(events) == 1
    event = events[0]
    message = event.get("message") or event.get("logentry", {}).get("message")
    assert message == "hello from the test"
    assert event["environment"] == "integration"
    assert event["release"] == "9.9.9"
    assert event["tags"]["service"] == "demo-service"


def test_sentry_dsn_from_sentry_dsn_variable(fake_sentry: ThreadingHTTPServer) -> None:
    port = fake_sentry.server_address[1]
    result = _run({"SENTRY_DSN": f"http://publickey@127.0.0.1:{port}/7"})
    assert result.returncode == 0, result.stderr
    assert len(fake_sentry.events) == 1  # type: ignore[attr-defined]


def test_sentry_not_configured(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    settings.sentry.dsn = None
    assert c2c_sentry.init_options() is None
    assert c2c_sentry.init() is False


def test_sentry_options_are_valid_init_arguments(settings: Any) -> None:
    """Every option we pass is accepted by sentry_sdk's client options (no stray keys like tags)."""
    import sentry_sdk.consts

    settings.sentry.dsn = "http://key@127.0.0.1:1/1"
    settings.sentry.event_scrubber = "x-custom-token"
    options = c2c_sentry.init_options()
    assert options is not None
    accepted = set(sentry_sdk.consts.ClientConstructor.__init__.__code__.co_varnames)
    assert set(options) <= accepted
    assert "x-custom-token" in options["event_scrubber"].denylist


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
