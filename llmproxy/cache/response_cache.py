"""The response cache in front of its backend: counts, single-flight, flushes.

One ``ResponseCache`` per app (``RESPONSE_CACHE``), kept across reloads
(``configure`` points it at the new config). Invariants:
- a backend failure is never a request's failure: the backends answer None
  / False on their own errors (the Redis one says so once per outage);
- concurrent identical misses: the first (the leader) goes upstream, the
  others wait for it at most ``cache.wait`` seconds, then read the cache;
  whatever happens to the leader (an error, a cut stream, a departed
  client), its flight ends in ``finally``, and a waiter that finds nothing
  goes upstream itself;
- the flights map holds one future per key being answered now, so it is
  bounded by the requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from ..config.tree import CacheConfig, Config
from ..observe.metrics import Metrics
from ..state.redis import SharedRedis
from .forms import Entry
from .keying import BYPASS, HIT, MISS, RESULTS
from .memory import MemoryBackend
from .redis_backend import RedisBackend

log = logging.getLogger("llmproxy.cache")


class Backend(Protocol):
    kind: str
    max_entry_bytes: int
    evictions: int

    async def get(self, key: str) -> Entry | None: ...

    async def put(self, key: str, entry: Entry, ttl: float) -> bool: ...

    async def flush(self, model: str | None = None) -> int: ...

    async def stats(self) -> tuple[int, int]: ...

    async def close(self) -> None: ...


class ResponseCache:
    def __init__(self, config: CacheConfig, backend: Backend, metrics: Metrics | None = None) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self._flights: dict[str, asyncio.Future[None]] = {}
        self.counts = {HIT: 0, MISS: 0, BYPASS: 0}
        self._last_bytes = 0
        if metrics is not None:
            metrics.watch_cache(self._sample)
            metrics.cache_configured(RESULTS)

    def counted(self, result: str) -> None:
        self.counts[result] += 1
        if self.metrics is not None:
            self.metrics.cache_request(result)

    async def lookup(self, key: str) -> Entry | None:
        """The entry, waiting (bounded) for an identical request in flight to store one."""
        entry = await self.backend.get(key)
        if entry is not None:
            return entry
        flight = self._flights.get(key)
        if flight is None:
            return None
        try:
            await asyncio.wait_for(asyncio.shield(flight), self.config.wait)
        except TimeoutError:
            return None
        return await self.backend.get(key)

    def lead(self, key: str) -> asyncio.Future[None] | None:
        """Begin this key's flight (None if another request leads it already)."""
        if key in self._flights:
            return None
        fut = self._flights[key] = asyncio.get_running_loop().create_future()
        return fut

    def land(self, key: str, flight: asyncio.Future[None]) -> None:
        """End the flight ``lead`` began: its waiters read the cache now."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done():
            flight.set_result(None)

    async def store(self, key: str, entry: Entry, ttl: float) -> None:
        await self.backend.put(key, entry, ttl)

    async def view(self) -> dict[str, Any]:
        """``GET /admin/cache``."""
        used, entries = await self.backend.stats()
        hits, misses = self.counts[HIT], self.counts[MISS]
        looked = hits + misses
        return {
            "enabled": self.config.enabled, "backend": self.backend.kind, "scope": self.config.scope,
            "ttl": self.config.ttl, "bytes": used, "max_bytes": self.config.max_bytes if self.backend.kind == "memory"
            else None, "entries": entries, "hits": hits, "misses": misses, "bypasses": self.counts[BYPASS],
            "hit_ratio": round(hits / looked, 4) if looked else None, "evictions": self.backend.evictions,
            "in_flight": len(self._flights),
        }

    def _sample(self) -> tuple[float, float]:
        """(bytes, evictions) at scrape time: the memory backend's own; Redis' as last seen."""
        used = getattr(self.backend, "used", self._last_bytes)
        return float(used), float(self.backend.evictions)

    async def close(self) -> None:
        await self.backend.close()


class CacheSlot:
    """The app's cache across reloads (``RESPONSE_CACHE``): None while ``cache.enabled`` is false.

    A reload keeps the entries unless the backend itself changed
    (``cache.backend``, ``state.redis``): then a new one starts empty. Models
    the new config removed, turned ``cache: false`` or gave other deployments
    are flushed (their old answers came from what no longer serves them).
    """

    def __init__(self, config: Config, clock: Callable[[], float], metrics: Metrics | None,
                 redis: SharedRedis | None = None) -> None:
        self.clock = clock
        self.metrics = metrics
        self.redis = redis  # the app's state.redis connection (opened at start-up, kept)
        self.config = config
        self.cache: ResponseCache | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        if config.cache.enabled:
            self.cache = self._new(config)

    def _new(self, config: Config) -> ResponseCache | None:
        c = config.cache
        if c.backend == "redis":
            if self.redis is None:
                # state.redis was added by a reload: its connection opens at start-up only.
                log.warning("cache.backend redis needs the state.redis connection, opened at start-up: "
                            "the cache stays off until a restart")
                return None
            backend: Backend = RedisBackend(self.redis, c.max_entry_bytes, self.metrics)
        else:
            backend = MemoryBackend(c.max_bytes, c.max_entry_bytes, self.clock)
        return ResponseCache(c, backend, self.metrics)

    def apply(self, new: Config) -> None:
        old, self.config = self.config, new
        cache = self.cache
        if cache is not None and (not new.cache.enabled or new.cache.backend != old.cache.backend
                                  or new.state.redis != old.state.redis):
            self._later(cache.close())
            cache = self.cache = None
        if not new.cache.enabled:
            return
        if cache is None:
            self.cache = self._new(new)
            return
        cache.config = new.cache
        backend = cache.backend
        backend.max_entry_bytes = new.cache.max_entry_bytes
        if isinstance(backend, MemoryBackend):
            backend.resize(new.cache.max_bytes)
        for name, model in old.models.items():
            now = new.models.get(name)
            if now is None or not now.cache.enabled or now.deployments != model.deployments:
                self._later(backend.flush(name))

    def _later(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cache is not None:
            await self.cache.close()


RESPONSE_CACHE = web.AppKey("llmproxy.response_cache", CacheSlot)
