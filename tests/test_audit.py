"""Audit events (c2casgiutils/audit.py) and the records the package writes: logins, logouts, denied access,
admin tools, log-level changes; one record per attempt or action, its counter, never a credential."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from c2casgiutils import audit, config, logs, request_id, tracing
from c2casgiutils.headers import ForwardedHeadersMiddleware
from tests.auth_fixtures import *  # noqa: F403 # the fixtures
from tests.auth_fixtures import JWT_SECRET, SECRET, client_for, make_service
from tests.fake_github import FakeGitHub
from tests.test_auth_github import github_login

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class AuditLog:
    """The records of ``c2casgiutils.audit``, and the same records formatted by JsonFormatter."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.stream = io.StringIO()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def events(self) -> list[tuple[str, str]]:
        return [(entry["event"], entry["outcome"]) for entry in self.json()]


@pytest.fixture
def audit_log() -> Iterator[AuditLog]:
    log = AuditLog()
    logger = logging.getLogger(audit.LOGGER_NAME)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log.records.append(record)

    json_handler = logging.StreamHandler(log.stream)
    json_handler.setFormatter(logs.JsonFormatter())
    keep = Keep()
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(json_handler)
    logger.addHandler(keep)
    yield log
    logger.removeHandler(json_handler)
    logger.removeHandler(keep)
    logger.setLevel(previous)


def audited_service() -> FastAPI:
    """The auth test service with request ids, behind ForwardedHeadersMiddleware trusting 127.0.0.1."""
    app = make_service()
    app.add_middleware(request_id.RequestIdMiddleware)
    app.add_middleware(ForwardedHeadersMiddleware, trusted_hosts="127.0.0.1", headers_type="x-forwarded")
    return app


@pytest.fixture
def secret_settings(auth_settings: Any) -> Any:
    auth_settings.auth.secret = SECRET
    return auth_settings


def counted(event: str, outcome: str) -> float:
    name = f"{config.settings.prometheus.prefix}audit_events_total"
    return REGISTRY.get_sample_value(name, {"event": event, "outcome": outcome}) or 0.0


# ------------------------------------------------------------------------------------------------ the record


def test_a_record_has_the_core_fields_as_json_keys(audit_log: AuditLog, settings: Any) -> None:
    app = FastAPI()

    @app.get("/act")
    async def act(request: Request) -> dict[str, str]:
        audit.set_actor(request, "alice")
        audit.record(request, "custom_action", audit.Outcome.SUCCESS, target="thing", count=2)
        return {}

    app.add_middleware(request_id.RequestIdMiddleware)
    with TestClient(app, client=("192.0.2.7", 1234)) as client:
        response = client.get("/act", headers={"traceparent": TRACEPARENT})
    (entry,) = audit_log.json()
    assert entry["logger"] == "c2casgiutils.audit"
    assert entry["level"] == "INFO"
    assert {key: entry[key] for key in (*audit.CORE_FIELDS, "target", "count")} == {
        "event": "custom_action",
        "outcome": "success",
        "actor": "alice",
        "client": "192.0.2.7",
        "request_id": response.headers["X-Request-ID"],
        "trace_id": TRACE_ID,  # the W3C trace the request is part of
        "target": "thing",
        "count": 2,
    }
    # The text of the message says it all too, for text logs.
    assert "custom_action success" in entry["message"]
    assert "actor='alice'" in entry["message"]


def test_a_record_carries_the_trace_id_of_its_request(audit_log: AuditLog, settings: Any) -> None:
    app = FastAPI()

    @app.get("/act")
    async def act(request: Request) -> dict[str, str | None]:
        audit.record(request, "custom_action", audit.Outcome.SUCCESS)
        logging.getLogger("audit_test").warning("the request's own log line")
        return {"trace_id": getattr(tracing.get_trace_context(), "trace_id", None)}

    app.add_middleware(request_id.RequestIdMiddleware)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger("audit_test").addHandler(handler)
    try:
        with TestClient(app) as client:
            continued = client.get("/act", headers={"traceparent": TRACEPARENT}).json()["trace_id"]
            started_here = [client.get("/act").json()["trace_id"] for _ in range(2)]
    finally:
        logging.getLogger("audit_test").removeHandler(handler)
    assert continued == TRACE_ID
    # Without a traceparent each request starts a trace of its own; its record and its log lines share its id.
    assert all(re.fullmatch("[0-9a-f]{32}", trace_id) for trace_id in started_here)
    assert len({TRACE_ID, *started_here}) == 3
    assert [entry["trace_id"] for entry in audit_log.json()] == [TRACE_ID, *started_here]
    assert [json.loads(line)["trace_id"] for line in lines.getvalue().splitlines()] == [TRACE_ID, *started_here]


def test_a_record_outside_a_request_has_no_trace_id(audit_log: AuditLog) -> None:
    audit.record(None, "scheduled_job", audit.Outcome.SUCCESS)
    (entry,) = audit_log.json()
    assert entry["trace_id"] is None


def test_a_detail_cannot_take_the_name_of_a_field() -> None:
    for name in ("client", "request_id", "trace_id", "name", "message", "levelname"):
        with pytest.raises(ValueError, match=name):
            audit.record(None, "x", "success", **{name: "y"})


def test_a_request_value_cannot_forge_a_line_of_a_text_log(audit_log: AuditLog) -> None:
    audit.record(None, "x", "success", path="/a\nINFO forged: admin logged in")
    (record,) = audit_log.records
    assert "\n" not in record.getMessage()


def test_every_event_and_outcome_is_counted(audit_log: AuditLog) -> None:
    before = counted("counted_event", "refused")
    audit.record(None, "counted_event", audit.Outcome.REFUSED)
    audit.record(None, "counted_event", audit.Outcome.REFUSED)
    assert counted("counted_event", "refused") == before + 2


# ------------------------------------------------------------------------------------------------ logins


def test_login_failures_then_refusals_one_record_each(secret_settings: Any, audit_log: AuditLog) -> None:
    before = counted("login", "refused")
    with client_for(audited_service(), host="127.0.0.1") as client:
        statuses = []
        request_ids = []
        trace_ids = []
        for index in range(5):
            trace_id = f"{index + 1:032x}"
            response = client.post(
                "/c2c/auth/login",
                json={"secret": f"wrong-{index}"},
                headers={"X-Forwarded-For": "198.51.100.20", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            )
            statuses.append(response.status_code)
            request_ids.append(response.headers["X-Request-ID"])
            trace_ids.append(trace_id)
    assert statuses == [401, 401, 401, 429, 429]  # max_failures is 3 in the fixture
    entries = audit_log.json()
    assert [(entry["event"], entry["outcome"]) for entry in entries] == [("login", "failure")] * 3 + [
        ("login", "refused")
    ] * 2
    assert [entry["request_id"] for entry in entries] == request_ids
    assert [entry["trace_id"] for entry in entries] == trace_ids  # the sent trace continues (trust: always)
    assert {entry["client"] for entry in entries} == {"198.51.100.20"}  # after the forwarded-headers middleware
    assert {entry["actor"] for entry in entries} == {None}
    assert {entry["method"] for entry in entries} == {"secret"}
    assert entries[0]["reason"] == "wrong secret"
    assert 1 <= entries[-1]["retry_after"] <= 60
    assert counted("login", "refused") == before + 2


def test_login_success_names_the_secret_as_actor(secret_settings: Any, audit_log: AuditLog) -> None:
    with client_for(audited_service()) as client:
        assert client.post("/c2c/auth/login", data={"secret": SECRET}).status_code == 200
        assert client.get("/c2c/auth/logout").status_code == 200
        assert client.get("/c2c/auth/logout").status_code == 200  # no cookie any more
    assert audit_log.events() == [("login", "success"), ("logout", "success"), ("logout", "success")]
    assert [entry["actor"] for entry in audit_log.json()] == ["secret", "secret", None]


def test_a_wrong_credential_on_a_protected_route_is_one_failure_not_also_a_denial(
    secret_settings: Any, audit_log: AuditLog
) -> None:
    with client_for(audited_service()) as client:
        assert client.get("/service/admin", headers={"X-API-Key": "guess"}).status_code == 401
        assert client.get("/service/admin", headers={"Authorization": "Bearer guess"}).status_code == 401
        assert client.get("/service/admin", headers={"X-API-Key": "guess"}).status_code == 401
        assert client.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 429
    assert audit_log.events() == [("login", "failure")] * 3 + [("login", "refused")]


def test_no_credential_on_a_protected_route_is_one_denial(secret_settings: Any, audit_log: AuditLog) -> None:
    with client_for(audited_service()) as client:
        assert client.get("/service/admin").status_code == 401
        assert client.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 200
    (entry,) = audit_log.json()  # the success is the service's own business: no record
    assert (entry["event"], entry["outcome"], entry["status"], entry["path"]) == (
        "access_denied",
        "denied",
        401,
        "/service/admin",
    )


def test_closed_admin_tools_are_a_denial(auth_settings: Any, audit_log: AuditLog) -> None:
    with client_for(audited_service()) as client:
        assert client.get("/c2c/headers").status_code == 403
    assert [(entry["event"], entry["status"], entry["path"]) for entry in audit_log.json()] == [
        ("access_denied", 403, "/c2c/headers")
    ]


def test_github_login_denial_and_logout_name_the_user(
    github_settings: Any, fake_github: FakeGitHub, audit_log: AuditLog
) -> None:
    github_settings.auth.github.access_type_admin = "admin"
    fake_github.next_login = "reader"  # pull only: no push, not admin
    with client_for(audited_service()) as client:
        github_login(client, fake_github)
        assert client.get("/service/push").status_code == 403
        assert client.get("/c2c/auth/github/logout").status_code == 303
    entries = audit_log.json()
    assert [(entry["event"], entry["outcome"], entry["actor"]) for entry in entries] == [
        ("login", "success", "reader"),
        ("access_denied", "denied", "reader"),
        ("logout", "success", "reader"),
    ]
    assert entries[0]["method"] == "github_oauth"
    assert entries[1]["status"] == 403


def test_a_failed_github_callback_is_one_failure(
    github_settings: Any, fake_github: FakeGitHub, audit_log: AuditLog
) -> None:
    fake_github.deny = True
    with client_for(audited_service()) as client:
        from tests.test_auth_github import start_login  # noqa: PLC0415

        assert client.get(start_login(client, fake_github)).status_code == 403
    (entry,) = audit_log.json()
    assert (entry["event"], entry["outcome"], entry["method"], entry["status"]) == (
        "login",
        "failure",
        "github_oauth",
        403,
    )


# ------------------------------------------------------------------------------------------------ admin actions


def test_admin_tools_are_recorded_with_their_actor(secret_settings: Any, audit_log: AuditLog) -> None:
    admin = {"X-API-Key": SECRET}
    with client_for(audited_service()) as client:
        for path in ("/c2c/headers/a?secret=not-logged", "/c2c/debug/stacks", "/c2c/debug/memory", "/c2c/versions"):
            assert client.get(path, headers=admin).status_code == 200, path
    assert [(entry["event"], entry["outcome"], entry["actor"], entry["tool"]) for entry in audit_log.json()] == [
        ("admin_tool", "success", "secret", "headers"),
        ("admin_tool", "success", "secret", "debug_stacks"),
        ("admin_tool", "success", "secret", "debug_memory"),
        ("admin_tool", "success", "secret", "versions"),
    ]
    assert audit_log.json()[0]["path"] == "/c2c/headers/a"  # never the query string


def test_a_log_level_change_names_the_logged_in_admin(
    github_settings: Any, fake_github: FakeGitHub, audit_log: AuditLog
) -> None:
    name = "tests.audit.level_change"
    logging.getLogger(name).setLevel(logging.WARNING)
    with client_for(audited_service()) as client:
        github_login(client, fake_github)
        assert client.post("/c2c/logging/level", json={"name": name, "level": "debug"}).status_code == 200
        assert client.delete(f"/c2c/logging/overrides/{name}").status_code == 200
        assert client.delete(f"/c2c/logging/overrides/{name}").status_code == 404
    entries = [entry for entry in audit_log.json() if entry["event"] == "log_level_change"]
    assert [
        (
            entry["outcome"],
            entry["actor"],
            entry["logger_name"],
            entry["old_level"],
            entry["new_level"],
            entry["removed"],
        )
        for entry in entries
    ] == [
        ("success", "octocat", name, "WARNING", "DEBUG", False),
        ("success", "octocat", name, "DEBUG", "WARNING", True),
        ("failure", "octocat", name, "WARNING", None, True),
    ]
    assert [entry["status"] for entry in entries] == [200, 200, 404]


def test_no_secret_token_or_cookie_in_any_record(
    github_settings: Any, fake_github: FakeGitHub, audit_log: AuditLog
) -> None:
    github_settings.auth.secret = SECRET
    token = fake_github.issue_token("octocat")
    with client_for(audited_service()) as client:
        client.post("/c2c/auth/login", data={"secret": SECRET})
        secret_cookie = client.cookies.get(github_settings.auth.jwt.cookie.name)
        client.get("/c2c/headers", params={"secret": SECRET + "-wrong"})
        client.get("/c2c/auth/logout")
        client.get("/c2c/headers", headers={"Authorization": f"Bearer {token}"})
        client.get("/c2c/headers", headers={"Authorization": "Bearer ghp_bogus0123456789"})
        github_login(client, fake_github)
        session_cookie = client.cookies.get(github_settings.auth.jwt.cookie.name)
        client.post("/c2c/logging/level", json={"name": "tests.audit.secrets", "level": "INFO"})
        client.get("/c2c/auth/github/logout")
    assert secret_cookie
    assert session_cookie
    text = audit_log.stream.getvalue()
    assert len(audit_log.json()) >= 7
    for value in (
        SECRET,
        token,
        "ghp_bogus0123456789",
        secret_cookie,
        session_cookie,
        JWT_SECRET,
        *fake_github.known_tokens(),
    ):
        assert value not in text
