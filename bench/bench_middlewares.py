"""Hello-route throughput of FastAPI with and without the header middlewares, ours and the reference package.

Eight uvicorn servers (one worker each) run side by side: {bare, +ArmorHeaderMiddleware,
+ForwardedHeadersMiddleware, +both} x {this package, c2casgiutils==0.14.0 from the reference virtualenv}.
Rounds visit every server in turn (alternating order) with a keep-alive load generator on loopback; the
figure of a stack is the median of its rounds and ratios compare stacks measured in the same run. Each
request carries X-Forwarded-* headers from a trusted peer so the forwarded middleware does real work.

    .venv/bin/python bench/bench_middlewares.py [--rounds 5] [--duration 3] --reference-python PATH
    .venv/bin/python bench/bench_middlewares.py --micro   # µs per request of the middleware code alone
    .venv/bin/python bench/bench_middlewares.py --ours-only --stacks armor,floor   # a subset of the servers

Besides the medians, the table gives each stack's best round (least server CPU per request), which is the
round least disturbed by other load on a shared machine.

``--micro`` skips the servers: it calls each stack directly as an ASGI app around a minimal app that sends a
17-byte JSON response, many times in one event loop, and prints the best-of-rounds µs per call minus the bare
app's. It is far less noisy than the HTTP figures but leaves out the server's own work (parsing, sending the
extra headers).

The load generator is ``wrk`` when installed (``apt-get install wrk``), else a raw-socket asyncio client in
a separate process. On Linux the server is pinned to CPU 0 and the load generator to CPU 1 when possible.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import reference_python  # bench/, the directory of this script

STACKS = ("bare", "armor", "forwarded", "both", "floor", "minimal")
OURS_ONLY_STACKS = ("minimal",)  # the same code in both implementations: measured once
APP_SOURCE = textwrap.dedent(
    """
    import os

    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}


    STACK = os.environ["BENCH_STACK"]
    # The 11 default headers as ArmorHeaderMiddleware sends them for this route.
    DEFAULT_HEADERS = [
        (
            b"content-security-policy",
            b"default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
        ),
        (b"x-frame-options", b"DENY"),
        (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"permissions-policy", b"geolocation=(), microphone=(), camera=(), payment=(), usb=()"),
        (b"x-dns-prefetch-control", b"off"),
        (b"origin-agent-cluster", b"?1"),
        (b"cross-origin-embedder-policy", b"require-corp"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]
    if STACK == "floor" or STACK.startswith("floor-"):
        # The least any middleware can do to send the 11 default headers: append a constant list. It shows
        # what emitting those headers costs the server, whatever computes them.
        EXTRA = DEFAULT_HEADERS
        if STACK != "floor":
            # floor-N: N constant headers as long as the default ones on average, to measure the cost per header.
            EXTRA = [(b"x-floor-%02d" % index, b"a" * 33) for index in range(int(STACK[6:]))]

        class Floor:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    return await self.app(scope, receive, send)

                async def wrapped(message):
                    if message["type"] == "http.response.start":
                        message["headers"] = [*message.get("headers", ()), *EXTRA]
                    await send(message)

                await self.app(scope, receive, wrapped)

        app.add_middleware(Floor)
    if STACK == "minimal":
        # The least two such middlewares can do, hard-coded for this benchmark's request: no rules, no parsing,
        # no configuration. One pops a pooled nonce into the state and replaces the application's headers of
        # the same names by the 11 defaults; the other finds the X-Forwarded-* headers of the trusted peer and
        # copies the scope with the values they carry here. What "both" costs above this is the price of
        # doing the same job for any request and any configuration.
        from collections import deque

        NONCES = deque()
        DROP = frozenset(name for name, _ in DEFAULT_HEADERS)
        FORWARDED = frozenset(
            (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-prefix")
        )

        class MinimalArmor:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    return await self.app(scope, receive, send)
                if not NONCES:
                    digits = os.urandom(16 * 256).hex()
                    NONCES.extend(digits[start : start + 32] for start in range(0, len(digits), 32))
                scope["state"]["nonce"] = NONCES.popleft()

                def wrapped(message):
                    if message["type"] == "http.response.start":
                        headers = []
                        for item in message.get("headers", ()):
                            if item[0].lower() not in DROP:
                                headers.append(item)
                        headers += DEFAULT_HEADERS
                        message["headers"] = headers
                    return send(message)

                await self.app(scope, receive, wrapped)

        class MinimalForwarded:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                if scope["client"][0] == "127.0.0.1":
                    found = False
                    host_index = -1
                    index = -1
                    for name, _ in scope["headers"]:
                        index += 1
                        name = name.lower()
                        if name in FORWARDED:
                            found = True
                        elif name == b"host":
                            host_index = index
                    if found:
                        scope = {
                            **scope,
                            "scheme": "https",
                            "server": ("www.example.com", 443),
                            "client": ("203.0.113.7", 0),
                        }
                        headers = list(scope["headers"])
                        headers[host_index] = (b"host", b"www.example.com")
                        scope["headers"] = headers
                await self.app(scope, receive, send)

        app.add_middleware(MinimalArmor)
        app.add_middleware(MinimalForwarded)
    if STACK in ("armor", "both"):
        from c2casgiutils.headers import ArmorHeaderMiddleware

        app.add_middleware(ArmorHeaderMiddleware)
    if STACK in ("forwarded", "both"):
        from c2casgiutils.headers import ForwardedHeadersMiddleware

        app.add_middleware(ForwardedHeadersMiddleware, trusted_hosts="127.0.0.1", headers_type="x-forwarded")
    """
)
REQUEST_HEADERS = {
    "Host": "127.0.0.1",
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "www.example.com",
}
CONNECTIONS = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server on port {port} did not start within {timeout}s")


def pinned(command: list[str], cpu: int) -> list[str]:
    taskset = shutil.which("taskset")
    if taskset and (os.cpu_count() or 1) > cpu:
        return [taskset, "-c", str(cpu), *command]
    return command


@dataclass
class Server:
    implementation: str
    stack: str
    python: str
    app_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    rates: list[float] = field(default_factory=list)
    cpu_per_request: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.implementation}/{self.stack}"

    def start(self) -> None:
        command = [self.python, "-m", "uvicorn", "bench_app:app", "--app-dir", str(self.app_dir)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        command += ["--loop", "uvloop", "--http", "httptools", "--no-proxy-headers"]
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env["BENCH_STACK"] = self.stack
        self.process = subprocess.Popen(pinned(command, 0), env=env, cwd=self.app_dir)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (Linux), robust to other load on the machine."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def measure(self, load: Callable[[int, float], tuple[int, float]], duration: float) -> None:
        cpu_before = self.cpu_seconds()
        requests, elapsed = load(self.port, duration)
        self.cpu_per_request.append((self.cpu_seconds() - cpu_before) / requests)
        self.rates.append(requests / elapsed)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def run_wrk(port: int, duration: float) -> tuple[int, float]:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s"]
    for name, value in REQUEST_HEADERS.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}/hello")
    output = subprocess.run(
        pinned(command, 1), capture_output=True, text=True, timeout=duration + 30, check=True
    ).stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if match is None or "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk failed or saw errors:\n{output}")
    return int(match[1]), float(match[2]) / (1000 if match[3] == "ms" else 1)


async def _python_load(port: int, duration: float) -> tuple[int, float]:
    request = "GET /hello HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in REQUEST_HEADERS.items()) + "\r\n"
    payload = request.encode()
    deadline = time.monotonic() + duration
    counts = [0] * CONNECTIONS

    async def worker(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.decode("latin-1"))
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head)[1])  # type: ignore[index]
                await reader.readexactly(length)
                counts[index] += 1
        finally:
            writer.close()

    start = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker(index) for index in range(CONNECTIONS))), duration + 30)
    return sum(counts), time.monotonic() - start


def run_python_load(port: int, duration: float) -> tuple[int, float]:
    command = [sys.executable, __file__, "--load-only", str(port), str(duration)]
    output = subprocess.run(
        pinned(command, 1), capture_output=True, text=True, timeout=duration + 60, check=True
    ).stdout
    requests, elapsed = output.split()
    return int(requests), float(elapsed)


MICRO_REQUEST_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"bench"),
    (b"x-forwarded-for", b"203.0.113.7"),
    (b"x-forwarded-proto", b"https"),
    (b"x-forwarded-host", b"www.example.com"),
]
MICRO_STACKS = ("bare", "floor", "armor", "forwarded", "forwarded-untrusted", "both")


def micro_figures(rounds: int, calls: int) -> dict[str, float]:
    """µs per request of each stack called directly (best of ``rounds``), minus the bare app's."""
    from c2casgiutils.headers import ArmorHeaderMiddleware, ForwardedHeadersMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"17"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"hello":"world"}'})

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        pass

    extra = [(b"x-floor-%d" % index, b"constant") for index in range(11)]

    def floor(inner: Any) -> Any:
        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            async def wrapped(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            await inner(scope, receive, wrapped)

        return middleware

    stacks = {
        "bare": app,
        "floor": floor(app),
        "armor": ArmorHeaderMiddleware(app),
        "forwarded": ForwardedHeadersMiddleware(app, trusted_hosts="127.0.0.1", headers_type="x-forwarded"),
        "forwarded-untrusted": ForwardedHeadersMiddleware(app, trusted_hosts="10.0.0.1"),
        "both": ForwardedHeadersMiddleware(ArmorHeaderMiddleware(app), trusted_hosts="127.0.0.1"),
    }

    async def run(stack: Any) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "server": ("127.0.0.1", 8000),
                "client": ("127.0.0.1", 50000),
                "scheme": "http",
                "method": "GET",
                "root_path": "",
                "path": "/hello",
                "raw_path": b"/hello",
                "query_string": b"",
                "headers": list(MICRO_REQUEST_HEADERS),
                "state": {},
            }
            await stack(scope, receive, send)
        return (time.perf_counter() - start) / calls * 1e6

    best = dict.fromkeys(stacks, float("inf"))
    for _ in range(rounds):
        for name, stack in stacks.items():  # interleaved, so a slow moment hits every stack alike
            best[name] = min(best[name], asyncio.run(run(stack)))
    return {name: best[name] - best["bare"] if name != "bare" else best[name] for name in stacks}


def micro(reference: str | None) -> None:
    results = {"ours": micro_figures(rounds=9, calls=20000)}
    if reference is not None:
        # BaseHTTPMiddleware makes the reference armor about 100 times slower: fewer calls keep it short.
        command = [reference, __file__, "--micro-only", "2000"]
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        output = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True, env=env).stdout
        results["reference"] = json.loads(output)
    print("µs per request called directly (best of 9 rounds; 20000 calls, reference 2000); extra µs over bare")
    print("| stack | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for stack in MICRO_STACKS:
        label = "bare (absolute)" if stack == "bare" else f"+{stack}"
        print(f"| {label} | " + " | ".join(f"{figures[stack]:.2f}" for figures in results.values()) + " |")


INPROC_STACKS = ("bare", "floor", "minimal", "armor", "forwarded", "both")
INPROC_REQUEST = (
    b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\n"
    + b"".join(f"{name}: {value}\r\n".encode() for name, value in REQUEST_HEADERS.items() if name != "Host")
    + b"\r\n"
)
HEADER_COUNTS = (0, 4, 8, 12, 16)


def inproc_samples(stacks: list[str], rounds: int, requests: int) -> dict[str, list[float]]:
    """µs per request of each stack, one figure per round, through uvicorn's protocol in this process."""
    from uvicorn_inproc import alternating_rounds

    def build(stack: str) -> Any:
        os.environ["BENCH_STACK"] = stack
        namespace: dict[str, Any] = {}
        exec(compile(APP_SOURCE, f"<bench app {stack}>", "exec"), namespace)  # our own source
        return namespace["app"]

    return alternating_rounds({stack: build(stack) for stack in stacks}, INPROC_REQUEST, rounds, requests)


def _inproc_rows(samples: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """Per stack: best and median µs per request.

    The best round is the headline, as with ``timeit``: on a shared virtual machine other load only ever
    adds time, so the least disturbed round is the one closest to the code's own cost.
    """
    return {stack: (min(values), statistics.median(values)) for stack, values in samples.items()}


def inproc(arguments: argparse.Namespace) -> None:
    wanted = arguments.stacks.split(",")
    stacks = ["bare", *(stack for stack in wanted if stack in INPROC_STACKS[1:] or re.fullmatch(r"floor-\d+", stack))]
    results = {"ours": _inproc_rows(inproc_samples(stacks, arguments.rounds, arguments.requests))}
    if not arguments.ours_only:
        # The floor and the minimal stack are the same code in both: measured once.
        reference_stacks = [stack for stack in stacks if stack != "floor" and stack not in OURS_ONLY_STACKS]
        command = [arguments.reference_python, __file__, "--inproc-only", ",".join(reference_stacks)]
        command += ["--rounds", str(arguments.rounds), "--requests", str(max(100, arguments.requests // 10))]
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        output = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True, env=env).stdout
        results["reference"] = _inproc_rows(json.loads(output))
    print(
        f"uvicorn's httptools protocol in one process, {arguments.rounds} alternating rounds of "
        f"{arguments.requests} requests (reference: a tenth); µs per request"
    )
    print("| implementation | stack | best µs | extra µs over bare (best) | bare / stack (best) | median µs |")
    print("|---|---|---|---|---|---|")
    for implementation, rows in results.items():
        bare = rows["bare"][0]
        for stack, (best, median) in rows.items():
            print(
                f"| {implementation} | {stack} | {best:.1f} | {best - bare:+.1f} | {bare / best:.3f} | {median:.1f} |"
            )


def header_cost(arguments: argparse.Namespace) -> None:
    """What each response header costs uvicorn, from floor stacks sending 0 to 16 constant headers."""
    stacks = ["bare", *(f"floor-{count}" for count in HEADER_COUNTS)]
    rows = _inproc_rows(inproc_samples(stacks, arguments.rounds, arguments.requests))
    points = [(count, rows[f"floor-{count}"][0]) for count in HEADER_COUNTS]
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    intercept = mean_y - slope * mean_x
    bare = rows["bare"][0]
    print(f"uvicorn's httptools protocol in one process, {arguments.rounds} rounds of {arguments.requests} requests")
    print("| stack | best µs | bare / stack (best) | median µs |")
    print("|---|---|---|---|")
    for stack, (best, median) in rows.items():
        print(f"| {stack} | {best:.1f} | {bare / best:.3f} | {median:.1f} |")
    print(f"\nbare request: {bare:.1f} µs; a pass-through layer that appends headers: {intercept - bare:.1f} µs")
    print(f"each response header: {slope:.2f} µs (least squares over 0-16 headers)")
    budget = bare / 0.9 - bare
    print(
        f"0.90 of bare throughput allows {budget:.1f} µs per request in all; the 11 default headers alone "
        f"cost {11 * slope:.1f} µs, i.e. bare / (bare + headers) = {bare / (bare + 11 * slope):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per server and round")
    reference_python.add_argument(parser, ours_only="--ours-only")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma list, 'bare' always included")
    parser.add_argument("--ours-only", action="store_true", help="skip the reference package's servers")
    parser.add_argument("--micro", action="store_true", help="time the middlewares called directly, no server")
    parser.add_argument(
        "--inproc", action="store_true", help="drive uvicorn's protocol in this process: no kernel, no load generator"
    )
    parser.add_argument("--header-cost", action="store_true", help="µs per response header in uvicorn (in-process)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per stack and round (in-process)")
    parser.add_argument("--inproc-only", metavar="STACKS", help=argparse.SUPPRESS)
    parser.add_argument("--load-only", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--micro-only", type=int, metavar="CALLS", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    internal = arguments.micro_only or arguments.inproc_only or arguments.load_only  # run by a bench itself
    if arguments.ours_only or internal or arguments.header_cost:
        arguments.reference_python = None
    else:
        arguments.reference_python = reference_python.checked(parser, arguments.reference_python, "--ours-only")
    if arguments.micro_only:
        print(json.dumps(micro_figures(rounds=9, calls=arguments.micro_only)))
        return
    if arguments.micro:
        micro(arguments.reference_python)
        return
    if arguments.inproc_only:
        print(json.dumps(inproc_samples(arguments.inproc_only.split(","), arguments.rounds, arguments.requests)))
        return
    if arguments.inproc:
        inproc(arguments)
        return
    if arguments.header_cost:
        header_cost(arguments)
        return
    if arguments.load_only:
        port, duration = arguments.load_only
        print(*asyncio.run(_python_load(int(port), float(duration))))
        return

    load = run_wrk if shutil.which("wrk") else run_python_load
    with tempfile.TemporaryDirectory() as directory:
        app_dir = Path(directory)
        (app_dir / "bench_app.py").write_text(APP_SOURCE)
        implementations = {"ours": sys.executable}  # the "floor" stack is the same code in both
        stacks = ["bare", *(stack for stack in arguments.stacks.split(",") if stack in STACKS and stack != "bare")]
        if arguments.reference_python is not None:
            implementations["reference"] = arguments.reference_python
        servers = [
            Server(implementation, stack, python, app_dir)
            for implementation, python in implementations.items()
            for stack in stacks
            if implementation == "ours" or stack not in OURS_ONLY_STACKS
        ]
        try:
            for server in servers:
                server.start()
            for server in servers:
                wait_port(server.port)
                if server.process is not None and server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
                load(server.port, 1.0)  # warm up
            for round_index in range(arguments.rounds):
                order = servers if round_index % 2 == 0 else servers[::-1]
                for server in order:
                    server.measure(load, arguments.duration)
                print(
                    f"round {round_index + 1}: " + ", ".join(f"{s.name} {s.rates[-1]:.0f}" for s in servers), flush=True
                )
        finally:
            for server in servers:
                server.stop()

    print(f"\nload generator: {load.__name__}, {CONNECTIONS} connections, {arguments.duration}s x {arguments.rounds}")
    print(
        "| implementation | stack | req/s (median) | req/s / bare | server CPU µs/request (median) "
        "| bare CPU / stack CPU | best-round CPU µs/request | bare / stack (best rounds) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for implementation in implementations:
        by_stack = {server.stack: server for server in servers if server.implementation == implementation}
        bare = by_stack["bare"]
        for stack, server in by_stack.items():
            # Ratios per round (neighbours in time see the same machine load), then the median.
            rate_ratio = statistics.median(s / b for s, b in zip(server.rates, bare.rates, strict=True))
            cpu = statistics.median(server.cpu_per_request)
            # The least CPU a request took in any round: the least disturbed by other load, as timeit's best.
            best = min(server.cpu_per_request)
            print(
                f"| {implementation} | {stack} | {statistics.median(server.rates):.0f} | {rate_ratio:.2f} "
                f"| {cpu * 1e6:.0f} | {statistics.median(bare.cpu_per_request) / cpu:.2f} "
                f"| {best * 1e6:.1f} | {min(bare.cpu_per_request) / best:.2f} |"
            )


if __name__ == "__main__":
    main()
