"""Benchmark participant for the reference package c2casgiutils==0.14.0 (run with /work/refvenv/bin/python).

Same roles as ours.py, written against the reference's documented API; configured by C2C__REDIS__URL.
"""

import argparse
import asyncio
import json
import os
import signal
import time

from c2casgiutils import broadcast
from c2casgiutils.broadcast.types import BroadcastResponse

CHANNEL = "bench_echo"


async def echo(message: str) -> dict[str, object]:
    return {"message": message, "pid": os.getpid()}


async def serve() -> None:
    await broadcast.startup()
    await broadcast.subscribe(CHANNEL, echo)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def drive(count: int, warmup: int, expected: int) -> None:
    await broadcast.startup()
    await asyncio.sleep(0.1)  # the reference's listener task must have started before a broadcast (not timed)
    durations = []
    for index in range(warmup + count):
        started = time.perf_counter()
        answers = await broadcast.broadcast(CHANNEL, {"message": "ping"}, expect_answers=True, timeout=5)
        elapsed = time.perf_counter() - started
        assert answers is not None
        complete = [a for a in answers if isinstance(a, BroadcastResponse)]
        if len(complete) != expected:
            raise SystemExit(f"expected {expected} answers, got {answers}")
        if index >= warmup:
            durations.append(elapsed)
    print(json.dumps({"durations": durations}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "drive"])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--expected", type=int, default=4)
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve())
    else:
        asyncio.run(drive(args.count, args.warmup, args.expected))


if __name__ == "__main__":
    main()
