"""Broadcast round trip with answers from 4 processes on loopback: this package vs c2casgiutils==0.14.0.

Starts a redis-server, then for each implementation 4 answering processes and one driver process that
broadcasts sequentially and records each round trip (publish until every answer is back). Both run in the
same invocation, on the same Redis, one after the other.

    .venv/bin/python bench/bench_broadcast.py [--count 300] --reference-python PATH
    .venv/bin/python bench/bench_broadcast.py --ours-only   # this package only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import reference_python  # noqa: E402 # bench/, the directory of this script

from tests.servers import RedisServer  # noqa: E402

APPS = ROOT / "bench" / "broadcast_apps"
PROCESSES = 4


def wait_subscribers(
    url: str, channel: str, count: int, servers: list[subprocess.Popen[bytes]], timeout: float = 60
) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(server.poll() is not None for server in servers):
                raise RuntimeError("an answering process exited during start-up")
            if dict(client.pubsub_numsub(channel))[channel.encode()] == count:
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError(f"{channel}: fewer than {count} subscribers after {timeout}s")


def run(name: str, python: str, script: Path, redis_url: str, count: int, env_extra: dict[str, str]) -> list[float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("C2C__")}
    env.pop("PYTHONPATH", None)
    env.update({"C2C__REDIS__URL": redis_url, **env_extra})
    # cwd outside the repository, so the reference interpreter imports its own installed package.
    servers = [
        subprocess.Popen([python, str(script), "serve"], env=env, cwd="/tmp", stdout=subprocess.DEVNULL)
        for _ in range(PROCESSES)
    ]
    try:
        wait_subscribers(redis_url, "broadcast_api_bench_echo", PROCESSES, servers)
        result = subprocess.run(
            [python, str(script), "drive", "--count", str(count), "--expected", str(PROCESSES)],
            env=env,
            cwd="/tmp",
            capture_output=True,
            text=True,
            timeout=60 + count,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name} driver failed:\n{result.stderr[-3000:]}")
        return list(json.loads(result.stdout.strip().splitlines()[-1])["durations"])
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="measured broadcasts per implementation")
    reference_python.add_argument(parser, ours_only="--ours-only")
    parser.add_argument("--ours-only", action="store_true", help="skip the reference package")
    args = parser.parse_args()
    reference = None if args.ours_only else reference_python.checked(parser, args.reference_python, "--ours-only")

    server = RedisServer()
    server.start()
    try:
        results = {
            "c2casgiutils (this repository)": run(
                "ours", sys.executable, APPS / "ours.py", server.url, args.count, {"PYTHONPATH": str(ROOT)}
            )
        }
        if reference is not None:
            results["c2casgiutils 0.14.0 (reference)"] = run(
                "reference", reference, APPS / "reference.py", server.url, args.count, {}
            )
    finally:
        server.close()

    print(
        f"\n{PROCESSES} answering processes, {args.count} sequential broadcasts each, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n"
    )
    print("| implementation | p50 (ms) | p99 (ms) | mean (ms) |")
    print("|---|---:|---:|---:|")
    for name, durations in results.items():
        print(
            f"| {name} | {percentile(durations, 0.5) * 1000:.2f} | {percentile(durations, 0.99) * 1000:.2f} "
            f"| {statistics.fmean(durations) * 1000:.2f} |"
        )
    if len(results) == 2:
        ours, reference = (percentile(d, 0.5) for d in results.values())
        print(f"\np50 ratio reference / ours: {reference / ours:.1f}x")


if __name__ == "__main__":
    main()
