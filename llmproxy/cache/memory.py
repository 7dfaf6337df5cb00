"""The in-process backend: least recently used go first once ``max_bytes`` is full.

Invariants: ``used`` is the sum of the entries' ``size`` (answer bytes plus a
fixed overhead each, so the number of entries is bounded too); an entry
past its expiry on the proxy's clock is never returned; nothing bigger than
``max_entry_bytes`` is stored. Used from the event loop's thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from .forms import Entry


class MemoryBackend:
    kind = "memory"

    def __init__(self, max_bytes: int, max_entry_bytes: int, clock: Callable[[], float]) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.clock = clock
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()  # key → (entry, expires at)
        self.used = 0
        self.evictions = 0

    async def get(self, key: str) -> Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        entry, expires = found
        if self.clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry, ttl: float) -> bool:
        size = entry.size
        if size > self.max_entry_bytes or size > self.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        while self.used + size > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
            self.evictions += 1
        self._entries[key] = (entry, self.clock() + ttl)
        self.used += size
        return True

    def resize(self, max_bytes: int) -> None:
        """A reload's new ``max_bytes``: the least recently used go until the rest fit."""
        self.max_bytes = max_bytes
        while self.used > max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    async def flush(self, model: str | None = None) -> int:
        keys = [k for k, (e, _) in self._entries.items() if model is None or e.model == model]
        for k in keys:
            self._drop(k)
        return len(keys)

    async def stats(self) -> tuple[int, int]:
        """(bytes used, entries)."""
        return self.used, len(self._entries)

    def _drop(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self.used -= entry.size

    async def close(self) -> None:
        pass
