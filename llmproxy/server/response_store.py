"""Stored Responses (``store``, ``previous_response_id``): bounded, in memory, with a TTL.

Invariants: at most ``max_items`` entries (the oldest go first); an entry
older than ``ttl`` seconds is never returned (it is dropped when met, and the
oldest expired ones on every put); the clock is the proxy's one clock, so
tests move it. Each entry keeps the Response and its context: every item of
the chain up to and including this turn's input and output, as OpenAI
rebuilds a follow-up (shared/reference/responses-api.md §6.6).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from aiohttp import web


class Stored(NamedTuple):
    response: dict[str, Any]
    context: list[dict[str, Any]]


class ResponseStore:
    __slots__ = ("_clock", "_entries")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Stored]] = OrderedDict()

    def put(self, stored: Stored, max_items: int, ttl: float) -> None:
        now = self._clock()
        entries = self._entries
        entries[stored.response["id"]] = (now + ttl, stored)
        entries.move_to_end(stored.response["id"])
        while len(entries) > max_items:
            entries.popitem(last=False)
        while entries:
            expires, _ = next(iter(entries.values()))
            if expires > now:
                break
            entries.popitem(last=False)

    def get(self, rid: str) -> Stored | None:
        entry = self._entries.get(rid)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[rid]
            return None
        return entry[1]

    def delete(self, rid: str) -> bool:
        return self.get(rid) is not None and self._entries.pop(rid, None) is not None

    def __len__(self) -> int:
        return len(self._entries)


RESPONSE_STORE = web.AppKey("llmproxy.response_store", ResponseStore)
