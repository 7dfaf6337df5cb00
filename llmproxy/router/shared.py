"""Deployment limits shared by a fleet on Redis (``state.redis``).

A deployment's ``rpm``, ``tpm`` and ``max_concurrency`` name what the
upstream allows the whole fleet, so every worker of every pod on one Redis
is admitted against one set of counters: the keys' atomic scripts
(``SharedCounters.admit`` / ``settle``) under their own prefix, so a key and
a deployment that happen to share a name never share a counter.

Invariants:
- only a deployment that sets at least one of the three limits is asked
  about (``DeploymentState.shared`` is None otherwise): one round trip
  before the attempt, one after, none for the rest;
- each admitted lease is settled exactly once (``Lease.release``), as a
  background task tracked here and awaited by ``drain`` at shutdown; a
  settle that cannot reach Redis leaves the parallel lease to lapse at its
  TTL (``SharedCounters.lease_ttl``), as a crashed process's would;
- the mode follows Redis health (``StateRegistry.share``): while it is up,
  the shared counters are the limit and each worker's own limiters are a
  pre-check at the full configured values; while it is down, each worker
  enforces its share, as without Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..config.tree import DeploymentConfig
from ..state.counters import KeyLimits, Lease, Refused, SharedCounters
from ..state.redis import SharedRedis, Unavailable

PREFIX = "llmproxy:deployment:"


class DeploymentCounters:
    def __init__(self, redis: SharedRedis, wall: Callable[[], float] = time.time) -> None:
        # Own counters (prefix), no spend: its buffer stays empty.
        self.counters = SharedCounters(redis, prefix=PREFIX)
        self.redis = redis
        self.wall = wall  # the fleet's windows are on wall time (NTP), not the plan's clock
        self._settling: set[asyncio.Task[object]] = set()

    async def admit(self, state_id: str, config: DeploymentConfig, tokens: float) -> Lease | Refused | Unavailable:
        """One attempt's admission under ``state_id``: the id of the state the
        attempt holds, so that a wildcard's names past ``wildcard_names``,
        which share the pattern's state, share its counters too."""
        limits = KeyLimits(rpm=config.rpm, tpm=config.tpm, max_parallel=config.max_concurrency)
        task = asyncio.get_running_loop().create_task(
            self.counters.admit(state_id, limits, int(tokens), self.wall()))
        try:
            # Shielded: a request cancelled while the script runs (the client
            # left) must not leave a lease in Redis holding a fleet-wide slot
            # until its TTL; the abandoned admission is settled when it lands.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._settling.add(task)
            task.add_done_callback(self._abandoned)
            raise

    def _abandoned(self, task: asyncio.Task[Lease | Refused | Unavailable]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is None:
            got = task.result()
            if isinstance(got, Lease):
                self.settle(got, 0)

    def settle(self, lease: Lease, token_delta: int) -> None:
        """Release ``lease`` and correct its tpm window, in the background
        (a lease is released synchronously, in a request's ``finally``)."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
            self.counters.settle(lease.name, lease, token_delta, 0.0))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def settling(self) -> int:
        return len(self._settling)

    async def drain(self) -> None:
        """Shutdown: the settles under way finished (each bounded by the Redis timeout)."""
        await asyncio.gather(*self._settling, return_exceptions=True)
