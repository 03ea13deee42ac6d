"""The failed-login limit and the audit log across a fleet: two demo instances of 2 workers behind Debian's HAProxy
in round-robin, sharing a real redis-server (tests/fleet_servers.py), the fake GitHub for a named admin.

- 20 wrong secrets from one client address: exactly ``max_failures`` (5) are answered 401, the others 429 with
  ``Retry-After`` (at most the window), whichever of the four processes answers; the same with the 20 sent at
  once; another address is not affected.
- Redis stopped mid-run: every answer is still 401 or 429 (never 5xx), each process counts on its own (at most 5
  failures each) and logs one warning; the fallback is counted on the metrics port. Redis restarted: shared again.
- The audit log of the four processes holds exactly one event per attempt (matched by request id), with the
  outcome of its answer and the client address; a log-level change by a GitHub admin names that admin.
- No secret, wrong secret, token or cookie in any log line; the probes' successes stay out of the access log.

Bounds are generous for a loaded 2-core machine; the pass criteria are exact.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing
from tests.fake_github import FakeGitHub
from tests.fleet_servers import JWT_SECRET, SECRET, WINDOW, DemoFleet
from tests.lifecycle_servers import LIVENESS, READINESS
from tests.servers import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MAX_FAILURES = 5
REPOSITORY = "camptocamp/fleet"
FALLBACK_WARNING = "The shared failed-login limit is unavailable"
FALLBACK_OVER = "The shared failed-login limit answers again"


class Attempts:
    """Every login attempt of the test: (client, status, request id); the secrets, cookies and tokens sent."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, int, str]] = []
        self.sensitive: list[str] = [SECRET, JWT_SECRET]

    def wrong_secret(self) -> str:
        value = f"wrong-{secrets.token_hex(12)}"
        self.sensitive.append(value)
        return value

    def note(self, client: str, response: httpx.Response) -> int:
        self.answers.append((client, response.status_code, response.headers["X-Request-ID"]))
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= WINDOW, response.headers
        return response.status_code

    def sequential(self, fleet: DemoFleet, client: str, count: int) -> list[int]:
        with fleet.client(client) as http:
            return [
                self.note(client, http.post("/c2c/auth/login", json={"secret": self.wrong_secret()}))
                for _ in range(count)
            ]

    def at_once(self, fleet: DemoFleet, client: str, count: int) -> list[int]:
        async def burst() -> list[httpx.Response]:
            async with fleet.async_client(client) as http:
                return await asyncio.gather(
                    *(http.post("/c2c/auth/login", json={"secret": self.wrong_secret()}) for _ in range(count))
                )

        return [self.note(client, response) for response in asyncio.run(burst())]


@pytest.fixture(scope="module")
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    fake.add_user("octocat", "The Octocat")
    fake.grant("octocat", REPOSITORY, "admin")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def fleet(fake_github: FakeGitHub) -> Iterator[DemoFleet]:
    try:
        redis = RedisServer()
    except FileNotFoundError:
        missing("redis-server")
    folder = Path(tempfile.mkdtemp(prefix="c2c-fleet-"))
    redis.start()
    github = {
        "AUTHORIZE_URL": f"{fake_github.url}/login/oauth/authorize",
        "TOKEN_URL": f"{fake_github.url}/login/oauth/access_token",
        "USER_URL": f"{fake_github.url}/user",
        "REPO_URL": f"{fake_github.url}/repos",
        "CLIENT_ID": fake_github.client_id,
        "CLIENT_SECRET": fake_github.client_secret,
        "REPOSITORY": REPOSITORY,
    }
    fleet = DemoFleet(folder, redis, env={f"C2C__AUTH__GITHUB__{key}": value for key, value in github.items()})
    try:
        yield fleet.start()
    finally:
        fleet.close()
        redis.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def attempts() -> Attempts:
    return Attempts()


def expected_outcome(status: int) -> str:
    return {200: "success", 401: "failure", 429: "refused"}[status]


def login_events(fleet: DemoFleet, client: str) -> list[dict[str, Any]]:
    return [event for event in fleet.audit() if event["event"] == "login" and event["client"] == client]


def test_the_limit_is_shared_by_the_four_processes(fleet: DemoFleet, attempts: Attempts) -> None:
    sequential = attempts.sequential(fleet, "127.0.0.2", 20)
    print("figure: sequential 401 of 20:", sequential.count(401))  # noqa: T201 - the figures of docs/auth.md
    assert sequential == [401] * MAX_FAILURES + [429] * (20 - MAX_FAILURES)
    events = login_events(fleet, "127.0.0.2")
    assert len({event["pid"] for event in events}) >= 2  # round-robin: several processes answered
    assert {event["instance"] for event in events} == {"a", "b"}

    burst = attempts.at_once(fleet, "127.0.0.3", 20)
    print("figure: at once 401 of 20:", burst.count(401))  # noqa: T201
    assert sorted(burst) == [401] * MAX_FAILURES + [429] * (20 - MAX_FAILURES)

    # Another address: its own count; the right secret works there, not from the blocked one.
    assert attempts.sequential(fleet, "127.0.0.4", 1) == [401]
    with fleet.client("127.0.0.4") as other, fleet.client("127.0.0.2") as blocked:
        assert attempts.note("127.0.0.4", other.post("/c2c/auth/login", json={"secret": SECRET})) == 200
        assert attempts.note("127.0.0.2", blocked.post("/c2c/auth/login", json={"secret": SECRET})) == 429
        attempts.sensitive += list(other.cookies.values())


def test_a_log_level_change_names_the_github_admin(
    fleet: DemoFleet, fake_github: FakeGitHub, attempts: Attempts
) -> None:
    name = "tests.fleet.level"
    with fleet.client("127.0.0.7", follow_redirects=False) as browser:
        start = browser.get("/c2c/auth/github/login")
        assert start.status_code == 307, start.text
        callback = httpx.get(start.headers["location"], follow_redirects=False, timeout=30).headers["location"]
        assert browser.get(callback).status_code == 303  # maybe another process: the cookies are signed for all
        changed = browser.post("/c2c/logging/level", json={"name": name, "level": "DEBUG"})
        assert changed.status_code == 200, changed.text
        assert {process["status"] for process in changed.json()["processes"]} == {"ok"}
        assert len(changed.json()["processes"]) == 4  # through Redis, every process applied it
        attempts.sensitive += [*browser.cookies.values(), *fake_github.known_tokens()]
    (event,) = [event for event in fleet.audit() if event["event"] == "log_level_change"]
    assert event["request_id"] == changed.headers["X-Request-ID"]
    assert (event["outcome"], event["actor"], event["client"]) == ("success", "octocat", "127.0.0.7")
    assert (event["logger_name"], event["old_level"], event["new_level"]) == (name, "NOTSET", "DEBUG")
    (login,) = [event for event in fleet.audit() if event["client"] == "127.0.0.7" and event["event"] == "login"]
    assert (login["outcome"], login["actor"], login["method"]) == ("success", "octocat", "github_oauth")


def test_redis_stopped_each_process_counts_then_shared_again(fleet: DemoFleet, attempts: Attempts) -> None:
    fallback_before = fleet.metric("c2casgiutils_auth_rate_limit_fallback_total")
    fleet.redis.stop()
    during = attempts.sequential(fleet, "127.0.0.5", 30)
    print("figure: Redis down, 401 of 30:", during.count(401))  # noqa: T201
    assert set(during) <= {401, 429}, during  # never a 5xx: the fallback answers
    failures_per_process = Counter(
        event["pid"] for event in login_events(fleet, "127.0.0.5") if event["outcome"] == "failure"
    )
    assert max(failures_per_process.values()) <= MAX_FAILURES  # never the limit off
    assert during.count(429) >= 30 - 4 * MAX_FAILURES
    # One warning per process that answered during the outage, no more.
    answering = {event["pid"] for event in login_events(fleet, "127.0.0.5")}
    warnings = Counter(
        record["pid"]
        for record in fleet.records()
        if record["message"].startswith(FALLBACK_WARNING) and record["level"] == "WARNING"
    )
    assert set(warnings) == answering
    assert set(warnings.values()) == {1}
    assert fleet.metric("c2casgiutils_auth_rate_limit_fallback_total") > fallback_before

    fleet.redis.start()
    time.sleep(3)  # each process tries Redis again a second after its last failure
    after = attempts.sequential(fleet, "127.0.0.6", 20)
    print("figure: Redis restarted, 401 of 20:", after.count(401))  # noqa: T201
    assert after == [401] * MAX_FAILURES + [429] * (20 - MAX_FAILURES)
    # A process notices Redis is back when it next handles a login: each one that was in the fallback says so once.
    answering_after = {event["pid"] for event in login_events(fleet, "127.0.0.6")}
    back = Counter(record["pid"] for record in fleet.records() if record["message"].startswith(FALLBACK_OVER))
    assert set(back) == answering & answering_after
    assert set(back.values()) == {1}


def test_one_audit_event_per_attempt_and_no_secret_in_the_logs(fleet: DemoFleet, attempts: Attempts) -> None:
    events = [event for event in fleet.audit() if event["event"] == "login"]
    by_request = Counter(event["request_id"] for event in events)
    for client, status, request_id in attempts.answers:
        assert by_request[request_id] == 1, (client, status, request_id)
        (event,) = [event for event in events if event["request_id"] == request_id]
        assert (event["client"], event["outcome"]) == (client, expected_outcome(status))
        assert event["actor"] == ("secret" if status == 200 else None)
    clients = {client for client, _, _ in attempts.answers}
    assert len([event for event in events if event["client"] in clients]) == len(attempts.answers)

    text = "\n".join(line for _, line in fleet.log_lines())
    assert len(attempts.sensitive) > 70
    for value in attempts.sensitive:
        assert value not in text
    access = [record["message"] for record in fleet.records() if record["logger"] == "uvicorn.access"]
    assert [line for line in access if "POST /c2c/auth/login" in line]
    assert not [line for line in access if LIVENESS in line or READINESS in line]  # HAProxy checks every 500 ms
