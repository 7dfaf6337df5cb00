"""Spend per key: the ``SpendLedger`` interface and the in-process ledger.

A key's spend is counted in every budget window at once (lifetime, 1h, 1d,
7d, 30d: fixed windows aligned on the Unix epoch, no calendar), so a reload
that changes a key's ``budget.period`` reads the new period's spend exactly.
``LocalLedger`` holds the open windows in memory (what the request path
reads) and hands the increments to the embedded store (``state.sqlite``) in
batches at most ``FLUSH_INTERVAL`` seconds apart, off the event loop; a
shared ledger (Redis) implements the same interface.

Invariants:
- ``add`` never blocks and never does I/O: it updates memory and marks the
  batch dirty; the flusher writes it within ``FLUSH_INTERVAL`` seconds, so a
  SIGKILL loses at most that much spend (plus a write in progress);
- ``flush`` hands each increment to the store exactly once; a failed write
  puts it back for the next flush (logged once per failure streak);
- memory is bounded by the configured keys × 5 windows (windows roll over in
  place; pending increments of one window merge).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..config.tree import BUDGET_PERIODS
from ..state.sqlite import Row, SpendStore

log = logging.getLogger("llmproxy.keys")

PERIODS: tuple[int, ...] = (0, *BUDGET_PERIODS.values())  # 0: lifetime
FLUSH_INTERVAL = 1.0


def window_start(period: int, now: float) -> int:
    return 0 if period == 0 else int(now // period) * period


@dataclass(frozen=True, slots=True)
class Spend:
    usd: float
    requests: int
    tokens: int
    window_start: int  # unix seconds; 0 for lifetime
    resets_at: int | None  # unix seconds; None: never (lifetime)


class SpendLedger(Protocol):
    """What the request path and /admin/keys need of a ledger. A shared one
    (Redis) implements it over ``LocalLedger``, which stays the fallback and
    the owner of the embedded store."""

    def spent(self, name: str, period: int) -> Spend:
        """``name``'s spend in the ``period`` window open now (0: lifetime)."""
        ...

    def period_usd(self, name: str, period: int) -> float:
        """``spent(...).usd``, on the request path (the budget check)."""
        ...

    def add(self, name: str, usd: float, tokens: int) -> None:
        """One finished request of ``name``: its cost and tokens (never blocks)."""
        ...

    def forget(self, keep: set[str]) -> None:
        """A reload removed every key not in ``keep``."""
        ...

    async def flush(self) -> None:
        """Persist what is pending (reload, shutdown)."""
        ...


class _Window:
    __slots__ = ("start", "usd", "requests", "tokens")

    def __init__(self, start: int) -> None:
        self.start = start
        self.usd = 0.0
        self.requests = 0
        self.tokens = 0


class LocalLedger:
    """Spend in memory, persisted to an optional ``SpendStore`` (``SpendLedger``)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.store: SpendStore | None = None
        self.store_problem: str | None = None  # why the store is not in use (shown by /admin/keys)
        self._windows: dict[str, dict[int, _Window]] = {}
        self._pending: dict[tuple[str, int, int], list[float]] = {}
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failing = False

    # -- the request path (memory only)

    def _key(self, name: str) -> dict[int, _Window]:
        w = self._windows.get(name)
        if w is None:
            now = self.wall()
            w = self._windows[name] = {p: _Window(window_start(p, now)) for p in PERIODS}
        return w

    def _window(self, name: str, period: int, now: float) -> _Window:
        win = self._key(name)[period]
        start = window_start(period, now)
        if win.start != start:  # the window rolled over: a new one starts empty
            win.start, win.usd, win.requests, win.tokens = start, 0.0, 0, 0
        return win

    def spent(self, name: str, period: int) -> Spend:
        now = self.wall()
        win = self._window(name, period, now)
        return Spend(win.usd, win.requests, win.tokens, win.start, None if period == 0 else win.start + period)

    def period_usd(self, name: str, period: int) -> float:
        """``spent(...).usd`` without building a ``Spend`` (the admission check)."""
        return self._window(name, period, self.wall()).usd

    def add(self, name: str, usd: float, tokens: int) -> None:
        now = self.wall()
        pending = self._pending
        for period in PERIODS:
            win = self._window(name, period, now)
            win.usd += usd
            win.requests += 1
            win.tokens += tokens
            if self.store is not None:
                inc = pending.get((name, period, win.start))
                if inc is None:
                    pending[(name, period, win.start)] = [usd, 1, tokens]
                else:
                    inc[0] += usd
                    inc[1] += 1
                    inc[2] += tokens
        if self.store is not None:
            self._dirty.set()

    def forget(self, keep: set[str]) -> None:
        """Drop the memory of keys a reload removed (their stored rows stay)."""
        for name in [n for n in self._windows if n not in keep]:
            del self._windows[name]

    # -- the store (every call off the event loop)

    async def open(self, store: SpendStore) -> bool:
        """Open ``store`` and read the open windows back; False (and a WARNING) if it cannot be used."""
        now = self.wall()
        try:
            await asyncio.to_thread(store.open, now)
            rows = await asyncio.to_thread(store.load, {p: window_start(p, now) for p in PERIODS})
        except (OSError, sqlite3.Error) as exc:
            await asyncio.to_thread(store.close)
            self.store_problem = f"cannot use {store.path}: {exc}"
            log.warning("state.path: %s; key spend is kept in memory only and lost at restart",
                        self.store_problem)
            return False
        for name, period, start, usd, requests, tokens in rows:
            if period not in PERIODS:
                continue
            win = self._window(name, period, now)
            if win.start == start:
                win.usd += usd
                win.requests += requests
                win.tokens += tokens
        self.store = store
        self.store_problem = None
        return True

    async def run(self) -> None:
        """The flusher: a dirty batch is written ``FLUSH_INTERVAL`` seconds after its first increment."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            self._dirty.clear()
            store = self.store
            if store is None or not self._pending:
                return
            batch, self._pending = self._pending, {}
            rows: list[Row] = [(n, p, s, inc[0], int(inc[1]), int(inc[2])) for (n, p, s), inc in batch.items()]
            try:
                await asyncio.to_thread(store.write, rows)
            except (OSError, sqlite3.Error) as exc:
                for k, inc in batch.items():  # back for the next try, merged with what came since
                    cur = self._pending.setdefault(k, [0.0, 0, 0])
                    for i in range(3):
                        cur[i] += inc[i]
                self._dirty.set()
                if not self._failing:
                    log.warning("state.path: writing key spend to %s failed: %s; retrying", store.path, exc)
                self._failing = True
                return
            if self._failing:
                log.warning("state.path: writing key spend to %s works again", store.path)
                self._failing = False

    async def close(self) -> None:
        """The last flush, then the store closed (shutdown)."""
        await self.flush()
        store, self.store = self.store, None
        if store is not None:
            await asyncio.to_thread(store.close)
