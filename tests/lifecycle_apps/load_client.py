"""An open-loop keep-alive HTTP load: ``rate`` requests per second for ``duration`` seconds, then a JSON report.

Requests are started on a fixed schedule whatever the answers (open loop, as real clients), over a pool of
keep-alive connections; at most ``--max-in-flight`` at once (a start that would exceed it is counted as
``skipped``, not sent). Every request has a timeout; the run ends on its own. The report counts answers by
status, connection errors by kind (with their times), and the rate achieved.

    python -m tests.lifecycle_apps.load_client http://127.0.0.1:8080/ --rate 200 --duration 20 --out report.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from typing import Any

import httpx


async def run(url: str, rate: float, duration: float, max_in_flight: int, timeout: float) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    errors: list[dict[str, Any]] = []
    latencies: list[float] = []
    in_flight = 0
    skipped = 0
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one() -> None:
            nonlocal in_flight
            started = time.time()
            begin = time.perf_counter()
            try:
                response = await client.get(url)
            except httpx.HTTPError as error:
                errors.append({"time": started, "error": type(error).__name__, "detail": str(error)[:200]})
            else:
                statuses[response.status_code] += 1
                latencies.append(time.perf_counter() - begin)
                if response.status_code >= 300:
                    errors.append({"time": started, "error": f"status {response.status_code}"})
            finally:
                in_flight -= 1

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        wall_start = time.time()
        sent = 0
        while True:
            due = start + sent / rate
            now = time.perf_counter()
            if due - start >= duration:
                break
            if due > now:
                await asyncio.sleep(due - now)
            sent += 1
            if in_flight >= max_in_flight:
                skipped += 1
                continue
            in_flight += 1
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 5)  # each request is bounded by its timeout already
        elapsed = time.perf_counter() - start
    answered = sum(statuses.values())
    return {
        "url": url,
        "target_rate": rate,
        "duration": elapsed,
        "started_at": wall_start,
        "scheduled": sent,
        "skipped": skipped,
        "answered": answered,
        "achieved_rate": answered / elapsed if elapsed else 0.0,
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "non_2xx": sum(count for status, count in statuses.items() if not 200 <= status < 300),
        "connection_errors": sum(1 for error in errors if not error["error"].startswith("status")),
        "errors": errors,
        "latency_p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "latency_p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) >= 100 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=200.0, help="requests started per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--max-in-flight", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds one request may take")
    parser.add_argument("--out", required=True, help="file of the JSON report")
    arguments = parser.parse_args()
    if not 0 < arguments.rate <= 2000 or not 0 < arguments.duration <= 300:
        parser.error("--rate must be in (0, 2000] and --duration in (0, 300]: a bounded load")
    report = asyncio.run(
        run(arguments.url, arguments.rate, arguments.duration, arguments.max_in_flight, arguments.timeout)
    )
    with open(arguments.out, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=1)


if __name__ == "__main__":
    main()
