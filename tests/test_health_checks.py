"""Health checks: API, selection, aggregation, bounds, masking, caching, metrics and the endpoint."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta

import pytest

from c2casgiutils import health_checks
from c2casgiutils._health import metrics
from tests.health_fixtures.support import Fixed, client, fresh_factory


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> health_checks.Factory:
    return fresh_factory(monkeypatch)


# --------------------------------------------------------------------------------------------------
# Check and Result
# --------------------------------------------------------------------------------------------------


class MyCustomCheck(health_checks.Check):
    """The custom check of the specification: only ``check()``."""

    async def check(self) -> health_checks.Result:
        return health_checks.Result(status_code=200, payload={"message": "Everything is fine!"})


async def test_custom_check_needs_only_check(factory: health_checks.Factory) -> None:
    check = MyCustomCheck(tags=["custom", "all"])
    assert check.name == "MyCustomCheck"
    assert check.tags == ["custom", "all"]
    factory.add(check)
    result = await factory.run()
    assert result.status_code == 200
    (entity,) = result.entities
    assert entity.name == "MyCustomCheck"
    assert entity.tags == ["custom", "all"]
    assert entity.payload == {"message": "Everything is fine!"}
    assert entity.time_taken >= 0


def test_builtin_default_names_are_class_names() -> None:
    assert health_checks.Redis().name == "Redis"
    assert health_checks.Redis(name="cache").name == "cache"
    assert health_checks.HTTP("http://127.0.0.1:1/").name == "HTTP"


def test_result_defaults_and_validation() -> None:
    assert health_checks.Result().status_code == 200
    assert health_checks.Result().payload == {}
    with pytest.raises(ValueError):
        health_checks.Result(status_code=42)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tags": "liveness"}, TypeError),
        ({"tags": ["a,b"]}, ValueError),
        ({"tags": [""]}, ValueError),
        ({"name": ""}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": "10"}, TypeError),
        ({"cache_ttl": -1}, ValueError),
    ],
)
def test_bad_check_arguments_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        MyCustomCheck(**kwargs)  # type: ignore[arg-type]


def test_timeout_from_argument_or_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.health_checks.timeout = timedelta(seconds=3)
    assert MyCustomCheck().timeout == 3
    assert MyCustomCheck(timeout=timedelta(milliseconds=250)).timeout == 0.25
    settings.health_checks.timeout = timedelta(seconds=7)
    assert MyCustomCheck().timeout == 7  # read at call time


def test_factory_refuses_non_checks(factory: health_checks.Factory) -> None:
    with pytest.raises(TypeError, match="Check"):
        factory.add(object())  # type: ignore[arg-type]
    assert factory.checks == ()


def test_factory_add_remove(factory: health_checks.Factory) -> None:
    first, second = Fixed(name="one"), Fixed(name="two")
    factory.add(first)
    factory.add(first)  # same object: no-op
    factory.add(second)
    assert factory.names() == ["one", "two"]
    assert factory.remove("one") == 1
    assert factory.remove(second) == 1
    assert factory.checks == ()


# --------------------------------------------------------------------------------------------------
# Selection and aggregation
# --------------------------------------------------------------------------------------------------


def _populate(factory: health_checks.Factory) -> None:
    factory.add(Fixed(name="redis", tags=["liveness", "all"]))
    factory.add(Fixed(name="db", tags=["database", "all"]))
    factory.add(Fixed(name="migrations", tags=["database", "migrations", "all"], status_code=500))
    factory.add(Fixed(name="critical", tags=["critical"], status_code=503))


async def test_select_by_any_tag(factory: health_checks.Factory) -> None:
    _populate(factory)
    assert [c.name for c in factory.select(tags="liveness")] == ["redis"]
    assert [c.name for c in factory.select(tags="database,critical")] == ["db", "migrations", "critical"]
    assert [c.name for c in factory.select(tags=["database", "liveness"])] == ["redis", "db", "migrations"]
    assert [c.name for c in factory.select(tags=" ,")] == ["redis", "db", "migrations", "critical"]
    assert factory.select(tags="nothing") == []


async def test_select_by_name_and_tags(factory: health_checks.Factory) -> None:
    _populate(factory)
    assert [c.name for c in factory.select(name="db")] == ["db"]
    assert [c.name for c in factory.select(name="db", tags="database")] == ["db"]
    assert factory.select(name="db", tags="liveness") == []
    with pytest.raises(health_checks.UnknownCheckError, match=r"'nope'.*'redis', 'db'"):
        factory.select(name="nope")


async def test_global_status_is_the_worst(factory: health_checks.Factory) -> None:
    _populate(factory)
    assert (await factory.run()).status_code == 503
    assert (await factory.run(tags="database")).status_code == 500
    assert (await factory.run(tags="liveness")).status_code == 200
    result = await factory.check(None, "all")  # the reference package's signature
    assert [e.name for e in result.entities] == ["redis", "db", "migrations"]
    assert result.status_code == 500


async def test_nothing_selected_is_healthy(factory: health_checks.Factory) -> None:
    result = await factory.run()
    assert result.status_code == 200
    assert result.entities == []
    _populate(factory)
    assert (await factory.run(tags="nothing")).entities == []


async def test_checks_run_concurrently(factory: health_checks.Factory) -> None:
    started: list[float] = []

    class Recorder(health_checks.Check):
        async def check(self) -> health_checks.Result:
            started.append(time.monotonic())
            await asyncio.sleep(0.3)
            return health_checks.Result()

    for index in range(5):
        factory.add(Recorder(name=f"r{index}"))
    await factory.run()
    # every check started before the first one finished
    assert max(started) - min(started) < 0.3


# --------------------------------------------------------------------------------------------------
# Errors and bounds
# --------------------------------------------------------------------------------------------------


class Raising(health_checks.Check):
    async def check(self) -> health_checks.Result:
        raise ConnectionRefusedError("connect to postgresql://app:hunter2@db:5432/app refused")


class ReturnsDict(health_checks.Check):
    async def check(self) -> health_checks.Result:
        return {"status_code": 200}  # type: ignore[return-value]


class Sleeping(health_checks.Check):
    async def check(self) -> health_checks.Result:
        await asyncio.sleep(60)
        return health_checks.Result()


class Stubborn(health_checks.Check):
    """Swallows the first cancellation and goes on for a while: a badly written check."""

    async def check(self) -> health_checks.Result:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass
        await asyncio.sleep(1.5)  # still running long after the timeout
        return health_checks.Result()


async def test_exception_is_a_500_that_does_not_disturb_others(factory: health_checks.Factory) -> None:
    factory.add(Raising())
    factory.add(Fixed(name="fine"))
    result = await factory.run()
    assert result.status_code == 500
    raising, fine = result.entities
    assert raising.status_code == 500
    assert raising.payload["exception"] == "ConnectionRefusedError"
    assert "refused" in raising.payload["error"]
    assert "hunter2" not in json.dumps(raising.payload)
    assert fine.status_code == 200


async def test_wrong_return_type_is_a_500(factory: health_checks.Factory) -> None:
    factory.add(ReturnsDict())
    (entity,) = (await factory.run()).entities
    assert entity.status_code == 500
    assert "expected health_checks.Result" in entity.payload["error"]


async def test_wrong_check_always_fails(factory: health_checks.Factory) -> None:
    factory.add(health_checks.Wrong())
    assert (await factory.run()).status_code == 500


@pytest.mark.parametrize("check_class", [Sleeping, Stubborn])
async def test_timeout_yields_a_timeout_result_within_the_bound(
    factory: health_checks.Factory, check_class: type[health_checks.Check]
) -> None:
    factory.add(check_class(timeout=0.3))
    factory.add(Fixed(name="fast"))
    start = time.monotonic()
    result = await factory.run()
    elapsed = time.monotonic() - start
    assert elapsed < 0.3 + 2.0  # bounded by the timeout (generous margin for a loaded machine)
    slow, fast = result.entities
    assert slow.status_code == 500
    assert slow.payload["error"] == "timeout"
    assert slow.payload["timeout"] == 0.3
    assert fast.status_code == 200
    assert result.status_code == 500


async def test_default_timeout_comes_from_settings(settings, factory: health_checks.Factory) -> None:  # type: ignore[no-untyped-def]
    settings.health_checks.timeout = timedelta(seconds=0.2)
    factory.add(Sleeping())
    (entity,) = (await factory.run()).entities
    assert entity.payload["error"] == "timeout"
    assert entity.payload["timeout"] == 0.2


# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------


def test_mask_text() -> None:
    assert health_checks.mask_text("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert (
        health_checks.mask_text("failed: postgresql+asyncpg://app:p%40ss@db/app (timeout)")
        == "failed: postgresql+asyncpg://app:***@db/app (timeout)"
    )
    assert health_checks.mask_text("host=db password=hunter2 user=app") == "host=db password=*** user=app"
    assert health_checks.mask_text("http://example.com/a@b") == "http://example.com/a@b"
    assert health_checks.mask_text("no secret here") == "no secret here"


async def test_payloads_are_masked(factory: health_checks.Factory) -> None:
    factory.add(
        Fixed(
            name="leaky",
            payload={
                "url": "redis://user:s3cret@redis:6379",
                "nested": [{"dsn": "host=db password=hunter2"}],
                "password": "plain-password",
                "api_key": "abcdef",
                "token_count": 3,
                "object": object(),
            },
        )
    )
    (entity,) = (await factory.run()).entities
    text = json.dumps(entity.payload)
    for secret in ("s3cret", "hunter2", "plain-password", "abcdef"):
        assert secret not in text
    assert entity.payload["url"] == "redis://user:***@redis:6379"
    assert entity.payload["password"] == "***"
    assert entity.payload["token_count"] == 3
    assert isinstance(entity.payload["object"], str)  # not JSON: shown as text rather than failing the report


# --------------------------------------------------------------------------------------------------
# Cache and single flight
# --------------------------------------------------------------------------------------------------


async def test_cache_ttl_serves_the_last_result(factory: health_checks.Factory) -> None:
    check = Fixed(name="cached", cache_ttl=0.5)
    factory.add(check)
    first = await factory.run()
    second = await factory.run()
    assert check.runs == 1
    assert second.entities[0].time_taken == first.entities[0].time_taken
    await asyncio.sleep(0.6)
    await factory.run()
    assert check.runs == 2


async def test_without_cache_every_request_runs_the_check(factory: health_checks.Factory) -> None:
    check = Fixed(name="uncached", delay=0.05)
    factory.add(check)
    await asyncio.gather(*(factory.run() for _ in range(5)))
    assert check.runs == 5


async def test_concurrent_requests_share_one_run(factory: health_checks.Factory) -> None:
    check = Fixed(name="shared", delay=0.2, cache_ttl=10)
    factory.add(check)
    results = await asyncio.gather(*(factory.run() for _ in range(20)))
    assert check.runs == 1
    assert {r.entities[0].status_code for r in results} == {200}


async def test_a_cancelled_caller_does_not_cancel_the_shared_run(factory: health_checks.Factory) -> None:
    check = Fixed(name="shared", delay=0.3, cache_ttl=10)
    factory.add(check)
    first = asyncio.create_task(factory.run())
    await asyncio.sleep(0.05)
    second = asyncio.create_task(factory.run())
    await asyncio.sleep(0.05)
    first.cancel()
    result = await second
    assert result.entities[0].status_code == 200
    assert check.runs == 1


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def _sample(name: str, labels: dict[str, str]) -> float | None:
    import prometheus_client

    return prometheus_client.REGISTRY.get_sample_value(name, labels)


async def test_failure_gauge_and_duration_histogram(settings, factory: health_checks.Factory) -> None:  # type: ignore[no-untyped-def]
    settings.prometheus.prefix = "hctest_"
    flapping = Fixed(name="flapping", status_code=500)
    factory.add(flapping)
    await factory.run()
    assert _sample("hctest_health_checks_failure", {"name": "flapping"}) == 1
    flapping.status_code = 200
    await factory.run()
    assert _sample("hctest_health_checks_failure", {"name": "flapping"}) == 0
    assert _sample("hctest_health_checks_duration_seconds_count", {"name": "flapping"}) == 2


async def test_many_checks_register_metrics_once(settings, factory: health_checks.Factory) -> None:  # type: ignore[no-untyped-def]
    settings.prometheus.prefix = "hconce_"
    for round_ in range(3):
        other = health_checks.Factory()
        other.add(Fixed(name="same"))
        await other.run()
        assert _sample("hconce_health_checks_duration_seconds_count", {"name": "same"}) == round_ + 1


async def test_metrics_are_skipped_without_prometheus_client(
    settings,
    factory: health_checks.Factory,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    settings.prometheus.prefix = "hcmissing_"
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # makes the import fail
    monkeypatch.setattr(metrics, "_BY_PREFIX", {})
    factory.add(Fixed(name="fine"))
    assert (await factory.run()).status_code == 200
    assert metrics.get_metrics() is None


# --------------------------------------------------------------------------------------------------
# Endpoint
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/c2c/health_checks", "/c2c/health_checks/", "/c2c/health/"])
async def test_endpoint_paths(factory: health_checks.Factory, path: str) -> None:
    factory.add(Fixed(name="ok", tags=["liveness"], payload={"message": "fine"}))
    async with client() as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status_code"] == 200
    assert isinstance(body["time_taken"], float)
    (entity,) = body["entities"]
    assert set(entity) == {"name", "tags", "status_code", "payload", "time_taken"}
    assert entity["name"] == "ok"
    assert entity["tags"] == ["liveness"]
    assert entity["payload"] == {"message": "fine"}


async def test_endpoint_status_and_filters(factory: health_checks.Factory) -> None:
    _populate(factory)
    async with client() as http:
        everything = await http.get("/c2c/health_checks")
        database = await http.get("/c2c/health_checks", params={"tags": "database"})
        liveness = await http.get("/c2c/health_checks?tags=liveness")
        two_tags = await http.get("/c2c/health_checks?tags=liveness&tags=critical")
        by_name = await http.get("/c2c/health_checks", params={"name": "db"})
        nothing = await http.get("/c2c/health_checks", params={"tags": "nothing"})
        unknown = await http.get("/c2c/health_checks", params={"name": "Redis"})
    assert everything.status_code == 503
    assert database.status_code == 500
    assert [e["name"] for e in database.json()["entities"]] == ["db", "migrations"]
    assert liveness.status_code == 200
    assert [e["name"] for e in two_tags.json()["entities"]] == ["redis", "critical"]
    assert [e["name"] for e in by_name.json()["entities"]] == ["db"]
    assert nothing.status_code == 200
    assert nothing.json() == {"status_code": 200, "time_taken": nothing.json()["time_taken"], "entities": []}
    assert unknown.status_code == 404
    assert "No health check named 'Redis'" in unknown.json()["detail"]


async def test_endpoint_name_of_the_specification(factory: health_checks.Factory, settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = None
    factory.add(health_checks.Redis(tags=["liveness", "redis", "all"]))
    factory.add(Fixed(name="other", tags=["all"]))
    async with client() as http:
        response = await http.get("/c2c/health_checks?name=Redis")
    assert response.status_code == 200
    assert [e["name"] for e in response.json()["entities"]] == ["Redis"]


async def test_endpoint_answers_within_the_timeout(factory: health_checks.Factory) -> None:
    factory.add(Sleeping(name="hanging", timeout=0.5))
    factory.add(Fixed(name="fine"))
    async with client() as http:
        start = time.monotonic()
        response = await http.get("/c2c/health_checks")
        elapsed = time.monotonic() - start
    assert elapsed < 0.5 + 2.0
    assert response.status_code == 500
    hanging, fine = response.json()["entities"]
    assert hanging["payload"]["error"] == "timeout"
    assert fine["status_code"] == 200


async def test_endpoint_shares_cached_runs_between_concurrent_requests(factory: health_checks.Factory) -> None:
    check = Fixed(name="slow", delay=0.2, cache_ttl=30)
    factory.add(check)
    async with client() as http:
        responses = await asyncio.gather(*(http.get("/c2c/health_checks") for _ in range(10)))
    assert {r.status_code for r in responses} == {200}
    assert check.runs == 1


async def test_payloads_hidden_from_anonymous_callers_when_configured(
    factory: health_checks.Factory,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    factory.add(Fixed(name="detailed", status_code=500, payload={"error": "disk full"}))
    async with client() as http:
        shown = await http.get("/c2c/health_checks")
        settings.health_checks.detailed_payloads = False
        hidden = await http.get("/c2c/health_checks")
    assert shown.json()["entities"][0]["payload"] == {"error": "disk full"}
    assert hidden.status_code == 500
    entity = hidden.json()["entities"][0]
    assert entity["payload"] == {}
    assert entity["status_code"] == 500
    assert entity["name"] == "detailed"


async def test_admins_see_payloads_when_hidden_from_others(
    factory: health_checks.Factory,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    secret = "a-health-check-admin-secret-of-32-bytes"
    settings.auth.secret = secret
    settings.health_checks.detailed_payloads = False
    factory.add(Fixed(name="detailed", payload={"message": "details"}))
    async with client() as http:
        anonymous = await http.get("/c2c/health_checks")
        wrong = await http.get("/c2c/health_checks", headers={"X-API-Key": "not-the-secret"})
        admin = await http.get("/c2c/health_checks", headers={"X-API-Key": secret})
    assert anonymous.json()["entities"][0]["payload"] == {}
    assert wrong.json()["entities"][0]["payload"] == {}
    assert admin.json()["entities"][0]["payload"] == {"message": "details"}


# --------------------------------------------------------------------------------------------------
# Optional integrations
# --------------------------------------------------------------------------------------------------


def test_import_needs_no_optional_integration() -> None:
    import subprocess

    code = (
        "import sys, c2casgiutils.health_checks as h; h.Redis(); h.HTTP('http://127.0.0.1/'); "
        "optional = {'sqlalchemy', 'alembic', 'redis', 'prometheus_client'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & optional))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from c2casgiutils._optional import MissingExtraError

    monkeypatch.setitem(sys.modules, "alembic", None)
    with pytest.raises(MissingExtraError, match=r"c2casgiutils\[alembic\]"):
        health_checks.Alembic(Session=lambda: None)
