"""The benchmark harness keeps working: the in-process uvicorn driver and the middleware bench's modes.

Only behaviour is asserted (requests really reach the application, failures and hangs are reported, the
tables have a row per stack); no timing is asserted, speed lives in ``bench/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from uvicorn_inproc import InProcessServer  # noqa: E402

REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"


def _run(app: Any, count: int, timeout: float | None = None) -> InProcessServer:
    async def main() -> InProcessServer:
        server = InProcessServer(app, asyncio.get_running_loop())
        await server.run(REQUEST, count, timeout)
        return server

    return asyncio.run(main())


def test_every_request_reaches_the_app_through_uvicorns_parser() -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = _run(app, 25)
    server.check_ok()
    assert server.transport.statuses == {b"200": 25}
    assert len(scopes) == 25
    assert scopes[0]["path"] == "/hello"
    assert (b"x-forwarded-for", b"203.0.113.7") in scopes[0]["headers"]
    assert scopes[0]["client"] == ("127.0.0.1", 50000)


def test_a_failing_app_stops_the_run() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="closed the connection"):
        _run(app, 3)


def test_a_response_other_than_200_is_reported() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    server = _run(app, 3)
    assert server.transport.statuses == {b"404": 3}
    with pytest.raises(RuntimeError, match="other than 200"):
        server.check_ok()


def test_an_app_that_never_answers_times_out() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    with pytest.raises(TimeoutError):
        _run(app, 1, timeout=0.5)


def _bench(*arguments: str) -> str:
    command = [sys.executable, str(BENCH / "bench_middlewares.py"), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout


def test_inproc_mode_gives_a_row_per_stack() -> None:
    output = _bench("--inproc", "--ours-only", "--rounds", "1", "--requests", "20")
    for stack in ("bare", "armor", "forwarded", "both", "floor"):
        assert re.search(rf"^\| ours \| {stack} \| [\d.]+ \| [+-][\d.]+ \| [\d.]+ \| [\d.]+ \|$", output, re.M), output


def test_header_cost_mode_fits_a_cost_per_header() -> None:
    output = _bench("--header-cost", "--rounds", "1", "--requests", "20")
    for count in (0, 4, 8, 12, 16):
        assert f"| floor-{count} |" in output
    assert re.search(r"each response header: -?[\d.]+ µs", output), output


@pytest.mark.parametrize(
    ("script", "arguments"),
    [
        ("bench_middlewares.py", ["--rounds", "1"]),
        ("bench_middlewares.py", ["--inproc", "--rounds", "1"]),
        ("bench_middlewares.py", ["--micro"]),
        ("bench_broadcast.py", ["--count", "1"]),
    ],
)
@pytest.mark.parametrize("reference", [None, "/nonexistent/refvenv/bin/python"])
def test_a_bench_without_its_reference_interpreter_stops_with_a_message(
    script: str, arguments: list[str], reference: str | None
) -> None:
    env = {name: value for name, value in os.environ.items() if name != "C2C_BENCH_REFERENCE_PYTHON"}
    if reference is not None:
        env["C2C_BENCH_REFERENCE_PYTHON"] = reference  # the variable, as the option, must name an interpreter
    command = [sys.executable, str(BENCH / script), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    if reference is None:
        assert "the reference interpreter is missing: give --reference-python PATH or set " in last_line
        assert "C2C_BENCH_REFERENCE_PYTHON" in last_line
    else:
        assert f"--reference-python {reference}: not an executable file" in last_line
    assert "--ours-only" in last_line


def test_the_reference_interpreter_is_read_from_the_environment() -> None:
    """Without the option, the variable names the interpreter of the reference rows (here this one, standing in)."""
    env = {**os.environ, "C2C_BENCH_REFERENCE_PYTHON": sys.executable}
    command = [sys.executable, str(BENCH / "bench_middlewares.py"), "--inproc", "--rounds", "1", "--requests", "20"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True, env=env).stdout
    for implementation in ("ours", "reference"):
        assert re.search(rf"^\| {implementation} \| armor \| [\d.]+ \|", output, re.M), output


def _bench_stack(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCH / "bench_stack.py"), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_a_stack_of_ones_own_is_measured_in_the_order_given() -> None:
    result = _bench_stack("--stacks", "drain+errors,forwarded", "--rounds", "1", "--requests", "20")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\| drain\+errors \| drain, errors \| [\d.]+ \| [+-][\d.]+ \| [\d.]+ \|$", result.stdout, re.M)
    assert re.search(r"^\| forwarded \| forwarded \| [\d.]+ \|", result.stdout, re.M), result.stdout


@pytest.mark.parametrize("stack", ["drain+nothing", "nothing", "drain+"])
def test_an_unknown_layer_stops_with_the_known_ones(stack: str) -> None:
    result = _bench_stack("--stacks", stack, "--rounds", "1", "--requests", "20")
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"unknown stacks ['{stack}']" in last_line
    assert "layer+layer+... of noop, errors, metrics" in last_line


def test_paired_rounds_give_the_median_excess_of_each_stack_and_ours_inside_the_whole_one() -> None:
    result = _bench_stack("--paired", "--stacks", "ours,starlette,scaffold", "--rounds", "4", "--requests", "10")
    assert result.returncode == 0, result.stderr
    for stack in ("bare", "ours", "starlette", "scaffold"):
        row = rf"^\| {stack} \| [^|]+ \| [\d.]+ \| [+-][\d.]+ \| [+-][\d.]+ \.\. [+-][\d.]+ \|$"
        assert re.search(row, result.stdout, re.M), result.stdout
    assert re.search(r"^\| bare \| - \| [\d.]+ \| \+0\.0 \| \+0\.0 \.\. \+0\.0 \|$", result.stdout, re.M)
    ours = r"^scaffold - starlette \(our six layers inside the whole stack\): [+-][\d.]+ µs"
    assert re.search(ours, result.stdout, re.M), result.stdout


def test_paired_extra_is_the_median_of_the_rounds_differences() -> None:
    from uvicorn_inproc import paired_extra

    samples = {"bare": [10.0, 50.0, 10.0, 10.0, 10.0], "layer": [12.0, 53.0, 11.0, 14.0, 40.0]}
    extra = paired_extra(samples, "bare")
    assert extra["bare"] == (0.0, 0.0, 0.0)
    median, first, third = extra["layer"]
    assert median == 3.0  # differences 2, 3, 1, 4, 30: the spoiled round counts for one
    assert first <= median <= third


def test_paired_rounds_serve_every_stack_in_each_round() -> None:
    from uvicorn_inproc import paired_rounds

    served: dict[str, int] = {"a": 0, "b": 0}

    def app_for(name: str) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            served[name] += 1
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        return app

    samples = paired_rounds({"a": app_for("a"), "b": app_for("b")}, REQUEST, rounds=3, requests=5)
    assert {name: len(values) for name, values in samples.items()} == {"a": 3, "b": 3}
    assert served == {"a": 1000 + 15, "b": 1000 + 15}  # the warm-up, then each round


def _drive(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one request through an ASGI app by hand; the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _scope(headers: list[tuple[bytes, bytes]], client: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/hello",
        "scheme": "http",
        "headers": headers,
        "client": (client, 50000),
        "server": ("127.0.0.1", 8000),
    }


def _answer(seen: list[dict[str, Any]], headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 201, "headers": list(headers or [])})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_the_request_id_floor_returns_the_callers_id_or_a_fresh_one_and_sets_a_trace() -> None:
    import floor_layers

    traces: list[Any] = []
    seen: list[dict[str, Any]] = []
    inner = _answer(seen)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        traces.append(floor_layers.trace_var.get())
        await inner(scope, receive, send)

    layer = floor_layers.FloorRequestId(app)
    fresh = _drive(layer, _scope([(b"host", b"a")]))
    given = _drive(layer, _scope([(b"x-request-id", b"abc-1")]))
    fresh_id = dict(fresh[0]["headers"])[b"x-request-id"]
    assert re.fullmatch(rb"[0-9a-f]{32}", fresh_id)
    assert dict(given[0]["headers"])[b"x-request-id"] == b"abc-1"
    assert [scope["state"]["request_id"] for scope in seen] == [fresh_id.decode(), "abc-1"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", trace) and re.fullmatch(r"[0-9a-f]{16}", span) for trace, span in traces)
    assert traces[0] != traces[1]
    assert floor_layers.trace_var.get() is None  # reset after the request


def test_the_forwarded_floor_rewrites_a_copy_of_the_scope_for_a_trusted_client_only() -> None:
    import floor_layers

    seen: list[dict[str, Any]] = []
    layer = floor_layers.FloorForwarded(_answer(seen))
    forwarded = [
        (b"host", b"127.0.0.1:8000"),
        (b"x-forwarded-for", b"198.51.100.1, 203.0.113.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"www.example.com"),
    ]
    trusted = _scope(forwarded)
    _drive(layer, trusted)
    _drive(layer, _scope(forwarded, client="192.0.2.9"))
    rewritten, untouched = seen
    assert rewritten["client"] == ("203.0.113.7", 0)
    assert rewritten["scheme"] == "https"
    assert rewritten["server"] == ("www.example.com", 443)
    assert (b"host", b"www.example.com") in rewritten["headers"]
    assert trusted["client"] == ("127.0.0.1", 50000)  # the caller's scope is left as it was
    assert untouched["client"] == ("192.0.2.9", 50000)
    assert untouched["scheme"] == "http"


def test_the_metrics_floor_counts_every_request_in_batches_with_its_exemplar() -> None:
    import floor_layers

    layer = floor_layers.FloorMetrics(_answer([], [(b"content-length", b"2")]))
    token = floor_layers.trace_var.set(("1" * 32, "2" * 16))
    try:
        for _ in range(300):
            _drive(layer, _scope([(b"content-length", b"5")]))
    finally:
        floor_layers.trace_var.reset(token)
    assert layer.in_progress == 0
    assert len(layer.pending) == 300 - 256  # one batch added, the rest queued
    assert layer.totals == {("none", "GET", 201): 256}  # no router ran: no route in the scope
    assert layer.sizes["none"] == [256, 5 * 256, 2 * 256]
    assert sum(layer.highr[:-1]) == 256
    assert {trace for trace, _, _ in layer.exemplars.values()} == {"1" * 32}


def test_the_floor_stack_is_measured_beside_ours() -> None:
    result = _bench_stack(
        "--paired", "--stacks", "starlette,scaffold,scaffold:floor", "--rounds", "3", "--requests", "10"
    )
    assert result.returncode == 0, result.stderr
    floor = r"^\| scaffold:floor \| errors, metrics:floor, gzip, cors, armor:floor, trustedhost, drain, forwarded:floor"
    assert re.search(floor, result.stdout, re.M), result.stdout
    for whole in ("scaffold", "scaffold:floor"):
        assert re.search(rf"^{whole} - starlette \([^)]+\): [+-][\d.]+ µs", result.stdout, re.M), result.stdout
