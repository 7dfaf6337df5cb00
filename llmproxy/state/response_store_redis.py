"""Stored Responses on ``state.redis``: every proxy process and pod sees the same ones.

The contract is ``server/response_store.py``'s. Each entry is one Redis
string under ``llmproxy:responses:<response id>``, expiring by Redis' own TTL
(``responses.store_ttl``), in one of two forms (the first byte says which):

- ``Z`` + zlib(orjson ``{"r": response, "c": earlier}``): ``earlier`` is the
  context without this turn's output, which the response holds already (the
  context is ``earlier + response["output"]``), so it is not kept twice;
- ``L`` + orjson ``{"bytes": N}``: a response whose encoded form (before
  compression) was over ``responses.store_max_entry_bytes``: not kept, but a
  follow-up to it is told why, not "not found".

Invariants:
- a read that Redis cannot answer raises ``StoreUnavailable`` (503, with
  ``Retry-After``) and counts ``llmproxy_response_store_errors_total{op}``:
  a response is never reported missing because the store could not be asked;
- a put Redis cannot take is skipped (the answer has gone to the client),
  counted, and logged at WARNING once per outage (``SharedRedis.outages``);
- compressing and inflating a large entry run off the event loop; inflating
  stops at the entry bound (no inflation bomb from a foreign writer).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from ..config.tree import ResponsesConfig
from ..server.response_store import REDIS, NotKept, Stored, StoreUnavailable
from .redis import UNAVAILABLE, SharedRedis

if TYPE_CHECKING:
    from ..observe.metrics import Metrics

log = logging.getLogger("llmproxy.responses")

PREFIX = "llmproxy:responses:"
# Entries bigger than this are compressed and inflated on a thread: zlib
# takes about a millisecond per 100 KiB, too long to hold the event loop.
OFF_LOOP_BYTES = 64 * 1024
_ENTRY, _TOO_LARGE = b"Z", b"L"


def encode(stored: Stored, limit: int) -> tuple[bytes, bool]:
    """The raw (uncompressed) entry, and whether it fits ``limit``; a marker if it does not."""
    response = stored.response
    earlier = stored.context[:len(stored.context) - len(response["output"])]
    raw = orjson.dumps({"r": response, "c": earlier})
    if len(raw) > limit:
        return _TOO_LARGE + orjson.dumps({"bytes": len(raw)}), False
    return raw, True


def compress(raw: bytes) -> bytes:
    return _ENTRY + zlib.compress(raw, 1)


def decode(data: bytes, limit: int) -> Stored | NotKept:
    """The entry in ``data`` (bytes Redis holds for one id)."""
    kind, body = data[:1], data[1:]
    try:
        if kind == _TOO_LARGE:
            size = int(orjson.loads(body)["bytes"])
            return NotKept(f"its conversation ({size} bytes) is over responses.store_max_entry_bytes")
        if kind == _ENTRY:
            d = zlib.decompressobj()
            raw = d.decompress(body, limit + 4096)
            if not d.unconsumed_tail:
                doc = orjson.loads(raw)
                response = doc["r"]
                return Stored(response, list(doc["c"]) + list(response["output"]))
    except (zlib.error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        pass
    return NotKept("its stored form is unreadable (written by another version, or over "
                   "responses.store_max_entry_bytes)")


class RedisStore:
    kind = REDIS

    def __init__(self, redis: SharedRedis, config: Callable[[], ResponsesConfig],
                 metrics: Metrics | None = None) -> None:
        self.redis = redis
        self._config = config  # the live config's responses section (a reload may change it)
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_outage = -1  # the SharedRedis.outages count last warned about
        if metrics is not None:
            metrics.response_store_configured(("put", "get", "delete"))

    def _failed(self, op: str) -> None:
        if self.metrics is not None:
            self.metrics.response_store_error(op)

    def save(self, stored: Stored) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self.put(stored))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def put(self, stored: Stored) -> None:
        rc = self._config()
        raw, fits = encode(stored, rc.store_max_entry_bytes)
        if fits:
            raw = await asyncio.to_thread(compress, raw) if len(raw) > OFF_LOOP_BYTES else compress(raw)
        else:
            log.debug("response %s not stored: over responses.store_max_entry_bytes", stored.response["id"])
        ok = await self.redis.set(PREFIX + stored.response["id"], raw, rc.store_ttl)
        if ok is UNAVAILABLE:
            self._failed("put")
            if self._warned_outage != self.redis.outages:
                self._warned_outage = self.redis.outages
                log.warning(
                    "responses: state.redis is unreachable, response %s (and others until it is back) not "
                    "stored; a previous_response_id naming them will be answered not found",
                    stored.response["id"],
                )

    async def get(self, rid: str) -> Stored | NotKept | None:
        data = await self.redis.get(PREFIX + rid)
        if data is UNAVAILABLE:
            self._failed("get")
            raise StoreUnavailable(rid)
        if not isinstance(data, bytes):
            return None
        limit = self._config().store_max_entry_bytes
        if len(data) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(decode, data, limit)
        return decode(data, limit)

    async def delete(self, rid: str) -> bool:
        n = await self.redis.delete(PREFIX + rid)
        if n is UNAVAILABLE:
            self._failed("delete")
            raise StoreUnavailable(rid)
        return bool(n)

    async def close(self) -> None:
        # The connection is the app's (state/redis.py's cleanup_ctx closes it, after this).
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def pending(self) -> int:
        """Puts still running (tests wait on it)."""
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"RedisStore({self.redis.shown_url})"
