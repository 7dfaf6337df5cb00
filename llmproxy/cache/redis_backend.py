"""The shared backend: entries on ``state.redis`` (``state/redis.py``'s connection).

Each entry is one Redis string under ``llmproxy:cache:<model tag>:<hash>``
(the tag is in the key, see ``keying.cache_key``, so ``DELETE /admin/cache?model=``
is a SCAN of one prefix), zlib-compressed (``forms.Entry.encode``), with the
entry's TTL as Redis' own expiry. Answers bigger than ``max_entry_bytes``
(before compression) are not stored.

Invariant: Redis failing is never the request's failure. ``SharedRedis``
answers ``UNAVAILABLE`` at once while Redis is down (one WARNING per outage,
``llmproxy_redis_up`` 0); here that is a miss or a store skipped, counted in
``llmproxy_cache_backend_errors_total``, and the request goes upstream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..state.redis import UNAVAILABLE, SharedRedis
from .forms import Entry

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..observe.metrics import Metrics

PREFIX = "llmproxy:cache:"
# /admin/cache counts at most this many keys (a SCAN; more are reported as "at least").
STATS_SCAN_MAX = 10_000
_SCAN_BATCH = 500


class RedisBackend:
    kind = "redis"
    evictions = 0  # Redis evicts by its own maxmemory-policy; not seen here

    def __init__(self, redis: SharedRedis, max_entry_bytes: int, metrics: Metrics | None = None) -> None:
        self.redis = redis
        self.max_entry_bytes = max_entry_bytes
        self.metrics = metrics

    def _failed(self) -> None:
        if self.metrics is not None:
            self.metrics.cache_backend_error()

    async def get(self, key: str) -> Entry | None:
        data = await self.redis.get(PREFIX + key)
        if data is UNAVAILABLE:
            self._failed()
            return None
        if data is None or not isinstance(data, bytes):
            return None
        return Entry.decode(data, self.max_entry_bytes)

    async def put(self, key: str, entry: Entry, ttl: float) -> bool:
        if entry.size > self.max_entry_bytes:
            return False
        ok = await self.redis.set(PREFIX + key, entry.encode(), ttl)
        if ok is UNAVAILABLE:
            self._failed()
            return False
        return bool(ok)

    async def flush(self, model: str | None = None) -> int:
        from .keying import model_tag

        pattern = PREFIX + (model_tag(model) + ":*" if model is not None else "*")

        async def run(r: Redis) -> int:
            n = 0
            batch: list[Any] = []
            async for k in r.scan_iter(match=pattern, count=_SCAN_BATCH):
                batch.append(k)
                if len(batch) >= _SCAN_BATCH:
                    n += int(await r.unlink(*batch))
                    batch = []
            if batch:
                n += int(await r.unlink(*batch))
            return n

        flushed = await self.redis.call(run)
        if flushed is UNAVAILABLE:
            self._failed()
            return 0
        return int(flushed)  # type: ignore[arg-type]

    async def stats(self) -> tuple[int, int]:
        """(compressed bytes, entries), counted over at most ``STATS_SCAN_MAX`` keys."""

        async def run(r: Redis) -> tuple[int, int]:
            keys: list[Any] = []
            async for k in r.scan_iter(match=PREFIX + "*", count=_SCAN_BATCH):
                keys.append(k)
                if len(keys) >= STATS_SCAN_MAX:
                    break
            if not keys:
                return 0, 0
            pipe = r.pipeline(transaction=False)
            for k in keys:
                pipe.strlen(k)
            sizes = await pipe.execute()
            return sum(int(s) for s in sizes), len(keys)

        found = await self.redis.call(run)
        if found is UNAVAILABLE:
            self._failed()
            return 0, 0
        return found  # type: ignore[return-value]

    async def close(self) -> None:
        pass  # the connection is the app's (state/redis.py's cleanup_ctx closes it)
