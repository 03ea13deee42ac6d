"""How many of 20 wrong secrets from one client address are answered 401 before the 429s, across a fleet.

The fleet of tests/fleet_servers.py: two demo instances of 2 workers each behind Debian's HAProxy in round-robin,
sharing one redis-server, ``C2C__AUTH__RATE_LIMIT__MAX_FAILURES=5``. Each run uses a fresh client address
(127.0.1.N), so runs do not share a count; 20 wrong secrets are sent one after the other (``sequential``) or all
at once (``at-once``). The goal is 5 (``max_failures``), whatever process answers.

``--tree`` runs another checkout (its demo and package; e.g. ``git archive`` of an older commit) for a baseline.

    .venv/bin/python bench/bench_login_limit.py [--runs 10] [--tree /tmp/baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent))

from tests.fleet_servers import DemoFleet
from tests.lifecycle_servers import ROOT
from tests.servers import RedisServer


def sequential(fleet: DemoFleet, address: str) -> int:
    with fleet.client(address) as client:
        statuses = [client.post("/c2c/auth/login", json={"secret": f"wrong-{n}"}).status_code for n in range(20)]
    return statuses.count(401)


def at_once(fleet: DemoFleet, address: str) -> int:
    async def burst() -> list[httpx.Response]:
        async with fleet.async_client(address) as client:
            return await asyncio.gather(
                *(client.post("/c2c/auth/login", json={"secret": f"wrong-{n}"}) for n in range(20))
            )

    return [response.status_code for response in asyncio.run(burst())].count(401)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose demo and package run")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="c2c-bench-limit-"))
    redis = RedisServer()
    redis.start()
    fleet = DemoFleet(folder, redis, tree=args.tree.resolve())
    try:
        fleet.start()
        results: dict[str, list[int]] = {"sequential": [], "at-once": []}
        for run in range(args.runs):
            results["sequential"].append(sequential(fleet, f"127.0.1.{2 * run + 1}"))
            results["at-once"].append(at_once(fleet, f"127.0.1.{2 * run + 2}"))
        for mode, counts in results.items():
            print(f"{mode}: 401 of 20 per run {counts} (min {min(counts)}, max {max(counts)}; goal 5)")
    finally:
        fleet.close()
        redis.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
