"""Stored Responses (``store``, ``previous_response_id``): the store's contract and its memory backend.

Backends behind one small async API (``get`` / ``put`` / ``delete``):
``MemoryStore`` here (this process; the default without ``state.redis``),
``response_store_group.py`` (a ``--workers`` group's memory stores, asking
each other on a miss) and ``state/response_store_redis.py`` (shared by every
process and pod on ``state.redis``). ``responses.store_backend`` chooses, at
start-up (``backend_of``).

Each entry keeps the Response and its context: every item of the chain up
to and including this turn's input and output, as OpenAI rebuilds a
follow-up (shared/reference/responses-api.md §6.6).

Invariants of every backend:
- an entry older than ``responses.store_ttl`` seconds is never returned;
- ``get`` answers the entry, ``None`` (never stored, expired, deleted) or a
  ``NotKept`` (stored as too large to keep: a follow-up says so instead of
  "not found"); a store that cannot answer (Redis down) raises
  ``StoreUnavailable`` (503): a stored response is never reported missing
  because the store could not be asked;
- ``put`` never fails the request that produced the response: a store that
  cannot take it skips it (the answer still goes to the client).

``MemoryStore``: at most ``store_max`` entries (the oldest go first); the
expired ones are dropped when met, and the oldest expired on every put; the
clock is the proxy's one clock, so tests move it. The writer's ``save``
runs a memory put at once (no task, nothing to await); a Redis put runs as a
task started before the bytes that end the answer are written
(``ResponsesWriter.keep``), tracked here so shutdown waits for it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple, Protocol

from aiohttp import web

from ..config.tree import Config, ResponsesConfig
from ..errors import ServiceUnavailable

MEMORY, REDIS = "memory", "redis"


class Stored(NamedTuple):
    response: dict[str, Any]
    context: list[dict[str, Any]]


class NotKept(NamedTuple):
    """A response that was produced but not stored, and why (for the follow-up's error)."""

    why: str


class StoreUnavailable(ServiceUnavailable):
    """The store cannot be asked now (``state.redis`` unreachable)."""

    code = "response_store_unavailable"

    def __init__(self, rid: str, why: str = "the shared store, state.redis, is unreachable") -> None:
        super().__init__(
            f"Stored responses are unavailable right now ({why}): response '{rid}' cannot be looked up; "
            "retry shortly.",
            headers={"Retry-After": "1"},
        )


def backend_of(config: Config) -> str:
    """The backend ``responses.store_backend`` names (``auto``: redis when state.redis is set)."""
    chosen = config.responses.store_backend
    if chosen == "auto":
        return REDIS if config.state.redis else MEMORY
    return chosen


class ResponseStore(Protocol):
    kind: str

    async def get(self, rid: str) -> Stored | NotKept | None: ...

    async def put(self, stored: Stored) -> None: ...

    async def delete(self, rid: str) -> bool: ...

    def save(self, stored: Stored) -> asyncio.Task[None] | None:
        """Begin storing ``stored`` now; the task to await, or None if it is done."""

    async def close(self) -> None: ...


class MemoryStore:
    __slots__ = ("_clock", "_config", "_entries")
    kind = MEMORY

    def __init__(self, clock: Callable[[], float], config: Callable[[], ResponsesConfig]) -> None:
        self._clock = clock
        self._config = config  # the live config's responses section (a reload may change it)
        self._entries: OrderedDict[str, tuple[float, Stored]] = OrderedDict()

    def save(self, stored: Stored) -> None:
        self._put(stored)

    async def put(self, stored: Stored) -> None:
        self._put(stored)

    def _put(self, stored: Stored) -> None:
        rc = self._config()
        now = self._clock()
        entries = self._entries
        entries[stored.response["id"]] = (now + rc.store_ttl, stored)
        entries.move_to_end(stored.response["id"])
        while len(entries) > rc.store_max:
            entries.popitem(last=False)
        while entries:
            expires, _ = next(iter(entries.values()))
            if expires > now:
                break
            entries.popitem(last=False)

    async def get(self, rid: str) -> Stored | None:
        return self._get(rid)

    def _get(self, rid: str) -> Stored | None:
        entry = self._entries.get(rid)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[rid]
            return None
        return entry[1]

    async def delete(self, rid: str) -> bool:
        return self._get(rid) is not None and self._entries.pop(rid, None) is not None

    async def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._entries)


RESPONSE_STORE = web.AppKey("llmproxy.response_store", ResponseStore)


async def response_store_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: at shutdown, the puts still running finish (bounded by Redis' timeouts)."""
    yield
    await app[RESPONSE_STORE].close()
