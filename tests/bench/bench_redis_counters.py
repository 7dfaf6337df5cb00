"""What per-key limits and spend on Redis cost a request: admit + settle.

    PYTHONPATH=. python tests/bench/bench_redis_counters.py [--requests 20000]

Starts its own redis-server on 127.0.0.1 (tests/redis_server.py) and runs
``SharedCounters.admit`` then ``settle`` (two Lua scripts, two round trips)
per simulated request, for a key with rpm, tpm, max_parallel and a budget,
sequentially (the latency one request pays) and with 50 requests in flight
(the proxy's side of a loaded process). CPU is this process's (the proxy's
share); wall time includes Redis. uvloop, as ``serve`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llmproxy.state.counters import KeyLimits, Lease, SharedCounters
from llmproxy.state.redis import SharedRedis
from tests.redis_server import RedisServer

LIMITS = KeyLimits(rpm=10**9, tpm=10**12, max_parallel=10**6, budget_usd=10**9, period="30d:1",
                   period_end=time.time() + 86400)


async def one(c: SharedCounters, i: int) -> None:
    lease = await c.admit(f"key-{i % 100}", LIMITS, 500, time.time())
    assert isinstance(lease, Lease), lease
    assert await c.settle(lease.name, lease, -100, 0.0001) is True


async def run(url: str, n: int) -> None:
    redis = SharedRedis(url)
    await redis.start()
    c = SharedCounters(redis)
    for i in range(500):  # warm up: scripts loaded, pool filled
        await one(c, i)
    for label, concurrency in (("sequential", 1), ("50 in flight", 50)):
        gate = asyncio.Semaphore(concurrency)

        async def bounded(i: int, gate: asyncio.Semaphore = gate) -> None:
            async with gate:
                await one(c, i)

        cpu0, wall0 = os.times(), time.perf_counter()
        await asyncio.gather(*(bounded(i) for i in range(n)))
        cpu1, wall = os.times(), time.perf_counter() - wall0
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        print(f"{label:14s} {n / wall:9.0f} requests/s   {wall / n * 1e6:7.1f} µs wall per request   "
              f"{cpu / n * 1e6:6.1f} µs proxy CPU per request (admit + settle)")
    await redis.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        import uvloop

        uvloop.run(run(server.url, args.requests))
    finally:
        server.close()


if __name__ == "__main__":
    main()
